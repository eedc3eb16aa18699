//! DNS queries waiting for their answers, keyed by (client, server, client port, DNS id,
//! question): tells an answer that matches a query the sensor saw from one that matches none.

use std::net::IpAddr;

use super::observation::{Kind, Observation};
use super::table::{Aged, BoundedMap};

/// One DNS lookup: who asked whom, from which port, with which id, about what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupKey {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub id: u16,
    /// Question name and type (`None` for a message without a question).
    pub question: Option<(String, String)>,
}

impl LookupKey {
    /// The lookup a `dns_query` or `dns_answer` observation belongs to.
    pub fn of(o: &Observation) -> Option<LookupKey> {
        if !matches!(o.kind, Kind::DnsQuery | Kind::DnsAnswer) {
            return None;
        }
        let dns = o.dns.as_ref()?;
        Some(LookupKey {
            client: o.client.ip,
            server: o.server.ip,
            client_port: o.client.port,
            id: dns.id,
            question: o.name.clone().map(|n| (n, dns.qtype.clone())),
        })
    }
}

struct Asked(u64);

impl Aged for Asked {
    fn last_seen(&self) -> u64 {
        self.0
    }
}

/// Queries seen and not yet answered (bounded; older than the timeout they no longer match).
pub struct PendingQueries {
    map: BoundedMap<LookupKey, Asked>,
    timeout_ns: u64,
}

impl PendingQueries {
    pub fn new(max: usize, timeout_s: u64) -> Self {
        PendingQueries {
            map: BoundedMap::new(max),
            timeout_ns: timeout_s.saturating_mul(1_000_000_000),
        }
    }

    pub fn query(&mut self, k: LookupKey, now_ns: u64) {
        self.map.insert(k, Asked(now_ns));
    }

    /// Does this answer match a query seen within the timeout? (The query is then answered.)
    pub fn answer(&mut self, k: &LookupKey, now_ns: u64) -> bool {
        self.map
            .remove(k)
            .is_some_and(|a| now_ns.saturating_sub(a.0) <= self.timeout_ns)
    }

    pub fn expire(&mut self, now_ns: u64) -> usize {
        self.map.expire(now_ns.saturating_sub(self.timeout_ns))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
