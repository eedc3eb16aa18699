//! shadowgate: a clinic gateway sensor for consumer generative-AI use.
//!
//! Data flows one way: [`capture`] (frames) -> [`decode`] (pure parsers) -> [`flow`] (state:
//! flows, reassembly, DNS name cache; emits observations) -> [`output`] (JSON lines, table).

pub mod capture;
pub mod config;
pub mod decode;
pub mod flow;
pub mod output;
pub mod policy;
pub mod record;
pub mod replay;
