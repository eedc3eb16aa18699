//! DNS-derived name cache: server IP -> the names that resolved to it, honouring TTLs (plus a
//! grace period, since clients keep using answers a little past their TTL). Bounded in entries
//! and names per address; the oldest entries are evicted first.

use std::net::IpAddr;

use super::table::{Aged, BoundedMap};

/// Names kept per address (most recent first).
pub const NAMES_PER_IP: usize = 4;

struct Entry {
    /// (name, expiry in capture ns)
    names: Vec<(String, u64)>,
    last_ns: u64,
}

impl Aged for Entry {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

pub struct NameCache {
    map: BoundedMap<IpAddr, Entry>,
    grace_ns: u64,
    pub inserted: u64,
    pub evicted: u64,
}

impl NameCache {
    pub fn new(max_ips: usize, grace_s: u64) -> Self {
        NameCache {
            map: BoundedMap::new(max_ips),
            grace_ns: grace_s * 1_000_000_000,
            inserted: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remember that `name` resolved to `ip` at `now_ns` with `ttl` seconds.
    pub fn insert(&mut self, ip: IpAddr, name: &str, ttl: u32, now_ns: u64) {
        if name.is_empty() {
            return;
        }
        let expires = now_ns + ttl as u64 * 1_000_000_000 + self.grace_ns;
        self.inserted += 1;
        if let Some(e) = self.map.get_mut(&ip) {
            e.last_ns = now_ns;
            e.names.retain(|(n, exp)| n != name && *exp > now_ns);
            e.names.insert(0, (name.to_string(), expires));
            e.names.truncate(NAMES_PER_IP);
            return;
        }
        let (_, evicted) = self.map.insert(
            ip,
            Entry {
                names: vec![(name.to_string(), expires)],
                last_ns: now_ns,
            },
        );
        if evicted {
            self.evicted += 1;
        }
    }

    /// Unexpired names for `ip`, most recent first.
    pub fn lookup(&self, ip: &IpAddr, now_ns: u64) -> Vec<String> {
        match self.map.get(ip) {
            Some(e) => e
                .names
                .iter()
                .filter(|(_, exp)| *exp > now_ns)
                .map(|(n, _)| n.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Drop addresses whose names have all expired.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        self.map
            .retain(|e| e.names.iter().any(|(_, exp)| *exp > now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ttl_and_grace() {
        let mut c = NameCache::new(10, 5);
        let ip: IpAddr = "160.79.104.10".parse().unwrap();
        c.insert(ip, "claude.ai", 60, 100 * S);
        assert_eq!(c.lookup(&ip, 150 * S), vec!["claude.ai"]);
        assert_eq!(c.lookup(&ip, 164 * S), vec!["claude.ai"]);
        assert!(c.lookup(&ip, 166 * S).is_empty());
        c.insert(ip, "www.claude.ai", 60, 200 * S);
        c.insert(ip, "claude.ai", 60, 201 * S);
        assert_eq!(c.lookup(&ip, 202 * S), vec!["claude.ai", "www.claude.ai"]);
    }

    #[test]
    fn bounded() {
        let mut c = NameCache::new(50, 0);
        for i in 0..10_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            for n in 0..10 {
                c.insert(ip, &format!("n{n}.example"), 300, i as u64);
            }
        }
        assert!(c.len() <= 50);
        assert_eq!(c.evicted, 10_000 - 50);
        let last = IpAddr::from(9_999u32.to_be_bytes());
        assert_eq!(c.lookup(&last, 0).len(), NAMES_PER_IP);
    }
}
