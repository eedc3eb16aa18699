//! Coach grants: a per-client, per-service allow with expiry. The portal grants one when staff
//! acknowledge the coach page; DNS, the flow enforcer and nftables consult it; it expires alone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::persist::{Book, Entry};

/// At most this many grants at once (a LAN cannot need more; past it the oldest goes first).
pub const MAX_GRANTS: usize = 65_536;
/// At most this many grants per client address at once: one device acknowledging service after
/// service cannot crowd out everyone else's grants.
pub const GRANTS_PER_CLIENT: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client: IpAddr,
    pub service: String,
    pub expires: Instant,
}

/// Called for each new grant (the enforcer lifts the client's stops for that service).
pub type GrantHook = Box<dyn Fn(&Grant) + Send + Sync>;

/// The grants in force. Cheap to consult from any thread.
#[derive(Default)]
pub struct Grants {
    inner: Mutex<HashMap<(IpAddr, String), Instant>>,
    hooks: Mutex<Vec<GrantHook>>,
    /// Where grants are kept across a restart (see `persist`).
    book: OnceLock<Arc<Book>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants").field("len", &self.len()).finish()
    }
}

impl Grants {
    pub fn new() -> Grants {
        Grants::default()
    }

    /// Allow `service` for `client` for `ttl` from now (a repeat extends it).
    /// None when the client holds [`GRANTS_PER_CLIENT`] other grants in force.
    pub fn grant(&self, client: IpAddr, service: &str, ttl: Duration) -> Option<Grant> {
        let now = Instant::now();
        let expires = now + ttl;
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (client, service.to_string());
        if !m.contains_key(&key)
            && m.iter()
                .filter(|((c, _), e)| *c == client && **e > now)
                .count()
                >= GRANTS_PER_CLIENT
        {
            return None;
        }
        if m.len() >= MAX_GRANTS && !m.contains_key(&key) {
            if let Some(k) = m.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
        m.insert(key, expires);
        drop(m);
        if let Some(b) = self.book.get() {
            b.put(
                Entry::Grant {
                    client,
                    service: service.to_string(),
                },
                ttl,
            );
        }
        let g = Grant {
            client,
            service: service.to_string(),
            expires,
        };
        for h in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h(&g);
        }
        Some(g)
    }

    /// A grant given before a restart, with the time it has left: in force at once, without the
    /// hooks (the enforcer's allow entries are restored on their own).
    pub fn restore(&self, client: IpAddr, service: &str, left: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < MAX_GRANTS {
            m.insert((client, service.to_string()), Instant::now() + left);
        }
    }

    /// Keep every grant from now on in `book` (once; later calls do nothing).
    pub fn keep_in(&self, book: Arc<Book>) {
        let _ = self.book.set(book);
    }

    /// The book grants are kept in, if any.
    pub fn book(&self) -> Option<&Arc<Book>> {
        self.book.get()
    }

    /// Run `hook` on every grant from now on.
    pub fn on_grant(&self, hook: GrantHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Time left on `client`'s grant for `service`, if one is in force.
    pub fn remaining(&self, client: IpAddr, service: &str) -> Option<Duration> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = *m.get(&(client, service.to_string()))?;
        e.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    pub fn active(&self, client: IpAddr, service: &str) -> bool {
        self.remaining(client, service).is_some()
    }

    /// Withdraw a grant (break glass, tests).
    pub fn revoke(&self, client: IpAddr, service: &str) -> bool {
        if let Some(b) = self.book.get() {
            b.remove(&Entry::Grant {
                client,
                service: service.to_string(),
            });
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(client, service.to_string())).is_some()
    }

    /// Remove and return the grants that have expired (each is an event: `grant_expired`).
    pub fn expire(&self) -> Vec<Grant> {
        let now = Instant::now();
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<_> = m
            .iter()
            .filter(|(_, e)| **e <= now)
            .map(|(k, e)| Grant {
                client: k.0,
                service: k.1.clone(),
                expires: *e,
            })
            .collect();
        for g in &gone {
            m.remove(&(g.client, g.service.clone()));
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_is_per_client_and_service_and_expires() {
        let g = Grants::new();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        g.grant(a, "chatgpt", Duration::from_millis(50));
        assert!(g.active(a, "chatgpt"));
        assert!(!g.active(b, "chatgpt"));
        assert!(!g.active(a, "claude"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!g.active(a, "chatgpt"));
        let gone = g.expire();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].client, a);
        assert!(g.is_empty());
    }

    #[test]
    fn grants_per_client_are_capped() {
        let g = Grants::new();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let hour = Duration::from_secs(3600);
        for i in 0..GRANTS_PER_CLIENT {
            assert!(g.grant(a, &format!("svc{i}"), hour).is_some());
        }
        assert!(g.grant(a, "one-more", hour).is_none());
        // A repeat of one it holds still extends it; another client is not affected.
        assert!(g.grant(a, "svc0", hour).is_some());
        assert!(g.grant(b, "one-more", hour).is_some());
    }
}
