//! The kernel's neighbour table (ARP and NDP: address -> MAC) read with one RTM_GETNEIGH dump
//! over a NETLINK_ROUTE socket (a few lines on `libc`), or from /proc/net/arp if netlink fails.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Devices;

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// States whose link-layer address is not (yet, or any more) known.
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;
const NUD_NONE: u16 = 0x00;
const NLMSG_HDR: usize = 16;
const NDMSG: usize = 12;
/// A dump of a LAN with thousands of neighbours is a few hundred KiB; stop past this.
const MAX_DUMP: usize = 64 << 20;

/// Where the entries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourSource {
    Netlink,
    /// /proc/net/arp (IPv4 only), used when netlink failed.
    ProcArp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourStats {
    pub source: NeighbourSource,
    /// Entries with a usable MAC address, learnt.
    pub learnt: usize,
    /// Entries without one (incomplete, failed, no-ARP) or not Ethernet, skipped.
    pub skipped: usize,
    /// Why netlink was not used, when the fallback was.
    pub netlink_error: Option<String>,
}

/// One neighbour entry with a link-layer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub ifindex: i32,
}

/// Read the neighbour table of the calling thread's network namespace into `devices`: netlink
/// first, /proc/net/arp (IPv4 only) if that fails.
pub fn refresh_neighbours(devices: &Devices) -> Result<NeighbourStats, String> {
    let (list, skipped, source, netlink_error) = match dump() {
        Ok((l, s)) => (l, s, NeighbourSource::Netlink, None),
        Err(ne) => match proc_arp() {
            Ok((l, s)) => (l, s, NeighbourSource::ProcArp, Some(ne)),
            Err(pe) => {
                return Err(format!(
                    "netlink RTM_GETNEIGH failed ({ne}) and so did /proc/net/arp ({pe}); \
                     the daemon needs AF_NETLINK (RestrictAddressFamilies) or a readable /proc"
                ))
            }
        },
    };
    for n in &list {
        devices.bind(n.ip, n.mac, None);
    }
    Ok(NeighbourStats {
        source,
        learnt: list.len(),
        skipped,
        netlink_error,
    })
}

/// Dump the neighbour table over netlink: the entries with an Ethernet address, and how many
/// others were skipped.
pub fn dump() -> Result<(Vec<Neighbour>, usize), String> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(format!(
            "netlink socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: valid socket, option value points to a timeval of the stated size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let seq: u32 = std::process::id() ^ 0x5347_4e45;
    let mut req = Vec::with_capacity(NLMSG_HDR + NDMSG);
    req.extend_from_slice(&((NLMSG_HDR + NDMSG) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad
    req.extend_from_slice(&[0u8; 8]); // ifindex 0 (all), state, flags, type
                                      // SAFETY: an all-zero sockaddr_nl is the kernel as destination.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
            &kernel as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    let mut out = Vec::new();
    let mut skipped = 0usize;
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("netlink receive: {e}"));
        }
        if n == 0 {
            return Err("netlink: the kernel closed the socket mid-dump".into());
        }
        total += n as usize;
        if total > MAX_DUMP {
            return Err("netlink: neighbour dump larger than 64 MiB, refused".into());
        }
        if parse_batch(&buf[..n as usize], seq, &mut out, &mut skipped)? {
            return Ok((out, skipped));
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parse one datagram of netlink messages; `Ok(true)` once NLMSG_DONE was seen.
fn parse_batch(
    b: &[u8],
    seq: u32,
    out: &mut Vec<Neighbour>,
    skipped: &mut usize,
) -> Result<bool, String> {
    let mut pos = 0;
    while pos + NLMSG_HDR <= b.len() {
        let len = u32_at(b, pos).unwrap_or(0) as usize;
        let ty = u16_at(b, pos + 4).unwrap_or(0);
        let mseq = u32_at(b, pos + 8).unwrap_or(0);
        if len < NLMSG_HDR || pos + len > b.len() {
            return Err("netlink: truncated message".into());
        }
        let msg = &b[pos..pos + len];
        pos += align4(len);
        if mseq != seq {
            continue; // not our dump (another request on a shared port id)
        }
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(msg, NLMSG_HDR).map(|e| e as i32).unwrap_or(0);
                if errno == 0 {
                    continue; // an ACK
                }
                return Err(format!(
                    "netlink: {}",
                    std::io::Error::from_raw_os_error(-errno)
                ));
            }
            RTM_NEWNEIGH => match parse_neigh(&msg[NLMSG_HDR..]) {
                Some(n) => out.push(n),
                None => *skipped += 1,
            },
            _ => {}
        }
    }
    Ok(false)
}

/// An `ndmsg` and its attributes; `None` unless it has an address and a usable Ethernet MAC.
fn parse_neigh(m: &[u8]) -> Option<Neighbour> {
    if m.len() < NDMSG {
        return None;
    }
    let family = m[0] as i32;
    let ifindex = i32::from_ne_bytes(m[4..8].try_into().ok()?);
    let state = u16_at(m, 8)?;
    if state == NUD_NONE || state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP) != 0 {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    let mut pos = NDMSG;
    while pos + 4 <= m.len() {
        let alen = u16_at(m, pos)? as usize;
        let aty = u16_at(m, pos + 2)? & 0x3fff; // without NLA_F_NESTED / NET_BYTEORDER
        if alen < 4 || pos + alen > m.len() {
            break;
        }
        let val = &m[pos + 4..pos + alen];
        match (aty, family, val.len()) {
            (NDA_DST, libc::AF_INET, 4) => {
                ip = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(val).ok()?)))
            }
            (NDA_DST, libc::AF_INET6, 16) => {
                ip = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(val).ok()?)))
            }
            (NDA_LLADDR, _, 6) => mac = Some(<[u8; 6]>::try_from(val).ok()?),
            _ => {}
        }
        pos += align4(alen);
    }
    let mac = mac.filter(super::usable_mac)?;
    Some(Neighbour {
        ip: ip?,
        mac,
        ifindex,
    })
}

