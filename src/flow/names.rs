//! DNS-derived name cache: server IP -> the names that resolved to it, who asked (client address)
//! and whether the answer matched a seen query; TTLs capped, bounded in addresses, names per
//! address and name length; addresses named only by unmatched answers held apart (1/8).

use std::net::IpAddr;

use super::observation::Evidence;
use super::table::{Aged, BoundedMap};

/// Names kept per address (most recent first; unmatched answers are evicted first).
pub const NAMES_PER_IP: usize = 8;
/// Longest TTL honoured (one day); RFC 2181 §8: a TTL with the high bit set is 0.
pub const MAX_TTL_S: u32 = 86_400;
/// Longest name cached (RFC 1035: 253 characters in text form, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// Share of the address table that addresses named only by unmatched answers may hold (1/8).
pub const UNMATCHED_SHARE: usize = 8;
/// Address records of one unmatched answer that feed the cache, at most.
pub const UNMATCHED_PER_MESSAGE: usize = 4;

const SEC: u64 = 1_000_000_000;

struct Named {
    name: Box<str>,
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

impl Entry {
    fn new(now_ns: u64) -> Entry {
        Entry {
            names: Vec::new(),
            last_ns: now_ns,
        }
    }

    /// Add (or refresh) a name, keeping at most [`NAMES_PER_IP`]: the oldest unmatched name
    /// goes first, then the oldest; an unmatched name never displaces a matched one.
    fn add(&mut self, name: &str, expires: u64, asker: IpAddr, matched: bool, now_ns: u64) {
        let mut matched = matched;
        self.names.retain(|n| {
            let same = &*n.name == name && n.asker == asker;
            if same {
                matched |= n.matched;
            }
            !same && n.expires > now_ns
        });
        if self.names.len() >= NAMES_PER_IP {
            let victim = match self.names.iter().rposition(|n| !n.matched) {
                Some(i) => i,
                None if !matched => return,
                None => self.names.len() - 1,
            };
            self.names.remove(victim);
        }
        self.names.insert(
            0,
            Named {
                name: name.into(),
                expires,
                asker,
                matched,
            },
        );
    }
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

/// Can `name` be cached: not empty, at most [`MAX_NAME_LEN`] characters, no `\` escapes (a
/// byte DNS host names never carry; the escaped form is up to four times the wire length)?
pub fn cacheable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.contains('\\')
}

/// Addresses whose names came from matched answers (`map`), and, apart and bounded to a small
/// share, addresses that only unmatched answers named (`unmatched`): a flood of spoofed answers
/// evicts only its own kind, never a client's lookup. An address is in at most one of them.
pub struct NameCache {
    map: BoundedMap<IpAddr, Entry>,
    unmatched: BoundedMap<IpAddr, Entry>,
    grace_ns: u64,
    /// Internal resolvers: their lookups count as `resolver_lookup` for every client.
    resolvers: Vec<IpAddr>,
    pub inserted: u64,
    pub evicted: u64,
    /// Names not cached: too long or escaped.
    pub rejected: u64,
}

impl NameCache {
    pub fn new(max_ips: usize, grace_s: u64, resolvers: Vec<IpAddr>) -> Self {
        NameCache {
            map: BoundedMap::new(max_ips),
            unmatched: BoundedMap::new(max_ips / UNMATCHED_SHARE),
            grace_ns: grace_s.saturating_mul(SEC),
            resolvers,
            inserted: 0,
            evicted: 0,
            rejected: 0,
        }
    }

    /// Addresses held (both tables).
    pub fn len(&self) -> usize {
        self.map.len() + self.unmatched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        if !cacheable(name) {
            self.rejected += 1;
            return;
        }
        let expires = now_ns
            .saturating_add(capped_ttl(ttl) as u64 * SEC)
            .saturating_add(self.grace_ns);
        self.inserted += 1;
        let entry = if let Some(e) = self.map.get_mut(&ip) {
            if matched {
                // An unmatched answer adds to a known address but does not keep it alive.
                e.last_ns = now_ns;
            }
            e
        } else if matched {
            // A matched lookup takes the address (and its unmatched names) into the main table.
            let e = self
                .unmatched
                .remove(&ip)
                .unwrap_or_else(|| Entry::new(now_ns));
            let (e, evicted) = self.map.insert(ip, e);
            self.evicted += evicted as u64;
            e.last_ns = now_ns;
            e
        } else if let Some(e) = self.unmatched.get_mut(&ip) {
            e.last_ns = now_ns;
            e
        } else {
            let (e, evicted) = self.unmatched.insert(ip, Entry::new(now_ns));
            self.evicted += evicted as u64;
            e
        };
        entry.add(name, expires, asker, matched, now_ns);
    }

