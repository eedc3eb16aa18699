//! Limits of the sensor's state (flows, names, fragments, reassembly, DNS) and what it trusts
//! (ECH public names, internal resolvers); [`Config::default`] suits a clinic gateway.

use std::net::IpAddr;

use crate::decode::tls;

/// ECH public names known without DNS (Cloudflare's shared ECH front).
pub const DEFAULT_ECH_PUBLIC_NAMES: &[&str] = &["cloudflare-ech.com"];

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
    /// Seconds a DNS query waits for its answer (after that the answer matches no seen query).
    pub dns_timeout_s: u64,
    /// DNS queries waiting for answers, at most.
    pub max_pending_queries: usize,
    /// Address records of one DNS answer that feed the name cache (the rest are counted).
    pub cache_answers_per_message: usize,
    /// ECH public names learnt from DNS, at most.
    pub max_public_names: usize,
    /// Outer SNIs that are ECH public names (besides those learnt from DNS HTTPS/SVCB answers).
    pub ech_public_names: Vec<String>,
    /// Resolvers that look up names for clients (their lookups are `resolver_lookup` evidence).
    pub internal_resolvers: Vec<IpAddr>,
    /// The clinic's own VPN endpoints (`[sensor] known_tunnels`): VPN handshakes to or from
    /// them are not blind spots (counted as `blind.known_tunnel` only).
    pub known_tunnels: Vec<ipnet::IpNet>,
}

impl Config {
    /// Is `ip` one of the clinic's own VPN endpoints (`known_tunnels`)?
    pub fn is_known_tunnel(&self, ip: IpAddr) -> bool {
        !self.known_tunnels.is_empty() && self.known_tunnels.iter().any(|n| n.contains(&ip))
    }
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
            dns_timeout_s: 5,
            max_pending_queries: 16_384,
            cache_answers_per_message: 32,
            max_public_names: 1024,
            ech_public_names: DEFAULT_ECH_PUBLIC_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            internal_resolvers: Vec::new(),
            known_tunnels: Vec::new(),
        }
    }
}
