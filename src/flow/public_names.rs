//! ECH public names: the outer SNI of an Encrypted Client Hello. Configured ones, plus those
//! learnt from ECH configs in DNS HTTPS/SVCB answers (bounded; the least recently seen go first).

use std::collections::HashSet;

use super::table::{Aged, BoundedMap};

struct Seen(u64);

impl Aged for Seen {
    fn last_seen(&self) -> u64 {
        self.0
    }
}

pub struct PublicNames {
    configured: HashSet<String>,
    learnt: BoundedMap<String, Seen>,
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

    /// Remember a public name from an ECH config seen in DNS at `now_ns`.
    pub fn learn(&mut self, name: &str, now_ns: u64) {
        if self.configured.contains(name) {
            return;
        }
        match self.learnt.get_mut(&name.to_string()) {
            Some(s) => s.0 = now_ns,
            None => {
                self.learnt.insert(name.to_string(), Seen(now_ns));
            }
        }
    }

    /// Is `sni` an ECH public name?
    pub fn contains(&self, sni: &str) -> bool {
        self.configured.contains(sni) || self.learnt.get(&sni.to_string()).is_some()
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
        assert!(p.contains("cloudflare-ech.com"));
        assert!(!p.contains("www.clinic-ehr.example"));
        for i in 0..10 {
            p.learn(&format!("ech{i}.example"), i);
        }
        assert_eq!(p.learnt(), 3);
        assert!(p.contains("ech9.example"));
        assert!(!p.contains("ech0.example"));
    }
}
