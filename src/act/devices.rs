//! Device attribution: which MAC and host name an address belongs to, learnt from frames, DHCP
//! on the wire, the kernel's neighbour table and a DHCP server's leases file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

/// At most this many devices are remembered (a clinic LAN has far fewer; past it, new ones
/// are not added until a refresh clears stale ones).
pub const MAX_DEVICES: usize = 65_536;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
}

/// The shared device table (read by DNS and the portal, written by capture and refreshes).
#[derive(Debug, Default)]
pub struct Devices {
    inner: RwLock<HashMap<IpAddr, Device>>,
}

impl Devices {
    pub fn new() -> Devices {
        Devices::default()
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Device> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .cloned()
    }

    /// Note what is known of `ip` (a `None` keeps what was known).
    pub fn learn(&self, ip: IpAddr, mac: Option<[u8; 6]>, hostname: Option<&str>) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_DEVICES && !m.contains_key(&ip) {
            return;
        }
        let d = m.entry(ip).or_default();
        if mac.is_some() {
            d.mac = mac;
        }
        if let Some(h) = hostname {
            if d.hostname.as_deref() != Some(h) {
                d.hostname = Some(h.to_string());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
