//! The flow table: flows by key in insertion order with a hard entry limit and sampled-LRU
//! eviction exactly as [`super::table::BoundedMap`], but expiry costs what expires (a deadline heap).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use super::state::{Flow, FlowKey};
use super::table::{xorshift, SAMPLES};

/// An index slot: the low 32 bits of the key's hash (its home slot and a tag) in the high half,
/// entry position + 1 in the low half; 0 is empty.
const EMPTY: u64 = 0;

/// Index size (slots of 8 bytes: 2 MiB, about 130,000 flows) from which prefetching pays: a
/// smaller index stays in the caches and a prefetch would only cost its parse and hash. (Unit
/// tests prefetch at any size, so they run the prefetch path.)
#[cfg(not(test))]
const PREFETCH_MIN_SLOTS: usize = 1 << 18;
#[cfg(test)]
const PREFETCH_MIN_SLOTS: usize = 0;

/// Entries hold their flows in insertion order; an expired flow leaves a hole (`None`) that a
/// compaction (order kept) closes before eviction samples by position, or once holes outnumber
/// flows. The index is open addressing (linear probing, at most half full, backward-shift
/// deletion) over its own allocation. (Huge pages were tried for both: no gain measured at a
/// million flows, and 5 MiB more daemon memory at 100,000.)
pub(super) struct FlowTable {
    entries: Vec<Option<(FlowKey, Flow)>>,
    live: usize,
    holes: usize,
    index: Vec<u64>,
    hasher: foldhash::fast::RandomState,
    cap: usize,
    rng: u64,
    /// Deadlines to look at: (capture time, entry position). A flow's queued deadline is never
    /// later than its real one (`last_ns` only grows; a flow moved by compaction or eviction is
    /// queued again at its new position), so a popped position holds an expired flow, a hole,
    /// or a flow to queue again with its real deadline. Stale entries (positions since reused)
    /// only cost a look: expiry always goes by the flow's real deadline.
    due: BinaryHeap<Reverse<(u64, u32)>>,
    /// Idle limits (TCP, UDP, ns) the queued deadlines were computed with.
    idle: (u64, u64),
}

/// Tables below this many entries never shrink (their room costs little).
const SHRINK_MIN: usize = 4096;

