//! Per-client limits of the portal: a token bucket per address (`per_minute`, burst of the same
//! size), bounded in memory. Open connections are `crate::slots::ConnLimit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at most; past it, full buckets are forgotten, and if none is, new clients
/// share the verdict "limited" until some refill (a flood of spoofed sources cannot grow memory).
const MAX_CLIENTS: usize = 65_536;

pub struct RateLimit {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute: per_minute.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `ip`; false when it has none left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    pub(crate) fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let cap = self.per_minute;
        let rate = cap / 60.0;
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_CLIENTS && !m.contains_key(&ip) {
            m.retain(|_, (t, last)| {
                *t + now.saturating_duration_since(*last).as_secs_f64() * rate < cap
            });
            if m.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let (tokens, last) = m.entry(ip).or_insert((cap, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_client_burst_then_refill() {
        let r = RateLimit::new(6);
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(r.allow_at(a, t0));
        }
        assert!(!r.allow_at(a, t0), "burst exhausted");
        // Another client is not affected.
        assert!(r.allow_at(b, t0));
        // 6 per minute: one token back after 10 s.
        assert!(!r.allow_at(a, t0 + Duration::from_secs(5)));
        assert!(r.allow_at(a, t0 + Duration::from_secs(16)));
        assert!(!r.allow_at(a, t0 + Duration::from_secs(16)));
    }
}
