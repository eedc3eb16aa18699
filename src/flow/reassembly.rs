//! Bounded, offset-addressed reassembly buffer used for TCP streams and QUIC CRYPTO streams:
//! segments may arrive out of order, overlap or repeat; data past the cap is dropped and counted.
//! All buffers of a sensor draw on one shared [`Budget`], so a flood of half-sent hellos cannot
//! hold more than the budget however many flows it opens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes all reassembly buffers of one sensor may hold together.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_charge(&self, n: usize) -> bool {
        if self.used.fetch_add(n, Ordering::Relaxed) + n > self.max {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Bytes at stream offsets `[0, cap)`; tracks which ranges are filled.
#[derive(Debug, Default)]
pub struct SparseBuf {
    data: Vec<u8>,
    /// Filled ranges, sorted, non-overlapping, non-adjacent.
    ranges: Vec<(usize, usize)>,
    cap: usize,
    budget: Option<Budget>,
}

/// What became of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Stored,
    /// Part or all of the data lay beyond the cap and was dropped.
    Overflow,
    /// The shared budget is spent: nothing was stored.
    OverBudget,
}

impl Drop for SparseBuf {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.data.len());
        }
    }
}

/// How a segment compares with a buffer ([`SparseBuf::compare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Every byte is held already, equal.
    Same,
    /// Equal where held; some bytes are new.
    Extends,
    /// Some held byte differs.
    Conflict,
}

/// Most out-of-order holes tracked before new fragments are refused.
const MAX_RANGES: usize = 64;

impl SparseBuf {
    pub fn new(cap: usize) -> Self {
        SparseBuf {
            data: Vec::new(),
            ranges: Vec::new(),
            cap,
            budget: None,
        }
    }

    /// A buffer whose bytes count against `budget` while it holds them.
    pub fn with_budget(cap: usize, budget: &Budget) -> Self {
        SparseBuf {
            data: Vec::new(),
            ranges: Vec::new(),
            cap,
            budget: Some(budget.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Highest offset written + 1.
    pub fn end(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.1)
    }

    /// Grow `data` to `len` bytes if the budget allows.
    fn grow(&mut self, len: usize) -> bool {
        if len <= self.data.len() {
            return true;
        }
        if let Some(b) = &self.budget {
            if !b.try_charge(len - self.data.len()) {
                return false;
            }
        }
        self.data.resize(len, 0);
        true
    }

    /// Store `bytes` at `offset` (later copies of the same bytes overwrite earlier ones).
    pub fn insert(&mut self, offset: usize, bytes: &[u8]) -> Insert {
        if bytes.is_empty() {
            return Insert::Stored;
        }
        if offset >= self.cap {
            return Insert::Overflow;
        }
        let end = offset.saturating_add(bytes.len()).min(self.cap);
        let overflow = end - offset < bytes.len();
        if self.ranges.len() >= MAX_RANGES
            && !self.ranges.iter().any(|r| r.0 <= end && offset <= r.1)
        {
            return Insert::Overflow;
        }
        if !self.grow(end) {
            return Insert::OverBudget;
        }
        self.data[offset..end].copy_from_slice(&bytes[..end - offset]);
        let mut new = (offset, end);
        self.ranges.retain(|&(s, e)| {
            if s <= new.1 && new.0 <= e {
                new = (new.0.min(s), new.1.max(e));
                false
            } else {
                true
            }
        });
        let at = self.ranges.partition_point(|r| r.0 < new.0);
        self.ranges.insert(at, new);
        if overflow {
            Insert::Overflow
        } else {
            Insert::Stored
        }
    }

    /// How `bytes` at `offset` compare with what the buffer holds there: the same bytes, the
    /// same where they overlap with some new, or different somewhere (a conflicting version).
    pub fn compare(&self, offset: usize, bytes: &[u8]) -> Cmp {
        let end = offset.saturating_add(bytes.len());
        let mut covered = 0;
        for &(s, e) in &self.ranges {
            let (a, b) = (s.max(offset), e.min(end));
            if a >= b {
                continue;
            }
            if self.data[a..b] != bytes[a - offset..b - offset] {
                return Cmp::Conflict;
            }
            covered += b - a;
        }
        if covered == bytes.len() {
            Cmp::Same
        } else {
            Cmp::Extends
        }
    }

    /// A copy drawing on the same budget, or `None` when the budget cannot hold it.
    pub fn try_clone(&self) -> Option<SparseBuf> {
        if let Some(b) = &self.budget {
            if !b.try_charge(self.data.len()) {
                return None;
            }
        }
        Some(SparseBuf {
            data: self.data.clone(),
            ranges: self.ranges.clone(),
            cap: self.cap,
            budget: self.budget.clone(),
        })
    }

    /// Draw on `to` instead of the budget this buffer draws now; false (nothing changed) when
    /// `to` cannot hold it.
    pub fn rebudget(&mut self, to: &Budget) -> bool {
        if !to.try_charge(self.data.len()) {
            return false;
        }
        if let Some(b) = &self.budget {
            b.release(self.data.len());
        }
        self.budget = Some(to.clone());
        true
    }

    /// Bytes held (the budget this buffer draws).
    pub fn held(&self) -> usize {
        self.data.len()
    }

    /// The bytes available from offset 0 without a gap.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, e)) => &self.data[..e],
            _ => &[],
        }
    }

