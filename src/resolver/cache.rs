//! The resolver's answer cache: upstream answers kept for their TTL (at most a day), negative
//! answers for the SOA minimum (RFC 2308), TTLs counted down on hits, bounded in entries and bytes.
//! Expired answers are swept out every few seconds, so the cache holds what is live rather than
//! its high-water mark of names (clients asking for ever new names would otherwise keep it full).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use lru::LruCache;

/// Longest time anything is cached (seconds).
pub const MAX_TTL: u32 = 86_400;
/// Longest time a negative answer is cached (RFC 2308 suggests 1 to 3 hours at most).
pub const MAX_NEGATIVE_TTL: u32 = 10_800;
/// Answers larger than this on the wire are not cached (they are rare, and memory is bounded).
pub const MAX_ENTRY_BYTES: usize = 4_096;
/// Records per cached answer at most.
pub const MAX_ENTRY_RECORDS: usize = 64;
/// How often an insert sweeps the expired answers out (one pass over the cache).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Question: lower-case name (with trailing dot), type, class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// A cached answer as served: records with their remaining TTLs.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

struct Entry {
    answer: Answer,
    stored: Instant,
    ttl: u32,
    bytes: usize,
}

pub struct Cache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

struct Inner {
    lru: LruCache<Key, Entry>,
    bytes: usize,
    /// When the expired answers were last swept out.
    swept: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored).as_secs() >= self.ttl as u64
    }
}

impl Inner {
    /// Remove every expired answer (at most once per [`SWEEP_EVERY`]).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let expired: Vec<Key> = self
            .lru
            .iter()
            .filter(|(_, e)| e.expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(e) = self.lru.pop(&k) {
                self.bytes -= e.bytes;
            }
        }
    }
}

/// How long an upstream answer may be cached (seconds), or `None` when it must not be: positive
/// answers for their smallest TTL, NXDOMAIN and NODATA for min(SOA TTL, SOA minimum) (RFC 2308
/// §5; without a SOA they are not cached), anything else (SERVFAIL, REFUSED, truncated) never.
pub fn cacheable_ttl(m: &Message) -> Option<u32> {
    if m.metadata.truncation {
        return None;
    }
    let soa_ttl = || {
        m.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(s) => Some(r.ttl.min(s.minimum).min(MAX_NEGATIVE_TTL)),
            _ => None,
        })
    };
    let ttl = match m.metadata.response_code {
        ResponseCode::NXDomain => soa_ttl()?,
        ResponseCode::NoError if m.answers.is_empty() => soa_ttl()?,
        ResponseCode::NoError => m.answers.iter().map(|r| r.ttl).min()?.min(MAX_TTL),
        _ => return None,
    };
    (ttl > 0).then_some(ttl)
}

