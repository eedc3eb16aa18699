//! Stateful middle of the pipeline: [`Sensor`] turns frames into observations. A flow is classified
//! by content once (TLS, HTTP, SOCKS, DNS, QUIC); once done, its later packets cost one lookup.

// The sensor (process, sweep, finish, stats), what it reports and the state it keeps:
// config (limits), stats (counters), state (flow key, flow, stream and QUIC buffers),
// emit (packet context; labelling, counting and collecting observations, DNS messages).
pub mod config;
mod emit;
mod fast;
mod flow_table;
pub mod observation;
pub mod sensor;
mod state;
mod stats;

// Per layer: l3 (IPv4/IPv6, fragments, IP tunnels) hands segments to tcp (reassembly driver) and
// udp (UDP tunnels, DHCP, DNS); stream classifies TCP streams and quic handles QUIC Initials.
// Imports run one way: udp -> quic -> hello, tcp -> stream -> hello; ports (well-known ports)
// and hello (a ClientHello's flags, TLS or QUIC) import none of the layers.
mod blind;
mod checksum;
mod desync;
mod hello;
mod l3;
mod ports;
mod quic;
mod stream;
mod tcp;
mod udp;

// Bounded building blocks.
pub mod defrag;
pub mod hosts;
pub mod lookups;
pub mod names;
pub mod public_names;
pub mod reassembly;
pub mod table;
pub mod wire;

pub use blind::{is_private_relay, PRIVATE_RELAY_NAMES};
pub use lookups::LookupKey;
pub use observation::{Blind, BlindSpot, Evidence, Flag, Kind, Observation, ProxyInfo, TcpSeq};
pub use sensor::{Config, Sensor, Stats};
