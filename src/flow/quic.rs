//! QUIC: walk a client datagram's long-header packets, decrypt the Initials and gather their
//! CRYPTO frames until the ClientHello inside is complete, then hand it back: the sensor holds
//! it until the server answers (a source that may be forged is never acted on).

use crate::decode::{quic, tls};

use super::emit::{Seg, Sinks};
use super::hello::hello_flags;
use super::observation::*;
use super::reassembly::{Insert, SparseBuf};
use super::state::{Flow, QuicConn};

/// What a client Initial gave.
enum Step {
    /// More CRYPTO data needed.
    More,
    /// The flow has nothing more to give (over budget, malformed).
    Done,
    /// The ClientHello, complete.
    Hello(Box<Observation>),
}

/// Client datagram of a QUIC flow: walk coalesced long-header packets, decrypt Initials, gather
/// CRYPTO data until the ClientHello is complete, and return its observation (the caller holds it
/// until the server answers). The flow's keys and buffers are freed once it has given it.
pub(super) fn quic_datagram(
    flow: &mut Flow,
    seg: &Seg,
    payload: &[u8],
    sinks: &mut Sinks<'_>,
) -> Option<Box<Observation>> {
    let mut rest = payload;
    for _ in 0..8 {
        if rest.len() < 7 || rest[0] & 0x80 == 0 {
            return None;
        }
        let hdr = match quic::parse_long_header(rest) {
            Ok(h) => h,
            Err(quic::QuicError::UnknownVersion(_)) => {
                sinks.stats.quic.unsupported_version += 1;
                return None;
            }
            Err(_) => {
                sinks.stats.malformed.quic += 1;
                return None;
            }
        };
        if hdr.ptype == quic::PacketType::Retry {
            return None;
        }
        let plen = hdr.packet_len();
        if hdr.ptype == quic::PacketType::Initial {
            sinks.stats.quic.initials += 1;
            match quic_initial(flow, seg, &rest[..plen], &hdr, sinks) {
                Step::More => {}
                Step::Done => {
                    flow.finish();
                    return None;
                }
                Step::Hello(o) => {
                    flow.quic = None;
                    return Some(o);
                }
            }
        }
        rest = &rest[plen..];
    }
    None
}

/// One client Initial packet.
fn quic_initial(
    flow: &mut Flow,
    seg: &Seg,
    pkt: &[u8],
    hdr: &quic::LongHeader<'_>,
    sinks: &mut Sinks<'_>,
) -> Step {
    // Later client Initials keep the keys of the first DCID; a new DCID after a Retry brings new keys.
    let mut plain = None;
    if let Some(c) = flow.quic.as_ref().filter(|c| c.version == hdr.version) {
        plain = c.keys.decrypt(pkt, hdr).ok();
    }
    if plain.is_none() {
        let Some(keys) = quic::InitialKeys::client(hdr.version, hdr.dcid) else {
            return Step::More;
        };
        match keys.decrypt(pkt, hdr) {
            Ok(p) => {
                plain = Some(p);
                flow.quic = Some(Box::new(QuicConn {
                    dcid: hdr.dcid.to_vec(),
                    version: hdr.version,
                    keys,
                    crypto: SparseBuf::with_budget(tls::MAX_HELLO + 4, sinks.budget),
                    packets: 0,
                }));
            }
            Err(_) => {
                sinks.stats.quic.decrypt_failed += 1;
                return Step::More;
            }
        }
    }
    let (Some(plain), Some(conn)) = (plain, flow.quic.as_mut()) else {
        return Step::More;
    };
    sinks.stats.quic.decrypted += 1;
    let frames = match quic::crypto_frames(&plain) {
        Ok(f) => f,
        Err(_) => {
            sinks.stats.malformed.quic += 1;
            return Step::More;
        }
    };
    if frames.is_empty() {
        return Step::More;
    }
    conn.packets = conn.packets.saturating_add(1);
    for (off, data) in frames {
        match conn.crypto.insert(off as usize, data) {
            Insert::Stored => {}
            Insert::Overflow => sinks.stats.flows.reassembly_overflow += 1,
            Insert::OverBudget => {
                sinks.stats.flows.reassembly_budget_exceeded += 1;
                return Step::Done;
            }
        }
    }
    let hs = conn.crypto.contiguous();
    let Some(need) = tls::handshake_len(hs) else {
        return Step::More;
    };
    if need > tls::MAX_HELLO + 4 {
        sinks.stats.malformed.quic += 1;
        return Step::Done;
    }
    if hs.len() < need {
        return Step::More;
    }
    match tls::parse_handshake(&hs[..need]) {
        Ok(ch) => {
            let mut o = seg.observation(Kind::QuicInitial, true, ch.sni.clone());
            if conn.packets > 1 {
                o.flags.push(Flag::MultiPacket);
            }
            if seg.dp != 443 {
                o.flags.push(Flag::OffPort);
            }
            hello_flags(&mut o, &ch, sinks);
            o.quic = Some(QuicInfo {
                version: quic::version_name(conn.version),
                dcid: conn.dcid.iter().map(|b| format!("{b:02x}")).collect(),
                versions: ch.versions.iter().map(|v| tls::version_name(*v)).collect(),
                alpn: ch.alpn,
            });
            Step::Hello(Box::new(o))
        }
        Err(_) => {
            sinks.stats.malformed.tls += 1;
            Step::Done
        }
    }
}
