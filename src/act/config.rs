//! The daemon's configuration sections (`[capture]`, `[enforce]`, `[dns]`, `[portal]`,
//! `[metrics]`): the keys operators and the acceptance checks use. Keep them stable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
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
    /// Networks whose traffic is enforced (default: everything on the capture interfaces).
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
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswer {
    #[default]
    Nxdomain,
    Null,
}

/// `[portal]`: where steered and coached names resolve, and how the page looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConf {
    pub address: IpAddr,
    #[serde(default)]
    pub address6: Option<IpAddr>,
    /// Listen addresses (default: `address` on ports 80 and 443).
    #[serde(default)]
    pub http: Option<SocketAddr>,
    #[serde(default)]
    pub https: Option<SocketAddr>,
    /// The portal CA (`shadowgate portal ca`); without it steering covers plain HTTP only.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    #[serde(default = "default_clinic")]
    pub clinic_name: String,
    #[serde(default)]
    pub logo_text: Option<String>,
    #[serde(default)]
    pub colour_primary: Option<String>,
    #[serde(default)]
    pub colour_accent: Option<String>,
    /// Whom staff contact (text; an e-mail address or phone number).
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
    /// How long a coach acknowledgement allows the service (minutes).
    #[serde(default = "default_grant_min")]
    pub grant_minutes: u64,
    /// Page requests per minute per client.
    #[serde(default = "default_portal_rate")]
    pub rate_per_client: u32,
    /// Test setups only: the grant length in seconds (overrides `grant_minutes`).
    #[serde(default)]
    pub grant_seconds: Option<u64>,
    /// Lifetime of the leaf certificates the portal mints (hours; renewed at half-life).
    #[serde(default = "default_leaf_hours")]
    pub leaf_hours: u64,
    /// Minted leaves kept (one per name; the oldest goes first).
    #[serde(default = "default_cert_cache")]
    pub cert_cache: usize,
    /// Longest coach justification accepted (characters).
    #[serde(default = "default_justification")]
    pub justification_max: usize,
}

/// `[metrics]`: Prometheus `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    pub listen: SocketAddr,
}

/// `[devices]`: where MACs and host names come from besides frames and DHCP on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConf {
    /// A DHCP server's leases file: dnsmasq, ISC dhcpd or Kea (memfile CSV); format detected.
    #[serde(default)]
    pub leases_file: Option<PathBuf>,
    /// Seconds between re-reads of the leases file and the neighbour table.
    #[serde(default = "default_devices_s")]
    pub refresh_s: u64,
    /// Read the kernel's neighbour table (ARP / NDP) at every refresh.
    #[serde(default = "yes")]
    pub neighbours: bool,
    /// Forget an address or MAC binding not seen (on the wire, in the neighbour table or the
    /// leases file) for this many seconds.
    #[serde(default = "default_forget_s")]
    pub forget_after_s: u64,
}

impl Default for DevicesConf {
    fn default() -> Self {
        DevicesConf {
            leases_file: None,
            refresh_s: default_devices_s(),
            neighbours: true,
            forget_after_s: default_forget_s(),
        }
    }
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
fn default_clinic() -> String {
    "the clinic".into()
}
fn default_language() -> String {
    "en".into()
}
fn default_grant_min() -> u64 {
    30
}
fn default_portal_rate() -> u32 {
    60
}
fn default_leaf_hours() -> u64 {
    24
}
fn default_cert_cache() -> usize {
    1024
}
fn default_justification() -> usize {
    200
}
fn default_devices_s() -> u64 {
    30
}
fn default_forget_s() -> u64 {
    86_400
}
fn yes() -> bool {
    true
}
