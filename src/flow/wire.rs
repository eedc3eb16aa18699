//! A cheap, non-panicking view of a frame's link, IP and transport headers (the smoltcp `wire`
//! style: reads over the bytes, no copies) for the fast path and for sharding frames over threads.

use std::net::IpAddr;

use crate::decode::link::{
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
};

/// The headers of a plain TCP or UDP packet: Ethernet (up to two VLAN tags), raw IP or Linux
/// SLL/SLL2, then IPv4 (not a fragment) or IPv6 (no extension header), then TCP or UDP, every
/// length field consistent with the bytes captured. Anything else is `None` (the slow path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sp: u16,
    pub dp: u16,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Transport payload length (TCP: after the options; UDP: after the 8-byte header).
    pub payload_len: usize,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ...); 0 for UDP.
    pub tcp_flags: u8,
    /// The payload's first byte (0 when empty): a QUIC long header has bit 0x80 set.
    pub first: u8,
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

/// Where a frame's IP header starts and the IP version the link says it is (4, 6, or 0 when the
/// link gives none: the first nibble says), or `None` for a frame the view does not read.
#[inline]
fn ip_start(linktype: u32, d: &[u8]) -> Option<(usize, u8)> {
    let version = |et: u16| match et {
        0x0800 => Some(4),
        0x86dd => Some(6),
        _ => None,
    };
    match linktype {
        LINKTYPE_ETHERNET => {
            let mut pos = 12;
            // Up to two VLAN tags (802.1Q, 802.1ad, the old QinQ type).
            loop {
                match be16(d, pos)? {
                    et @ (0x0800 | 0x86dd) => return Some((pos + 2, version(et)?)),
                    0x8100 | 0x88a8 | 0x9100 if pos < 20 => pos += 4,
                    _ => return None,
                }
            }
        }
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Some((0, 0)),
        LINKTYPE_LINUX_SLL => Some((16, version(be16(d, 14)?)?)),
        LINKTYPE_LINUX_SLL2 => Some((20, version(be16(d, 0)?)?)),
        _ => None,
    }
}

#[inline]
fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The view of a plain TCP/UDP packet (see [`Packet`]), or `None`. Always inlined: it is the
/// fast path's whole decoding.
#[inline(always)]
pub fn packet(linktype: u32, data: &[u8]) -> Option<Packet> {
    let (at, want) = ip_start(linktype, data)?;
    let ip = data.get(at..)?;
    let version = ip.first()? >> 4;
    if want != 0 && version != want {
        return None;
    }
    let (src, dst, proto, l4) = match version {
        4 => {
            let h = ip.get(..20)?;
            let ihl = (h[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            // Not a fragment: MF clear and offset 0 (DF may be set).
            if ihl < 20 || total < ihl || total > ip.len() || h[6] & 0x3f != 0 || h[7] != 0 {
                return None;
            }
            let src: [u8; 4] = h[12..16].try_into().ok()?;
            let dst: [u8; 4] = h[16..20].try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                h[9],
                ip.get(ihl..total)?,
            )
        }
        6 => {
            let h = ip.get(..40)?;
            let len = u16::from_be_bytes([h[4], h[5]]) as usize;
            // A zero payload length is a jumbogram (hop-by-hop option): slow path.
            if len == 0 || 40 + len > ip.len() {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                h[6],
                ip.get(40..40 + len)?,
            )
        }
        _ => return None,
    };
    let sp = be16(l4, 0)?;
    let dp = be16(l4, 2)?;
    let (payload_len, tcp_flags, at) = match proto {
        6 => {
            let off = (*l4.get(12)? >> 4) as usize * 4;
            if off < 20 || off > l4.len() {
                return None;
            }
            (l4.len() - off, *l4.get(13)?, off)
        }
        17 => {
            // The UDP length must be exactly the IP payload's (else the slow path decides).
            let len = be16(l4, 4)? as usize;
            if len < 8 || len != l4.len() {
                return None;
            }
            (len - 8, 0, 8)
        }
        _ => return None,
    };
    let first = l4.get(at).copied().unwrap_or(0);
    Some(Packet {
        src,
        dst,
        sp,
        dp,
        proto,
        payload_len,
        tcp_flags,
        first,
    })
}

/// The IP addresses of a frame (any IP packet a link gives, fragments included), for sharding:
/// the same for both directions. `None`: not IP as far as this view reads (shard 0 takes it).
#[inline]
pub fn addresses(linktype: u32, data: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let (at, _) = ip_start(linktype, data)?;
    ip_addresses(data.get(at..)?)
}

/// [`addresses`] of the IP header at the start of `ip`.
#[inline]
fn ip_addresses(ip: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match ip.first()? >> 4 {
        4 => {
            let h = ip.get(..20)?;
            let src: [u8; 4] = h[12..16].try_into().ok()?;
            let dst: [u8; 4] = h[16..20].try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        6 => {
            let h = ip.get(..40)?;
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        _ => None,
    }
}

/// Does a frame feed state every shard keeps (sharded replay): an IP fragment (IPv4, or IPv6
/// with the fragment header first), or UDP on a DNS or DHCP port (the name cache, pending
/// queries, ECH public names and DHCP host names)? Tunnelled ones are not looked into.
#[inline]
pub fn feeds_shared_state(linktype: u32, data: &[u8]) -> bool {
    let Some((at, _)) = ip_start(linktype, data) else {
        return false;
    };
    data.get(at..).is_some_and(ip_feeds_shared_state)
}

/// [`feeds_shared_state`] of the IP packet at the start of `ip`.
#[inline]
fn ip_feeds_shared_state(ip: &[u8]) -> bool {
    let (proto, l4) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Some(h) = ip.get(..20) else {
                return false;
            };
            if h[6] & 0x3f != 0 || h[7] != 0 {
                return true;
            }
            (h[9], (h[0] & 0x0f) as usize * 4)
        }
        Some(6) => match ip.get(6) {
            Some(44) => return true,
            Some(&p) => (p, 40),
            None => return false,
        },
        _ => return false,
    };
    if proto != 17 {
        return false;
    }
    let shared_port = |p: u16| matches!(p, 53 | 5353 | 5355 | 67 | 68);
    match (be16(ip, l4), be16(ip, l4 + 2)) {
        (Some(sp), Some(dp)) => shared_port(sp) || shared_port(dp),
        _ => false,
    }
}

/// The shard (of `count`) that owns a frame: a hash of its two IP addresses, the same for both
/// directions and every fragment; frames without a readable IP header go to shard 0.
#[inline]
pub fn shard_of(linktype: u32, data: &[u8], count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    match addresses(linktype, data) {
        Some((a, b)) => shard_of_pair(a, b, count),
        None => 0,
    }
}

/// [`shard_of`] and [`feeds_shared_state`] from one reading of the headers (the sharded
/// replay's reader asks both of every frame).
#[inline]
pub fn dispatch(linktype: u32, data: &[u8], count: u32) -> (u32, bool) {
    if count <= 1 {
        return (0, false);
    }
    let Some(ip) = ip_start(linktype, data).and_then(|(at, _)| data.get(at..)) else {
        return (0, false);
    };
    let owner = match ip_addresses(ip) {
        Some((a, b)) => shard_of_pair(a, b, count),
        None => 0,
    };
    (owner, ip_feeds_shared_state(ip))
}

/// The shard of an address pair (either order).
#[inline]
pub fn shard_of_pair(a: IpAddr, b: IpAddr, count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let h = |ip: IpAddr| -> u64 {
        match ip {
            IpAddr::V4(v) => u32::from(v) as u64,
            IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
            }
        }
    };
    // Sorted, so both directions agree; mixed in turn (a plain XOR of the two would send every
    // pair with the same XOR, e.g. addresses numbered in step, to one shard).
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let x = mix(mix(h(lo)).wrapping_add(h(hi)));
    (((x >> 32) * count as u64) >> 32) as u32
}

