//! Limits of the sensor's state: flow table, name cache, fragment queue and reassembly buffers.
//! [`Config::default`] suits a clinic gateway; everything the sensor keeps is bounded by these.

use crate::decode::tls;

/// Limits of the sensor's state. Defaults suit a clinic gateway (a few hundred devices).
#[derive(Debug, Clone)]
pub struct Config {
    pub max_flows: usize,
    pub tcp_idle_s: u64,
    pub udp_idle_s: u64,
    pub max_names: usize,
    pub name_grace_s: u64,
    pub max_fragments: usize,
    pub fragment_timeout_s: u64,
    /// Largest TCP first flight buffered per direction (TLS ClientHello, HTTP request head).
    pub stream_cap: usize,
    /// Bytes all reassembly buffers (TCP streams, QUIC CRYPTO) may hold together.
    pub reassembly_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_flows: 262_144,
            tcp_idle_s: 300,
            udp_idle_s: 60,
            max_names: 65_536,
            name_grace_s: 120,
            max_fragments: 1024,
            fragment_timeout_s: 30,
            stream_cap: tls::MAX_HELLO + 1024,
            reassembly_budget: 64 << 20,
        }
    }
}
