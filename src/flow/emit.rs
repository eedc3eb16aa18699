//! Where observations come from: the per-packet context (`Ctx`, `Seg`) that gives an observation
//! its endpoints and flags, and `Sinks`, which labels, counts and collects them (DNS included).

use std::net::IpAddr;

use crate::decode::dns;

use super::hosts::HostNames;
use super::names::NameCache;
use super::observation::*;
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
            transport: self.transport,
            client,
            server,
            flags,
            dns: None,
            tls: None,
            quic: None,
            http: None,
            proxy: None,
            frame: self.cx.frame,
        }
    }
}

/// The mutable parts one segment handler needs besides its flow (split borrows).
pub(super) struct Sinks<'a> {
    pub(super) budget: &'a Budget,
    pub(super) hosts: &'a HostNames,
    pub(super) names: &'a mut NameCache,
    pub(super) stats: &'a mut Stats,
    pub(super) out: &'a mut Vec<Observation>,
}

impl Sinks<'_> {
    pub(super) fn emit(&mut self, mut o: Observation) {
        if let Some(h) = self.hosts.lookup(&o.client.ip, o.client.mac) {
            o.client.hostname = Some(h.to_string());
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

    /// Names that resolved to `server` when the wire shows none (no SNI, ECH).
    pub(super) fn infer(&self, o: &mut Observation) {
        let names = self.names.lookup(&o.server.ip, o.ts);
        if !names.is_empty() {
            o.inferred_names = names;
            o.flags.push(Flag::Inferred);
        }
    }

    /// Decode one DNS message and report each question (and feed the name cache from answers).
    pub(super) fn dns(&mut self, seg: &Seg, msg: &[u8], extra: &[Flag]) {
        let m = match dns::parse(msg) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed.dns += 1;
                return;
            }
        };
        if m.response && m.rcode == 0 {
            let qname = m.questions.first().map(|q| q.name.as_str());
            for a in &m.answers {
                let ip = match a.data {
                    dns::RecordData::A(v4) => IpAddr::V4(v4),
                    dns::RecordData::Aaaa(v6) => IpAddr::V6(v6),
                    _ => continue,
                };
                self.names.insert(ip, &a.name, a.ttl, seg.cx.ts);
                if let Some(q) = qname.filter(|q| *q != a.name) {
                    self.names.insert(ip, q, a.ttl, seg.cx.ts);
                }
            }
        }
        let answers: Vec<DnsAnswer> = m
            .answers
            .iter()
            .map(|a| DnsAnswer {
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
                    } => {
                        format!("{priority} {target} alpn={} ech={ech}", alpn.join(","))
                    }
                    dns::RecordData::Other => String::new(),
                },
            })
            .collect();
        let kind = if m.response {
            Kind::DnsAnswer
        } else {
            Kind::DnsQuery
        };
        let mut flags: Vec<Flag> = extra.to_vec();
        if m.partial {
            flags.push(Flag::Partial);
        }
        if m.ech() {
            flags.push(Flag::Ech);
        }
        let questions: Vec<Option<&dns::Question>> = if m.questions.is_empty() {
            vec![None]
        } else {
            m.questions.iter().map(Some).collect()
        };
        for q in questions {
            let mut o = seg.observation(kind, !m.response, q.map(|q| q.name.clone()));
            o.flags.extend_from_slice(&flags);
            o.dns = Some(DnsInfo {
                id: m.id,
                qtype: q.map(|q| dns::type_name(q.qtype)).unwrap_or_default(),
                rcode: m.response.then(|| dns::rcode_name(m.rcode)),
                answers: answers.clone(),
            });
            self.emit(o);
        }
    }
}
