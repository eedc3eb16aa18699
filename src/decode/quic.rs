//! QUIC long-header packets and client Initial decryption: versions 1 (RFC 9001), 2 (RFC 9369)
//! and drafts 27-32. Keys come from the destination connection ID (HKDF-SHA256), header
//! protection and AEAD use AES-128 from RustCrypto. CRYPTO frames are returned for reassembly.

use aes::cipher::BlockEncrypt;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

pub const V1: u32 = 0x0000_0001;
pub const V2: u32 = 0x6b33_43cf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicError {
    Short,
    NotLongHeader,
    UnknownVersion(u32),
    BadLength,
    Decrypt,
    BadFrame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// Per-version constants.
struct VersionParams {
    salt: [u8; 20],
    v2: bool,
}

fn params(version: u32) -> Option<VersionParams> {
    const SALT_V1: [u8; 20] = hex20("38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
    const SALT_V2: [u8; 20] = hex20("0dede3def700a6db819381be6e269dcbf9bd2ed9");
    const SALT_D29: [u8; 20] = hex20("afbfec289993d24c9e9786f19c6111e04390a899");
    const SALT_D23: [u8; 20] = hex20("c3eef712c72ebb5a11a7d2432bb46365bef9f502");
    match version {
        V1 => Some(VersionParams {
            salt: SALT_V1,
            v2: false,
        }),
        V2 => Some(VersionParams {
            salt: SALT_V2,
            v2: true,
        }),
        0xff00_001d..=0xff00_0020 => Some(VersionParams {
            salt: SALT_D29,
            v2: false,
        }),
        0xff00_0017..=0xff00_001c => Some(VersionParams {
            salt: SALT_D23,
            v2: false,
        }),
        _ => None,
    }
}

const fn hex20(s: &str) -> [u8; 20] {
    let b = s.as_bytes();
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// Is this a QUIC version whose Initial packets shadowgate can decrypt?
pub fn is_supported_version(v: u32) -> bool {
    params(v).is_some()
}

/// Human name of a version.
pub fn version_name(v: u32) -> String {
    match v {
        V1 => "1".into(),
        V2 => "2".into(),
        0 => "negotiation".into(),
        v if v >> 8 == 0xff0000 => format!("draft-{}", v & 0xff),
        v => format!("0x{v:08x}"),
    }
}

/// A parsed long header; offsets are relative to the start of this packet.
#[derive(Debug, Clone, Copy)]
pub struct LongHeader<'a> {
    pub version: u32,
    pub ptype: PacketType,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    pub token_len: usize,
    /// Offset of the (protected) packet number.
    pub pn_offset: usize,
    /// Length of packet number plus payload, from the Length field.
    pub length: usize,
}

impl LongHeader<'_> {
    /// Bytes this packet occupies in the datagram (coalesced packets follow it).
    pub fn packet_len(&self) -> usize {
        self.pn_offset + self.length
    }
}

/// Read a QUIC variable-length integer.
pub fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*pos..*pos + len)?;
    let mut v = (first & 0x3f) as u64;
    for &x in &bytes[1..] {
        v = (v << 8) | x as u64;
    }
    *pos += len;
    Some(v)
}

/// Cheap test: a long-header packet with the fixed bit and a known (or negotiation) version.
/// The fixed bit may be clear (greased, RFC 9287, once the server advertised grease_quic_bit)
/// on a version whose Initials shadowgate decrypts: decryption then confirms it is QUIC.
#[inline]
pub fn looks_like_quic_long(b: &[u8]) -> bool {
    if b.len() < 7 || b[0] & 0x80 == 0 {
        return false;
    }
    let v = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    let known = if b[0] & 0x40 != 0 {
        v == 0 || is_supported_version(v) || v & 0x0f0f_0f0f == 0x0a0a_0a0a
    } else {
        is_supported_version(v)
    };
    known && b[5] <= 20
}

