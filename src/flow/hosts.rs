//! Client host names learnt from DHCP: MAC -> host name and IP -> MAC, both bounded and aged.

use std::net::IpAddr;

use super::table::{Aged, BoundedMap};
use crate::decode::dhcp::Lease;

struct Named {
    name: String,
    last_ns: u64,
}

struct Bound {
    mac: [u8; 6],
    last_ns: u64,
}

impl Aged for Named {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

impl Aged for Bound {
    fn last_seen(&self) -> u64 {
        self.last_ns
    }
}

pub struct HostNames {
    by_mac: BoundedMap<[u8; 6], Named>,
    by_ip: BoundedMap<IpAddr, Bound>,
    pub learnt: u64,
}

impl HostNames {
    pub fn new(max: usize) -> Self {
        HostNames {
            by_mac: BoundedMap::new(max),
            by_ip: BoundedMap::new(max),
            learnt: 0,
        }
    }

    pub fn learn(&mut self, l: &Lease, now_ns: u64) {
        if let Some(name) = &l.hostname {
            self.learnt += 1;
            match self.by_mac.get_mut(&l.mac) {
                Some(e) => {
                    e.name.clone_from(name);
                    e.last_ns = now_ns;
                }
                None => {
                    self.by_mac.insert(
                        l.mac,
                        Named {
                            name: name.clone(),
                            last_ns: now_ns,
                        },
                    );
                }
            }
        }
        if let Some(ip) = l.ip {
            self.by_ip.insert(
                IpAddr::V4(ip),
                Bound {
                    mac: l.mac,
                    last_ns: now_ns,
                },
            );
        }
    }

    /// Host name of a client, by its MAC address if the frame showed it, else by its address.
    pub fn lookup(&self, ip: &IpAddr, mac: Option<[u8; 6]>) -> Option<&str> {
        if let Some(n) = mac.and_then(|m| self.by_mac.get(&m)) {
            return Some(&n.name);
        }
        let m = self.by_ip.get(ip)?.mac;
        self.by_mac.get(&m).map(|n| n.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}
