//! ECH public names: the outer SNI of an Encrypted Client Hello. Configured ones (for every
//! client), plus those learnt from ECH configs in DNS HTTPS/SVCB answers, each for whom it was
//! learnt: every client when a configured internal resolver looked it up, else the client that
//! did (bounded; the least recently seen go first).

use std::collections::HashSet;
use std::net::IpAddr;

use super::table::{Aged, BoundedMap};

/// Clients a learnt name is held for (most recent first; the oldest goes).
pub const CLIENTS_PER_NAME: usize = 8;

struct Learnt {
    last: u64,
    /// A configured resolver looked it up: it holds for every client.
    resolver: bool,
    clients: Vec<IpAddr>,
}

impl Aged for Learnt {
    fn last_seen(&self) -> u64 {
        self.last
    }
}

pub struct PublicNames {
    configured: HashSet<String>,
    learnt: BoundedMap<String, Learnt>,
}

impl PublicNames {
    pub fn new(configured: &[String], max_learnt: usize) -> Self {
        PublicNames {
            configured: configured
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            learnt: BoundedMap::new(max_learnt),
        }
    }

    /// Remember a public name from an ECH config seen at `now_ns` in an answer to `asker`'s
    /// lookup (`resolver`: a configured internal resolver, looking up for every client).
    pub fn learn(&mut self, name: &str, asker: IpAddr, resolver: bool, now_ns: u64) {
        if self.configured.contains(name) {
            return;
        }
        let key = name.to_string();
        let l = match self.learnt.get_mut(&key) {
            Some(l) => l,
            None => {
                self.learnt
                    .insert(
                        key,
                        Learnt {
                            last: now_ns,
                            resolver: false,
                            clients: Vec::new(),
                        },
                    )
                    .0
            }
        };
        l.last = now_ns;
        if resolver {
            l.resolver = true;
        } else {
            l.clients.retain(|c| *c != asker);
            l.clients.truncate(CLIENTS_PER_NAME - 1);
            l.clients.insert(0, asker);
        }
    }

    /// Is `sni` configured as an ECH public name (for every client)?
    pub fn configured(&self, sni: &str) -> bool {
        self.configured.contains(sni)
    }

    /// Is `sni` an ECH public name for anyone (configured, or learnt for some client)?
    pub fn contains(&self, sni: &str) -> bool {
        self.configured.contains(sni) || self.learnt.get(&sni.to_string()).is_some()
    }

    /// Is `sni` an ECH public name for `client`: configured, or learnt from a configured
    /// resolver's lookup or from the client's own?
    pub fn holds_for(&self, sni: &str, client: IpAddr) -> bool {
        self.configured.contains(sni)
            || self
                .learnt
                .get(&sni.to_string())
                .is_some_and(|l| l.resolver || l.clients.contains(&client))
    }

    /// Public names learnt from DNS and held now.
    pub fn learnt(&self) -> usize {
        self.learnt.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_and_learnt_within_bounds() {
        let mut p = PublicNames::new(&["Cloudflare-ECH.com.".to_string()], 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(p.contains("cloudflare-ech.com"));
        assert!(!p.contains("www.clinic-ehr.example"));
        for i in 0..10 {
            p.learn(&format!("ech{i}.example"), a, false, i);
        }
        assert_eq!(p.learnt(), 3);
        assert!(p.contains("ech9.example"));
        assert!(!p.contains("ech0.example"));
    }

    #[test]
    fn learnt_for_the_client_or_everyone_via_the_resolver() {
        let mut p = PublicNames::new(&["cloudflare-ech.com".to_string()], 16);
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        p.learn("own.example", ip(1), false, 0);
        p.learn("dc.example", ip(2), true, 0);
        assert!(p.holds_for("own.example", ip(1)));
        assert!(!p.holds_for("own.example", ip(3)));
        assert!(p.contains("own.example"));
        assert!(p.holds_for("dc.example", ip(3)));
        assert!(p.holds_for("cloudflare-ech.com", ip(3)));
        // At most CLIENTS_PER_NAME clients per name, the least recent go.
        for i in 10..30 {
            p.learn("own.example", ip(i), false, i as u64);
        }
        assert!(p.holds_for("own.example", ip(29)));
        assert!(p.holds_for("own.example", ip(22)));
        assert!(!p.holds_for("own.example", ip(21)));
        assert!(!p.holds_for("own.example", ip(1)));
    }
}
