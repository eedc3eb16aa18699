//! Blind spots: traffic the gateway cannot name. VPN handshakes are found in `udp` (by
//! content, see `decode::vpn`), iCloud Private Relay and ECH without DNS where observations are
//! emitted (`emit`); each sighting is counted in `Stats::blind` and waits, one per client, kind
//! and minute, for the pipeline to take it ([`Sensor::take_blind_spots`]).

use crate::decode::vpn::{Handshake, Vpn};

use super::emit::Seg;
use super::observation::*;
use super::sensor::Sensor;

/// The ingress names of Apple iCloud Private Relay (Apple's guidance to networks that must
/// see their traffic: block these names and the device falls back to direct connections).
pub const PRIVATE_RELAY_NAMES: [&str; 3] = [
    "mask.icloud.com",
    "mask-h2.icloud.com",
    "mask-api.icloud.com",
];

/// Is `name` an iCloud Private Relay ingress name?
pub fn is_private_relay(name: &str) -> bool {
    PRIVATE_RELAY_NAMES
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name.trim_end_matches('.')))
}

/// What a VPN handshake shows: its kind, and its initiator as the client.
pub(super) fn vpn_spot(h: Handshake, seg: &Seg) -> BlindSpot {
    let src = Endpoint {
        ip: seg.cx.src,
        port: seg.sp,
        mac: seg.cx.src_mac,
        hostname: None,
    };
    let dst = Endpoint {
        ip: seg.cx.dst,
        port: seg.dp,
        mac: seg.cx.dst_mac,
        hostname: None,
    };
    let (client, server) = if h.from_initiator {
        (src, dst)
    } else {
        (dst, src)
    };
    BlindSpot {
        ts: seg.cx.ts,
        kind: match h.vpn {
            Vpn::WireGuard => Blind::Wireguard,
            Vpn::OpenVpn => Blind::Openvpn,
            Vpn::Ike => Blind::Ike,
        },
        transport: seg.transport,
        client,
        server,
        frame: seg.cx.frame,
    }
}

/// The blind spot an observation shows, if any: a hello to (or a lookup of) an iCloud Private
/// Relay name, or an ECH hello whose wire shows no name (none, or only an ECH public name) and
/// for which DNS gave none either. A Chromium hello with a real SNI and GREASE ECH is named.
pub(super) fn of_observation(o: &Observation, is_public: impl Fn(&str) -> bool) -> Option<Blind> {
    let hello = matches!(o.kind, Kind::TlsClientHello | Kind::QuicInitial);
    if (hello || o.kind == Kind::DnsQuery) && o.name.as_deref().is_some_and(is_private_relay) {
        return Some(Blind::PrivateRelay);
    }
    let unnamed = o.name.as_deref().is_none_or(is_public);
    (hello && o.flags.contains(&Flag::Ech) && unnamed && o.inferred_names.is_empty())
        .then_some(Blind::EchNoDns)
}

impl Sensor {
    /// The blind-spot sightings waiting since the last call (one per client, kind and minute of
    /// capture time), oldest first.
    pub fn take_blind_spots(&mut self) -> Vec<BlindSpot> {
        std::mem::take(&mut self.stats.blind_pending)
    }
}
