//! Where observations come from: the per-packet context (`Ctx`, `Seg`) for endpoints and flags,
//! and `Sinks`, which labels, counts and collects them (DNS: matching, name cache, ECH names).

use std::net::IpAddr;

use crate::decode::dns;

use super::hosts::HostNames;
use super::lookups::{LookupKey, PendingQueries};
use super::names::{NameCache, UNMATCHED_PER_MESSAGE};
use super::observation::*;
use super::public_names::PublicNames;
use super::reassembly::Budget;
use super::stats::Stats;

/// Per-packet context handed down the layers.
#[derive(Clone, Copy)]
pub(super) struct Ctx {
    pub(super) ts: u64,
    pub(super) frame: u64,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) src_mac: Option<[u8; 6]>,
    pub(super) dst_mac: Option<[u8; 6]>,
    pub(super) tunneled: bool,
    pub(super) fragmented: bool,
    /// The transport checksum can be checked: the capture said nothing of it (a file; a ring
    /// frame neither offloaded nor checked by the kernel) and the packet is whole.
    pub(super) check: bool,
}

/// Ports, transport and context of one segment or datagram.
#[derive(Clone, Copy)]
pub(super) struct Seg {
    pub(super) cx: Ctx,
    pub(super) sp: u16,
    pub(super) dp: u16,
    pub(super) transport: Transport,
}

impl Seg {
    pub(super) fn observation(
        &self,
        kind: Kind,
        client_is_src: bool,
        name: Option<String>,
    ) -> Observation {
        let s = Endpoint {
            ip: self.cx.src,
            port: self.sp,
            mac: self.cx.src_mac,
            hostname: None,
        };
        let d = Endpoint {
            ip: self.cx.dst,
            port: self.dp,
            mac: self.cx.dst_mac,
            hostname: None,
        };
        let (client, server) = if client_is_src { (s, d) } else { (d, s) };
        let mut flags = Vec::new();
        if self.cx.tunneled {
            flags.push(Flag::Tunneled);
        }
        if self.cx.fragmented {
            flags.push(Flag::Fragmented);
        }
        Observation {
            ts: self.cx.ts,
            kind,
            name,
            wire_names: Vec::new(),
            inferred_names: Vec::new(),
            inferred_evidence: Vec::new(),
            transport: self.transport,
            client,
            server,
            flags,
            dns: None,
            tls: None,
            quic: None,
            http: None,
            proxy: None,
            tcp: None,
            unanswered: false,
            frame: self.cx.frame,
        }
    }
}

/// The mutable parts one segment handler needs besides its flow (split borrows).
pub(super) struct Sinks<'a> {
    pub(super) budget: &'a Budget,
    /// What the versions of watched first flights may hold together (apart from `budget`, so
    /// watches never starve reassembly).
    pub(super) watch_budget: &'a Budget,
    pub(super) hosts: &'a HostNames,
    pub(super) names: &'a mut NameCache,
    pub(super) queries: &'a mut PendingQueries,
    pub(super) public: &'a mut PublicNames,
    /// Address records of one answer that feed the name cache.
    pub(super) cache_answers: usize,
    pub(super) stats: &'a mut Stats,
    pub(super) out: &'a mut Vec<Observation>,
    /// Observations are wanted (false while a shard reads another's frame for the shared
    /// state: DNS then only feeds the query matcher and the name cache).
    pub(super) report: bool,
}

