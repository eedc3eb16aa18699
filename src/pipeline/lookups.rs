//! One decision per DNS lookup: a decided query waits here (bounded, a few seconds of capture
//! time) for its answer, which then carries the query's decision; unanswered, the query does.

use indexmap::IndexMap;

use crate::flow::{LookupKey, Observation};
use crate::policy::Decision;

/// A decided query waiting for its answer.
pub(super) struct Held {
    pub(super) query: Observation,
    pub(super) decision: Decision,
}

/// Decided queries by lookup, oldest first.
pub(super) struct Lookups {
    held: IndexMap<LookupKey, Held, foldhash::fast::FixedState>,
    max: usize,
    timeout_ns: u64,
}

impl Lookups {
    pub(super) fn new(max: usize, timeout_s: u64) -> Self {
        Lookups {
            held: IndexMap::with_hasher(foldhash::fast::FixedState::with_seed(0x100c)),
            max: max.max(1),
            timeout_ns: timeout_s.saturating_mul(1_000_000_000),
        }
    }

    /// Is a query of this lookup held (the one at hand being a retransmission)?
    pub(super) fn holds(&self, k: &LookupKey) -> bool {
        self.held.contains_key(k)
    }

    /// Hold a decided query until its answer. Returns the oldest held query when full: it can
    /// wait no longer.
    pub(super) fn hold(&mut self, k: LookupKey, query: Observation, d: Decision) -> Option<Held> {
        let out = if self.held.len() >= self.max {
            self.held.shift_remove_index(0).map(|(_, h)| h)
        } else {
            None
        };
        self.held.insert(k, Held { query, decision: d });
        out
    }

    /// The held query this answer completes, if any.
    pub(super) fn answer(&mut self, k: &LookupKey) -> Option<Held> {
        self.held.shift_remove(k)
    }

    /// Queries unanswered for longer than the timeout at `now_ns` (all of them at end of input).
    pub(super) fn expire(&mut self, now_ns: u64, out: &mut Vec<Held>) {
        while let Some((_, h)) = self.held.first() {
            if h.query.ts.saturating_add(self.timeout_ns) >= now_ns {
                break;
            }
            if let Some((_, h)) = self.held.shift_remove_index(0) {
                out.push(h);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}