impl FlowTable {
    pub(super) fn new(cap: usize, tcp_idle_ns: u64, udp_idle_ns: u64) -> FlowTable {
        FlowTable {
            entries: Vec::new(),
            live: 0,
            holes: 0,
            index: vec![EMPTY; 16],
            hasher: foldhash::fast::RandomState::default(),
            cap: cap.max(1),
            rng: 0x9e37_79b9_7f4a_7c15,
            due: BinaryHeap::new(),
            idle: (tcp_idle_ns, udp_idle_ns),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    #[inline]
    fn deadline(&self, f: &Flow) -> u64 {
        f.last_ns
            .saturating_add(if f.udp { self.idle.1 } else { self.idle.0 })
    }

    #[inline]
    fn hash(&self, k: &FlowKey) -> u64 {
        self.hasher.hash_one(k)
    }

    /// Index slot holding `k`, if present.
    #[inline]
    fn find(&self, k: &FlowKey, h: u64) -> Option<usize> {
        let mask = self.index.len() - 1;
        let tag = h as u32 as u64;
        let mut i = h as usize & mask;
        loop {
            let s = self.index[i];
            if s == EMPTY {
                return None;
            }
            if s >> 32 == tag {
                let at = (s as u32 as usize).wrapping_sub(1);
                if self.entries.get(at).and_then(|e| e.as_ref()).map(|e| &e.0) == Some(k) {
                    return Some(i);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Is the index large enough for its lookups to miss the caches (worth a prefetch)?
    #[inline]
    #[allow(clippy::absurd_extreme_comparisons)] // (0 in unit tests)
    pub(super) fn worth_prefetching(&self) -> bool {
        self.index.len() >= PREFETCH_MIN_SLOTS
    }

    /// Start loading the index slot where `k`'s lookup begins (see [`super::Sensor::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self, k: &FlowKey) {
        let i = self.hash(k) as usize & (self.index.len() - 1);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it reads nothing and cannot fault; the address is in
        // bounds anyway.
        #[allow(unused_unsafe)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.index.as_ptr().add(i) as *const i8);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    #[inline]
    fn at(&self, slot: usize) -> usize {
        (self.index[slot] as u32 as usize).wrapping_sub(1)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, k: &FlowKey) -> Option<&mut Flow> {
        let slot = self.find(k, self.hash(k))?;
        let at = self.at(slot);
        self.entries
            .get_mut(at)
            .and_then(|e| e.as_mut())
            .map(|e| &mut e.1)
    }

    fn index_put(&mut self, h: u64, at: usize) {
        let mask = self.index.len() - 1;
        let mut i = h as usize & mask;
        while self.index[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.index[i] = (h as u32 as u64) << 32 | (at as u64 + 1);
    }

    /// Backward-shift deletion: later entries of the probe run move up into the hole.
    fn index_remove(&mut self, mut hole: usize) {
        let mask = self.index.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.index[j];
            if s == EMPTY {
                break;
            }
            let home = (s >> 32) as usize & mask;
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.index[hole] = s;
                hole = j;
            }
        }
        self.index[hole] = EMPTY;
    }

    /// Index slot pointing at entry position `at` (whose key hashes to `h`).
    fn slot_of(&self, h: u64, at: usize) -> Option<usize> {
        let mask = self.index.len() - 1;
        let want = at as u64 + 1;
        let mut i = h as usize & mask;
        loop {
            let s = self.index[i];
            if s == EMPTY {
                return None;
            }
            if s as u32 as u64 == want {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// A fresh index of `size` slots (a power of two) over the entries.
    fn rebuild_index(&mut self, size: usize) {
        let mut index = vec![EMPTY; size];
        std::mem::swap(&mut self.index, &mut index);
        drop(index);
        for at in 0..self.entries.len() {
            if let Some((k, _)) = &self.entries[at] {
                let h = self.hash(k);
                self.index_put(h, at);
            }
        }
    }

    /// Close the holes, keeping the order of the flows (positions change: queued again).
    fn compact(&mut self) {
        if self.holes == 0 {
            return;
        }
        self.entries.retain(|e| e.is_some());
        self.holes = 0;
        self.rebuild_index(self.index.len());
        self.requeue_all();
    }

    fn queue(&mut self, at: u64, pos: usize) {
        if self.due.len() > 2 * self.live + 1024 {
            self.requeue_all();
        }
        self.due.push(Reverse((at, pos as u32)));
    }

    /// The queue rebuilt from the table (one deadline per flow): bounds it after floods of
    /// short-lived or evicted flows, and follows changed idle limits and moved flows.
    fn requeue_all(&mut self) {
        let due: Vec<Reverse<(u64, u32)>> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(pos, e)| Some(Reverse((self.deadline(&e.as_ref()?.1), pos as u32))))
            .collect();
        self.due = BinaryHeap::from(due);
    }

    /// Insert, evicting one flow first if the table is full (the least recently seen of a few
    /// sampled by position, as `BoundedMap`). Returns whether it evicted.
    pub(super) fn insert(&mut self, k: FlowKey, v: Flow) -> (&mut Flow, bool) {
        let h = self.hash(&k);
        let deadline = self.deadline(&v);
        if let Some(slot) = self.find(&k, h) {
            let at = self.at(slot);
            self.entries[at] = Some((k, v));
            self.queue(deadline, at);
            return (self.flow_at(at), false);
        }
        let mut evicted = false;
        if self.live >= self.cap {
            self.compact();
            let n = self.entries.len();
            let mut victim = (xorshift(&mut self.rng) as usize) % n;
            let mut oldest = self.last_seen_at(victim).unwrap_or(0);
            for _ in 1..SAMPLES.min(n) {
                let i = (xorshift(&mut self.rng) as usize) % n;
                let t = self.last_seen_at(i).unwrap_or(u64::MAX);
                if t < oldest {
                    oldest = t;
                    victim = i;
                }
            }
            self.swap_remove(victim);
            evicted = true;
        }
        if (self.live + 1) * 2 > self.index.len() {
            self.rebuild_index(self.index.len() * 2);
        }
        if self.entries.len() == self.entries.capacity() {
            self.grow_entries();
        }
        let at = self.entries.len();
        self.entries.push(Some((k, v)));
        self.live += 1;
        self.index_put(h, at);
        self.queue(deadline, at);
        (self.flow_at(at), evicted)
    }

    fn flow_at(&mut self, at: usize) -> &mut Flow {
        match &mut self.entries[at] {
            Some((_, f)) => f,
            None => unreachable!("flow_at on a hole"),
        }
    }

    fn last_seen_at(&self, at: usize) -> Option<u64> {
        self.entries.get(at)?.as_ref().map(|(_, f)| f.last_ns)
    }

    /// Double the entries' room.
    fn grow_entries(&mut self) {
        let cap = (self.entries.capacity() * 2).max(64);
        self.entries.reserve_exact(cap - self.entries.len());
    }

    /// Remove the flow at position `at` (no holes), the last one taking its place.
    fn swap_remove(&mut self, at: usize) {
        let Some((k, _)) = &self.entries[at] else {
            return;
        };
        let h = self.hash(k);
        if let Some(slot) = self.slot_of(h, at) {
            self.index_remove(slot);
        }
        let last = self.entries.len() - 1;
        if at != last {
            if let Some((lk, _)) = &self.entries[last] {
                let lh = self.hash(lk);
                if let Some(slot) = self.slot_of(lh, last) {
                    self.index[slot] = (lh as u32 as u64) << 32 | (at as u64 + 1);
                }
            }
        }
        self.entries.swap_remove(at);
        self.live -= 1;
        if let Some(d) = self
            .entries
            .get(at)
            .and_then(|e| e.as_ref())
            .map(|(_, f)| self.deadline(f))
        {
            self.queue(d, at);
        }
    }

    /// Drop flows idle past their limit at `now` (`last_ns + idle < now`, idle by TCP or UDP);
    /// returns how many. Costs the flows whose queued deadline has passed, not a table walk.
    pub(super) fn expire(&mut self, now: u64, tcp_idle_ns: u64, udp_idle_ns: u64) -> usize {
        if self.idle != (tcp_idle_ns, udp_idle_ns) {
            self.idle = (tcp_idle_ns, udp_idle_ns);
            self.requeue_all();
        }
        let mut n = 0;
        while let Some(&Reverse((at, pos))) = self.due.peek() {
            if at >= now {
                break;
            }
            self.due.pop();
            let pos = pos as usize;
            let Some((k, f)) = self.entries.get(pos).and_then(|e| e.as_ref()) else {
                continue;
            };
            let real = self.deadline(f);
            if real < now {
                let h = self.hash(k);
                if let Some(slot) = self.slot_of(h, pos) {
                    self.index_remove(slot);
                }
                self.entries[pos] = None;
                self.live -= 1;
                self.holes += 1;
                n += 1;
            } else {
                self.queue(real, pos);
            }
        }
        while self.entries.last().is_some_and(|e| e.is_none()) {
            self.entries.pop();
            self.holes -= 1;
        }
        if self.holes > self.live.max(1024) {
            self.compact();
        }
        if self.entries.capacity() > 4 * self.live.max(SHRINK_MIN) {
            self.shrink();
        }
        n
    }

    /// Give a flood's room back once its flows have gone (a quarter of it in use): the entries,
    /// the index and the queue shrink to about twice what is left (order kept), and the freed
    /// pages go back to the kernel. Without it the table's memory stays at its high-water mark
    /// (up to `max_flows` entries) for the life of the process.
    fn shrink(&mut self) {
        self.entries.retain(|e| e.is_some());
        self.holes = 0;
        let room = (2 * self.live).max(SHRINK_MIN);
        self.entries.shrink_to(room);
        let slots = (2 * room).next_power_of_two().min(self.index.len());
        self.rebuild_index(slots);
        self.requeue_all();
        crate::mem::release_freed_memory();
    }

    /// Keys in table order (tests compare it with `BoundedMap`'s).
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<FlowKey> {
        self.entries.iter().flatten().map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::table::BoundedMap;
    use super::*;

    fn key(i: u64) -> (FlowKey, bool) {
        let udp = i.is_multiple_of(3);
        let (k, _) = FlowKey::new(
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)),
            40_000,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            443,
            if udp { 17 } else { 6 },
        );
        (k, udp)
    }

    /// Random traffic under eviction pressure (a pool of keys three times the table), sweeps
    /// and clocks that jump back: the table keeps exactly the flows, in exactly the order, that
    /// `BoundedMap` with a full walk at each sweep keeps, evicts the same and expires as many.
    #[test]
    fn same_flows_order_evictions_and_expiries_as_a_full_walk() {
        for (cap, pool, seed) in [(200, 600, 1u64), (400, 1500, 2), (50, 5000, 3)] {
            let (tcp_idle, udp_idle) = (3_000, 2_000);
            let mut old: BoundedMap<FlowKey, Flow> = BoundedMap::new(cap);
            let mut new = FlowTable::new(cap, tcp_idle, udp_idle);
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut now = 1_000_000u64;
            let (mut expired, mut evicted) = (0, 0);
            for step in 0..60_000u64 {
                let r = xorshift(&mut rng);
                // Mostly forward, sometimes a stray older timestamp or a gap past the idle limits.
                let ts = if r.is_multiple_of(97) {
                    now.saturating_sub(5_000)
                } else {
                    now += if r.is_multiple_of(503) { 4_000 } else { r % 7 };
                    now
                };
                if step % 100 == 0 {
                    let cut = |f: &Flow| {
                        f.last_ns
                            .saturating_add(if f.udp { udp_idle } else { tcp_idle })
                            >= now
                    };
                    let a = old.retain(cut);
                    let b = new.expire(now, tcp_idle, udp_idle);
                    assert_eq!(a, b, "expired at step {step}");
                    expired += a;
                }
                let (k, udp) = key((r >> 20) % pool);
                match (old.get_mut(&k), new.get_mut(&k)) {
                    (Some(a), Some(b)) => {
                        a.last_ns = a.last_ns.max(ts);
                        b.last_ns = b.last_ns.max(ts);
                    }
                    (None, None) => {
                        let a = old.insert(k, Flow::new(ts, udp)).1;
                        let b = new.insert(k, Flow::new(ts, udp)).1;
                        assert_eq!(a, b, "evicted at step {step}");
                        evicted += a as usize;
                    }
                    _ => panic!("tables differ on a key at step {step}"),
                }
                assert_eq!(old.len(), new.len());
                if step % 1000 == 0 {
                    assert!(old.keys().copied().eq(new.keys()), "order at step {step}");
                }
                assert!(new.due.len() <= 2 * new.len() + 1025 + 1);
            }
            assert!(old.keys().copied().eq(new.keys()));
            assert!(expired > 1000 && evicted > 1000, "{expired} {evicted}");
        }
    }

    /// After a flood the table gives its room back once the flood's flows expire, keeps the
    /// flows that are left (found, in order, expiring on time) and grows again when needed.
    #[test]
    fn room_given_back_after_a_flood() {
        let mut t = FlowTable::new(1 << 20, 100, 100);
        for i in 0..100_000 {
            t.insert(key(i).0, Flow::new(0, key(i).1));
        }
        let (room, slots) = (t.entries.capacity(), t.index.len());
        assert!(room >= 100_000 && slots >= 200_000, "{room} {slots}");
        // 1,000 flows stay busy; the flood's 99,000 expire.
        for i in 0..1000 {
            t.get_mut(&key(i * 100).0).unwrap().last_ns = 150;
        }
        assert_eq!(t.expire(200, 100, 100), 99_000);
        assert_eq!(t.len(), 1000);
        assert!(
            t.entries.capacity() <= 2 * SHRINK_MIN,
            "{}",
            t.entries.capacity()
        );
        assert!(t.index.len() <= 4 * SHRINK_MIN, "{}", t.index.len());
        assert!(t.due.len() <= 1000 + 1, "{}", t.due.len());
        let kept: Vec<FlowKey> = (0..1000).map(|i| key(i * 100).0).collect();
        assert!(t.keys() == kept, "the kept flows, in their order");
        assert!(kept.iter().all(|k| t.get_mut(k).is_some()));
        // Room grows again, and the kept flows still expire on time.
        for i in 200_000..230_000 {
            t.insert(key(i).0, Flow::new(300, key(i).1));
        }
        assert_eq!(t.len(), 31_000);
        assert!(t.get_mut(&key(500).0).is_some() && t.get_mut(&key(229_999).0).is_some());
        assert_eq!(t.expire(251, 100, 100), 1000);
        assert_eq!(t.expire(401, 100, 100), 30_000);
        assert_eq!(t.len(), 0);
    }

    /// Changed idle limits take effect at the next sweep, and a sweep far in the future
    /// empties the table and its queue.
    #[test]
    fn idle_limits_change_and_everything_expires() {
        let mut t = FlowTable::new(100, 10, 10);
        for i in 0..50 {
            t.insert(key(i).0, Flow::new(i, key(i).1));
        }
        // last_ns is i: i + 10 < 20 for 0..=9, then i + 5 < 20 for 10..=14.
        assert_eq!(t.expire(20, 10, 10), 10);
        assert_eq!(t.expire(20, 5, 5), 5);
        assert_eq!(t.expire(u64::MAX, 5, 5), 35);
        assert_eq!(t.len(), 0);
        assert!(t.due.is_empty());
        assert!(t.keys().is_empty());
    }
}