impl Sinks<'_> {
    pub(super) fn emit(&mut self, mut o: Observation) {
        if let Some(h) = self.hosts.lookup(&o.client.ip, o.client.mac) {
            o.client.hostname = Some(h.to_string());
        }
        if let Some(kind) = super::blind::of_observation(&o, |n| self.public.contains(n)) {
            self.blind_spot(BlindSpot {
                ts: o.ts,
                kind,
                transport: o.transport,
                client: o.client.clone(),
                server: o.server.clone(),
                frame: o.frame,
            });
        }
        let c = &mut self.stats.observations;
        match o.kind {
            Kind::DnsQuery => c.dns_query += 1,
            Kind::DnsAnswer => c.dns_answer += 1,
            Kind::TlsClientHello => c.tls_client_hello += 1,
            Kind::QuicInitial => c.quic_initial += 1,
            Kind::HttpRequest => c.http_request += 1,
            Kind::ProxyConnect => c.proxy_connect += 1,
        }
        self.out.push(o);
    }

    /// Count a blind spot and hand it on (with the client's DHCP host name); nothing while a
    /// shard reads another's frame.
    pub(super) fn blind_spot(&mut self, mut b: BlindSpot) {
        if !self.report {
            return;
        }
        if b.client.hostname.is_none() {
            if let Some(h) = self.hosts.lookup(&b.client.ip, b.client.mac) {
                b.client.hostname = Some(h.to_string());
            }
        }
        self.stats.blind_spot(b);
    }

    /// Names that resolved to `server` (when the wire shows none, or only an ECH public name),
    /// strongest evidence for this client first. A learnt outer name counts only for the client
    /// that looked it up (or every client, when a configured resolver did), and never when the
    /// cache holds it as a name of the server address itself (then it is the site's own name).
    pub(super) fn infer(&self, o: &mut Observation) {
        if let Some(sni) = o.name.as_deref() {
            if !self.public.configured(sni)
                && (!self.public.holds_for(sni, o.client.ip)
                    || self.names.holds(&o.server.ip, sni, o.ts))
            {
                return;
            }
        }
        let found = self.names.lookup(&o.server.ip, o.client.ip, o.ts);
        if !found.is_empty() {
            (o.inferred_names, o.inferred_evidence) = found.into_iter().unzip();
            o.flags.push(Flag::Inferred);
        }
    }

    /// Can `sni` be the outer name of an Encrypted Client Hello (configured, or learnt from DNS
    /// for some client; [`Sinks::infer`] checks it is one for the hello's client)?
    pub(super) fn is_ech_public_name(&self, sni: &str) -> bool {
        self.public.contains(sni)
    }

    /// Decode one DNS message and report its (first) question; match answers to queries, and
    /// feed the name cache and the ECH public names from answers (never from mDNS or LLMNR).
    pub(super) fn dns(&mut self, seg: &Seg, msg: &[u8], extra: &[Flag]) {
        let m = match dns::parse(msg) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed.dns += 1;
                return;
            }
        };
        let q = m.questions.first();
        let link_local = [5353, 5355].contains(&seg.sp) || [5353, 5355].contains(&seg.dp);
        let qtype = q.map(|q| dns::type_name(q.qtype)).unwrap_or_default();
        // The client asks (the query's source, the answer's destination).
        let (client, client_port, server) = if m.response {
            (seg.cx.dst, seg.dp, seg.cx.src)
        } else {
            (seg.cx.src, seg.sp, seg.cx.dst)
        };
        let key = LookupKey {
            client,
            server,
            client_port,
            id: m.id,
            question: q.map(|q| (q.name.clone(), qtype.clone())),
        };
        let mut matched = true;
        if !m.response {
            if !link_local {
                self.queries.query(key, seg.cx.ts);
            }
        } else if !link_local {
            matched = self.queries.answer(&key, seg.cx.ts);
            if m.rcode == 0 && !m.multi_question {
                self.learn(&m, client, matched, seg.cx.ts);
            }
        }
        if !self.report {
            return;
        }
        let kind = if m.response {
            Kind::DnsAnswer
        } else {
            Kind::DnsQuery
        };
        let mut o = seg.observation(kind, !m.response, q.map(|q| q.name.clone()));
        o.flags.extend_from_slice(extra);
        if m.partial {
            o.flags.push(Flag::Partial);
        }
        // mDNS may ask several questions (RFC 6762); unicast DNS and LLMNR may not.
        let mdns = seg.sp == 5353 || seg.dp == 5353;
        if m.multi_question && !mdns {
            self.stats.dns.multi_question += 1;
            o.flags.push(Flag::Anomaly);
        }
        if m.multi_question && mdns {
            // Every question of an mDNS message is reported: the first as the name, the
            // others (distinct) as further wire names.
            for q in m.questions.iter().skip(1) {
                if o.name.as_deref() != Some(q.name.as_str()) && !o.wire_names.contains(&q.name) {
                    o.wire_names.push(q.name.clone());
                }
            }
        }
        if q.is_none() {
            self.stats.dns.no_question += 1;
        }
        self.stats.dns.answers_skipped += m.skipped_answers as u64;
        if m.ech() {
            o.flags.push(Flag::Ech);
        }
        if m.response {
            if link_local {
                self.stats.dns.link_local_answers += 1;
            } else if !matched {
                self.stats.dns.unmatched_answers += 1;
                o.flags.push(Flag::Unmatched);
            }
        }
        o.dns = Some(DnsInfo {
            id: m.id,
            qtype,
            rcode: m.response.then(|| dns::rcode_name(m.rcode)),
            answers: m.answers.iter().map(answer).collect(),
        });
        self.emit(o);
    }

    /// Feed the name cache (a bounded number of address records per message, fewer for an
    /// unmatched answer) and the ECH public names (from answers to seen queries only, for
    /// `asker`, or every client when `asker` is a configured resolver) from one answer to
    /// `asker`. Only address records
    /// whose owner is on the CNAME chain from the question feed the cache: a resolver discards
    /// the others (RFC 5452 §6: out-of-bailiwick data), so an authoritative server for
    /// `x.evil.example` cannot add `chatgpt.com A <address>` to its answer.
    fn learn(&mut self, m: &dns::Message, asker: IpAddr, matched: bool, ts: u64) {
        let Some(qname) = m.questions.first().map(|q| q.name.as_str()) else {
            return;
        };
        let chain = cname_chain(qname, &m.answers);
        let limit = if matched {
            self.cache_answers
        } else {
            self.cache_answers.min(UNMATCHED_PER_MESSAGE)
        };
        let mut cached = 0;
        for a in &m.answers {
            let ip = match &a.data {
                dns::RecordData::A(v4) => IpAddr::V4(*v4),
                dns::RecordData::Aaaa(v6) => IpAddr::V6(*v6),
                dns::RecordData::Svcb { public_names, .. } => {
                    if matched {
                        let resolver = self.names.is_resolver(&asker);
                        for n in public_names {
                            self.public.learn(n, asker, resolver, ts);
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            if !chain.iter().any(|c| c.eq_ignore_ascii_case(&a.name)) {
                self.stats.dns.answers_off_chain += 1;
                continue;
            }
            if cached >= limit {
                self.stats.dns.answers_not_cached += 1;
                continue;
            }
            cached += 1;
            self.names.insert(ip, &a.name, a.ttl, asker, matched, ts);
            if !qname.eq_ignore_ascii_case(&a.name) {
                self.names.insert(ip, qname, a.ttl, asker, matched, ts);
            }
        }
    }
}

/// CNAME hops followed from the question, at most.
pub(super) const MAX_CNAME_HOPS: usize = 8;

/// The question name, then the targets of CNAME records whose owner is already on the chain
/// (case-insensitive; at most [`MAX_CNAME_HOPS`] hops, loops ignored), in answer order or not.
fn cname_chain<'a>(qname: &'a str, answers: &'a [dns::Record]) -> Vec<&'a str> {
    let mut chain = vec![qname];
    while chain.len() <= MAX_CNAME_HOPS {
        let last = chain[chain.len() - 1];
        let next = answers.iter().find_map(|r| match &r.data {
            dns::RecordData::Cname(t) if r.name.eq_ignore_ascii_case(last) => Some(t.as_str()),
            _ => None,
        });
        match next {
            Some(t) if !chain.iter().any(|c| c.eq_ignore_ascii_case(t)) => chain.push(t),
            _ => break,
        }
    }
    chain
}

/// An answer record as the observation reports it.
fn answer(a: &dns::Record) -> DnsAnswer {
    DnsAnswer {
        name: a.name.clone(),
        rtype: dns::type_name(a.rtype),
        ttl: a.ttl,
        data: match &a.data {
            dns::RecordData::A(ip) => ip.to_string(),
            dns::RecordData::Aaaa(ip) => ip.to_string(),
            dns::RecordData::Cname(n) => n.clone(),
            dns::RecordData::Svcb {
                priority,
                target,
                ech,
                alpn,
                ..
            } => format!("{priority} {target} alpn={} ech={ech}", alpn.join(",")),
            dns::RecordData::Other => String::new(),
        },
    }
}
