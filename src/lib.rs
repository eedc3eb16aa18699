//! shadowgate: a clinic gateway sensor for consumer generative-AI use.
//!
//! Data flows one way: [`capture`] (frames from files) -> [`decode`] (pure parsers) -> [`flow`]
//! (state: flows, reassembly, DNS name cache; emits observations) -> [`policy`] (catalogue,
//! rules, decisions) -> outputs: the stdout writer and [`record`] (event store, then the SIEM
//! feed). [`pipeline::Pipeline`] is that chain as one type; [`cmd`] holds the commands of the
//! binary, [`config`] the configuration file and [`time`] the clock and time formats.

pub mod capture;
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
pub mod pipeline;
pub mod policy;
pub mod portal;
pub mod record;
pub mod replay;
pub mod report;
pub mod resolver;
pub mod time;
