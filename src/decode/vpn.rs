//! VPN handshakes over UDP, recognised by content (a view over the datagram's bytes; nothing is
//! decrypted, and every accessor checks its length): WireGuard handshake initiation and
//! response, OpenVPN's client hard reset (plain, `tls-auth` and `tls-crypt`), and IKEv1/IKEv2
//! headers on UDP 500 or 4500 (after the non-ESP marker). The tests are strict: a false "VPN"
//! on random UDP is a false alarm in the weekly report.

/// A VPN protocol whose handshake a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vpn {
    WireGuard,
    OpenVpn,
    Ike,
}

/// A handshake: its protocol, and whether the datagram's sender is the side that starts the
/// tunnel (the initiator: the client) or the side that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub vpn: Vpn,
    pub from_initiator: bool,
}

/// UDP port of IKE (ISAKMP).
pub const IKE_PORT: u16 = 500;
/// UDP port of IKE with NAT traversal (a four-byte zero non-ESP marker precedes the header).
pub const IKE_NATT_PORT: u16 = 4500;

/// The handshake a UDP payload from port `sp` to port `dp` carries, if it is one.
pub fn classify(sp: u16, dp: u16, p: &[u8]) -> Option<Handshake> {
    if let Some(from_initiator) = wireguard(p) {
        return Some(Handshake {
            vpn: Vpn::WireGuard,
            from_initiator,
        });
    }
    if openvpn_client_reset(p) {
        return Some(Handshake {
            vpn: Vpn::OpenVpn,
            from_initiator: true,
        });
    }
    ike(sp, dp, p).map(|from_initiator| Handshake {
        vpn: Vpn::Ike,
        from_initiator,
    })
}

fn byte(p: &[u8], i: usize) -> Option<u8> {
    p.get(i).copied()
}

