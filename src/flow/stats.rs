//! The sensor's counters, as printed by `--stats`: frames seen and skipped, malformed input per
//! layer, flow, fragment, QUIC, name-cache and DNS activity, and observations per kind.

use serde::Serialize;

use super::defrag::DefragStats;
use super::observation::{Blind, BlindSpot};

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
    /// Desync: a segment (or QUIC Initial) whose bytes differ from every version of its first
    /// flight seen so far: another version, judged apart.
    pub desync: u64,
    /// Desync: a flow past its versions (8 per connection, 16 judged): the newest is
    /// overwritten, or the watch ends; what was decided stands.
    pub desync_versions_full: u64,
    /// TCP segments and UDP datagrams with data whose checksum was wrong where it could be
    /// checked (a capture file, or a ring frame the kernel had not checked): decided on, but
    /// never counted towards the end of a watch.
    pub bad_checksum: u64,
    /// Judged first flights not watched: the watch budget (32 MiB per sensor) was spent.
    pub watch_skipped: u64,
    /// Bytes held now by the versions of watched first flights.
    pub watch_bytes: u64,
    /// New TCP connections on a 4-tuple whose flow was still open (a reused client port, told
    /// from a desync SYN by the server's SYN-ACK to it): read afresh.
    #[serde(skip_serializing_if = "is_zero")]
    pub reused_tuple: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct QuicStats {
    pub initials: u64,
    pub decrypted: u64,
    pub decrypt_failed: u64,
    pub unsupported_version: u64,
    /// ClientHellos whose server never answered (or too many waited at once): reported as
    /// `unverified_source`, never acted on.
    #[serde(skip_serializing_if = "is_zero")]
    pub unanswered: u64,
    /// New connections on a QUIC 4-tuple whose earlier connection was done (an Initial under a
    /// new Destination Connection ID): judged afresh.
    #[serde(skip_serializing_if = "is_zero")]
    pub reused_tuple: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct NameStats {
    pub inserted: u64,
    pub evicted: u64,
    pub active: u64,
    /// Names not cached: longer than 253 characters or escaped.
    pub rejected: u64,
    /// Client host names learnt from DHCP.
    pub dhcp_hosts: u64,
    /// ECH public names learnt from DNS HTTPS/SVCB answers and held now.
    pub public_names: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DnsStats {
    /// Messages with QDCOUNT above 1 (RFC 9619: malformed): first question only, no answers.
    pub multi_question: u64,
    /// Messages without a question (QDCOUNT 0, e.g. DNS cookies).
    pub no_question: u64,
    /// Answer records beyond the per-message decoding limit, not read.
    pub answers_skipped: u64,
    /// Address records beyond the per-message cache limit, not cached.
    pub answers_not_cached: u64,
    /// Address records whose owner is not on the CNAME chain from the question, not cached.
    pub answers_off_chain: u64,
    /// Answers to no query the sensor saw.
    pub unmatched_answers: u64,
    /// mDNS and LLMNR answers (never cached).
    pub link_local_answers: u64,
    /// Queries waiting for their answers now.
    pub pending_queries: u64,
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

/// Traffic the gateway cannot name (docs/src/decoding.md, "Blind spots"): sightings per kind (a VPN flow
/// counts once per flow, a hello or lookup once each), VPN handshakes to or from `[sensor]
/// known_tunnels` (not counted as blind), and sightings not handed on because too many waited.
/// Shown when not all zero.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BlindStats {
    pub wireguard: u64,
    pub openvpn: u64,
    pub ike: u64,
    pub private_relay: u64,
    pub ech_no_dns: u64,
    pub known_tunnel: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

impl BlindStats {
    pub fn is_zero(&self) -> bool {
        self.wireguard
            + self.openvpn
            + self.ike
            + self.private_relay
            + self.ech_no_dns
            + self.known_tunnel
            + self.dropped
            == 0
    }

    /// The counter of `kind`.
    pub fn get(&self, kind: Blind) -> u64 {
        match kind {
            Blind::Wireguard => self.wireguard,
            Blind::Openvpn => self.openvpn,
            Blind::Ike => self.ike,
            Blind::PrivateRelay => self.private_relay,
            Blind::EchNoDns => self.ech_no_dns,
        }
    }

    fn slot(&mut self, kind: Blind) -> &mut u64 {
        match kind {
            Blind::Wireguard => &mut self.wireguard,
            Blind::Openvpn => &mut self.openvpn,
            Blind::Ike => &mut self.ike,
            Blind::PrivateRelay => &mut self.private_relay,
            Blind::EchNoDns => &mut self.ech_no_dns,
        }
    }
}

/// Blind-spot sightings waiting for the pipeline, at most (past it they are counted as
/// `blind.dropped`). The pipeline takes them after every frame (live) or file (replay).
pub const MAX_BLIND_PENDING: usize = 1024;

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
    pub dns: DnsStats,
    pub observations: KindCounts,
    #[serde(skip_serializing_if = "BlindStats::is_zero")]
    pub blind: BlindStats,
    /// Blind-spot sightings not yet taken by the pipeline ([`Stats::blind_spot`]); one per
    /// client, kind and minute of capture time. Not a counter.
    #[serde(skip)]
    pub blind_pending: Vec<BlindSpot>,
}

/// Minute of capture time (for one pending sighting per client, kind and minute).
const MINUTE: u64 = 60_000_000_000;

impl Stats {
    /// Count a blind-spot sighting and keep it for the pipeline, unless one of the same client
    /// and kind in the same minute already waits (or [`MAX_BLIND_PENDING`] wait).
    pub(super) fn blind_spot(&mut self, b: BlindSpot) {
        *self.blind.slot(b.kind) += 1;
        let minute = b.ts / MINUTE;
        if self
            .blind_pending
            .iter()
            .any(|p| p.kind == b.kind && p.client.ip == b.client.ip && p.ts / MINUTE == minute)
        {
            return;
        }
        if self.blind_pending.len() >= MAX_BLIND_PENDING {
            self.blind.dropped += 1;
            return;
        }
        self.blind_pending.push(b);
    }
}

impl Stats {
    /// The counters of a sharded replay as one sensor's: per-shard counters added up (each
    /// shard counts only what it owns). The name cache, DHCP host names, ECH public names and
    /// pending queries are kept alike by every shard, each with what only it saw on top (DNS in
    /// tunnels or over TCP): their figures are the largest of any shard.
    pub fn merged(shards: &[Stats]) -> Stats {
        let mut t = Stats::default();
        for s in shards {
            let (a, b) = (&mut t.names, &s.names);
            a.inserted = a.inserted.max(b.inserted);
            a.evicted = a.evicted.max(b.evicted);
            a.active = a.active.max(b.active);
            a.rejected = a.rejected.max(b.rejected);
            a.dhcp_hosts = a.dhcp_hosts.max(b.dhcp_hosts);
            a.public_names = a.public_names.max(b.public_names);
            t.dns.pending_queries = t.dns.pending_queries.max(s.dns.pending_queries);
            t.frames += s.frames;
            t.bytes += s.bytes;
            t.non_ip += s.non_ip;
            t.unsupported_link += s.unsupported_link;
            t.tunneled += s.tunneled;
            let (m, n) = (&mut t.malformed, &s.malformed);
            m.link += n.link;
            m.ip += n.ip;
            m.tcp += n.tcp;
            m.udp += n.udp;
            m.dns += n.dns;
            m.tls += n.tls;
            m.quic += n.quic;
            m.http += n.http;
            m.too_deep += n.too_deep;
            let (f, g) = (&mut t.flows, &s.flows);
            f.created += g.created;
            f.expired += g.expired;
            f.evicted += g.evicted;
            f.active += g.active;
            f.reassembly_overflow += g.reassembly_overflow;
            f.reassembly_budget_exceeded += g.reassembly_budget_exceeded;
            f.reassembly_bytes += g.reassembly_bytes;
            f.desync += g.desync;
            f.desync_versions_full += g.desync_versions_full;
            f.bad_checksum += g.bad_checksum;
            f.watch_skipped += g.watch_skipped;
            f.watch_bytes += g.watch_bytes;
            f.reused_tuple += g.reused_tuple;
            let (f, g) = (&mut t.fragments, &s.fragments);
            f.fragments += g.fragments;
            f.reassembled += g.reassembled;
            f.invalid += g.invalid;
            f.evicted += g.evicted;
            f.expired += g.expired;
            let (q, r) = (&mut t.quic, &s.quic);
            q.initials += r.initials;
            q.decrypted += r.decrypted;
            q.decrypt_failed += r.decrypt_failed;
            q.unsupported_version += r.unsupported_version;
            q.unanswered += r.unanswered;
            q.reused_tuple += r.reused_tuple;
            let (d, e) = (&mut t.dns, &s.dns);
            d.multi_question += e.multi_question;
            d.no_question += e.no_question;
            d.answers_skipped += e.answers_skipped;
            d.answers_not_cached += e.answers_not_cached;
            d.answers_off_chain += e.answers_off_chain;
            d.unmatched_answers += e.unmatched_answers;
            d.link_local_answers += e.link_local_answers;
            let (k, l) = (&mut t.observations, &s.observations);
            k.dns_query += l.dns_query;
            k.dns_answer += l.dns_answer;
            k.tls_client_hello += l.tls_client_hello;
            k.quic_initial += l.quic_initial;
            k.http_request += l.http_request;
            k.proxy_connect += l.proxy_connect;
            let (b, c) = (&mut t.blind, &s.blind);
            b.wireguard += c.wireguard;
            b.openvpn += c.openvpn;
            b.ike += c.ike;
            b.private_relay += c.private_relay;
            b.ech_no_dns += c.ech_no_dns;
            b.known_tunnel += c.known_tunnel;
            b.dropped += c.dropped;
        }
        t
    }
}