/// splitmix64's finaliser.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::decode::link::LINKTYPE_ETHERNET;

    /// The reader's one-pass `dispatch` says what `shard_of` and `feeds_shared_state` say, on
    /// whole frames and on every prefix of them (cut headers).
    #[test]
    fn dispatch_agrees_with_shard_of_and_shared_state() {
        let e = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut frames = Vec::new();
        for i in 0..64u8 {
            let (c, s) = ([10, 0, 0, i], [192, 0, 2, i.wrapping_mul(7)]);
            let mut v = Vec::new();
            let _ = e()
                .ipv4(c, s, 64)
                .udp(5000, 53)
                .write(&mut v, b"\x00\x01dns");
            frames.push(v);
            let mut v = Vec::new();
            let _ = e()
                .ipv4(s, c, 64)
                .tcp(443, 5000, 1, 100)
                .write(&mut v, b"data");
            frames.push(v);
            let mut v = Vec::new();
            let (c6, s6) = (
                [0xfd, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20; 16],
            );
            let _ = e().ipv6(c6, s6, 64).udp(68, 67).write(&mut v, b"dhcp");
            frames.push(v);
            // An IPv4 fragment (more-fragments bit set).
            let mut v = frames[frames.len() - 3].clone();
            v[14 + 6] |= 0x20;
            frames.push(v);
        }
        frames.push(vec![0u8; 60]);
        let mut checked = 0;
        for f in &frames {
            for cut in 0..=f.len() {
                let d = &f[..cut];
                for n in [2, 3, 5] {
                    assert_eq!(
                        dispatch(LINKTYPE_ETHERNET, d, n),
                        (
                            shard_of(LINKTYPE_ETHERNET, d, n),
                            feeds_shared_state(LINKTYPE_ETHERNET, d)
                        ),
                        "{d:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
        // Shards differ between pairs; shared state is seen.
        let owners: std::collections::HashSet<u32> = frames
            .iter()
            .map(|f| dispatch(LINKTYPE_ETHERNET, f, 3).0)
            .collect();
        assert_eq!(owners.len(), 3);
        assert!(frames.iter().any(|f| dispatch(LINKTYPE_ETHERNET, f, 3).1));
    }
}
