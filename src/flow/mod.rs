//! Stateful middle of the pipeline: flow table, first-flight reassembly, IP defragmentation,
//! QUIC CRYPTO assembly and the DNS name cache. [`Sensor`] turns frames into observations.

mod config;
pub mod defrag;
mod emit;
pub mod hosts;
mod l3;
pub mod names;
pub mod observation;
mod quic;
pub mod reassembly;
pub mod sensor;
mod state;
mod stats;
mod stream;
pub mod table;
mod tcp;
mod udp;

pub use observation::{Flag, Kind, Observation};
pub use sensor::{Config, Sensor, Stats};
