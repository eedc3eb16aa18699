//! QUIC: walk a client datagram's long-header packets, decrypt the Initials and gather their
//! CRYPTO frames until the ClientHello inside is complete, then hand it back: the sensor holds
//! it until the server answers (a source that may be forged is never acted on). Every version
//! of the hello on a 4-tuple (a fake Initial for another name first) is judged, up to
//! [`MAX_HELLOS`].

use crate::decode::{quic, tls};

use super::desync::WATCH_NS;
use super::emit::{Seg, Sinks};
use super::hello::hello_flags;
use super::observation::*;
use super::reassembly::{Cmp, Insert, SparseBuf};
use super::state::{Flow, QuicConn};

/// What a client Initial gave.
enum Step {
    /// More CRYPTO data needed, or nothing new (a retransmission, an ACK).
    More,
    /// The flow has nothing more to give (over budget, past its versions).
    Done,
    /// A ClientHello, complete.
    Hello(Box<Observation>),
}

/// ClientHellos judged on one 4-tuple at most; past it the flow is given up (what was decided
/// stands) and counted.
pub(super) const MAX_HELLOS: u8 = 8;

/// Client datagram of a QUIC flow: walk coalesced long-header packets, decrypt Initials, gather
/// CRYPTO data until a ClientHello is complete, and return its observation (the caller holds it
/// until the server answers). The flow keeps the hello's bytes for the watch window: a later
/// Initial with a new DCID or different CRYPTO bytes is another version, judged too.
pub(super) fn quic_datagram(
    flow: &mut Flow,
    seg: &Seg,
    payload: &[u8],
    sinks: &mut Sinks<'_>,
) -> Option<Box<Observation>> {
    if flow
        .quic
        .as_ref()
        .is_some_and(|c| c.until != 0 && seg.cx.ts > c.until)
    {
        // The watch is over: only a new connection on the 4-tuple is news.
        flow.finish();
        if !new_connection(flow, payload, sinks) {
            return None;
        }
        flow.restart_quic();
    }
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
                Step::Hello(o) => return Some(o),
            }
        }
        rest = &rest[plen..];
    }
    None
}

/// A hash of a Destination Connection ID (never 0, which means none).
pub(super) fn dcid_hash(dcid: &[u8]) -> u64 {
    // FNV-1a: a DCID is at most 20 bytes, and a collision only costs one missed re-judging.
    let h = dcid.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    h.max(1)
}

/// A client datagram on a QUIC 4-tuple that is done (its hello judged and its watch over, or
/// given up on): does it open a new connection? A client may start another connection from the
/// same port to the same server address (the kernel hands the port out again; a CDN address
/// serves many names), and one that did so on purpose after a connection to an allowed name
/// would otherwise pass unjudged. A new connection is an Initial under a Destination Connection
/// ID the flow has not seen that decrypts with that DCID's keys (RFC 9001 §5.2); a late
/// Initial of the old connection (addressed to the server's chosen ID, under the old keys) does
/// not. Each new DCID is tried once.
pub(super) fn new_connection(flow: &mut Flow, payload: &[u8], sinks: &mut Sinks<'_>) -> bool {
    if flow.quic_dcid == 0 || payload.len() < 7 || payload[0] & 0x80 == 0 {
        return false;
    }
    let Ok(hdr) = quic::parse_long_header(payload) else {
        return false;
    };
    if hdr.ptype != quic::PacketType::Initial || hdr.dcid.len() < 8 {
        return false;
    }
    let h = dcid_hash(hdr.dcid);
    if h == flow.quic_dcid {
        return false;
    }
    flow.quic_dcid = h;
    let Some(keys) = quic::InitialKeys::client(hdr.version, hdr.dcid) else {
        return false;
    };
    if keys.decrypt(&payload[..hdr.packet_len()], &hdr).is_err() {
        return false;
    }
    sinks.stats.quic.reused_tuple += 1;
    true
}

/// Do CRYPTO frames agree with the bytes a version holds (a retransmission, or new offsets)?
fn agrees(crypto: &SparseBuf, frames: &[(u64, &[u8])]) -> bool {
    frames.iter().all(|(off, data)| {
        usize::try_from(*off).is_ok_and(|o| crypto.compare(o, data) != Cmp::Conflict)
    })
}

