//! Coach form tokens: HMAC-SHA256 (per-process random key) over client address, name, time and a
//! nonce; valid for a limited time and once only (a replay is rejected).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Spent nonces remembered at most (past it, new forms are refused until old tokens expire).
const MAX_SPENT: usize = 100_000;

pub struct Csrf {
    key: hmac::Key,
    rng: SystemRandom,
    ttl: Duration,
    /// Spent nonce -> token time (seconds), kept until the token would have expired anyway.
    spent: Mutex<HashMap<[u8; 16], u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfError {
    Malformed,
    BadMac,
    Expired,
    Replayed,
    Busy,
}

impl CsrfError {
    pub fn as_str(self) -> &'static str {
        match self {
            CsrfError::Malformed => "malformed token",
            CsrfError::BadMac => "token not issued for this device and name",
            CsrfError::Expired => "token expired",
            CsrfError::Replayed => "token already used",
            CsrfError::Busy => "too many forms in flight",
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Csrf {
    pub fn new(ttl: Duration) -> Result<Csrf, String> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "no system randomness for the portal's form key".to_string())?;
        Ok(Csrf {
            key,
            rng,
            ttl,
            spent: Mutex::new(HashMap::new()),
        })
    }

    fn mac(&self, ip: IpAddr, name: &str, ts: u64, nonce: &[u8; 16]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(ip.to_string().as_bytes());
        ctx.update(&[0]);
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&ts.to_be_bytes());
        ctx.update(nonce);
        ctx.sign()
    }

    /// A token for a form shown to `ip` for `name` now (hex: time, nonce, MAC).
    pub fn issue(&self, ip: IpAddr, name: &str) -> String {
        self.issue_at(ip, name, now_s())
    }

    fn issue_at(&self, ip: IpAddr, name: &str, ts: u64) -> String {
        let mut nonce = [0u8; 16];
        // SystemRandom only fails without a kernel RNG; a zero nonce is then still MAC-bound.
        let _ = self.rng.fill(&mut nonce);
        let tag = self.mac(ip, name, ts, &nonce);
        let mut raw = Vec::with_capacity(56);
        raw.extend_from_slice(&ts.to_be_bytes());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(tag.as_ref());
        hex(&raw)
    }

    /// Check a token sent back by `ip` for `name` and spend it.
    pub fn redeem(&self, token: &str, ip: IpAddr, name: &str) -> Result<(), CsrfError> {
        self.redeem_at(token, ip, name, now_s())
    }

    fn redeem_at(&self, token: &str, ip: IpAddr, name: &str, now: u64) -> Result<(), CsrfError> {
        let raw = unhex(token).ok_or(CsrfError::Malformed)?;
        if raw.len() != 8 + 16 + 32 {
            return Err(CsrfError::Malformed);
        }
        let mut tsb = [0u8; 8];
        tsb.copy_from_slice(&raw[..8]);
        let ts = u64::from_be_bytes(tsb);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&raw[8..24]);
        // Constant-time comparison of the MAC.
        let mut ctx = Vec::with_capacity(64);
        ctx.extend_from_slice(ip.to_string().as_bytes());
        ctx.push(0);
        ctx.extend_from_slice(name.as_bytes());
        ctx.push(0);
        ctx.extend_from_slice(&ts.to_be_bytes());
        ctx.extend_from_slice(&nonce);
        hmac::verify(&self.key, &ctx, &raw[24..]).map_err(|_| CsrfError::BadMac)?;
        let ttl = self.ttl.as_secs();
        if ts > now + 5 || now.saturating_sub(ts) > ttl {
            return Err(CsrfError::Expired);
        }
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, t| now.saturating_sub(*t) <= ttl);
            if spent.len() >= MAX_SPENT {
                return Err(CsrfError::Busy);
            }
        }
        if spent.insert(nonce, ts).is_some() {
            return Err(CsrfError::Replayed);
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            let v = |x: u8| (x as char).to_digit(16);
            Some((v(c[0])? * 16 + v(c[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_single_use_and_expires() {
        let c = Csrf::new(Duration::from_secs(600)).unwrap();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let t = c.issue(a, "chatgpt.com");
        // Another client, or another name, cannot use it.
        assert_eq!(c.redeem(&t, b, "chatgpt.com"), Err(CsrfError::BadMac));
        assert_eq!(c.redeem(&t, a, "claude.ai"), Err(CsrfError::BadMac));
        assert_eq!(c.redeem(&t, a, "chatgpt.com"), Ok(()));
        assert_eq!(c.redeem(&t, a, "chatgpt.com"), Err(CsrfError::Replayed));
        // Tampered and garbage tokens.
        let mut bad = c.issue(a, "chatgpt.com").into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(c.redeem(&bad, a, "chatgpt.com"), Err(CsrfError::BadMac));
        assert_eq!(c.redeem("zz", a, "chatgpt.com"), Err(CsrfError::Malformed));
        assert_eq!(c.redeem("", a, "chatgpt.com"), Err(CsrfError::Malformed));
        // Old tokens expire.
        let old = c.issue_at(a, "chatgpt.com", now_s() - 601);
        assert_eq!(c.redeem(&old, a, "chatgpt.com"), Err(CsrfError::Expired));
        // Another process (another key) does not accept this one's tokens.
        let other = Csrf::new(Duration::from_secs(600)).unwrap();
        let t = c.issue(a, "chatgpt.com");
        assert_eq!(other.redeem(&t, a, "chatgpt.com"), Err(CsrfError::BadMac));
    }
}