    /// Unexpired names for `ip` as seen from `client`: its own lookups first, then the internal
    /// resolvers', then other clients', then unmatched answers; most recent first within each.
    pub fn lookup(&self, ip: &IpAddr, client: IpAddr, now_ns: u64) -> Vec<(String, Evidence)> {
        let Some(e) = self.map.get(ip).or_else(|| self.unmatched.get(ip)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Evidence)> = Vec::new();
        let mut found: Vec<(&str, Evidence)> = e
            .names
            .iter()
            .filter(|n| n.expires > now_ns)
            .map(|n| (&*n.name, self.evidence(n, client)))
            .collect();
        found.sort_by_key(|(_, ev)| *ev); // stable: recency kept within a level
        for (n, ev) in found {
            if !out.iter().any(|(o, _)| o == n) {
                out.push((n.to_string(), ev));
            }
        }
        out
    }

    /// Is `ip` a configured internal resolver?
    pub fn is_resolver(&self, ip: &IpAddr) -> bool {
        self.resolvers.contains(ip)
    }

    /// Does an unexpired answer to a seen lookup name `ip` as `name` (the address is one of that
    /// name's own)? Answers to no seen query do not count (they could hide a real public name).
    pub fn holds(&self, ip: &IpAddr, name: &str, now_ns: u64) -> bool {
        self.map
            .get(ip)
            .or_else(|| self.unmatched.get(ip))
            .is_some_and(|e| {
                e.names
                    .iter()
                    .any(|n| n.matched && n.expires > now_ns && n.name.eq_ignore_ascii_case(name))
            })
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
            + self
                .unmatched
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

    #[test]
    fn spoofed_answers_cannot_flush_lookups() {
        // 1,024 addresses; a client's lookups fill 1,000 of them, then 100,000 unmatched answers
        // for other addresses: they hold at most 1/8 of the table and evict only each other.
        let mut c = NameCache::new(1024, 0, vec![]);
        let a = ip("10.0.0.1");
        for i in 0..1000u32 {
            c.insert(
                IpAddr::from(i.to_be_bytes()),
                "real.example",
                300,
                a,
                true,
                0,
            );
        }
        for i in 0..100_000u32 {
            let s = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            c.insert(s, "spoof.example", 300, a, false, 1 + i as u64);
        }
        assert_eq!(c.map.len(), 1000);
        assert_eq!(c.unmatched.len(), 1024 / UNMATCHED_SHARE);
        for i in 0..1000u32 {
            let l = c.lookup(&IpAddr::from(i.to_be_bytes()), a, 2);
            assert_eq!(l[0], ("real.example".to_string(), Evidence::OwnLookup));
        }
        // An unmatched name for a known address is added there (and listed last) ...
        let s = IpAddr::from(5u32.to_be_bytes());
        c.insert(s, "spoof.example", 300, a, false, 3);
        assert_eq!(names(c.lookup(&s, a, 3)), ["real.example", "spoof.example"]);
        // ... and a matched lookup of a spoofed address takes it into the main table.
        let t = IpAddr::from((0x0a00_0000u32 + 99_999).to_be_bytes());
        c.insert(t, "looked-up.example", 300, a, true, 4);
        assert!(c.unmatched.get(&t).is_none());
        assert_eq!(
            names(c.lookup(&t, a, 4)),
            ["looked-up.example", "spoof.example"]
        );
        assert!(c.len() <= 1024 + 1024 / UNMATCHED_SHARE);
    }

    #[test]
    fn long_and_escaped_names_are_not_cached() {
        let mut c = NameCache::new(10, 0, vec![]);
        let (a, s) = (ip("10.0.0.1"), ip("1.2.3.4"));
        let long = format!("{}.example", "a".repeat(250));
        let max = format!("{}.example", "a".repeat(245));
        assert_eq!(max.len(), MAX_NAME_LEN);
        c.insert(s, &long, 300, a, true, 0);
        c.insert(s, "we\\032ird.example", 300, a, true, 0);
        c.insert(s, "x\\.example", 300, a, true, 0);
        assert_eq!(c.rejected, 3);
        assert!(c.is_empty());
        c.insert(s, &max, 300, a, true, 0);
        assert_eq!(names(c.lookup(&s, a, 0)), [max]);
    }
}
