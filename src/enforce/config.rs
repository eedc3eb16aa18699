//! The `[enforce]` section of `shadowgate.toml`: whether and how decisions act on traffic. Its keys
//! are a contract (operators and the acceptance checks use them): keep them stable.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

/// `[enforce]`: whether decisions act on traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceConf {
    #[serde(default)]
    pub mode: EnforceMode,
    /// How long a stopped TCP flow's later packets are rejected (seconds).
    #[serde(default = "default_flow_s")]
    pub flow_timeout_s: u64,
    /// Lower and upper bound of the QUIC drop per (client, address), which follows the answer's
    /// TTL in between (seconds).
    #[serde(default = "default_quic_min_s")]
    pub quic_min_s: u64,
    #[serde(default = "default_quic_max_s")]
    pub quic_max_s: u64,
    /// Drop all QUIC (UDP 443) from the LAN: browsers fall back to TCP, where the SNI shows.
    #[serde(default)]
    pub block_all_quic: bool,
    /// Redirect LAN DNS sent to any other resolver to shadowgate's (needs `[dns]`).
    #[serde(default)]
    pub intercept_dns: bool,
    /// The clinic's networks: the only sources the enforcer acts on (a hello in another
    /// address's name is recorded, never acted on), and what the all-QUIC drop and the DNS
    /// intercept match. Default: the capture interfaces' connected subnets for the enforcer,
    /// the capture interfaces themselves for the table.
    #[serde(default)]
    pub lan: Vec<IpNet>,
    /// Break-glass file: while it exists, nothing is enforced (monitor mode).
    #[serde(default = "default_break_glass")]
    pub break_glass_file: PathBuf,
    /// Most elements of each nftables set (stopped flows, QUIC drops, grants; per family).
    /// Past it an addition fails and is counted in `shadowgate_nft_errors_total`.
    #[serde(default = "default_set_size")]
    pub set_size: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforceMode {
    /// Decide and record "would stop"; touch nothing.
    #[default]
    Monitor,
    /// Stop flows, answer DNS per policy.
    Enforce,
}

fn default_flow_s() -> u64 {
    120
}

fn default_quic_min_s() -> u64 {
    60
}

fn default_quic_max_s() -> u64 {
    3600
}

fn default_set_size() -> u32 {
    65_536
}

fn default_break_glass() -> PathBuf {
    PathBuf::from("/run/shadowgate/break-glass")
}
