//! Ports: every address the daemon listens on (DNS over UDP and TCP, the portal's HTTP and
//! HTTPS, `/metrics`) bound for a moment and let go; a port in use names who holds it when
//! `/proc` tells.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use super::Finding;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// (protocol, address, who listens there and which setting names it)
fn listens(c: &Config) -> Vec<(Proto, SocketAddr, &'static str)> {
    let mut v = Vec::new();
    if let Some(d) = &c.dns {
        for a in &d.listen {
            v.push((Proto::Udp, *a, "[dns] listen"));
            v.push((Proto::Tcp, *a, "[dns] listen"));
        }
    }
    if let Some(p) = &c.portal {
        let defaults = |port: u16| {
            let mut v = vec![SocketAddr::new(p.address, port)];
            v.extend(p.address6.map(|a| SocketAddr::new(a, port)));
            v
        };
        let http = p.http.map(|a| vec![a]).unwrap_or_else(|| defaults(80));
        v.extend(http.into_iter().map(|a| (Proto::Tcp, a, "[portal] http")));
        if p.ca_cert.is_some() && p.ca_key.is_some() {
            let https = p.https.map(|a| vec![a]).unwrap_or_else(|| defaults(443));
            v.extend(https.into_iter().map(|a| (Proto::Tcp, a, "[portal] https")));
        }
    }
    if let Some(m) = &c.metrics {
        v.push((Proto::Tcp, m.listen, "[metrics] listen"));
    }
    v.dedup();
    v
}

pub fn check(c: &Config) -> Vec<Finding> {
    listens(c)
        .into_iter()
        .map(|(proto, a, setting)| {
            let r = match proto {
                Proto::Tcp => TcpListener::bind(a).map(drop),
                Proto::Udp => UdpSocket::bind(a).map(drop),
            };
            let what = format!("{} {a} ({setting})", proto.name());
            match r {
                Ok(()) => Finding::ok("port", format!("{what}: free")),
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    let who = holders(proto, a.port());
                    let by = if who.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", who.join(", "))
                    };
                    Finding::error(
                        "port",
                        format!("{what}: in use{by}"),
                        format!(
                            "stop what holds it (`ss -lnp{} 'sport = :{}'` shows it; for systemd-resolved's stub on 53 set DNSStubListener=no), or change {setting}",
                            if proto == Proto::Tcp { "t" } else { "u" },
                            a.port()
                        ),
                    )
                }
                Err(e) if e.kind() == ErrorKind::AddrNotAvailable => Finding::error(
                    "port",
                    format!("{what}: no interface of this machine has address {}", a.ip()),
                    format!("give an interface that address (`ip addr add`), or change {setting}"),
                ),
                Err(e) if e.kind() == ErrorKind::PermissionDenied => Finding::error(
                    "port",
                    format!("{what}: permission denied ({e})"),
                    "ports below 1024 need CAP_NET_BIND_SERVICE: run as the unit does (AmbientCapabilities=CAP_NET_BIND_SERVICE) or as root",
                ),
                Err(e) => Finding::error(
                    "port",
                    format!("{what}: cannot bind: {e}"),
                    format!("check the address of {setting}"),
                ),
            }
        })
        .collect()
}

/// Who listens on `port`: `pid NAME` of every process with such a socket that `/proc` shows.
fn holders(proto: Proto, port: u16) -> Vec<String> {
    let (files, state) = match proto {
        Proto::Tcp => (["/proc/net/tcp", "/proc/net/tcp6"], LISTEN),
        Proto::Udp => (["/proc/net/udp", "/proc/net/udp6"], UNCONN),
    };
    let inodes: Vec<u64> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| inodes_on_port(&t, port, state))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).ok().is_some_and(|l| {
                l.to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
            })
        });
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("pid {pid} ({})", comm.trim()));
        }
        if out.len() >= 4 {
            break;
        }
    }
    out
}

/// TCP state LISTEN and UDP's unconnected state in `/proc/net/*`.
const LISTEN: &str = "0A";
const UNCONN: &str = "07";

/// The socket inodes of `/proc/net/{tcp,udp}[6]` text bound to local `port` in `state`.
fn inodes_on_port(text: &str, port: u16, state: &str) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *f.get(3)? == state).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0035 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   garbage line";

    #[test]
    fn listening_inodes_of_a_port() {
        assert_eq!(inodes_on_port(TCP, 53, LISTEN), vec![31337]);
        assert_eq!(inodes_on_port(TCP, 80, LISTEN), vec![4242]);
        assert!(inodes_on_port(TCP, 443, LISTEN).is_empty());
        assert!(inodes_on_port("", 53, LISTEN).is_empty());
    }

    #[test]
    fn a_port_in_use_names_its_holder() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c: Config =
            toml::from_str(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
        let f = check(&c);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, super::super::Severity::Error);
        assert!(f[0].message.contains("in use"), "{f:?}");
        assert!(
            f[0].message
                .contains(&format!("pid {}", std::process::id())),
            "{f:?}"
        );
        drop(l);
        // A free port reads as free. Other tests connect in parallel and one may take the port
        // just let go as its own ephemeral source port, so a fresh one is tried a few times.
        let free = |port: u16| {
            let c: Config =
                toml::from_str(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
            check(&c)
        };
        let mut last = free(port);
        for _ in 0..5 {
            if last[0].severity == super::super::Severity::Ok {
                break;
            }
            let p = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            last = free(p);
        }
        assert_eq!(last[0].severity, super::super::Severity::Ok, "{last:?}");
    }
}
