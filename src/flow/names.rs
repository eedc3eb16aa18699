//! DNS-derived name cache: server IP -> the names that resolved to it, who asked (client address)
//! and whether the answer matched a seen query; TTLs capped, bounded in addresses and names.

use std::net::IpAddr;

use super::observation::Evidence;
use super::table::{Aged, BoundedMap};

/// Names kept per address (most recent first; unmatched answers are evicted first).
pub const NAMES_PER_IP: usize = 8;
/// Longest TTL honoured (one day); RFC 2181 §8: a TTL with the high bit set is 0.
pub const MAX_TTL_S: u32 = 86_400;

const SEC: u64 = 1_000_000_000;

struct Named {
    name: String,
    /// Expiry in capture ns.
    expires: u64,
    /// The address the answer went to (the client, or a resolver that forwards for clients).
    asker: IpAddr,
    /// The answer matched a query the sensor saw.
    matched: bool,
}

struct Entry {
    names: Vec<Named>,
    last_ns: u64,
}

impl Aged for Entry {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

/// TTL as the cache honours it.
pub fn capped_ttl(ttl: u32) -> u32 {
    if ttl & 0x8000_0000 != 0 {
        0
    } else {
        ttl.min(MAX_TTL_S)
    }
}

pub struct NameCache {
    map: BoundedMap<IpAddr, Entry>,
    grace_ns: u64,
    /// Internal resolvers: their lookups count as `resolver_lookup` for every client.
    resolvers: Vec<IpAddr>,
    pub inserted: u64,
    pub evicted: u64,
}

impl NameCache {
    pub fn new(max_ips: usize, grace_s: u64, resolvers: Vec<IpAddr>) -> Self {
        NameCache {
            map: BoundedMap::new(max_ips),
            grace_ns: grace_s.saturating_mul(SEC),
            resolvers,
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

    /// Remember that `name` resolved to `ip` at `now_ns` with `ttl` seconds, in an answer to
    /// `asker` that did (`matched`) or did not match a query the sensor saw.
    pub fn insert(
        &mut self,
        ip: IpAddr,
        name: &str,
        ttl: u32,
        asker: IpAddr,
        matched: bool,
        now_ns: u64,
    ) {
        if name.is_empty() {
            return;
        }
        let expires = now_ns
            .saturating_add(capped_ttl(ttl) as u64 * SEC)
            .saturating_add(self.grace_ns);
        self.inserted += 1;
        let entry = match self.map.get_mut(&ip) {
            Some(e) => e,
            None => {
                let (e, evicted) = self.map.insert(
                    ip,
                    Entry {
                        names: Vec::new(),
                        last_ns: now_ns,
                    },
                );
                if evicted {
                    self.evicted += 1;
                }
                e
            }
        };
        entry.last_ns = now_ns;
        let mut matched = matched;
        entry.names.retain(|n| {
            let same = n.name == name && n.asker == asker;
            if same {
                matched |= n.matched;
            }
            !same && n.expires > now_ns
        });
        entry.names.insert(
            0,
            Named {
                name: name.to_string(),
                expires,
                asker,
                matched,
            },
        );
        if entry.names.len() > NAMES_PER_IP {
            let victim = entry
                .names
                .iter()
                .rposition(|n| !n.matched)
                .unwrap_or(entry.names.len() - 1);
            entry.names.remove(victim);
        }
    }

    /// Unexpired names for `ip` as seen from `client`: its own lookups first, then the internal
    /// resolvers', then other clients', then unmatched answers; most recent first within each.
    pub fn lookup(&self, ip: &IpAddr, client: IpAddr, now_ns: u64) -> Vec<(String, Evidence)> {
        let Some(e) = self.map.get(ip) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Evidence)> = Vec::new();
        let mut found: Vec<(&str, Evidence)> = e
            .names
            .iter()
            .filter(|n| n.expires > now_ns)
            .map(|n| (n.name.as_str(), self.evidence(n, client)))
            .collect();
        found.sort_by_key(|(_, ev)| *ev); // stable: recency kept within a level
        for (n, ev) in found {
            if !out.iter().any(|(o, _)| o == n) {
                out.push((n.to_string(), ev));
            }
        }
        out
    }

    fn evidence(&self, n: &Named, client: IpAddr) -> Evidence {
        if !n.matched {
            Evidence::UnmatchedAnswer
        } else if n.asker == client {
            Evidence::OwnLookup
        } else if self.resolvers.contains(&n.asker) {
            Evidence::ResolverLookup
        } else {
            Evidence::OtherClient
        }
    }

    /// Drop addresses whose names have all expired.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        self.map
            .retain(|e| e.names.iter().any(|n| n.expires > now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SEC;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names(v: Vec<(String, Evidence)>) -> Vec<String> {
        v.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn ttl_and_grace() {
        let mut c = NameCache::new(10, 5, vec![]);
        let (a, s) = (ip("10.0.0.7"), ip("160.79.104.10"));
        c.insert(s, "claude.ai", 60, a, true, 100 * S);
        assert_eq!(names(c.lookup(&s, a, 150 * S)), ["claude.ai"]);
        assert_eq!(names(c.lookup(&s, a, 164 * S)), ["claude.ai"]);
        assert!(c.lookup(&s, a, 166 * S).is_empty());
        c.insert(s, "www.claude.ai", 60, a, true, 200 * S);
        c.insert(s, "claude.ai", 60, a, true, 201 * S);
        assert_eq!(
            names(c.lookup(&s, a, 202 * S)),
            ["claude.ai", "www.claude.ai"]
        );
    }

    #[test]
    fn ttls_capped_and_times_saturate() {
        let mut c = NameCache::new(10, 0, vec![]);
        let (a, s) = (ip("10.0.0.7"), ip("1.2.3.4"));
        assert_eq!(capped_ttl(0x8000_0001), 0);
        assert_eq!(capped_ttl(u32::MAX >> 1), MAX_TTL_S);
        c.insert(s, "week.example", 7 * 86_400, a, true, 0);
        assert_eq!(c.lookup(&s, a, 86_399 * S).len(), 1);
        assert!(c.lookup(&s, a, 86_401 * S).is_empty());
        let s2 = ip("1.2.3.5");
        c.insert(s2, "neg.example", 0x8000_0000, a, true, 10 * S);
        assert!(c.lookup(&s2, a, 10 * S + 1).is_empty());
        // A capture time near the end of u64 does not overflow.
        let far = u64::MAX - 5;
        let mut c = NameCache::new(10, u64::MAX, vec![]);
        c.insert(s, "far.example", MAX_TTL_S, a, true, far);
        assert_eq!(names(c.lookup(&s, a, far)), ["far.example"]);
    }

    #[test]
    fn the_clients_own_lookup_first() {
        let (a, b, r, x) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.53"),
            ip("10.0.0.9"),
        );
        let s = ip("104.18.1.1");
        let mut c = NameCache::new(10, 0, vec![r]);
        c.insert(s, "claude.ai", 300, a, true, S);
        c.insert(s, "forwarded.example", 300, r, true, 2 * S);
        c.insert(s, "chatgpt.com", 300, b, true, 3 * S);
        c.insert(s, "spoofed.example", 300, a, false, 4 * S);
        use Evidence::*;
        let l = |c: &NameCache, cl| c.lookup(&s, cl, 5 * S);
        let want = |v: &[(&str, Evidence)]| -> Vec<(String, Evidence)> {
            v.iter().map(|(n, e)| (n.to_string(), *e)).collect()
        };
        assert_eq!(
            l(&c, a),
            want(&[
                ("claude.ai", OwnLookup),
                ("forwarded.example", ResolverLookup),
                ("chatgpt.com", OtherClient),
                ("spoofed.example", UnmatchedAnswer)
            ])
        );
        assert_eq!(
            l(&c, x),
            want(&[
                ("forwarded.example", ResolverLookup),
                ("chatgpt.com", OtherClient),
                ("claude.ai", OtherClient),
                ("spoofed.example", UnmatchedAnswer)
            ])
        );
        // The same name from several askers: reported once, at its best level.
        c.insert(s, "chatgpt.com", 300, a, true, 6 * S);
        assert_eq!(l(&c, a)[0], ("chatgpt.com".to_string(), OwnLookup));
        assert_eq!(l(&c, a).len(), 4);
    }

    #[test]
    fn bounded_and_unmatched_evicted_first() {
        let mut c = NameCache::new(50, 0, vec![]);
        let a = ip("10.0.0.1");
        for i in 0..10_000u32 {
            let s = IpAddr::from(i.to_be_bytes());
            for n in 0..10 {
                c.insert(s, &format!("n{n}.example"), 300, a, true, i as u64);
            }
        }
        assert!(c.len() <= 50);
        assert_eq!(c.evicted, 10_000 - 50);
        let last = IpAddr::from(9_999u32.to_be_bytes());
        assert_eq!(c.lookup(&last, a, 0).len(), NAMES_PER_IP);
        // A flood of unmatched answers does not push out a matched lookup.
        let s = ip("1.1.1.1");
        c.insert(s, "real.example", 300, a, true, 0);
        for n in 0..100 {
            c.insert(s, &format!("junk{n}.example"), 300, a, false, 0);
        }
        let l = c.lookup(&s, a, 0);
        assert_eq!(l.len(), NAMES_PER_IP);
        assert_eq!(l[0], ("real.example".to_string(), Evidence::OwnLookup));
    }
}