/// /proc/net/arp of the calling thread's namespace (IPv4 only): `IP HW-type Flags HW-address
/// Mask Device`; entries without the "complete" flag (0x2) are skipped.
pub fn proc_arp() -> Result<(Vec<Neighbour>, usize), String> {
    let text = std::fs::read_to_string("/proc/thread-self/net/arp")
        .or_else(|_| std::fs::read_to_string("/proc/net/arp"))
        .map_err(|e| format!("/proc/net/arp: {e}"))?;
    Ok(parse_proc_arp(&text))
}

fn parse_proc_arp(text: &str) -> (Vec<Neighbour>, usize) {
    let (mut out, mut skipped) = (Vec::new(), 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            let ip: Ipv4Addr = f.first()?.parse().ok()?;
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            let mac = crate::policy::parse_mac(f.get(3)?).ok()?;
            super::usable_mac(&mac).then_some(Neighbour {
                ip: IpAddr::V4(ip),
                mac,
                ifindex: 0,
            })
        })();
        match parsed {
            Some(n) => out.push(n),
            None if !line.trim().is_empty() => skipped += 1,
            None => {}
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_arp_lines() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 10.0.0.7         0x1         0x2         02:11:22:33:44:55     *        lan0\n\
                 10.0.0.8         0x1         0x0         00:00:00:00:00:00     *        lan0\n\
                 garbage\n";
        let (l, s) = parse_proc_arp(t);
        assert_eq!(
            l,
            [Neighbour {
                ip: "10.0.0.7".parse().unwrap(),
                mac: [2, 0x11, 0x22, 0x33, 0x44, 0x55],
                ifindex: 0
            }]
        );
        assert_eq!(s, 2);
    }

    #[test]
    fn netlink_batch_parsing_and_hostile_lengths() {
        // One RTM_NEWNEIGH for 10.1.2.3 -> 02:..:09 (REACHABLE), then NLMSG_DONE.
        let mut m = Vec::new();
        let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
        body.extend_from_slice(&3i32.to_ne_bytes());
        body.extend_from_slice(&0x02u16.to_ne_bytes());
        body.extend_from_slice(&[0, 1]);
        for (ty, v) in [
            (NDA_DST, vec![10u8, 1, 2, 3]),
            (NDA_LLADDR, vec![2, 0, 0, 0, 0, 9]),
        ] {
            let l = 4 + v.len();
            body.extend_from_slice(&(l as u16).to_ne_bytes());
            body.extend_from_slice(&ty.to_ne_bytes());
            body.extend_from_slice(&v);
            body.resize(align4(body.len()), 0);
        }
        for (ty, b) in [(RTM_NEWNEIGH, &body[..]), (NLMSG_DONE, &[0u8; 4][..])] {
            m.extend_from_slice(&((NLMSG_HDR + b.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&7u32.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(b);
        }
        let (mut out, mut sk) = (Vec::new(), 0);
        assert_eq!(parse_batch(&m, 7, &mut out, &mut sk), Ok(true));
        assert_eq!(out[0].ip, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(out[0].ifindex, 3);
        // Every truncation either errs or parses; none panics.
        for cut in 0..m.len() {
            let _ = parse_batch(&m[..cut], 7, &mut Vec::new(), &mut 0);
            let _ = parse_neigh(&body[..cut.min(body.len())]);
        }
    }
}
