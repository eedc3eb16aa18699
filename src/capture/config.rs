//! The `[capture]` section of `shadowgate.toml`: the clinic-side interfaces read with AF_PACKET.
//! Its keys are a contract (operators and the acceptance checks use them): keep them stable.

use serde::Deserialize;

/// `[capture]`: the clinic-side interfaces read with AF_PACKET.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConf {
    pub interfaces: Vec<String>,
    /// Capture threads (PACKET_FANOUT members, hash + defrag) per interface.
    #[serde(default = "one")]
    pub threads: usize,
    /// TPACKET_V3 ring size per interface, in MiB, shared by its threads (the ring is most of
    /// the daemon's memory: 64 MiB holds about half a second at 1 Gbit/s).
    #[serde(default = "default_ring_mib")]
    pub ring_mib: usize,
    /// Seconds between kernel drop checks (PACKET_STATISTICS).
    #[serde(default = "default_stats_s")]
    pub stats_interval_s: u64,
    /// How threads share an interface: `client` (by the LAN client's address: its lookups and
    /// connections meet on one thread; for a gateway) or `flow` (the kernel's flow hash; for a
    /// mirror port).
    #[serde(default)]
    pub fanout: crate::capture::live::Fanout,
    /// Put the interfaces in promiscuous mode (a mirror port needs it; a gateway does not).
    #[serde(default)]
    pub promiscuous: bool,
}

fn one() -> usize {
    1
}

fn default_ring_mib() -> usize {
    64
}

fn default_stats_s() -> u64 {
    10
}
