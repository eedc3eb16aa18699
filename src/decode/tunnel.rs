//! Tunnels: IP-in-IP (4in4, 6in4, 4in6, 6in6), GRE (incl. transparent Ethernet), VXLAN, Teredo
//! and GTP-U; the inner packet to decode, each tunnel taking a step of the frame's [`Nesting`].

use etherparse::{EtherType, LaxSlicedPacket};

use super::link::{self, LinkError};
use super::{Nesting, TooDeep};

/// What a tunnel decode gives: the inner packet, nothing (not a tunnel, or an inner packet that
/// does not decode), or [`TooDeep`] when the frame's nesting budget is spent.
pub type Inner<'a> = Result<Option<LaxSlicedPacket<'a>>, TooDeep>;

fn inner(r: Result<LaxSlicedPacket<'_>, LinkError>) -> Inner<'_> {
    match r {
        Ok(p) => Ok(Some(p)),
        Err(LinkError::TooDeep) => Err(TooDeep),
        Err(_) => Ok(None),
    }
}

/// Inner packet of an IP payload with the given protocol number, if it is a tunnel.
pub fn from_ip_payload<'a>(proto: u8, payload: &'a [u8], nest: &mut Nesting) -> Inner<'a> {
    match proto {
        4 | 41 => {
            nest.enter()?;
            inner(link::ip(payload))
        }
        47 => gre(payload, nest),
        _ => Ok(None),
    }
}

/// Inner packet of a UDP payload, if the ports name a tunnel.
pub fn from_udp<'a>(
    src_port: u16,
    dst_port: u16,
    payload: &'a [u8],
    nest: &mut Nesting,
) -> Inner<'a> {
    let is = |p: u16| src_port == p || dst_port == p;
    let ip = if is(4789) || is(8472) {
        // VXLAN: 8-byte header with the I flag, then Ethernet.
        if payload.len() > 8 && payload[0] & 0x08 != 0 {
            nest.enter()?;
            let eth = &payload[8..];
            return inner(link::slice_nested(link::LINKTYPE_ETHERNET, eth, nest));
        }
        None
    } else if is(3544) {
        teredo(payload)
    } else if is(2152) {
        gtpu(payload)
    } else {
        None
    };
    match ip {
        Some(ip) => {
            nest.enter()?;
            inner(link::ip(ip))
        }
        None => Ok(None),
    }
}

fn gre<'a>(p: &'a [u8], nest: &mut Nesting) -> Inner<'a> {
    let (Some(flags), Some(proto)) = (super::be16(p, 0), super::be16(p, 2)) else {
        return Ok(None);
    };
    if flags & 0x0007 != 0 {
        return Ok(None); // only GRE version 0
    }
    let mut pos = 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            pos += 4;
        }
    }
    let Some(payload) = p.get(pos..) else {
        return Ok(None);
    };
    nest.enter()?;
    inner(match proto {
        0x6558 => link::slice_nested(link::LINKTYPE_ETHERNET, payload, nest),
        et => link::from_ether_type(EtherType(et), payload, nest),
    })
}

/// Teredo: the inner IPv6 packet after the optional authentication and origin headers.
fn teredo(p: &[u8]) -> Option<&[u8]> {
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
    let ip = p.get(pos..)?;
    (ip.first()? >> 4 == 6).then_some(ip)
}

/// GTP-U: the inner IP packet of a G-PDU, after the extension header chain.
fn gtpu(p: &[u8]) -> Option<&[u8]> {
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
    let ip = p.get(pos..)?;
    matches!(ip.first()? >> 4, 4 | 6).then_some(ip)
}
