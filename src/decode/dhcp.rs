//! DHCPv4: which MAC address uses which host name and IP address, so that policy groups can
//! name devices by their DHCP host name. Only the BOOTP header and options 12 (host name) and
//! 53 (message type) are read, with every length checked.
//!
//! Written here rather than with `dhcproto`: fuzzing showed that crate panics on hostile
//! messages (it slices `chaddr` by the wire's `hlen`, asserts option lengths, and unwraps a
//! classless-route prefix length), and a sensor on the clinic LAN must not.

use std::net::Ipv4Addr;

/// What one DHCP message tells about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    /// Host name option (12), rendered like a DNS name.
    pub hostname: Option<String>,
    /// The address the client has or is given: `yiaddr` of an ACK, else `ciaddr`.
    pub ip: Option<Ipv4Addr>,
}

const BOOTP_LEN: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
const ACK: u8 = 5;

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    let ip = Ipv4Addr::from(a);
    (!ip.is_unspecified()).then_some(ip)
}

/// Parse a DHCP message (UDP 67/68 payload). `None` for anything that is not a DHCP message
/// about an Ethernet client.
pub fn parse(p: &[u8]) -> Option<Lease> {
    if p.len() < BOOTP_LEN + 4 || p[1] != 1 || p[2] != 6 || p[236..240] != COOKIE {
        return None; // not Ethernet (htype 1, hlen 6) or not DHCP
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&p[28..34]);
    let (mut hostname, mut msg_type) = (None, None);
    let mut pos = 240;
    while let Some(&code) = p.get(pos) {
        match code {
            0 => {
                pos += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = *p.get(pos + 1)? as usize;
        let val = p.get(pos + 2..pos + 2 + len)?;
        match code {
            12 if !val.is_empty() => hostname = Some(super::render_name(val)),
            53 if len == 1 => msg_type = Some(val[0]),
            _ => {}
        }
        pos += 2 + len;
    }
    let ip = match msg_type {
        Some(ACK) => ip_at(p, 16).or_else(|| ip_at(p, 12)),
        _ => ip_at(p, 12),
    };
    Some(Lease { mac, hostname, ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(hlen: u8, opts: &[u8]) -> Vec<u8> {
        let mut m = vec![1u8, 1, hlen, 0];
        m.resize(236, 0);
        m[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        m.extend_from_slice(&COOKIE);
        m.extend_from_slice(opts);
        m
    }

    #[test]
    fn request_with_host_name_and_ack() {
        let l = parse(&msg(
            6,
            &[
                53, 1, 3, 12, 11, b'A', b'I', b'-', b'P', b'i', b'l', b'o', b't', b'-', b'0', b'3',
                255,
            ],
        ))
        .unwrap();
        assert_eq!(
            (l.mac, l.hostname.as_deref(), l.ip),
            ([2, 0, 0, 0, 0, 1], Some("ai-pilot-03"), None)
        );
        let mut ack = msg(6, &[53, 1, 5, 255]);
        ack[16..20].copy_from_slice(&[10, 20, 9, 9]);
        assert_eq!(parse(&ack).unwrap().ip, Some(Ipv4Addr::new(10, 20, 9, 9)));
    }

    /// Inputs that made dhcproto panic (fuzzer finds): an 85-byte hardware address, option
    /// lengths that disagree with the option, a truncated option.
    #[test]
    fn hostile_messages_are_rejected_or_read_safely() {
        assert_eq!(parse(&msg(85, &[53, 1, 3, 255])), None);
        assert!(parse(&msg(6, &[91, 1, 7, 53, 2, 5, 0, 255])).is_some_and(|l| l.ip.is_none()));
        assert!(parse(&msg(6, &[121, 5, 40, 1, 2, 3, 4, 255])).is_some());
        assert_eq!(parse(&msg(6, &[12, 200, b'x'])), None);
        for n in 0..300 {
            let _ = parse(&vec![0xff; n]);
        }
    }
}