/// Parse the long header at the start of `b`.
pub fn parse_long_header(b: &[u8]) -> Result<LongHeader<'_>, QuicError> {
    if b.len() < 7 {
        return Err(QuicError::Short);
    }
    if b[0] & 0x80 == 0 {
        return Err(QuicError::NotLongHeader);
    }
    let version = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    let p = params(version).ok_or(QuicError::UnknownVersion(version))?;
    let bits = (b[0] >> 4) & 3;
    let ptype = match (p.v2, bits) {
        (false, 0) | (true, 1) => PacketType::Initial,
        (false, 1) | (true, 2) => PacketType::ZeroRtt,
        (false, 2) | (true, 3) => PacketType::Handshake,
        _ => PacketType::Retry,
    };
    let mut pos = 5;
    let dl = *b.get(pos).ok_or(QuicError::Short)? as usize;
    if dl > 20 {
        return Err(QuicError::BadLength);
    }
    let dcid = b.get(pos + 1..pos + 1 + dl).ok_or(QuicError::Short)?;
    pos += 1 + dl;
    let sl = *b.get(pos).ok_or(QuicError::Short)? as usize;
    if sl > 20 {
        return Err(QuicError::BadLength);
    }
    let scid = b.get(pos + 1..pos + 1 + sl).ok_or(QuicError::Short)?;
    pos += 1 + sl;
    if ptype == PacketType::Retry {
        return Ok(LongHeader {
            version,
            ptype,
            dcid,
            scid,
            token_len: 0,
            pn_offset: b.len(),
            length: 0,
        });
    }
    let mut token_len = 0;
    if ptype == PacketType::Initial {
        token_len = varint(b, &mut pos).ok_or(QuicError::Short)? as usize;
        pos = pos
            .checked_add(token_len)
            .filter(|&p| p <= b.len())
            .ok_or(QuicError::BadLength)?;
    }
    let length = varint(b, &mut pos).ok_or(QuicError::Short)? as usize;
    if length > b.len() - pos || length < 20 {
        return Err(QuicError::BadLength);
    }
    Ok(LongHeader {
        version,
        ptype,
        dcid,
        scid,
        token_len,
        pn_offset: pos,
        length,
    })
}

/// Client Initial keys for one destination connection ID.
pub struct InitialKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: aes::Aes128,
}

fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    hk.expand(&info, out).ok()
}

impl InitialKeys {
    /// Derive the client's Initial keys (RFC 9001 §5.2, RFC 9369 §3.3.1).
    pub fn client(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
        let p = params(version)?;
        let (initial, _) = Hkdf::<Sha256>::extract(Some(&p.salt), dcid);
        let mut client = [0u8; 32];
        expand_label(&initial, "client in", &mut client)?;
        let (kl, il, hl) = if p.v2 {
            ("quicv2 key", "quicv2 iv", "quicv2 hp")
        } else {
            ("quic key", "quic iv", "quic hp")
        };
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp = [0u8; 16];
        expand_label(&client, kl, &mut key)?;
        expand_label(&client, il, &mut iv)?;
        expand_label(&client, hl, &mut hp)?;
        Some(InitialKeys {
            aead: <Aes128Gcm as KeyInit>::new_from_slice(&key).ok()?,
            iv,
            hp: <aes::Aes128 as aes::cipher::KeyInit>::new_from_slice(&hp).ok()?,
        })
    }

    /// Remove header protection and decrypt one Initial packet (`pkt` starts at its first byte
    /// and spans exactly `hdr.packet_len()` bytes). Returns the plaintext frames.
    pub fn decrypt(&self, pkt: &[u8], hdr: &LongHeader<'_>) -> Result<Vec<u8>, QuicError> {
        let pn_off = hdr.pn_offset;
        let end = hdr.packet_len();
        let sample = pkt.get(pn_off + 4..pn_off + 20).ok_or(QuicError::Short)?;
        if end > pkt.len() {
            return Err(QuicError::BadLength);
        }
        let mut block = aes::Block::clone_from_slice(sample);
        self.hp.encrypt_block(&mut block);
        let mask = block;
        let first = pkt[0] ^ (mask[0] & 0x0f);
        let pn_len = (first & 3) as usize + 1;
        let mut header = pkt[..pn_off + pn_len].to_vec();
        header[0] = first;
        let mut pn: u64 = 0;
        for i in 0..pn_len {
            header[pn_off + i] ^= mask[1 + i];
            pn = (pn << 8) | header[pn_off + i] as u64;
        }
        let ct = pkt.get(pn_off + pn_len..end).ok_or(QuicError::Short)?;
        if ct.len() < 16 {
            return Err(QuicError::Short);
        }
        let (body, tag) = ct.split_at(ct.len() - 16);
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let mut plain = body.to_vec();
        self.aead
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &header,
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| QuicError::Decrypt)?;
        Ok(plain)
    }
}

