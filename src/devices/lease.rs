//! What every leases-file reader shares: a lease, the read's counts, the bounded table of each
//! address's latest record, and the limits. The format readers (`leases` for dnsmasq and Kea,
//! `isc` for ISC dhcpd) build on it and not on each other.

use std::collections::HashMap;
use std::net::IpAddr;

/// Distinct addresses kept from one file (twice the device table); the rest are counted.
pub const MAX_LEASES: usize = 2 * super::MAX_DEVICES;
/// Longest line (dnsmasq, Kea) or token (ISC) kept; the rest of it is skipped.
pub(super) const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseFormat {
    Dnsmasq,
    IscDhcpd,
    Kea,
    /// Nothing but blank lines and comments.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStats {
    pub format: LeaseFormat,
    /// Active, unexpired leases learnt.
    pub active: usize,
    /// Leases expired, released, declined or freed (the latest record of each address counts).
    pub expired: usize,
    /// Lines (dnsmasq, Kea) or `lease` blocks (ISC) that could not be read, skipped.
    pub malformed: usize,
    /// Addresses past [`MAX_LEASES`], not read.
    pub over_limit: usize,
}

/// One active lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
}

/// The latest record of each address, in order of first appearance, bounded.
#[derive(Default)]
pub(super) struct Latest {
    map: HashMap<IpAddr, Option<LeaseEntry>>,
    order: Vec<IpAddr>,
}

impl Latest {
    /// Record `ip`'s latest state: `Some` when active.
    pub(super) fn set(&mut self, ip: IpAddr, e: Option<LeaseEntry>, st: &mut LeaseStats) {
        if let Some(v) = self.map.get_mut(&ip) {
            *v = e;
        } else if self.map.len() >= MAX_LEASES {
            st.over_limit += 1;
        } else {
            self.map.insert(ip, e);
            self.order.push(ip);
        }
    }

    pub(super) fn finish(mut self, st: &mut LeaseStats) -> Vec<LeaseEntry> {
        let mut out = Vec::new();
        for ip in self.order {
            match self.map.remove(&ip).flatten() {
                Some(e) => {
                    st.active += 1;
                    out.push(e);
                }
                None => st.expired += 1,
            }
        }
        out
    }
}

pub(super) fn mac(s: &str) -> Option<[u8; 6]> {
    crate::policy::parse_mac(s).ok()
}
