//! TCP resets towards both ends of a flow with the exact sequence numbers the sensor saw, so
//! neither end answers with a challenge ACK (RFC 5961): raw IPv4/IPv6 sockets with our own headers.
//!
//! Why raw IP sockets and not AF_PACKET: the gateway routes both ends, so a packet it originates
//! with the client's address towards the server (and the server's towards the client) leaves by
//! the right interface with the right next hop, and conntrack applies the flow's SNAT on the way
//! out (a masquerading gateway still resets the server correctly). Locally sent packets skip the
//! forward hook and reverse-path filtering, so the table's own rules never see them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::flow::TcpSeq;

/// Linux's IPV6_HDRINCL (not in every libc version).
const IPV6_HDRINCL: libc::c_int = 36;

const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Which resets went out for one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub to_server: bool,
    pub to_client: bool,
}

/// Raw sockets for injecting resets (needs CAP_NET_RAW; opened once, at start).
#[derive(Debug)]
pub struct Resetter {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
}

fn raw_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); owned at once.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let (level, opt) = if domain == libc::AF_INET {
        (libc::IPPROTO_IP, libc::IP_HDRINCL)
    } else {
        (libc::IPPROTO_IPV6, IPV6_HDRINCL)
    };
    // SAFETY: valid int option. IPPROTO_RAW implies header inclusion already; this says so.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            4,
        )
    };
    Ok(fd)
}

impl Resetter {
    /// Open the IPv4 and IPv6 raw sockets. Fails only if neither opens (no CAP_NET_RAW).
    pub fn new() -> io::Result<Resetter> {
        let v4 = raw_socket(libc::AF_INET);
        let v6 = raw_socket(libc::AF_INET6);
        match (v4, v6) {
            (Err(e), Err(_)) => Err(io::Error::new(
                e.kind(),
                format!("cannot open raw sockets for TCP resets (needs CAP_NET_RAW): {e}"),
            )),
            (a, b) => Ok(Resetter {
                v4: a.ok(),
                v6: b.ok(),
            }),
        }
    }

    /// Reset the flow at both ends: the server gets `client_next` (what it expects next from
    /// the client), the client gets `server_next` (the client's acknowledgement). Without an
    /// acknowledgement only the server is reset (the table's reject answers the client's next
    /// segment exactly).
    pub fn reset(&self, client: SocketAddr, server: SocketAddr, seq: &TcpSeq) -> io::Result<Sent> {
        let mut sent = Sent::default();
        let to_server = build_rst(client, server, seq.client_next, Some(seq.server_next))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mixed address families"))?;
        self.send(server, &to_server)?;
        sent.to_server = true;
        if seq.has_ack {
            if let Some(p) = build_rst(server, client, seq.server_next, Some(seq.client_next)) {
                self.send(client, &p)?;
                sent.to_client = true;
            }
        }
        Ok(sent)
    }

    fn send(&self, dst: SocketAddr, pkt: &[u8]) -> io::Result<()> {
        let r = match dst.ip() {
            IpAddr::V4(a) => {
                let fd = self.v4.as_ref().ok_or_else(no_socket)?;
                // SAFETY: `sockaddr_in` is plain old data; all-zero is valid (and the padding must
                // be zero for the kernel).
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                // SAFETY: sa is a valid sockaddr_in, pkt a valid buffer.
                unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        pkt.as_ptr() as *const libc::c_void,
                        pkt.len(),
                        0,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            IpAddr::V6(a) => {
                let fd = self.v6.as_ref().ok_or_else(no_socket)?;
                // SAFETY: `sockaddr_in6` is plain old data; all-zero is valid (flow info and scope
                // id 0).
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = a.octets();
                // SAFETY: as above.
                unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        pkt.as_ptr() as *const libc::c_void,
                        pkt.len(),
                        0,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn no_socket() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "no raw socket for this address family",
    )
}

/// An IP packet carrying a TCP RST (with ACK when `ack` is given) from `src` to `dst`, with
/// correct header and TCP checksums. None when the families differ.
pub fn build_rst(src: SocketAddr, dst: SocketAddr, seq: u32, ack: Option<u32>) -> Option<Vec<u8>> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.unwrap_or(0).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = TCP_RST | if ack.is_some() { TCP_ACK } else { 0 };
    // Window 0, urgent pointer 0.
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut sum = 0u32;
            sum = add(sum, &s.octets());
            sum = add(sum, &d.octets());
            sum += libc::IPPROTO_TCP as u32 + 20;
            let c = fold(add(sum, &tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = libc::IPPROTO_TCP as u8;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = fold(add(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut p = ip.to_vec();
            p.extend_from_slice(&tcp);
            Some(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut sum = 0u32;
            sum = add(sum, &s.octets());
            sum = add(sum, &d.octets());
            sum += 20 + libc::IPPROTO_TCP as u32;
            let c = fold(add(sum, &tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = libc::IPPROTO_TCP as u8;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut p = ip.to_vec();
            p.extend_from_slice(&tcp);
            Some(p)
        }
        _ => None,
    }
}

/// One's-complement sum of 16-bit words (an odd last byte padded with zero).
fn add(mut sum: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [last] = it.remainder() {
        sum += (*last as u32) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn check(src: &str, dst: &str) {
        let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let p = build_rst(s, d, 0xdead_beef, Some(7)).unwrap();
        let sp = SlicedPacket::from_ip(&p).unwrap();
        let Some(TransportSlice::Tcp(t)) = sp.transport else {
            panic!("not tcp")
        };
        assert!(t.rst() && t.ack());
        assert_eq!(
            (t.sequence_number(), t.acknowledgment_number()),
            (0xdead_beef, 7)
        );
        assert_eq!(
            (t.source_port(), t.destination_port()),
            (s.port(), d.port())
        );
        let want = match sp.net {
            Some(NetSlice::Ipv4(ref v4)) => {
                assert_eq!(
                    v4.header().to_header().calc_header_checksum(),
                    v4.header().header_checksum()
                );
                t.to_header()
                    .calc_checksum_ipv4(&v4.header().to_header(), &[])
                    .unwrap()
            }
            Some(NetSlice::Ipv6(ref v6)) => t
                .to_header()
                .calc_checksum_ipv6(&v6.header().to_header(), &[])
                .unwrap(),
            _ => panic!("no ip"),
        };
        assert_eq!(t.checksum(), want);
    }

    #[test]
    fn resets_carry_exact_numbers_and_valid_checksums() {
        check("10.77.1.2:40000", "10.77.2.2:443");
        check("[fd77::2]:40000", "[fd77:2::2]:443");
        assert!(build_rst(
            "10.0.0.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
            0,
            None
        )
        .is_none());
        let p = build_rst(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            1,
            None,
        )
        .unwrap();
        assert_eq!(p[20 + 13], TCP_RST);
    }
}