impl InitialKeys {
    /// Protect a client Initial, the inverse of [`InitialKeys::decrypt`] (for tests and generated
    /// captures). `header` is the unprotected header up to the end of the packet number (its
    /// length from the first byte's low bits; the Length field counting the 16-byte tag too).
    pub fn seal(&self, header: &[u8], pn_offset: usize, payload: &[u8]) -> Option<Vec<u8>> {
        let pn_len = (*header.first()? & 3) as usize + 1;
        let pn_bytes = header.get(pn_offset..pn_offset + pn_len)?;
        let pn = pn_bytes.iter().fold(0u64, |a, &b| (a << 8) | b as u64);
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let mut body = payload.to_vec();
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), header, &mut body)
            .ok()?;
        let mut pkt = header.to_vec();
        pkt.extend_from_slice(&body);
        pkt.extend_from_slice(&tag);
        let mut mask = aes::Block::clone_from_slice(pkt.get(pn_offset + 4..pn_offset + 20)?);
        self.hp.encrypt_block(&mut mask);
        pkt[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            pkt[pn_offset + i] ^= mask[1 + i];
        }
        Some(pkt)
    }
}

/// Iterate the CRYPTO frames of a decrypted Initial payload: (stream offset, data).
/// Stops with an error at a frame type that may not appear in an Initial packet.
pub fn crypto_frames(plain: &[u8]) -> Result<Vec<(u64, &[u8])>, QuicError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < plain.len() {
        let ty = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
        match ty {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                let _largest = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                let _delay = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                let count = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                let _first = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                for _ in 0..count.min(plain.len() as u64) {
                    varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                    varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                    }
                }
            }
            0x06 => {
                let off = varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                let len = varint(plain, &mut pos).ok_or(QuicError::BadFrame)? as usize;
                let data = plain
                    .get(pos..pos.saturating_add(len))
                    .ok_or(QuicError::BadFrame)?;
                pos += len;
                out.push((off, data));
            }
            0x1c => {
                for _ in 0..2 {
                    varint(plain, &mut pos).ok_or(QuicError::BadFrame)?;
                }
                let rl = varint(plain, &mut pos).ok_or(QuicError::BadFrame)? as usize;
                pos = pos.saturating_add(rl);
            }
            _ => return Err(QuicError::BadFrame),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9001 Appendix A.2: the client Initial, protected; the first CRYPTO frame starts with
    /// the ClientHello whose header is 01 0000f1.
    #[test]
    fn rfc9001_client_initial() {
        let pkt = unhex(RFC9001_A2);
        let hdr = parse_long_header(&pkt).unwrap();
        assert_eq!(hdr.ptype, PacketType::Initial);
        assert_eq!(hdr.dcid, unhex("8394c8f03e515708").as_slice());
        let keys = InitialKeys::client(V1, hdr.dcid).unwrap();
        let plain = keys.decrypt(&pkt, &hdr).unwrap();
        let frames = crypto_frames(&plain).unwrap();
        assert_eq!(frames[0].0, 0);
        assert_eq!(&frames[0].1[..4], &[1, 0, 0, 0xed]);
        let ch = crate::decode::tls::parse_handshake(frames[0].1).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
        // Flipping one ciphertext byte must fail authentication, not panic.
        let mut bad = pkt.clone();
        bad[100] ^= 1;
        assert_eq!(keys.decrypt(&bad, &hdr).unwrap_err(), QuicError::Decrypt);
    }

    /// RFC 9369 Appendix A.2: the same ClientHello as a QUIC v2 Initial.
    #[test]
    fn rfc9369_client_initial() {
        let pkt = unhex(RFC9369_A2);
        let hdr = parse_long_header(&pkt).unwrap();
        assert_eq!(hdr.ptype, PacketType::Initial);
        let keys = InitialKeys::client(V2, hdr.dcid).unwrap();
        let plain = keys.decrypt(&pkt, &hdr).unwrap();
        let frames = crypto_frames(&plain).unwrap();
        let ch = crate::decode::tls::parse_handshake(frames[0].1).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn varints() {
        let b = [0x25, 0x7b, 0xbd, 0x9d, 0x7f, 0x3e, 0x7d];
        let mut p = 0;
        assert_eq!(varint(&b, &mut p), Some(37));
        assert_eq!(varint(&b, &mut p), Some(15293));
        assert_eq!(varint(&b, &mut p), Some(494_878_333));
        assert_eq!(varint(&b, &mut p), None);
    }

    const RFC9001_A2: &str = include_str!("../../tests/data/rfc9001_a2.hex");
    const RFC9369_A2: &str = include_str!("../../tests/data/rfc9369_a2.hex");
}
