//! DHCPv4 (via `dhcproto`): which MAC address uses which host name and IP address, so that
//! policy groups can name devices by their DHCP host name.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};

/// What one DHCP message tells about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    /// Host name option (12), rendered like a DNS name.
    pub hostname: Option<String>,
    /// The address the client has or is given: `yiaddr` of an ACK, else `ciaddr`.
    pub ip: Option<Ipv4Addr>,
}

/// Parse a DHCP message (UDP 67/68 payload). `None` for anything that is not a DHCP message
/// about an Ethernet client.
pub fn parse(payload: &[u8]) -> Option<Lease> {
    let msg = Message::decode(&mut Decoder::new(payload)).ok()?;
    // Check hlen first: dhcproto's chaddr() slices by it and panics past 16 (found by fuzzing).
    if msg.hlen() != 6 {
        return None;
    }
    let chaddr = msg.chaddr();
    if chaddr.len() < 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&chaddr[..6]);
    let hostname = match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) if !h.is_empty() => Some(super::render_name(h.as_bytes())),
        _ => None,
    };
    let ip = match msg.opts().msg_type() {
        Some(MessageType::Ack) if !msg.yiaddr().is_unspecified() => Some(msg.yiaddr()),
        _ if !msg.ciaddr().is_unspecified() => Some(msg.ciaddr()),
        _ => None,
    };
    Some(Lease { mac, hostname, ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BOOTP header claiming a 85-byte hardware address (fuzzer find): rejected, no panic.
    #[test]
    fn absurd_hardware_length_is_rejected() {
        let mut m = vec![1u8, 1, 85, 0];
        m.resize(236, 0);
        m.extend_from_slice(&[99, 130, 83, 99, 53, 1, 3, 255]);
        assert_eq!(parse(&m), None);
        m[2] = 6;
        m[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        assert_eq!(parse(&m).map(|l| l.mac), Some([2, 0, 0, 0, 0, 1]));
    }
}
