//! What a ClientHello says beyond its SNI, the same whether it came over TLS on TCP
//! ([`super::stream`]) or in a QUIC Initial ([`super::quic`]); both call it, it calls neither.

use crate::decode::tls;

use super::emit::Sinks;
use super::observation::*;

/// ECH/ESNI flags of a ClientHello (TLS or QUIC) and its further SNI names (flagged as an
/// anomaly, as is a UTF-8 name). The wire SNI decides: names are inferred from DNS only when the
/// hello has no SNI, or encrypts it behind an ECH public name (Chromium sends a GREASE ECH
/// extension with the real SNI in every hello).
pub(super) fn hello_flags(o: &mut Observation, ch: &tls::ClientHello, sinks: &Sinks<'_>) {
    o.wire_names.clone_from(&ch.other_snis);
    if ch.sni_repeated || ch.sni_idna {
        o.flags.push(Flag::Anomaly);
    }
    if ch.ech {
        o.flags.push(Flag::Ech);
    }
    if ch.esni {
        o.flags.push(Flag::Esni);
    }
    let outer = match ch.sni.as_deref() {
        None => true,
        Some(sni) => (ch.ech || ch.esni) && sinks.is_ech_public_name(sni),
    };
    if outer {
        sinks.infer(o);
    }
}