/// One client Initial packet.
fn quic_initial(
    flow: &mut Flow,
    seg: &Seg,
    pkt: &[u8],
    hdr: &quic::LongHeader<'_>,
    sinks: &mut Sinks<'_>,
) -> Step {
    // The connection's keys first (after the server's first answer the client addresses it by
    // the server's connection ID under the same keys); else the keys of the packet's own DCID:
    // a first Initial, one after a Retry, or another version of the hello.
    let mut plain = None;
    let mut fresh = None;
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
                fresh = Some(keys);
            }
            Err(_) => {
                sinks.stats.quic.decrypt_failed += 1;
                return Step::More;
            }
        }
    }
    let Some(plain) = plain else {
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
    let new_conn = |keys| {
        Box::new(QuicConn {
            dcid: hdr.dcid.to_vec(),
            version: hdr.version,
            keys,
            crypto: SparseBuf::with_budget(tls::MAX_HELLO + 4, sinks.budget),
            packets: 0,
            judged: false,
            hellos: 0,
            until: 0,
            first: None,
            visit: false,
        })
    };
    if fresh.is_some() {
        flow.quic_dcid = dcid_hash(hdr.dcid);
    }
    match (flow.quic.as_mut(), fresh) {
        (None, Some(keys)) => flow.quic = Some(new_conn(keys)),
        (Some(c), fresh) => {
            let same = !frames.is_empty() && agrees(&c.crypto, &frames);
            if c.judged && (frames.is_empty() || same) {
                // The judged hello again (a retransmission, or under new keys after a Retry),
                // or an Initial without CRYPTO data: nothing new.
                if let Some(keys) = fresh {
                    c.keys = keys;
                    c.dcid = hdr.dcid.to_vec();
                    c.version = hdr.version;
                }
                return Step::More;
            }
            if fresh.is_some() || !same {
                if frames.is_empty() {
                    return Step::More;
                }
                // Another version: a new DCID, or different CRYPTO bytes.
                if c.hellos >= MAX_HELLOS {
                    sinks.stats.flows.desync_versions_full += 1;
                    return Step::Done;
                }
                // A new DCID under the same version with another hello is a new connection
                // (after a Retry the client sends the same hello; after a version negotiation,
                // another version).
                let visit = fresh.is_some() && hdr.version == c.version && c.judged;
                let (hellos, until, first) = (c.hellos, c.until, c.first.take());
                let dcid = if fresh.is_some() {
                    hdr.dcid.to_vec()
                } else {
                    c.dcid.clone()
                };
                let keys = match fresh {
                    Some(k) => k,
                    None => match quic::InitialKeys::client(c.version, &c.dcid) {
                        Some(k) => k,
                        None => return Step::More,
                    },
                };
                let mut n = new_conn(keys);
                n.dcid = dcid;
                n.hellos = hellos;
                n.until = until;
                n.first = first;
                n.visit = visit;
                flow.quic = Some(n);
            }
        }
        (None, None) => return Step::More,
    }
    let Some(conn) = flow.quic.as_mut() else {
        return Step::More;
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
        judged(conn, seg);
        return Step::More;
    }
    if hs.len() < need {
        return Step::More;
    }
    let parsed = tls::parse_handshake(&hs[..need]);
    judged(conn, seg);
    match parsed {
        Ok(ch) => {
            // What the policy decides on: the names and whether they are hidden.
            let names = (ch.sni.clone(), ch.other_snis.clone(), ch.ech || ch.esni);
            let later = match &conn.first {
                None => {
                    conn.first = Some(Box::new(names));
                    false
                }
                // Another version with the same names on the same connection (a version
                // negotiation, or new bytes under the same DCID): decided already.
                Some(f) if **f == names && !conn.visit => return Step::More,
                // A new connection to the same names: a new visit, not a desync.
                Some(f) if **f == names => {
                    sinks.stats.quic.reused_tuple += 1;
                    false
                }
                Some(_) => true,
            };
            let mut o = seg.observation(Kind::QuicInitial, true, ch.sni.clone());
            if conn.packets > 1 {
                o.flags.push(Flag::MultiPacket);
            }
            if seg.dp != 443 {
                o.flags.push(Flag::OffPort);
            }
            hello_flags(&mut o, &ch, sinks);
            if later {
                // Another name on the same 4-tuple: a fake Initial, then the real one.
                sinks.stats.flows.desync += 1;
                o.flags.push(Flag::Desync);
                if !o.flags.contains(&Flag::Anomaly) {
                    o.flags.push(Flag::Anomaly);
                }
            }
            o.quic = Some(QuicInfo {
                version: quic::version_name(conn.version),
                dcid: conn.dcid.iter().map(|b| format!("{b:02x}")).collect(),
                versions: ch.versions.iter().map(|v| tls::version_name(*v)).collect(),
                alpn: ch.alpn,
            });
            Step::Hello(Box::new(o))
        }
        Err(_) => {
            // A malformed hello (a fake, perhaps): judged, and the flow still watched.
            sinks.stats.malformed.tls += 1;
            Step::More
        }
    }
}

/// A version's hello was judged: count it, and start the watch window at the first.
fn judged(conn: &mut QuicConn, seg: &Seg) {
    conn.judged = true;
    conn.hellos = conn.hellos.saturating_add(1);
    if conn.until == 0 {
        conn.until = seg.cx.ts.saturating_add(WATCH_NS).max(1);
    }
}
