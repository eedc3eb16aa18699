//! Clients and client groups: who a decision is about, and the `[[group]]` tables that place a
//! client by IP network, MAC address or prefix, or DHCP host name glob.

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
            match parse_mac(m.get_ref()) {
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
        }
    }
}

fn parse_mac(s: &str) -> Option<MacPattern> {
    let (body, prefix) = match s.strip_suffix(":*") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let mut bytes = [0u8; 6];
    let mut len = 0;
    for part in body.split([':', '-']) {
        if len == 6 || part.len() != 2 {
            return None;
        }
        bytes[len] = u8::from_str_radix(part, 16).ok()?;
        len += 1;
    }
    if (!prefix && len != 6) || len == 0 {
        return None;
    }
    Some(MacPattern { bytes, len })
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
            .filter(|&i| {
                let g = &self.groups[i];
                c.ip.is_some_and(|ip| g.nets.iter().any(|n| n.contains(&ip)))
                    || c.mac
                        .is_some_and(|m| g.macs.iter().any(|p| m[..p.len] == p.bytes[..p.len]))
                    || c.hostname
                        .is_some_and(|h| g.hostnames.iter().any(|p| glob(p, h)))
            })
            .collect()
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
        let m = parse_mac("02:1a:2b:*").unwrap();
        assert_eq!(m.len, 3);
        assert!(parse_mac("02:1a:2b").is_none());
        assert!(parse_mac("zz:1a:2b:3c:4d:5e").is_none());
    }
}
