//! Clients and client groups: who a decision is about, and the `[[group]]` tables that place a
//! client by IP network, MAC address or prefix, or DHCP host name glob.
//!
//! A device says its own DHCP host name, and any device can claim a locally administered MAC.
//! So a group that lets traffic through (named by an allow rule's `groups` or by any rule's
//! `except_groups`: a *granting* group) places a client by its network or MAC, and its host name
//! patterns only narrow that; a group that only restricts more may match on a host name alone.
//! `policy check` warns where a granting group would otherwise trust what a device says.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::config::GroupDef;
use super::{Policy, PolicyError};

/// The client a decision is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    pub ip: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct MacPattern {
    bytes: [u8; 6],
    len: usize,
}

/// A compiled `[[group]]`.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) id: String,
    nets: Vec<IpNet>,
    macs: Vec<MacPattern>,
    hostnames: Vec<String>,
    /// The rules that make it a granting group (allow rules naming it, rules excepting it).
    pub(super) granted_by: Vec<String>,
}

impl Group {
    /// Compile a `[[group]]` table; bad networks and MACs go to `errs` and are left out.
    pub(super) fn compile(g: GroupDef, f: &Path, text: &str, errs: &mut Vec<PolicyError>) -> Group {
        let mut nets = Vec::new();
        for c in &g.cidrs {
            match c
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| c.get_ref().parse::<IpAddr>().map(IpNet::from))
            {
                Ok(n) => nets.push(n),
                Err(_) => errs.push(
                    PolicyError::new(f, format!("{:?} is not an IP network", c.get_ref()))
                        .at(text, c.span().start)
                        .hint("write e.g. 10.20.0.0/16 or fd00:1::/64"),
                ),
            }
        }
        let mut macs = Vec::new();
        for m in &g.macs {
            match MacPattern::parse(m.get_ref()) {
                Some(p) => macs.push(p),
                None => errs.push(
                    PolicyError::new(
                        f,
                        format!("{:?} is not a MAC address or prefix", m.get_ref()),
                    )
                    .at(text, m.span().start)
                    .hint("write 02:1a:2b:3c:4d:5e, or a prefix such as 02:1a:2b:*"),
                ),
            }
        }
        Group {
            id: g.id,
            nets,
            macs,
            hostnames: g.hostnames,
            granted_by: Vec::new(),
        }
    }

    /// Does the client belong? A granting group needs the network or the MAC, then the host
    /// name if it lists any; another group takes any of the three.
    fn contains(&self, c: &Client<'_>) -> bool {
        let net =
            c.ip.is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)));
        let mac = c
            .mac
            .is_some_and(|m| self.macs.iter().any(|p| m[..p.len] == p.bytes[..p.len]));
        let host = c
            .hostname
            .is_some_and(|h| self.hostnames.iter().any(|p| glob(p, h)));
        if self.granted_by.is_empty() {
            net || mac || host
        } else {
            (net || mac) && (self.hostnames.is_empty() || host)
        }
    }

    /// What `policy check` says about a granting group a device could join by what it says of
    /// itself.
    pub(super) fn warnings(&self) -> Vec<String> {
        if self.granted_by.is_empty() {
            return Vec::new();
        }
        let by = self.granted_by.join(", ");
        let mut w = Vec::new();
        if self.nets.is_empty() && self.macs.is_empty() && !self.hostnames.is_empty() {
            w.push(format!(
                "group {:?} lets traffic through ({by}) but places devices by DHCP host name only: a device names itself, so it matches no device; add cidrs (or exact macs) and keep the host names to narrow them",
                self.id
            ));
        }
        for m in &self.macs {
            // The locally administered bit: such an address is chosen by the device (or anyone).
            if m.len < 6 && m.bytes[0] & 0x02 != 0 {
                w.push(format!(
                    "group {:?} lets traffic through ({by}) and matches the locally administered MAC prefix {}: any device can take such an address; match it by cidrs instead",
                    self.id,
                    m.bytes[..m.len]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                        + ":*"
                ));
            }
        }
        w
    }
}

/// Parse an exact MAC address: six hex octets separated by `:` or `-` (`02:1a:2b:3c:4d:5e`).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    match octets(s) {
        Some((m, 6)) => Ok(m),
        _ => Err(format!(
            "{s:?} is not a MAC address (write 02:1a:2b:3c:4d:5e)"
        )),
    }
}

/// Up to six hex octets separated by `:` or `-`, and how many there are; `None` when there are
/// more than six or one is not hex.
fn octets(s: &str) -> Option<([u8; 6], usize)> {
    let mut m = [0u8; 6];
    let mut n = 0;
    for part in s.split([':', '-']) {
        if n == 6 {
            return None;
        }
        m[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    Some((m, n))
}

impl MacPattern {
    /// A group's MAC: an exact address, or a prefix of one to six octets ending in `:*`
    /// (`02:1a:2b:*`). Unlike [`parse_mac`], every octet must be written with two digits.
    fn parse(s: &str) -> Option<MacPattern> {
        let (body, prefix) = match s.strip_suffix(":*") {
            Some(b) => (b, true),
            None => (s, false),
        };
        if body.split([':', '-']).any(|part| part.len() != 2) {
            return None;
        }
        let (bytes, len) = octets(body)?;
        if (!prefix && len != 6) || len == 0 {
            return None;
        }
        Some(MacPattern { bytes, len })
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Policy {
    /// The groups (indexes into `self.groups`) the client belongs to.
    pub(super) fn client_groups(&self, c: &Client<'_>) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| self.groups[i].contains(c))
            .collect()
    }

    /// Granting groups a device could join by what it says of itself (see the module's head).
    pub fn group_warnings(&self) -> Vec<String> {
        self.groups.iter().flat_map(Group::warnings).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_macs() {
        assert!(glob("dr-*", "DR-Smith-laptop"));
        assert!(glob("nurse-??", "nurse-07"));
        assert!(!glob("nurse-??", "nurse-007"));
        let m = MacPattern::parse("02:1a:2b:*").unwrap();
        assert_eq!(m.len, 3);
        assert!(MacPattern::parse("02:1a:2b").is_none());
        assert!(MacPattern::parse("zz:1a:2b:3c:4d:5e").is_none());
    }

    #[test]
    fn exact_macs() {
        let m = [0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e];
        assert_eq!(parse_mac("02:1a:2b:3c:4d:5e"), Ok(m));
        assert_eq!(parse_mac("02-1A-2B-3C-4D-5E"), Ok(m));
        assert_eq!(parse_mac("2:1a:2b:3c:4d:5e"), Ok(m));
        for bad in [
            "02:1a:2b:*",
            "02:1a:2b:3c:4d",
            "02:1a:2b:3c:4d:5e:6f",
            "02:1a:2b:3c:4d:zz",
            "",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(format!(
                    "{bad:?} is not a MAC address (write 02:1a:2b:3c:4d:5e)"
                ))
            );
        }
        // Group MACs keep their stricter two-digit octets; both share the octet parsing.
        assert!(MacPattern::parse("2:1a:2b:3c:4d:5e").is_none());
        assert_eq!(MacPattern::parse("02-1a-2b-3c-4d-5e").unwrap().bytes, m);
    }
}
