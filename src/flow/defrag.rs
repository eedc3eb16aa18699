//! IP fragment reassembly with `etherparse`'s `IpDefragBuf`, held in a bounded table with a
//! timeout (etherparse's own pool is unbounded). Completed datagrams are handed back whole.

use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

use super::table::{Aged, BoundedMap};

#[derive(Hash, PartialEq, Eq, Clone, Copy, Debug)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

struct Pending {
    buf: IpDefragBuf,
    last_ns: u64,
    frame: u64,
    /// A fragment came while this sensor owned it (sharded replay: not only as shared state).
    owned: bool,
}

/// A datagram that never completed but whose start is present (e.g. the later fragments were
/// lost or cut by the snap length): its first bytes, for a best-effort partial decode.
pub struct Incomplete {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub data: Vec<u8>,
    pub last_ns: u64,
    pub frame: u64,
    /// Whether this sensor reports it (sharded replay; always true with one sensor).
    pub owned: bool,
}

impl Aged for Pending {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct DefragStats {
    pub fragments: u64,
    pub reassembled: u64,
    pub invalid: u64,
    pub evicted: u64,
    pub expired: u64,
}

pub struct Defrag {
    table: BoundedMap<FragKey, Pending>,
    timeout_ns: u64,
    pub stats: DefragStats,
}

/// One fragment as read from the IP layer.
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
    pub offset: IpFragOffset,
    pub more: bool,
    pub payload: &'a [u8],
}

impl Defrag {
    pub fn new(max_pending: usize, timeout_s: u64) -> Self {
        Defrag {
            table: BoundedMap::new(max_pending),
            timeout_ns: timeout_s.saturating_mul(1_000_000_000),
            stats: DefragStats::default(),
        }
    }

    /// Add a fragment; returns the whole transport payload once every fragment is in. `owned`:
    /// the sensor reports this datagram (false: another shard does, see `Sensor::shard`).
    pub fn add(
        &mut self,
        f: Fragment<'_>,
        now_ns: u64,
        frame: u64,
        owned: bool,
    ) -> Option<Vec<u8>> {
        // Counted by the shard that owns the datagram only (sharded replay: the others keep the
        // same table, so that they see the same datagrams, without counting them twice).
        let n = owned as u64;
        self.stats.fragments += n;
        let key = FragKey {
            src: f.src,
            dst: f.dst,
            id: f.id,
            proto: f.proto,
        };
        let pending = match self.table.get_mut(&key) {
            Some(p) => p,
            None => {
                let buf = IpDefragBuf::new(IpNumber(f.proto), Vec::new(), Vec::new());
                let (p, evicted) = self.table.insert(
                    key,
                    Pending {
                        buf,
                        last_ns: now_ns,
                        frame,
                        owned,
                    },
                );
                if evicted {
                    self.stats.evicted += n;
                }
                p
            }
        };
        pending.last_ns = pending.last_ns.max(now_ns);
        pending.owned |= owned;
        if pending.buf.add(f.offset, f.more, f.payload).is_err() {
            self.stats.invalid += n;
            self.table.remove(&key);
            return None;
        }
        if pending.buf.is_complete() {
            let p = self.table.remove(&key)?;
            self.stats.reassembled += n;
            return Some(p.buf.take_bufs().0);
        }
        None
    }

    /// Drop datagrams idle past the timeout; return the starts of those that had one.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Incomplete> {
        let cutoff = now_ns.saturating_sub(self.timeout_ns);
        self.take(|p| p.last_ns < cutoff)
    }

    /// End of input: drop every pending datagram; return the starts of those that had one.
    pub fn drain(&mut self) -> Vec<Incomplete> {
        self.take(|_| true)
    }

    fn take(&mut self, drop: impl FnMut(&Pending) -> bool) -> Vec<Incomplete> {
        let mut starts = Vec::new();
        let mut n = 0;
        self.table.drain_where(drop, |k, p| {
            n += p.owned as u64;
            if let Some(first) = p.buf.sections().iter().find(|r| r.start == 0) {
                let end = (first.end as usize).min(p.buf.data().len());
                starts.push(Incomplete {
                    src: k.src,
                    dst: k.dst,
                    proto: k.proto,
                    data: p.buf.data()[..end].to_vec(),
                    last_ns: p.last_ns,
                    frame: p.frame,
                    owned: p.owned,
                });
            }
        });
        self.stats.expired += n;
        starts
    }

    pub fn pending(&self) -> usize {
        self.table.len()
    }
}
