//! Blind spots from the sensor as `blind_spot` system events: at most one per device (client
//! address) and kind a minute of capture time, over every capture thread that shares the limit
//! (the daemon's threads share the judge's), in a bounded table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::flow::{Blind, BlindSpot};

/// (device, kind) pairs remembered at most; past it the table starts again (a LAN device
/// spraying source addresses costs at most this much memory, and a few extra events).
pub const MAX_BLIND_DEVICES: usize = 16_384;
const MINUTE: u64 = 60_000_000_000;

/// The once-a-minute limit of `blind_spot` events.
#[derive(Debug, Default)]
pub struct BlindLimit {
    last: HashMap<(IpAddr, Blind), u64>,
    /// Sightings not recorded: their device and kind had an event in that minute.
    pub suppressed: u64,
    /// Events let through.
    pub recorded: u64,
}

/// A limit shared by pipelines (the daemon's capture threads).
pub type SharedBlindLimit = Arc<Mutex<BlindLimit>>;

impl BlindLimit {
    /// May `b` become an event? Once per client address, kind and minute of capture time.
    pub fn allow(&mut self, b: &BlindSpot) -> bool {
        let key = (b.client.ip, b.kind);
        let minute = b.ts / MINUTE;
        if self.last.get(&key) == Some(&minute) {
            self.suppressed += 1;
            return false;
        }
        if self.last.len() >= MAX_BLIND_DEVICES && !self.last.contains_key(&key) {
            self.last.clear();
        }
        self.last.insert(key, minute);
        self.recorded += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::observation::{Endpoint, Transport};

    fn spot(ip: [u8; 4], kind: Blind, ts_s: u64) -> BlindSpot {
        let ep = |ip: IpAddr| Endpoint {
            ip,
            port: 51820,
            mac: None,
            hostname: None,
        };
        BlindSpot {
            ts: ts_s * 1_000_000_000,
            kind,
            transport: Transport::Udp,
            client: ep(IpAddr::from(ip)),
            server: ep(IpAddr::from([198, 51, 100, 7])),
            frame: 0,
        }
    }

    #[test]
    fn once_a_minute_per_device_and_kind_bounded() {
        let mut l = BlindLimit::default();
        assert!(l.allow(&spot([10, 0, 0, 5], Blind::Wireguard, 60)));
        assert!(!l.allow(&spot([10, 0, 0, 5], Blind::Wireguard, 119)));
        assert!(l.allow(&spot([10, 0, 0, 5], Blind::Ike, 119)));
        assert!(l.allow(&spot([10, 0, 0, 6], Blind::Wireguard, 119)));
        assert!(l.allow(&spot([10, 0, 0, 5], Blind::Wireguard, 120)));
        assert_eq!((l.recorded, l.suppressed), (4, 1));
        // Spraying source addresses: the table never grows past its bound.
        for i in 0..(MAX_BLIND_DEVICES as u32 * 3) {
            l.allow(&spot(i.to_be_bytes(), Blind::EchNoDns, 200));
            assert!(l.len() <= MAX_BLIND_DEVICES);
        }
    }
}
