//! Per-client rate limit of the resolver: a token bucket per client address (`rate` per second,
//! burst twice that), in a table bounded to `MAX_CLIENTS` that evicts idle buckets first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// At most this many clients are tracked at once.
pub const MAX_CLIENTS: usize = 65_536;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter table. `rate == 0` turns limiting off.
pub struct Limiter {
    rate: f64,
    burst: f64,
    cap: usize,
    table: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Limiter {
    pub fn new(rate_per_s: u32) -> Limiter {
        Limiter::with_capacity(rate_per_s, MAX_CLIENTS)
    }

    pub fn with_capacity(rate_per_s: u32, cap: usize) -> Limiter {
        Limiter {
            rate: rate_per_s as f64,
            burst: 2.0 * rate_per_s as f64,
            cap: cap.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `ip` at `now`; false when the client is past its limit.
    pub fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !t.contains_key(&ip) && t.len() >= self.cap {
            self.evict(&mut t, now);
        }
        let b = t.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    /// Make room: first every bucket that has refilled (forgetting it changes nothing), then,
    /// if the table is still full (a flood of distinct sources), an arbitrary eighth of it.
    fn evict(&self, t: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        t.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
        });
        if t.len() >= self.cap {
            let n = (self.cap / 8).max(1);
            let gone: Vec<IpAddr> = t.keys().take(n).copied().collect();
            for k in gone {
                t.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let l = Limiter::new(10);
        let ip: IpAddr = "10.20.0.5".parse().unwrap();
        let t0 = Instant::now();
        let ok = (0..100).filter(|_| l.allow_at(ip, t0)).count();
        assert_eq!(ok, 20, "burst is twice the rate");
        assert!(!l.allow_at(ip, t0));
        // 0.5 s later five tokens are back.
        let t1 = t0 + Duration::from_millis(500);
        let ok = (0..100).filter(|_| l.allow_at(ip, t1)).count();
        assert_eq!(ok, 5);
        // Another client is not affected.
        assert!(l.allow_at("10.20.0.6".parse().unwrap(), t1));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = Limiter::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..10_000).all(|_| l.allow(ip)));
        assert!(l.is_empty());
    }

    #[test]
    fn table_stays_bounded_and_keeps_a_limited_client() {
        let l = Limiter::with_capacity(5, 64);
        let t0 = Instant::now();
        let flooder: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            l.allow_at(flooder, t0);
        }
        assert!(!l.allow_at(flooder, t0));
        // Many distinct sources that each ask once: idle-refilled buckets go first.
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + i));
            l.allow_at(ip, t0 + Duration::from_secs(10));
            assert!(l.len() <= 64);
        }
    }
}