impl Cache {
    /// `entries` answers at most, and about `entries * 1 KiB` of wire bytes.
    pub fn new(entries: usize) -> Cache {
        let entries = entries.max(1);
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::new(NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN)),
                bytes: 0,
                swept: None,
            }),
            max_bytes: entries.saturating_mul(1024).max(MAX_ENTRY_BYTES),
        }
    }

    /// The answer for `key`, with TTLs reduced by the time it has been held.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Answer> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.lru.get(key)?;
        let age = now.saturating_duration_since(e.stored).as_secs();
        if e.expired(now) {
            if let Some(e) = g.lru.pop(key) {
                g.bytes -= e.bytes;
            }
            return None;
        }
        let age = age as u32;
        let mut a = e.answer.clone();
        drop(g);
        for r in a.answers.iter_mut().chain(a.authorities.iter_mut()) {
            r.ttl = r.ttl.min(MAX_TTL).saturating_sub(age).max(1);
        }
        Some(a)
    }

    /// Keep an upstream answer (`wire_len`: its size on the wire). Not cacheable answers are
    /// ignored; returns whether it was stored.
    pub fn insert(&self, key: Key, m: &Message, wire_len: usize, now: Instant) -> bool {
        let Some(ttl) = cacheable_ttl(m) else {
            return false;
        };
        if wire_len > MAX_ENTRY_BYTES || m.answers.len() + m.authorities.len() > MAX_ENTRY_RECORDS {
            return false;
        }
        // Negative answers keep only their SOA (what RFC 2308 caches); positive only answers.
        let authorities = if m.answers.is_empty() {
            m.authorities
                .iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .map(|r| {
                    // Served TTLs count down from the negative TTL (RFC 2308 §5).
                    let mut r = r.clone();
                    r.ttl = ttl;
                    r
                })
                .collect()
        } else {
            Vec::new()
        };
        let bytes = wire_len + key.name.len() + 64;
        let entry = Entry {
            answer: Answer {
                rcode: m.metadata.response_code,
                answers: m.answers.clone(),
                authorities,
            },
            stored: now,
            ttl,
            bytes,
        };
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.sweep(now);
        if let Some((_, old)) = g.lru.push(key, entry) {
            g.bytes -= old.bytes;
        }
        g.bytes += bytes;
        while g.bytes > self.max_bytes {
            match g.lru.pop_lru() {
                Some((_, old)) => g.bytes -= old.bytes,
                None => break,
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lru
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Name;
    use std::time::Duration;

    fn key(n: &str, t: u16) -> Key {
        Key {
            name: n.into(),
            qtype: t,
            qclass: 1,
        }
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            Name::from_ascii("example.org.").unwrap(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let n = Name::from_ascii("example.org.").unwrap();
        m.add_authority(Record::from_rdata(
            n.clone(),
            soa_ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 7200, 900, 86400, minimum)),
        ));
        m
    }

    #[test]
    fn expired_answers_are_swept_out() {
        let c = Cache::new(1000);
        let t0 = Instant::now();
        for i in 0..500 {
            assert!(c.insert(key(&format!("n{i}.example.org."), 1), &answer(2), 60, t0));
        }
        assert!(c.insert(key("long.example.org.", 1), &answer(3600), 60, t0));
        assert_eq!(c.len(), 501);
        // Expired, but the sweep waits for its interval.
        let t1 = t0 + Duration::from_secs(3);
        assert!(c.insert(key("a.example.org.", 1), &answer(60), 60, t1));
        assert_eq!(c.len(), 502);
        let t2 = t0 + SWEEP_EVERY + Duration::from_secs(1);
        assert!(c.insert(key("b.example.org.", 1), &answer(60), 60, t2));
        assert_eq!(
            c.len(),
            3,
            "the 500 expired answers are gone, the live ones kept"
        );
        assert!(c.get(&key("long.example.org.", 1), t2).is_some());
        assert!(c.get(&key("a.example.org.", 1), t2).is_some());
        assert_eq!(
            c.inner.lock().unwrap().bytes,
            3 * (60 + 64) + "long.example.org.a.example.org.b.example.org.".len()
        );
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let c = Cache::new(10);
        let t0 = Instant::now();
        assert!(c.insert(key("example.org.", 1), &answer(300), 60, t0));
        let a = c
            .get(&key("example.org.", 1), t0 + Duration::from_secs(100))
            .unwrap();
        assert_eq!(a.answers[0].ttl, 200);
        assert!(c
            .get(&key("example.org.", 1), t0 + Duration::from_secs(300))
            .is_none());
        assert!(c.is_empty(), "an expired entry is dropped on access");
        assert!(
            c.get(&key("example.org.", 28), t0).is_none(),
            "type is part of the key"
        );
    }

    #[test]
    fn negative_answers_use_the_soa_minimum() {
        let c = Cache::new(10);
        let t0 = Instant::now();
        let m = negative(ResponseCode::NXDomain, 3600, 60);
        assert_eq!(cacheable_ttl(&m), Some(60));
        assert!(c.insert(key("nx.example.org.", 1), &m, 80, t0));
        let a = c
            .get(&key("nx.example.org.", 1), t0 + Duration::from_secs(59))
            .unwrap();
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(a.authorities.len(), 1);
        assert_eq!(
            a.authorities[0].ttl, 1,
            "the SOA's TTL counts down from the negative TTL"
        );
        assert!(c
            .get(&key("nx.example.org.", 1), t0 + Duration::from_secs(60))
            .is_none());
        // NODATA: the SOA TTL when smaller than the minimum.
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NoError, 30, 600)),
            Some(30)
        );
        // Without a SOA a negative answer is not cached; SERVFAIL never is.
        let mut bare = Message::new(1, MessageType::Response, OpCode::Query);
        bare.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(cacheable_ttl(&bare), None);
        assert!(!c.insert(key("x.", 1), &bare, 20, t0));
        bare.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cacheable_ttl(&bare), None);
        // TTLs are capped at a day.
        assert_eq!(cacheable_ttl(&answer(u32::MAX)), Some(MAX_TTL));
        assert_eq!(cacheable_ttl(&answer(0)), None);
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let c = Cache::new(100);
        let t0 = Instant::now();
        for i in 0..1000 {
            c.insert(key(&format!("n{i}.example."), 1), &answer(300), 60, t0);
        }
        assert_eq!(c.len(), 100);
        // The most recent stay.
        assert!(c.get(&key("n999.example.", 1), t0).is_some());
        assert!(c.get(&key("n0.example.", 1), t0).is_none());
        // Big answers push others out to stay within the byte budget (100 KiB here).
        for i in 0..100 {
            c.insert(key(&format!("b{i}.example."), 1), &answer(300), 4000, t0);
        }
        assert!(c.len() <= 100 * 1024 / 4000 + 1, "{}", c.len());
        assert!(!c.insert(key("huge.", 1), &answer(300), 5000, t0));
    }
}
