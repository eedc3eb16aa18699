//! Link layers to an `etherparse` lax slice: Ethernet II (802.1Q/QinQ, PPPoE, MPLS, pseudowire,
//! within the frame's nesting budget), BSD loopback, raw IP, Linux SLL/SLL2 and NFLOG.

use etherparse::{EtherType, LaxSlicedPacket};

use super::{Nesting, TooDeep, MAX_MPLS_LABELS};

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_NFLOG: u32 = 239;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The link type is not one shadowgate decodes.
    Unsupported(u32),
    /// The frame is too short or inconsistent for its link type.
    Malformed,
    /// A frame that carries no IP (ARP, LLDP, STP, ...): not an error, nothing to see.
    NotIp,
    /// Nested past the budget ([`super::MAX_NESTING`], [`MAX_MPLS_LABELS`]): skipped, counted.
    TooDeep,
}

impl From<TooDeep> for LinkError {
    fn from(_: TooDeep) -> Self {
        LinkError::TooDeep
    }
}

/// Decode a frame of the given link type down to its IP layer.
pub fn slice(linktype: u32, data: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    slice_nested(linktype, data, &mut Nesting::default())
}

/// [`slice`] within a frame's nesting budget: every encapsulation unwrapped is counted in `nest`.
pub fn slice_nested<'a>(
    linktype: u32,
    data: &'a [u8],
    nest: &mut Nesting,
) -> Result<LaxSlicedPacket<'a>, LinkError> {
    match linktype {
        LINKTYPE_ETHERNET => {
            let p = LaxSlicedPacket::from_ethernet(data).map_err(|_| LinkError::Malformed)?;
            if p.net.is_some() {
                return Ok(p);
            }
            match p.ether_payload() {
                Some(pl) => from_ether_type(pl.ether_type, pl.payload, nest),
                None => Err(LinkError::Malformed),
            }
        }
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => ip(data),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let fam = data.get(..4).ok_or(LinkError::Malformed)?;
            // The family is in the capturing host's byte order: accept either.
            let f = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]])
                .min(u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]));
            match f {
                2 | 24 | 28 | 30 => ip(&data[4..]),
                _ => Err(LinkError::NotIp),
            }
        }
        LINKTYPE_LINUX_SLL => {
            // 16-byte header, protocol last. (etherparse's SLL slice rejects some ARPHRD types,
            // e.g. loopback captures, so only the protocol field is read here.)
            let hdr = data.get(..16).ok_or(LinkError::Malformed)?;
            let proto = u16::from_be_bytes([hdr[14], hdr[15]]);
            from_ether_type(EtherType(proto), &data[16..], nest)
        }
        LINKTYPE_LINUX_SLL2 => {
            let hdr = data.get(..20).ok_or(LinkError::Malformed)?;
            let proto = u16::from_be_bytes([hdr[0], hdr[1]]);
            from_ether_type(EtherType(proto), &data[20..], nest)
        }
        LINKTYPE_NFLOG => nflog(data),
        other => Err(LinkError::Unsupported(other)),
    }
}

/// Decode from an IP header (version taken from the first nibble).
pub fn ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    LaxSlicedPacket::from_ip(data).map_err(|_| LinkError::Malformed)
}

const PPPOE_SESSION: u16 = 0x8864;
const MPLS_UNICAST: u16 = 0x8847;
const MPLS_MULTICAST: u16 = 0x8848;

/// Decode a payload of the given EtherType, following VLAN tags, PPPoE, MPLS and pseudowires;
/// each of them takes one step of the frame's nesting budget.
pub fn from_ether_type<'a>(
    et: EtherType,
    payload: &'a [u8],
    nest: &mut Nesting,
) -> Result<LaxSlicedPacket<'a>, LinkError> {
    match et.0 {
        0x0800 | 0x86dd | 0x8100 | 0x88a8 | 0x9100 => {
            let p = LaxSlicedPacket::from_ether_type(et, payload);
            if p.net.is_some() {
                return Ok(p);
            }
            match p.ether_payload() {
                Some(pl) if pl.ether_type != et => {
                    nest.enter()?;
                    from_ether_type(pl.ether_type, pl.payload, nest)
                }
                _ => Err(LinkError::Malformed),
            }
        }
        PPPOE_SESSION => {
            nest.enter()?;
            // PPPoE header (6 bytes) then the PPP protocol number.
            let proto = super::be16(payload, 6).ok_or(LinkError::Malformed)?;
            match proto {
                0x0021 | 0x0057 => ip(&payload[8..]),
                _ => Err(LinkError::NotIp),
            }
        }
        MPLS_UNICAST | MPLS_MULTICAST => {
            nest.enter()?;
            let mut pos = 0;
            for label in 0.. {
                if label == MAX_MPLS_LABELS {
                    return Err(LinkError::TooDeep);
                }
                let l = payload.get(pos..pos + 4).ok_or(LinkError::Malformed)?;
                pos += 4;
                if l[2] & 1 == 1 {
                    break;
                }
            }
            match payload.get(pos).map(|b| b >> 4) {
                Some(4) | Some(6) => ip(&payload[pos..]),
                // Pseudowire with a control word, then Ethernet.
                Some(0) => {
                    let inner = payload.get(pos + 4..).ok_or(LinkError::Malformed)?;
                    nest.enter()?;
                    slice_nested(LINKTYPE_ETHERNET, inner, nest)
                }
                _ => Err(LinkError::Malformed),
            }
        }
        _ => Err(LinkError::NotIp),
    }
}

/// NFLOG: 4-byte header then TLVs (host byte order lengths, 4-byte aligned); type 9 is the packet.
fn nflog(data: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    let mut pos = 4;
    while pos + 4 <= data.len() {
        let len = u16::from_le_bytes([data[pos], data[pos + 1]]) as usize;
        let ty = u16::from_le_bytes([data[pos + 2], data[pos + 3]]);
        if len < 4 {
            return Err(LinkError::Malformed);
        }
        if ty == 9 {
            let payload = data.get(pos + 4..pos + len).ok_or(LinkError::Malformed)?;
            return ip(payload);
        }
        pos += (len + 3) & !3;
    }
    Err(LinkError::NotIp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_ipv4() -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    #[test]
    fn raw_null_sll2_and_pppoe() {
        let ip4 = udp_ipv4();
        assert!(slice(LINKTYPE_RAW, &ip4).unwrap().transport.is_some());
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip4);
        assert!(slice(LINKTYPE_NULL, &null).unwrap().transport.is_some());
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip4);
        assert!(slice(LINKTYPE_LINUX_SLL2, &sll2)
            .unwrap()
            .transport
            .is_some());
        let mut eth = vec![0; 12];
        eth.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 1, 0, 0, 0x00, 0x21]);
        eth.extend_from_slice(&ip4);
        assert!(slice(LINKTYPE_ETHERNET, &eth).unwrap().transport.is_some());
    }

    #[test]
    fn garbage_never_panics() {
        for lt in [0, 1, 101, 113, 239, 276, 999] {
            for n in 0..64 {
                let _ = slice(lt, &vec![0x45; n]);
                let _ = slice(lt, &vec![0xff; n]);
            }
        }
        assert_eq!(slice(999, &[]).unwrap_err(), LinkError::Unsupported(999));
    }
}
