//! Tunnels seen on clinic uplinks and in real captures: IP-in-IP (4in4, 6in4, 4in6, 6in6),
//! GRE (with key/sequence/checksum, transparent Ethernet), VXLAN, Teredo and GTP-U.
//! Given an outer IP payload, return the inner packet to decode.

use etherparse::{EtherType, LaxSlicedPacket};

use super::link;

/// Inner packet of an IP payload with the given protocol number, if it is a tunnel.
pub fn from_ip_payload(proto: u8, payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match proto {
        4 | 41 => link::ip(payload).ok(),
        47 => gre(payload),
        _ => None,
    }
}

/// Inner packet of a UDP payload, if the ports name a tunnel.
pub fn from_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let is = |p: u16| src_port == p || dst_port == p;
    if is(4789) || is(8472) {
        // VXLAN: 8-byte header with the I flag, then Ethernet.
        if payload.len() > 8 && payload[0] & 0x08 != 0 {
            return link::slice(link::LINKTYPE_ETHERNET, &payload[8..]).ok();
        }
    } else if is(3544) {
        return teredo(payload);
    } else if is(2152) {
        return gtpu(payload);
    }
    None
}

fn gre(p: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let flags = super::be16(p, 0)?;
    if flags & 0x0007 != 0 {
        return None; // only GRE version 0
    }
    let proto = super::be16(p, 2)?;
    let mut pos = 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            pos += 4;
        }
    }
    let inner = p.get(pos..)?;
    match proto {
        0x6558 => link::slice(link::LINKTYPE_ETHERNET, inner).ok(),
        et => link::from_ether_type(EtherType(et), inner, 0).ok(),
    }
}

fn teredo(p: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let mut pos = 0;
    // Optional authentication (0x0001) and origin indication (0x0000) headers.
    if p.get(..2)? == [0, 1] {
        let id_len = *p.get(2)? as usize;
        let au_len = *p.get(3)? as usize;
        pos += 4 + id_len + au_len + 9;
    }
    if p.get(pos..pos + 2)? == [0, 0] {
        pos += 8;
    }
    let inner = p.get(pos..)?;
    if inner.first()? >> 4 != 6 {
        return None;
    }
    link::ip(inner).ok()
}

fn gtpu(p: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let flags = *p.first()?;
    if flags >> 5 != 1 || p.get(1)? != &0xff {
        return None; // version 1, G-PDU only
    }
    let mut pos = 8;
    if flags & 0x07 != 0 {
        pos += 4;
        // Extension headers chain: the last byte of the optional field names the next one.
        let mut next = *p.get(pos - 1)?;
        while next != 0 {
            let len = *p.get(pos)? as usize * 4;
            if len == 0 {
                return None;
            }
            next = *p.get(pos + len - 1)?;
            pos += len;
        }
    }
    let inner = p.get(pos..)?;
    match inner.first()? >> 4 {
        4 | 6 => link::ip(inner).ok(),
        _ => None,
    }
}
