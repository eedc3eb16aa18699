//! The sensor's counters, as printed by `--stats`: frames seen and skipped, malformed input per
//! layer, flow, fragment, QUIC and name-cache activity, and observations per kind.

use serde::Serialize;

use super::defrag::DefragStats;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Malformed {
    pub link: u64,
    pub ip: u64,
    pub tcp: u64,
    pub udp: u64,
    pub dns: u64,
    pub tls: u64,
    pub quic: u64,
    pub http: u64,
    /// Frames nested past the budget (`decode::MAX_NESTING` encapsulations, or an MPLS stack
    /// past `decode::MAX_MPLS_LABELS` labels): skipped. Shown when not zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub too_deep: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FlowStats {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub active: u64,
    pub reassembly_overflow: u64,
    /// Flows given up because all reassembly buffers together reached the budget.
    pub reassembly_budget_exceeded: u64,
    /// Bytes held in reassembly buffers now.
    pub reassembly_bytes: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct QuicStats {
    pub initials: u64,
    pub decrypted: u64,
    pub decrypt_failed: u64,
    pub unsupported_version: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct NameStats {
    pub inserted: u64,
    pub evicted: u64,
    pub active: u64,
    /// Client host names learnt from DHCP.
    pub dhcp_hosts: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct KindCounts {
    pub dns_query: u64,
    pub dns_answer: u64,
    pub tls_client_hello: u64,
    pub quic_initial: u64,
    pub http_request: u64,
    /// Shown when not zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub proxy_connect: u64,
}

/// Counters: what was seen, skipped, malformed and evicted.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub non_ip: u64,
    pub unsupported_link: u64,
    pub tunneled: u64,
    pub malformed: Malformed,
    pub flows: FlowStats,
    pub fragments: DefragStats,
    pub quic: QuicStats,
    pub names: NameStats,
    pub observations: KindCounts,
}
