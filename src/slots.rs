//! Open connections shared fairly between client addresses: at most so many per address and so
//! many in all, and when every slot is taken a newcomer holding fewer than the biggest holder
//! takes that holder's oldest connection. The portal and DNS over TCP use it, so a LAN host that
//! adds addresses to itself and holds connections open cannot keep a service from anyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Open connections: at most `per_client` per address and `total` in all, shared fairly. When
/// every slot is taken, a new connection from an address holding fewer than the biggest holder
/// takes the oldest of that holder's (which is told to close): a host that adds addresses to
/// itself and holds connections open cannot keep the page from anyone else.
pub struct ConnLimit {
    per_client: usize,
    total: usize,
    slots: Arc<Mutex<Slots>>,
}

/// One connection: its id and the signal that closes it (taken when sent).
type Open = (u64, Option<oneshot::Sender<()>>);

#[derive(Default)]
struct Slots {
    /// Per address, its connections oldest first.
    open: HashMap<IpAddr, Vec<Open>>,
    count: usize,
    next: u64,
}

impl Slots {
    fn remove(&mut self, ip: IpAddr, id: u64) {
        if let Some(v) = self.open.get_mut(&ip) {
            if let Some(i) = v.iter().position(|(x, _)| *x == id) {
                v.remove(i);
                self.count -= 1;
            }
            if v.is_empty() {
                self.open.remove(&ip);
            }
        }
    }

    /// Close the oldest connection of the biggest holder if it holds more than `mine + 1`.
    fn evict_for(&mut self, mine: usize) -> bool {
        let Some((&ip, len)) = self
            .open
            .iter()
            .map(|(ip, v)| (ip, v.len()))
            .max_by_key(|(_, n)| *n)
        else {
            return false;
        };
        if len <= mine + 1 {
            return false;
        }
        let Some(v) = self.open.get_mut(&ip) else {
            return false;
        };
        let (id, tx) = &mut v[0];
        let id = *id;
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
        self.remove(ip, id);
        true
    }
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address holds its `per_client` connections.
    PerClient,
    /// Every slot is taken and no address holds more than one above this one's share.
    Total,
}

/// One open connection; dropping it frees the slot. `closed` fires when a fairer share needs it.
pub struct ConnSlot {
    ip: IpAddr,
    id: u64,
    slots: Arc<Mutex<Slots>>,
    pub closed: oneshot::Receiver<()>,
}

impl ConnLimit {
    pub fn new(per_client: usize, total: usize) -> ConnLimit {
        ConnLimit {
            per_client: per_client.max(1),
            total: total.max(1),
            slots: Arc::default(),
        }
    }

    /// A slot for a new connection from `ip`: none when it has `per_client` open already, or
    /// when all are taken and no address holds more than one above its share.
    pub fn enter(&self, ip: IpAddr) -> Option<ConnSlot> {
        self.try_enter(ip).ok()
    }

    /// The same, saying why not.
    pub fn try_enter(&self, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.open.get(&ip).map_or(0, Vec::len);
        if mine >= self.per_client {
            return Err(Refused::PerClient);
        }
        if s.count >= self.total && !s.evict_for(mine) {
            return Err(Refused::Total);
        }
        let (tx, rx) = oneshot::channel();
        let id = s.next;
        s.next += 1;
        s.open.entry(ip).or_default().push((id, Some(tx)));
        s.count += 1;
        Ok(ConnSlot {
            ip,
            id,
            slots: Arc::clone(&self.slots),
            closed: rx,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.ip, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_portal_gives_a_slot_to_the_smaller_holder() {
        let l = ConnLimit::new(8, 10);
        let ip = |i: u8| IpAddr::from([10, 0, 1, i]);
        // Two addresses of one host take every slot.
        let mut held: Vec<ConnSlot> = (0..10).map(|i| l.enter(ip(1 + i % 2)).unwrap()).collect();
        assert_eq!(l.len(), 10);
        // A third client still gets in: the oldest connection of a biggest holder goes.
        let mut mine = l.enter(ip(9)).expect("a fair share");
        assert_eq!(l.len(), 10);
        let told = held
            .iter_mut()
            .filter_map(|s| s.closed.try_recv().ok())
            .count();
        assert_eq!(told, 1, "one held connection told to close");
        assert!(mine.closed.try_recv().is_err());
        // Shares even out: no address takes a slot from one holding as many as it does.
        let _more: Vec<ConnSlot> = (0..2).map(|_| l.enter(ip(9)).unwrap()).collect();
        assert!(
            l.enter(ip(9)).is_none(),
            "3 against 4 and 3: no more to take"
        );
        drop(held);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn connections_per_client_are_capped_and_freed() {
        let l = ConnLimit::new(2, 100);
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let s1 = l.enter(a).unwrap();
        let _s2 = l.enter(a).unwrap();
        assert!(l.enter(a).is_none());
        assert!(l.enter(b).is_some());
        drop(s1);
        assert!(l.enter(a).is_some());
    }
}
