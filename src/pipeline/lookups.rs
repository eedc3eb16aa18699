//! One decision per DNS lookup: a decided query waits here (bounded, a few seconds of capture
//! time) for its answer, which then carries the query's decision; unanswered, the query does.
//! Every operation is O(1) amortised, so a flood of unanswered queries costs no more than one.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::flow::{LookupKey, Observation};
use crate::policy::Decision;

type Fixed = foldhash::fast::FixedState;

/// A decided query waiting for its answer.
pub(super) struct Held {
    pub(super) query: Observation,
    pub(super) decision: Decision,
    /// The query's JSON (opened) and the decision's, when a shard rendered them.
    pub(super) rendered: Option<(Vec<u8>, Vec<u8>)>,
}

/// Decided queries by lookup. `order` lists them oldest first by a generation number; an entry
/// whose generation no longer matches the map's (answered, replaced) is skipped when met.
pub(super) struct Lookups {
    held: HashMap<LookupKey, (u64, Held), Fixed>,
    order: VecDeque<(u64, LookupKey)>,
    next_gen: u64,
    max: usize,
    timeout_ns: u64,
}

impl Lookups {
    pub(super) fn new(max: usize, timeout_s: u64) -> Self {
        Lookups {
            held: HashMap::with_hasher(Fixed::with_seed(0x100c)),
            order: VecDeque::new(),
            next_gen: 0,
            max: max.max(1),
            timeout_ns: timeout_s.saturating_mul(1_000_000_000),
        }
    }

    /// Is a query of this lookup held (the one at hand being a retransmission)?
    pub(super) fn holds(&self, k: &LookupKey) -> bool {
        self.held.contains_key(k)
    }

    /// The oldest held query, taken out (stale order entries are dropped on the way).
    fn pop_oldest(&mut self) -> Option<Held> {
        while let Some((gen, k)) = self.order.pop_front() {
            if self.held.get(&k).is_some_and(|(g, _)| *g == gen) {
                return self.held.remove(&k).map(|(_, h)| h);
            }
        }
        None
    }

    /// The oldest live entry's query time, dropping stale order entries in front of it.
    fn oldest_ts(&mut self) -> Option<u64> {
        while let Some((gen, k)) = self.order.front() {
            match self.held.get(k) {
                Some((g, h)) if g == gen => return Some(h.query.ts),
                _ => {
                    self.order.pop_front();
                }
            }
        }
        None
    }

    /// Hold a decided query until its answer. Returns the oldest held query when full: it can
    /// wait no longer.
    pub(super) fn hold(
        &mut self,
        k: LookupKey,
        query: Observation,
        d: Decision,
        rendered: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Option<Held> {
        let out = if self.held.len() >= self.max {
            self.pop_oldest()
        } else {
            None
        };
        let gen = self.next_gen;
        self.next_gen += 1;
        self.order.push_back((gen, k.clone()));
        self.held.insert(
            k,
            (
                gen,
                Held {
                    query,
                    decision: d,
                    rendered,
                },
            ),
        );
        // Answered lookups leave stale order entries; keep the deque within twice the table.
        if self.order.len() > 2 * self.max + 64 {
            let held = &self.held;
            self.order
                .retain(|(g, k)| held.get(k).is_some_and(|(hg, _)| hg == g));
        }
        out
    }

    /// The held query this answer completes, if any.
    pub(super) fn answer(&mut self, k: &LookupKey) -> Option<Held> {
        self.held.remove(k).map(|(_, h)| h)
    }

    /// Queries unanswered for longer than the timeout at `now_ns` (all of them at end of input).
    pub(super) fn expire(&mut self, now_ns: u64, out: &mut Vec<Held>) {
        while let Some(ts) = self.oldest_ts() {
            if ts.saturating_add(self.timeout_ns) >= now_ns {
                break;
            }
            if let Some(h) = self.pop_oldest() {
                out.push(h);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

/// Decisions on DNS answers to no seen query, at most one per (client, name) per window of
/// capture time: any LAN device can spoof such answers to any other device, and each would
/// otherwise be an event charged to the victim. Bounded: the oldest keys are forgotten first.
pub(super) struct UnmatchedLimit {
    last: HashMap<(IpAddr, String), u64, Fixed>,
    order: VecDeque<(IpAddr, String, u64)>,
    window_ns: u64,
    max: usize,
    pub(super) suppressed: u64,
}

impl UnmatchedLimit {
    pub(super) fn new(max: usize, window_s: u64) -> Self {
        UnmatchedLimit {
            last: HashMap::with_hasher(Fixed::with_seed(0x0a5e)),
            order: VecDeque::new(),
            window_ns: window_s.saturating_mul(1_000_000_000),
            max: max.max(1),
            suppressed: 0,
        }
    }

    /// May this unmatched answer carry a decision?
    pub(super) fn allow(&mut self, o: &Observation) -> bool {
        let name = o.name.clone().unwrap_or_default();
        let key = (o.client.ip, name);
        if let Some(&t) = self.last.get(&key) {
            if o.ts < t.saturating_add(self.window_ns) && o.ts >= t {
                self.suppressed += 1;
                return false;
            }
        }
        while self.last.len() >= self.max {
            let Some((ip, n, t)) = self.order.pop_front() else {
                break;
            };
            let k = (ip, n);
            if self.last.get(&k) == Some(&t) {
                self.last.remove(&k);
            }
        }
        self.order.push_back((key.0, key.1.clone(), o.ts));
        self.last.insert(key, o.ts);
        if self.order.len() > 2 * self.max + 64 {
            let last = &self.last;
            self.order
                .retain(|(ip, n, t)| last.get(&(*ip, n.clone())) == Some(t));
        }
        true
    }
}