fn be32(p: &[u8], i: usize) -> Option<u32> {
    let b = p.get(i..i.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le32(p: &[u8], i: usize) -> Option<u32> {
    let b = p.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// WireGuard message lengths (the whitepaper, §5.4): handshake initiation and response.
pub const WG_INITIATION_LEN: usize = 148;
pub const WG_RESPONSE_LEN: usize = 92;

/// A WireGuard handshake: `Some(true)` for an initiation (type 1, exactly 148 bytes), `Some(false)`
/// for a response (type 2, exactly 92 bytes); both with three zero reserved bytes and a non-zero
/// sender index (a response also a non-zero receiver index). Cookie replies and transport data
/// are not handshakes.
pub fn wireguard(p: &[u8]) -> Option<bool> {
    let ty = le32(p, 0)?;
    let sender = le32(p, 4)?;
    match (ty, p.len()) {
        (1, WG_INITIATION_LEN) if sender != 0 => Some(true),
        (2, WG_RESPONSE_LEN) if sender != 0 && le32(p, 8)? != 0 => Some(false),
        _ => None,
    }
}

/// OpenVPN opcodes (high five bits of the first byte) of a client's hard reset.
const P_CONTROL_HARD_RESET_CLIENT_V1: u8 = 1;
const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
const P_CONTROL_HARD_RESET_CLIENT_V3: u8 = 10;

/// 2010-01-01 and 2100-01-01 (Unix seconds): `net_time` of a `tls-auth`/`tls-crypt` packet is
/// the sender's clock.
const TIME_MIN: u32 = 1_262_304_000;
const TIME_MAX: u32 = 4_102_444_800;

/// An OpenVPN client's first packet over UDP (its hard reset, key id 0): a non-zero session id,
/// then either (plain) an empty ACK array and message packet id 0, 14 bytes in all; or
/// (`tls-auth`, HMAC-SHA1 or -SHA256) the HMAC, a replay packet id below 256 and a plausible
/// `net_time`, an empty ACK array and message packet id 0 (42 or 54 bytes); or (`tls-crypt`,
/// v2 and v3) a replay packet id below 256 and a plausible `net_time` after the session id,
/// then at least a 32-byte tag and the encrypted rest.
pub fn openvpn_client_reset(p: &[u8]) -> bool {
    let Some(first) = byte(p, 0) else {
        return false;
    };
    let (op, key_id) = (first >> 3, first & 7);
    if key_id != 0
        || !matches!(
            op,
            P_CONTROL_HARD_RESET_CLIENT_V1
                | P_CONTROL_HARD_RESET_CLIENT_V2
                | P_CONTROL_HARD_RESET_CLIENT_V3
        )
    {
        return false;
    }
    let sid = p.get(1..9).is_some_and(|s| s.iter().any(|&b| b != 0));
    if !sid {
        return false;
    }
    // Plain: session id, ACK array length 0, message packet id 0.
    if p.len() == 14 {
        return byte(p, 9) == Some(0) && be32(p, 10) == Some(0);
    }
    let replay = |at: usize| {
        be32(p, at).is_some_and(|id| (1..256).contains(&id))
            && be32(p, at + 4).is_some_and(|t| (TIME_MIN..TIME_MAX).contains(&t))
    };
    // tls-auth: HMAC (20 or 32 bytes), replay packet id and time, ACK array 0, packet id 0.
    for hmac in [20usize, 32] {
        let at = 9 + hmac;
        if p.len() == at + 13 {
            return replay(at) && byte(p, at + 8) == Some(0) && be32(p, at + 9) == Some(0);
        }
    }
    // tls-crypt: replay packet id and time in the clear, a 32-byte tag, then ciphertext.
    p.len() >= 9 + 8 + 32 + 8 && replay(9)
}

/// The IKE header (RFC 7296 §3.1, RFC 2408 §3.1): 28 bytes.
pub const IKE_HEADER_LEN: usize = 28;

/// An IKE message on UDP 500 (or 4500 after the four zero bytes of the non-ESP marker): a
/// non-zero initiator SPI; IKEv2 (version 0x20) with an exchange type of IKE_SA_INIT, IKE_AUTH,
/// CREATE_CHILD_SA, INFORMATIONAL or IKE_INTERMEDIATE, a known next payload, only the I, V and
/// R flags, and a zero responder SPI and message id for IKE_SA_INIT's request; or IKEv1
/// (version 0x10) with a known exchange and next payload and only its three flags; in both the
/// header's length equal to the message's. `Some(true)` when the initiator sent it.
pub fn ike(sp: u16, dp: u16, p: &[u8]) -> Option<bool> {
    let m = if sp == IKE_NATT_PORT || dp == IKE_NATT_PORT {
        // NAT traversal: ESP shares the port; IKE follows a zero marker.
        if be32(p, 0)? != 0 {
            return None;
        }
        p.get(4..)?
    } else if sp == IKE_PORT || dp == IKE_PORT {
        p
    } else {
        return None;
    };
    if m.len() < IKE_HEADER_LEN || be32(m, 24)? as usize != m.len() {
        return None;
    }
    let spi_i = m.get(0..8)?;
    if spi_i.iter().all(|&b| b == 0) {
        return None;
    }
    let spi_r_zero = m.get(8..16)?.iter().all(|&b| b == 0);
    let (next, version, exchange, flags) = (byte(m, 16)?, byte(m, 17)?, byte(m, 18)?, byte(m, 19)?);
    let message_id = be32(m, 20)?;
    match version {
        0x20 => {
            let next_ok = next == 0 || (33..=48).contains(&next) || next == 53;
            let exchange_ok = matches!(exchange, 34..=37 | 43);
            if !next_ok || !exchange_ok || flags & !0x38 != 0 {
                return None;
            }
            let response = flags & 0x20 != 0;
            // IKE_SA_INIT: message id 0; its request knows no responder SPI yet.
            if exchange == 34 && (message_id != 0 || (!response && !spi_r_zero)) {
                return None;
            }
            Some(flags & 0x08 != 0)
        }
        0x10 => {
            let next_ok = next <= 13 || matches!(next, 20 | 21 | 130 | 131);
            let exchange_ok = matches!(exchange, 1 | 2 | 4 | 5 | 32 | 33);
            if !next_ok || !exchange_ok || flags & !0x07 != 0 {
                return None;
            }
            // IKEv1 has no initiator flag: a message with no responder SPI is the first one.
            Some(spi_r_zero)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WireGuard handshake initiation: type 1, reserved zeros, sender index, then 140 bytes
    /// of ephemeral key, encrypted static key and timestamp, and the two MACs.
    pub fn wg_initiation() -> Vec<u8> {
        let mut p = vec![1, 0, 0, 0, 0x2a, 0x7f, 0x01, 0x9c];
        p.extend((0..140).map(|i| (i * 37 + 11) as u8));
        p
    }

    fn wg_response() -> Vec<u8> {
        let mut p = vec![2, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x2a, 0x7f, 0x01, 0x9c];
        p.extend((0..80).map(|i| (i * 13 + 5) as u8));
        p
    }

    /// An IKEv2 IKE_SA_INIT request header (28 bytes) with `body` after it.
    fn ike_sa_init(body: usize) -> Vec<u8> {
        let mut p = vec![0x8a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71];
        p.extend([0; 8]); // responder SPI: not known yet
        p.extend([33, 0x20, 34, 0x08]); // SA, IKEv2, IKE_SA_INIT, Initiator
        p.extend([0; 4]); // message id
        p.extend(((28 + body) as u32).to_be_bytes());
        p.extend(std::iter::repeat_n(0xab, body));
        p
    }

    /// Deterministic "random" bytes.
    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn wireguard_initiation_and_response() {
        let i = wg_initiation();
        assert_eq!(i.len(), 148);
        assert_eq!(wireguard(&i), Some(true));
        assert_eq!(
            classify(51820, 51820, &i),
            Some(Handshake {
                vpn: Vpn::WireGuard,
                from_initiator: true
            })
        );
        assert_eq!(wireguard(&wg_response()), Some(false));
        // Any port: by content.
        assert_eq!(
            classify(40000, 443, &i).map(|h| h.vpn),
            Some(Vpn::WireGuard)
        );
    }

    #[test]
    fn not_wireguard() {
        let i = wg_initiation();
        // Wrong lengths.
        assert_eq!(wireguard(&i[..147]), None);
        let mut long = i.clone();
        long.push(0);
        assert_eq!(wireguard(&long), None);
        // Reserved bytes set, zero sender, other types (cookie reply, transport data).
        let mut r = i.clone();
        r[2] = 1;
        assert_eq!(wireguard(&r), None);
        let mut z = i.clone();
        z[4..8].fill(0);
        assert_eq!(wireguard(&z), None);
        let mut cookie = vec![3, 0, 0, 0, 1, 2, 3, 4];
        cookie.resize(64, 9);
        assert_eq!(wireguard(&cookie), None);
        let mut data = vec![4, 0, 0, 0, 1, 2, 3, 4];
        data.resize(148, 9);
        assert_eq!(wireguard(&data), None);
        assert_eq!(wireguard(&[]), None);
        assert_eq!(wireguard(&[1, 0, 0]), None);
    }

    #[test]
    fn openvpn_client_resets() {
        // Plain: P_CONTROL_HARD_RESET_CLIENT_V2 (0x38), session id, ACK 0, packet id 0.
        let mut plain = vec![0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0];
        plain.extend([0; 4]);
        assert!(openvpn_client_reset(&plain));
        assert_eq!(
            classify(50000, 1194, &plain).map(|h| h.vpn),
            Some(Vpn::OpenVpn)
        );
        // tls-auth with HMAC-SHA1: op, sid, hmac 20, packet id 1, time, ACK 0, packet id 0.
        let mut auth = vec![0x38, 9, 8, 7, 6, 5, 4, 3, 2];
        auth.extend(noise(20, 3));
        auth.extend(1u32.to_be_bytes());
        auth.extend(1_764_633_600u32.to_be_bytes());
        auth.push(0);
        auth.extend([0; 4]);
        assert_eq!(auth.len(), 42);
        assert!(openvpn_client_reset(&auth));
        // tls-crypt v2 (opcode 10): packet id, time, tag, ciphertext and wrapped key.
        let mut crypt = vec![0x50, 9, 8, 7, 6, 5, 4, 3, 2];
        crypt.extend(1u32.to_be_bytes());
        crypt.extend(1_764_633_600u32.to_be_bytes());
        crypt.extend(noise(300, 4));
        assert!(openvpn_client_reset(&crypt));
    }

    #[test]
    fn not_openvpn() {
        let mut plain = vec![0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0];
        plain.extend([0; 4]);
        // Another key id, another opcode (data, server reset), zero session, ACKs, lengths.
        for (i, v) in [(0, 0x39), (0, 0x40), (0, 0x48), (9, 1), (13, 1)] {
            let mut p = plain.clone();
            p[i] = v;
            assert!(!openvpn_client_reset(&p), "{p:?}");
        }
        let mut z = plain.clone();
        z[1..9].fill(0);
        assert!(!openvpn_client_reset(&z));
        assert!(!openvpn_client_reset(&plain[..13]));
        // tls-crypt-sized with an implausible time or a large packet id.
        let mut crypt = vec![0x50, 9, 8, 7, 6, 5, 4, 3, 2];
        crypt.extend(70_000u32.to_be_bytes());
        crypt.extend(1_764_633_600u32.to_be_bytes());
        crypt.extend(noise(100, 5));
        assert!(!openvpn_client_reset(&crypt));
        crypt[9..13].copy_from_slice(&1u32.to_be_bytes());
        crypt[13..17].copy_from_slice(&7u32.to_be_bytes());
        assert!(!openvpn_client_reset(&crypt));
    }

    #[test]
    fn ikev2_sa_init_on_500_and_4500() {
        let m = ike_sa_init(200);
        assert_eq!(m.len(), 228);
        assert_eq!(ike(500, 500, &m), Some(true));
        let mut natt = vec![0, 0, 0, 0];
        natt.extend(&m);
        assert_eq!(ike(4500, 4500, &natt), Some(true));
        assert_eq!(classify(4500, 4500, &natt).map(|h| h.vpn), Some(Vpn::Ike));
        // The responder's answer: R flag, a responder SPI.
        let mut r = m.clone();
        r[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        r[19] = 0x20;
        assert_eq!(ike(500, 500, &r), Some(false));
        // IKEv1 main mode, first message.
        let mut v1 = m.clone();
        v1[16] = 1; // SA
        v1[17] = 0x10;
        v1[18] = 2; // identity protection
        v1[19] = 0;
        assert_eq!(ike(500, 500, &v1), Some(true));
    }

    #[test]
    fn not_ike() {
        let m = ike_sa_init(72);
        // Not on an IKE port; ESP on 4500 (no marker); a header alone on 4500 without marker.
        assert_eq!(ike(5000, 5001, &m), None);
        let mut esp = vec![0x00, 0x00, 0x10, 0x01];
        esp.extend(&m);
        assert_eq!(ike(4500, 4500, &esp), None);
        assert_eq!(ike(4500, 4500, &m), None);
        // Length field off by one; truncated header; zero initiator SPI.
        let mut l = m.clone();
        l[27] += 1;
        assert_eq!(ike(500, 500, &l), None);
        assert_eq!(ike(500, 500, &m[..27]), None);
        let mut z = m.clone();
        z[0..8].fill(0);
        assert_eq!(ike(500, 500, &z), None);
        // Bad version, exchange, next payload, flags, message id, responder SPI in a request.
        for (i, v) in [(17, 0x30), (18, 40), (16, 60), (19, 0x09), (23, 1), (9, 1)] {
            let mut p = m.clone();
            p[i] = v;
            assert_eq!(ike(500, 500, &p), None, "byte {i} = {v}");
        }
    }

    #[test]
    fn random_datagrams_are_no_vpn() {
        let mut hits = 0;
        for seed in 1..20_000u32 {
            let len = [14, 42, 54, 92, 148, 228, 300, 1200][seed as usize % 8];
            let p = noise(len, seed);
            for (sp, dp) in [(500, 500), (4500, 4500), (1194, 50000), (51820, 51820)] {
                hits += classify(sp, dp, &p).is_some() as u32;
            }
        }
        assert_eq!(hits, 0);
    }
}
