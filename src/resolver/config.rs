//! The `[dns]` section of `shadowgate.toml`: the LAN resolver shadowgate runs. Its keys are a
//! contract (operators and the acceptance checks use them): keep them stable.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// `[dns]`: the LAN resolver shadowgate runs (hickory-server in front of a forwarder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConf {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    /// Who may ask; everyone else gets REFUSED.
    pub clients: Vec<IpNet>,
    /// Blocked names: `nxdomain` or `null` (0.0.0.0 / ::).
    #[serde(default)]
    pub block_answer: BlockAnswer,
    /// TTL of portal answers (steered and coached names) and of answers under a coach grant.
    #[serde(default = "default_portal_ttl")]
    pub portal_ttl_s: u32,
    /// Queries per second per client (burst: twice that); REFUSED past it.
    #[serde(default = "default_rate")]
    pub rate_per_client: u32,
    /// Answer cache entries.
    #[serde(default = "default_cache")]
    pub cache_size: usize,
    /// Upstream timeout (milliseconds).
    #[serde(default = "default_upstream_ms")]
    pub upstream_timeout_ms: u64,
    /// Open DNS-over-TCP connections at most, in all and per client.
    #[serde(default = "default_tcp_max")]
    pub tcp_max_connections: usize,
    #[serde(default = "default_tcp_per_client")]
    pub tcp_max_per_client: usize,
    /// A TCP connection that sends no complete query for this long is closed (milliseconds).
    #[serde(default = "default_tcp_idle_ms")]
    pub tcp_idle_ms: u64,
    /// Queries waiting on an upstream at once at most (past it: SERVFAIL, counted).
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Answer the browsers' and operating systems' bypass names here, never forwarding them
    /// (`use-application-dns.net`, iCloud Private Relay, `_dns.resolver.arpa`: `bypass.rs`).
    #[serde(default = "yes")]
    pub block_bypass: bool,
    /// A query from an address the gateway binds to another MAC (its DHCP server's lease, its
    /// neighbour table): `off`, `log` (answered through a guard socket: rate-limited with every
    /// other such query, never recorded in the address's name, reported as `spoofed` by the
    /// capture) or `drop` (dropped in the nftables table). `log` and `drop` act in enforce mode,
    /// where the daemon has its table; the capture reports `spoofed` frames in every mode.
    #[serde(default)]
    pub source_guard: SourceGuard,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceGuard {
    Off,
    #[default]
    Log,
    Drop,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswer {
    #[default]
    Nxdomain,
    Null,
}

fn default_portal_ttl() -> u32 {
    30
}

fn default_rate() -> u32 {
    50
}

fn default_cache() -> usize {
    20_000
}

fn default_upstream_ms() -> u64 {
    2_000
}

fn default_tcp_max() -> usize {
    256
}

fn default_tcp_per_client() -> usize {
    8
}

fn default_tcp_idle_ms() -> u64 {
    10_000
}

fn default_max_inflight() -> usize {
    4096
}
