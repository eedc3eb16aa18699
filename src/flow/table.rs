//! A hash table with a hard entry limit and a per-process random hash seed (no chosen collisions);
//! when full it evicts the least recently seen of a few sampled entries (O(1), as Redis does).

use std::hash::Hash;

use indexmap::IndexMap;

/// Entries report when they were last touched (capture time, ns).
pub trait Aged {
    fn last_seen(&self) -> u64;
}

/// Entries are kept in insertion order (`IndexMap`), so iteration order, eviction samples (by
/// index, from a fixed-seed generator) and so the sensor's output never depend on the hash seed.
pub struct BoundedMap<K, V> {
    map: IndexMap<K, V, foldhash::fast::RandomState>,
    cap: usize,
    rng: u64,
}

/// Entries sampled per eviction.
pub(super) const SAMPLES: usize = 8;

/// xorshift64*: cheap, good enough to pick eviction samples.
#[inline]
pub(super) fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl<K: Hash + Eq, V: Aged> BoundedMap<K, V> {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        BoundedMap {
            map: IndexMap::with_capacity_and_hasher(
                cap.min(1 << 16),
                foldhash::fast::RandomState::default(),
            ),
            cap,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.swap_remove(k)
    }

    fn next_rand(&mut self) -> u64 {
        xorshift(&mut self.rng)
    }

    /// Keys in table order.
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    /// Insert, evicting one entry first if the table is full. Returns whether it evicted.
    pub fn insert(&mut self, k: K, v: V) -> (&mut V, bool) {
        let mut evicted = false;
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            let n = self.map.len();
            let mut victim = (self.next_rand() as usize) % n;
            let mut oldest = self
                .map
                .get_index(victim)
                .map(|(_, v)| v.last_seen())
                .unwrap_or(0);
            for _ in 1..SAMPLES.min(n) {
                let i = (self.next_rand() as usize) % n;
                let t = self
                    .map
                    .get_index(i)
                    .map(|(_, v)| v.last_seen())
                    .unwrap_or(u64::MAX);
                if t < oldest {
                    oldest = t;
                    victim = i;
                }
            }
            self.map.swap_remove_index(victim);
            evicted = true;
        }
        let (i, _) = self.map.insert_full(k, v);
        (&mut self.map[i], evicted)
    }

    /// Drop entries not seen since `cutoff`; returns how many.
    pub fn expire(&mut self, cutoff: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, v| v.last_seen() >= cutoff);
        before - self.map.len()
    }

    /// Remove the entries `drop` selects, handing each to `sink`; returns how many.
    pub fn drain_where(
        &mut self,
        mut drop: impl FnMut(&V) -> bool,
        mut sink: impl FnMut(&K, V),
    ) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.map.len() {
            if self.map.get_index(i).is_some_and(|(_, v)| drop(v)) {
                if let Some((k, v)) = self.map.swap_remove_index(i) {
                    sink(&k, v);
                    n += 1;
                }
            } else {
                i += 1;
            }
        }
        n
    }

    /// Drop entries for which `keep` says no; returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, v| keep(v));
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(u64);
    impl Aged for T {
        fn last_seen(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn never_exceeds_capacity_and_prefers_old_victims() {
        let mut m = BoundedMap::new(100);
        let mut evictions = 0;
        for i in 0..10_000u64 {
            if m.insert(i, T(i)).1 {
                evictions += 1;
            }
            assert!(m.len() <= 100);
        }
        assert_eq!(evictions, 9_900);
        // Sampled LRU keeps mostly recent entries.
        let recent = (9_000..10_000u64).filter(|k| m.get(k).is_some()).count();
        assert!(recent > 80, "{recent}");
        let n = m.len();
        let removed = m.expire(9_990);
        assert!(m.len() <= 10);
        assert_eq!(removed + m.len(), n);
    }
}
