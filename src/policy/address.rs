//! Matching a connection by its server address and port, for services that list `addresses`
//! (a public resolver's own anycast addresses) or `ports` alone (853: DNS over TLS and QUIC).
//! Used only when a connection's names decided nothing: a name match always wins.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// The shortest prefixes a catalogue may list: anything wider would take in unrelated hosts
/// (a CDN's or a cloud's range) and stop or steer them as the service.
pub(super) const MIN_PREFIX_V4: u8 = 16;
pub(super) const MIN_PREFIX_V6: u8 = 32;

/// What matched a connection that no name decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hit {
    /// One of the service's `addresses` (the prefix as listed).
    Address(IpNet),
    /// A port-only service's port.
    Port(u16),
}

/// One `addresses` entry: the prefix, the service's `ports` (empty: any), the service index.
#[derive(Debug, Clone)]
struct Entry {
    net: IpNet,
    ports: Vec<u16>,
    service: usize,
}

/// The catalogue's addresses (single addresses in a hash map, one lookup per hello; prefixes
/// longest first) and port-only services.
#[derive(Debug, Clone, Default)]
pub(super) struct AddrMatcher {
    hosts: HashMap<IpAddr, Entry>,
    entries: Vec<Entry>,
    ports: HashMap<u16, usize>,
}

impl AddrMatcher {
    /// The service that owns exactly `net`, if any (a prefix belongs to one service).
    pub(super) fn owner(&self, net: &IpNet) -> Option<usize> {
        self.hosts
            .get(&net.addr())
            .filter(|e| e.net == *net)
            .or_else(|| self.entries.iter().find(|e| e.net == *net))
            .map(|e| e.service)
    }

    /// The port-only service of `port`, if any.
    pub(super) fn port_owner(&self, port: u16) -> Option<usize> {
        self.ports.get(&port).copied()
    }

    pub(super) fn insert(&mut self, net: IpNet, ports: &[u16], service: usize) {
        if net.prefix_len() == net.max_prefix_len() {
            let e = Entry {
                net,
                ports: ports.to_vec(),
                service,
            };
            self.hosts.insert(net.addr(), e);
            return;
        }
        let at = self
            .entries
            .partition_point(|e| e.net.prefix_len() >= net.prefix_len());
        self.entries.insert(
            at,
            Entry {
                net,
                ports: ports.to_vec(),
                service,
            },
        );
    }

    pub(super) fn insert_port(&mut self, port: u16, service: usize) {
        self.ports.insert(port, service);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.entries.is_empty() && self.ports.is_empty()
    }

    /// The service a connection to `ip`:`port` matches: the most specific listed prefix that
    /// holds the address (and whose service's `ports`, if any, hold the port), else a port-only
    /// service of the port.
    pub(super) fn lookup(&self, ip: IpAddr, port: u16) -> Option<(usize, Hit)> {
        let ip = canonical(ip);
        let fits = |e: &&Entry| e.ports.is_empty() || e.ports.contains(&port);
        self.hosts
            .get(&ip)
            .filter(fits)
            .or_else(|| self.entries.iter().find(|e| e.net.contains(&ip) && fits(e)))
            .map(|e| (e.service, Hit::Address(e.net)))
            .or_else(|| self.ports.get(&port).map(|&s| (s, Hit::Port(port))))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A prefix as a person writes it: a single address without `/32` or `/128`.
pub(super) fn show(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Parse and check one `addresses` entry: an IP address or a CIDR prefix with no host bits,
/// at least /16 (IPv4) or /32 (IPv6), and not unspecified, loopback or multicast.
pub(super) fn parse(s: &str) -> Result<IpNet, (String, &'static str)> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => return Err((
                format!("address {s:?} is neither an IP address nor a CIDR prefix"),
                "write an address (8.8.8.8, 2001:4860:4860::8888) or a prefix (185.228.168.0/24)",
            )),
        },
    };
    if net.trunc() != net {
        return Err((
            format!(
                "address {s:?} has host bits set (the prefix is {})",
                net.trunc()
            ),
            "write the network's own address, or the single address without a prefix length",
        ));
    }
    let min = match net {
        IpNet::V4(_) => MIN_PREFIX_V4,
        IpNet::V6(_) => MIN_PREFIX_V6,
    };
    if net.prefix_len() < min {
        return Err((
            format!(
                "address {s:?} is too broad (/{} is shorter than /{min})",
                net.prefix_len()
            ),
            "list the service's own dedicated addresses (a resolver's anycast addresses, such as 9.9.9.9), never a provider's, CDN's or cloud's range: it would match unrelated sites",
        ));
    }
    let a = net.addr();
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
        return Err((
            format!("address {s:?} is not a server's address"),
            "list the service's public unicast addresses",
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_broad_or_odd_prefixes() {
        assert_eq!(parse("1.1.1.1").unwrap().to_string(), "1.1.1.1/32");
        assert_eq!(
            parse("2606:4700:4700::1111").unwrap().to_string(),
            "2606:4700:4700::1111/128"
        );
        assert!(parse("185.228.168.0/24").is_ok());
        assert!(parse("2a10:50c0::/32").is_ok());
        let (m, hint) = parse("104.16.0.0/12").unwrap_err();
        assert!(
            m.contains("too broad") && hint.contains("CDN"),
            "{m} {hint}"
        );
        assert!(parse("2606::/16").unwrap_err().0.contains("too broad"));
        assert!(parse("1.1.1.1/24").unwrap_err().0.contains("host bits"));
        assert!(parse("dns.google").unwrap_err().0.contains("neither"));
        assert!(parse("0.0.0.0/16").is_err());
        assert!(parse("127.0.0.1").is_err());
        assert!(parse("ff02::1").is_err());
    }

    #[test]
    fn longest_prefix_then_ports_then_port_only() {
        let mut m = AddrMatcher::default();
        m.insert(parse("9.9.0.0/16").unwrap(), &[], 1);
        m.insert(parse("9.9.9.9").unwrap(), &[853, 443], 2);
        m.insert_port(853, 3);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(m.lookup(ip("9.9.9.9"), 853).unwrap().0, 2);
        // The /32 wants 853 or 443: on 53 the /16 holds it.
        assert_eq!(m.lookup(ip("9.9.9.9"), 53).unwrap().0, 1);
        assert_eq!(m.lookup(ip("9.9.1.1"), 853).unwrap().0, 1);
        assert_eq!(m.lookup(ip("192.0.2.1"), 853), Some((3, Hit::Port(853))));
        assert_eq!(m.lookup(ip("192.0.2.1"), 443), None);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(m.lookup(ip("::ffff:9.9.9.9"), 443).unwrap().0, 2);
        assert_eq!(show(&parse("9.9.9.9").unwrap()), "9.9.9.9");
        assert_eq!(show(&parse("9.9.0.0/16").unwrap()), "9.9.0.0/16");
    }
}
