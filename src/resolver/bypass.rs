//! The browsers' and operating systems' own ways around the clinic's resolver, answered here and
//! never forwarded (`[dns] block_bypass`, on by default):
//!
//! - `use-application-dns.net`: Firefox's canary. NXDOMAIN tells Firefox the network filters
//!   DNS, and it keeps DNS over HTTPS (and with it ECH, which hides the SNI) off.
//! - `mask.icloud.com`, `mask-h2.icloud.com`: iCloud Private Relay. NXDOMAIN is Apple's
//!   documented way for a network to turn it off; otherwise a device's web traffic leaves past
//!   the gateway, nameless.
//! - `_dns.resolver.arpa`: discovery of designated resolvers (RFC 9462). Forwarded to a public
//!   upstream it would name that provider's encrypted endpoint, and clients would move to it;
//!   answered NOERROR without data.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a bypass name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Nxdomain,
    Nodata,
}

/// The answer for `name` (lower-case, no trailing dot) if it is a bypass name, with what the
/// name is for.
pub fn answer(name: &str) -> Option<(Answer, &'static str)> {
    Some(match name {
        "use-application-dns.net" => (Answer::Nxdomain, "firefox_doh_canary"),
        "mask.icloud.com" | "mask-h2.icloud.com" => (Answer::Nxdomain, "icloud_private_relay"),
        "_dns.resolver.arpa" => (Answer::Nodata, "designated_resolver_discovery"),
        _ => return None,
    })
}

/// Clients remembered at most (past it the memory starts again: a flood of spoofed sources
/// cannot grow it).
const MAX_SEEN: usize = 65_536;
/// One `dns_bypass` event per client and name in this long.
const EVERY: Duration = Duration::from_secs(3600);

/// Which (client, name) pairs were recorded lately.
#[derive(Default)]
pub struct Seen(Mutex<HashMap<(IpAddr, &'static str), Instant>>);

impl Seen {
    /// Should this client's lookup of `what` be recorded now (first time in [`EVERY`])?
    pub fn record(&self, client: IpAddr, what: &'static str) -> bool {
        let now = Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SEEN {
            m.retain(|_, t| now.duration_since(*t) < EVERY);
            if m.len() >= MAX_SEEN {
                m.clear();
            }
        }
        match m.get(&(client, what)) {
            Some(t) if now.duration_since(*t) < EVERY => false,
            _ => {
                m.insert((client, what), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_names_and_once_an_hour() {
        assert_eq!(
            answer("use-application-dns.net"),
            Some((Answer::Nxdomain, "firefox_doh_canary"))
        );
        assert_eq!(answer("mask-h2.icloud.com").unwrap().0, Answer::Nxdomain);
        assert_eq!(answer("_dns.resolver.arpa").unwrap().0, Answer::Nodata);
        assert_eq!(answer("icloud.com"), None);
        assert_eq!(answer("x.use-application-dns.net"), None);
        let s = Seen::default();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(s.record(a, "firefox_doh_canary"));
        assert!(!s.record(a, "firefox_doh_canary"));
        assert!(s.record(a, "icloud_private_relay"));
        assert!(s.record("10.0.0.6".parse().unwrap(), "firefox_doh_canary"));
    }
}
