//! Bounded, offset-addressed reassembly buffer used for TCP streams and QUIC CRYPTO streams:
//! segments may arrive out of order, overlap or repeat; data past the cap is dropped and counted.

/// Bytes at stream offsets `[0, cap)`; tracks which ranges are filled.
#[derive(Debug, Default, Clone)]
pub struct SparseBuf {
    data: Vec<u8>,
    /// Filled ranges, sorted, non-overlapping, non-adjacent.
    ranges: Vec<(usize, usize)>,
    cap: usize,
}

/// What became of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Stored,
    /// Part or all of the data lay beyond the cap and was dropped.
    Overflow,
}

/// Most out-of-order holes tracked before new fragments are refused.
const MAX_RANGES: usize = 64;

impl SparseBuf {
    pub fn new(cap: usize) -> Self {
        SparseBuf {
            data: Vec::new(),
            ranges: Vec::new(),
            cap,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Highest offset written + 1.
    pub fn end(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.1)
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
        if self.data.len() < end {
            self.data.resize(end, 0);
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
        let mut v = vec![0u8; n];
        v.extend_from_slice(&self.data);
        self.data = v;
        for r in &mut self.ranges {
            r.0 += n;
            r.1 += n;
        }
        Insert::Stored
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ranges.clear();
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.ranges.capacity() * 16
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
    fn shift_right_for_late_earlier_segment() {
        let mut b = SparseBuf::new(20);
        b.insert(0, b"world");
        b.shift_right(6);
        b.insert(0, b"hello ");
        assert_eq!(b.contiguous(), b"hello world");
    }
}
