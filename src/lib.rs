//! shadowgate: a clinic gateway sensor for consumer generative-AI use.
//!
//! Data flows one way: sources ([`capture`]: capture files and live interfaces; in DNS mode the
//! [`resolver`]'s queries; the steering [`portal`]'s requests) -> [`decode`] (pure parsers) ->
//! [`flow`] (state: flows, reassembly, DNS name cache; emits observations) -> [`policy`]
//! (catalogue, rules, decisions) -> actions ([`enforce`], the resolver's answer, the portal's
//! page), the stdout writer and [`record`] (event store, then the SIEM feed) -> [`report`].
//! [`pipeline::Pipeline`] is that chain as one type, shared by replay and the [`daemon`];
//! [`devices`] says which device an address is; [`cmd`] holds the commands of the binary,
//! [`config`] the configuration file and [`time`] the clock and time formats. ARCHITECTURE.md
//! maps the rooms and the rules on what may import what.

pub mod capture;
pub mod check;
pub mod cmd;
pub mod config;
pub mod csv_out;
pub mod daemon;
pub mod decode;
pub mod devices;
pub mod enforce;
pub mod flow;
pub mod html;
mod layers; // test-only (`#![cfg(test)]`): the import rules of ARCHITECTURE.md
pub mod mem;
pub mod pipeline;
pub mod policy;
pub mod portal;
pub mod record;
pub mod replay;
pub mod report;
pub mod resolver;
pub mod slots;
pub mod time;