    /// Drop the first `n` bytes (which must be contiguous); later offsets shift down by `n`.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.contiguous().len());
        if n == 0 {
            return;
        }
        self.data.drain(..n);
        if let Some(b) = &self.budget {
            b.release(n);
        }
        self.ranges.retain_mut(|r| {
            r.0 = r.0.saturating_sub(n);
            r.1 -= n;
            r.1 > r.0
        });
    }

    /// Move everything `n` bytes later (a segment before the assumed start arrived).
    pub fn shift_right(&mut self, n: usize) -> Insert {
        if self.end() + n > self.cap {
            return Insert::Overflow;
        }
        let old = self.data.len();
        if !self.grow(old + n) {
            return Insert::OverBudget;
        }
        self.data.copy_within(..old, n);
        self.data[..n].fill(0);
        for r in &mut self.ranges {
            r.0 += n;
            r.1 += n;
        }
        Insert::Stored
    }

    pub fn clear(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.data.len());
        }
        self.data.clear();
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_overlap_and_cap() {
        let mut b = SparseBuf::new(10);
        assert_eq!(b.insert(4, b"efg"), Insert::Stored);
        assert_eq!(b.contiguous(), b"");
        assert_eq!(b.insert(0, b"abcd"), Insert::Stored);
        assert_eq!(b.contiguous(), b"abcdefg");
        assert_eq!(b.insert(2, b"cdefgh"), Insert::Stored);
        assert_eq!(b.contiguous(), b"abcdefgh");
        assert_eq!(b.insert(8, b"ijklmn"), Insert::Overflow);
        assert_eq!(b.contiguous(), b"abcdefghij");
        b.consume(3);
        assert_eq!(b.contiguous(), b"defghij");
        assert_eq!(b.insert(100, b"x"), Insert::Overflow);
    }

    #[test]
    fn budget_is_shared_and_returned_on_drop() {
        let budget = Budget::new(100);
        let mut a = SparseBuf::with_budget(1000, &budget);
        let mut b = SparseBuf::with_budget(1000, &budget);
        assert_eq!(a.insert(0, &[1; 60]), Insert::Stored);
        assert_eq!(b.insert(0, &[1; 60]), Insert::OverBudget);
        assert_eq!(b.insert(0, &[1; 40]), Insert::Stored);
        assert_eq!(budget.used(), 100);
        a.consume(10);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.clear();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn compare_tells_retransmissions_new_bytes_and_conflicts() {
        let budget = Budget::new(100);
        let mut b = SparseBuf::with_budget(50, &budget);
        b.insert(0, b"hello");
        b.insert(10, b"world");
        assert_eq!(b.compare(0, b"hell"), Cmp::Same);
        assert_eq!(b.compare(3, b"lo"), Cmp::Same);
        assert_eq!(b.compare(3, b"lo---"), Cmp::Extends);
        assert_eq!(b.compare(20, b"later"), Cmp::Extends);
        assert_eq!(b.compare(0, b"jello"), Cmp::Conflict);
        assert_eq!(b.compare(4, b"o_____Xorld"), Cmp::Conflict);
        let c = b.try_clone().unwrap();
        assert_eq!(budget.used(), 30);
        assert_eq!(c.contiguous(), b"hello");
        let small = Budget::new(20);
        let mut d = SparseBuf::with_budget(50, &small);
        d.insert(0, &[1; 15]);
        assert!(d.try_clone().is_none());
    }

    #[test]
    fn shift_right_for_late_earlier_segment() {
        let mut b = SparseBuf::new(20);
        b.insert(0, b"world");
        b.shift_right(6);
        b.insert(0, b"hello ");
        assert_eq!(b.contiguous(), b"hello world");
    }
}
