//! Synthetic but realistic traffic for benchmarks: per flow a DNS lookup, a TCP handshake, a TLS
//! ClientHello (some ~1.8 KB post-quantum-sized ones split over two segments), then bulk data
//! with ACKs; some flows are QUIC (the RFC 9001 client Initial) followed by short-header bulk.
//! Shared by `examples/gen_capture.rs` and `benches/decode.rs`.

#![allow(dead_code)]

use etherparse::PacketBuilder;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub const SNIS: &[&str] = &[
    "claude.ai",
    "chatgpt.com",
    "gemini.google.com",
    "copilot.microsoft.com",
    "www.perplexity.ai",
    "chat.deepseek.com",
    "chat.mistral.ai",
    "grok.com",
    "www.meta.ai",
    "poe.com",
    "character.ai",
    "www.google.com",
    "outlook.office365.com",
    "teams.microsoft.com",
    "www.epic.com",
    "cdn.jsdelivr.net",
];

/// A TLS record carrying a ClientHello for `sni`, padded to about `size` bytes.
pub fn client_hello(sni: &str, size: usize) -> Vec<u8> {
    let mut exts: Vec<u8> = Vec::new();
    fn push(exts: &mut Vec<u8>, t: u16, d: &[u8]) {
        exts.extend_from_slice(&t.to_be_bytes());
        exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
        exts.extend_from_slice(d);
    }
    let n = sni.as_bytes();
    let mut sn = ((n.len() + 3) as u16).to_be_bytes().to_vec();
    sn.push(0);
    sn.extend_from_slice(&(n.len() as u16).to_be_bytes());
    sn.extend_from_slice(n);
    push(&mut exts, 0, &sn);
    push(
        &mut exts,
        16,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    );
    push(&mut exts, 43, &[4, 3, 4, 3, 3]);
    push(&mut exts, 10, &[0, 6, 0x11, 0xec, 0, 0x1d, 0, 0x17]);
    let base = 5 + 4 + 2 + 32 + 1 + 4 + 2 + 2 + exts.len();
    if size > base + 4 {
        push(&mut exts, 21, &vec![0u8; size - base - 4]);
    }
    hello_record(&exts)
}

/// A TLS record carrying a TLS 1.3 ClientHello (one cipher suite, null compression) with the
/// extension block `exts`.
pub fn hello_record(exts: &[u8]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// DNS query (or answer with one A record) for `name`.
pub fn dns(id: u16, name: &str, answer: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&(if answer.is_some() { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    v.extend_from_slice(&[0, 1, 0, answer.is_some() as u8, 0, 0, 0, 0]);
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(ip) = answer {
        v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
        v.extend_from_slice(&ip);
    }
    v
}

/// The RFC 9001 Appendix A.2 client Initial (1200 bytes, SNI example.com).
pub fn quic_initial() -> Vec<u8> {
    let hex: String = include_str!("../tests/data/rfc9001_a2.hex")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let to_server = dp == 443 || dp == 53;
    let (sm, dm) = if to_server {
        (CLIENT_MAC, GW_MAC)
    } else {
        (GW_MAC, CLIENT_MAC)
    };
    let mut b = PacketBuilder::ethernet2(sm, dm)
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    let mut v = Vec::with_capacity(payload.len() + 64);
    b.write(&mut v, payload).unwrap();
    v
}

pub fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let to_server = dp == 443 || dp == 53;
    let (sm, dm) = if to_server {
        (CLIENT_MAC, GW_MAC)
    } else {
        (GW_MAC, CLIENT_MAC)
    };
    let mut v = Vec::with_capacity(payload.len() + 64);
    PacketBuilder::ethernet2(sm, dm)
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Generate frames for flow number `i` into `out` (each frame as Ethernet bytes).
/// About `bulk` server data segments (plus client ACKs every second segment) follow the hello.
pub fn flow(i: u32, bulk: u32, out: &mut Vec<Vec<u8>>) {
    let client = [10, 1, (i >> 8) as u8, i as u8];
    let server = [104, 18, (i >> 8) as u8 ^ 0x5a, i as u8 ^ 0xa5];
    let resolver = [10, 0, 0, 53];
    let sp = 20_000 + (i % 40_000) as u16;
    let sni = SNIS[i as usize % SNIS.len()];
    out.push(udp(
        client,
        resolver,
        sp.wrapping_add(7),
        53,
        &dns(i as u16, sni, None),
    ));
    out.push(udp(
        resolver,
        client,
        53,
        sp.wrapping_add(7),
        &dns(i as u16, sni, Some(server)),
    ));
    let payload = [0x17u8; 1448];
    if i % 5 == 4 {
        // QUIC: the client Initial, then short-header packets both ways.
        let init = quic_initial();
        out.push(udp(client, server, sp, 443, &init));
        let mut short = vec![0x40u8; 1252];
        short[1..9].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        for k in 0..bulk + bulk / 2 {
            if k % 3 == 2 {
                out.push(udp(client, server, sp, 443, &short[..60]));
            } else {
                out.push(udp(server, client, 443, sp, &short));
            }
        }
        return;
    }
    let (cs, ss) = (1_000_000u32.wrapping_mul(i), 7_000_000u32.wrapping_mul(i));
    out.push(tcp(client, server, sp, 443, cs, 0, "S", &[]));
    out.push(tcp(server, client, 443, sp, ss, cs + 1, "SA", &[]));
    out.push(tcp(client, server, sp, 443, cs + 1, ss + 1, "A", &[]));
    let ch = client_hello(sni, if i.is_multiple_of(2) { 1_800 } else { 520 });
    let mut seq = cs + 1;
    for part in ch.chunks(1448) {
        out.push(tcp(client, server, sp, 443, seq, ss + 1, "PA", part));
        seq += part.len() as u32;
    }
    let mut sseq = ss + 1;
    for k in 0..bulk {
        out.push(tcp(server, client, 443, sp, sseq, seq, "A", &payload));
        sseq += payload.len() as u32;
        if k % 2 == 1 {
            out.push(tcp(client, server, sp, 443, seq, sseq, "A", &[]));
        }
    }
}

/// pcap file header (microsecond timestamps, Ethernet).
pub fn pcap_header(w: &mut impl std::io::Write) -> std::io::Result<()> {
    w.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())
}

/// One pcap record at `ts_us` microseconds since the epoch.
pub fn pcap_record(w: &mut impl std::io::Write, ts_us: u64, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&(frame.len() as u32).to_le_bytes())?;
    w.write_all(&(frame.len() as u32).to_le_bytes())?;
    w.write_all(frame)
}

/// Write Ethernet frames as a pcap file (1 ms apart).
pub fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    pcap_header(&mut w)?;
    for (i, f) in frames.iter().enumerate() {
        pcap_record(&mut w, 1_700_000_000_000_000 + i as u64 * 1000, f)?;
    }
    w.flush()
}

// ---------------------------------------------------------------------------------------------
// Helpers for hand-made captures (examples/gen_adversarial.rs, examples/gen_floods.rs). The
// functions above keep producing exactly what they did: tests and benchmarks depend on them.
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random numbers (SplitMix64): the same seed gives the same capture.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut v = [0; N];
        self.fill(&mut v);
        v
    }
}

/// Internet checksum (RFC 1071) over `data`.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte IPv4 header with a valid checksum. `frag` is (offset in 8-byte units, more fragments).
pub fn ipv4_header(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    id: u16,
    payload_len: usize,
    frag: (u16, bool),
) -> [u8; 20] {
    let total = (20 + payload_len).min(0xffff) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let ff = (frag.0 & 0x1fff) | if frag.1 { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&ff.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = inet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv4 packet (header + payload).
pub fn ipv4_packet(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = ipv4_header(src, dst, proto, ttl, id, payload.len(), (0, false)).to_vec();
    v.extend_from_slice(payload);
    v
}

/// An IPv6 packet (40-byte header + payload).
pub fn ipv6_packet(src: [u8; 16], dst: [u8; 16], next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len().min(0xffff) as u16).to_be_bytes());
    v.push(next);
    v.push(hop);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

/// A UDP header + payload. The checksum is computed over the IPv4 or IPv6 pseudo-header when
/// `pseudo` gives (src, dst); zero (none) otherwise, which IPv4 allows.
pub fn udp_datagram(sp: u16, dp: u16, payload: &[u8], pseudo: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let len = (8 + payload.len()).min(0xffff) as u16;
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&sp.to_be_bytes());
    v.extend_from_slice(&dp.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    if let Some((s, d)) = pseudo {
        let mut ph = Vec::with_capacity(40 + v.len());
        ph.extend_from_slice(s);
        ph.extend_from_slice(d);
        if s.len() == 4 {
            ph.extend_from_slice(&[0, 17]);
            ph.extend_from_slice(&len.to_be_bytes());
        } else {
            ph.extend_from_slice(&(v.len() as u32).to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, 17]);
        }
        ph.extend_from_slice(&v);
        let c = match inet_checksum(&ph) {
            0 => 0xffff,
            c => c,
        };
        v[6..8].copy_from_slice(&c.to_be_bytes());
    }
    v
}

/// Ethernet II header + payload.
pub fn ether(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ether_type.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Ethernet/IP/TCP frame between explicit MACs and addresses (IPv4 or IPv6). `flags` as in
/// [`tcp`] plus `F` (FIN) and `R` (RST); `ttl` is the IPv4 TTL or IPv6 hop limit.
#[allow(clippy::too_many_arguments)]
pub fn eth_tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    ttl: u8,
    (sp, dp): (u16, u16),
    (seq, ack): (u32, u32),
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::{IpHeaders, Ipv4Header, Ipv6Header};
    use std::net::IpAddr;
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, ttl, etherparse::ip_number::TCP, s.octets(), d.octets())
                .unwrap();
            h.dont_fragment = true;
            IpHeaders::Ipv4(h, Default::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                hop_limit: ttl,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            },
            Default::default(),
        ),
        _ => panic!("mixed address families"),
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ip(ip)
        .tcp(sp, dp, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    let mut v = Vec::with_capacity(payload.len() + 80);
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet/IP/UDP frame between explicit MACs and addresses (IPv4 or IPv6).
pub fn eth_udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    ttl: u8,
    (sp, dp): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::{IpHeaders, Ipv4Header, Ipv6Header};
    use std::net::IpAddr;
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header::new(0, ttl, etherparse::ip_number::UDP, s.octets(), d.octets()).unwrap(),
            Default::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                hop_limit: ttl,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            },
            Default::default(),
        ),
        _ => panic!("mixed address families"),
    };
    let mut v = Vec::with_capacity(payload.len() + 64);
    PacketBuilder::ethernet2(smac, dmac)
        .ip(ip)
        .udp(sp, dp)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// pcap file header with an explicit snap length and link type (microsecond timestamps).
pub fn pcap_header_with(
    w: &mut impl std::io::Write,
    snaplen: u32,
    linktype: u32,
) -> std::io::Result<()> {
    w.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&snaplen.to_le_bytes())?;
    w.write_all(&linktype.to_le_bytes())
}

/// Write (timestamp in µs since the epoch, Ethernet frame) records as a pcap file.
pub fn write_pcap_at(
    path: &std::path::Path,
    snaplen: u32,
    frames: &[(u64, Vec<u8>)],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    pcap_header_with(&mut w, snaplen, 1)?;
    for (ts, f) in frames {
        pcap_record(&mut w, *ts, f)?;
    }
    w.flush()
}

/// QUIC variable-length integer encoding (RFC 9000 §16), in the shortest form (or `min_len`).
pub fn quic_varint(v: u64, min_len: usize) -> Vec<u8> {
    let len = if v < 64 && min_len <= 1 {
        1
    } else if v < 16_384 && min_len <= 2 {
        2
    } else if v < 1 << 30 && min_len <= 4 {
        4
    } else {
        8
    };
    let tag = match len {
        1 => 0u8,
        2 => 0x40,
        4 => 0x80,
        _ => 0xc0,
    };
    let b = v.to_be_bytes();
    let mut out = b[8 - len..].to_vec();
    out[0] |= tag;
    out
}

/// A protected QUIC v1 client Initial (RFC 9001 §5): keys from `dcid`, AES-128-GCM payload
/// protection and AES header protection. `frames` is the plaintext (CRYPTO frames); PADDING is
/// appended so the packet is `size` bytes. With `fixed_bit` false the 0x40 bit of the first
/// byte is cleared, as RFC 9287 (grease_quic_bit) allows.
pub fn quic_v1_initial(
    dcid: &[u8],
    scid: &[u8],
    token: &[u8],
    pn: u32,
    frames: &[u8],
    size: usize,
    fixed_bit: bool,
) -> Vec<u8> {
    use aes::cipher::BlockEncrypt;
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use hkdf::Hkdf;
    use sha2::Sha256;
    fn expand(secret: &[u8], label: &str, out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::from_prk(secret).unwrap();
        let full = format!("tls13 {label}");
        let mut info = (out.len() as u16).to_be_bytes().to_vec();
        info.push(full.len() as u8);
        info.extend_from_slice(full.as_bytes());
        info.push(0);
        hk.expand(&info, out).unwrap();
    }
    let salt = [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];
    let (initial, _) = Hkdf::<Sha256>::extract(Some(&salt), dcid);
    let mut client = [0u8; 32];
    expand(&initial, "client in", &mut client);
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand(&client, "quic key", &mut key);
    expand(&client, "quic iv", &mut iv);
    expand(&client, "quic hp", &mut hp);
    let pn_len = 2usize;
    let mut hdr = vec![0xc0 | (pn_len as u8 - 1)];
    if !fixed_bit {
        hdr[0] &= !0x40;
    }
    hdr.extend_from_slice(&1u32.to_be_bytes());
    hdr.push(dcid.len() as u8);
    hdr.extend_from_slice(dcid);
    hdr.push(scid.len() as u8);
    hdr.extend_from_slice(scid);
    hdr.extend_from_slice(&quic_varint(token.len() as u64, 1));
    hdr.extend_from_slice(token);
    // Length covers packet number + payload + tag; a 2-byte varint leaves room for up to 16383.
    let payload_len = size
        .saturating_sub(hdr.len() + 2 + pn_len + 16)
        .max(frames.len() + 4);
    let mut plain = frames.to_vec();
    plain.resize(payload_len, 0); // PADDING frames
    hdr.extend_from_slice(&quic_varint((pn_len + payload_len + 16) as u64, 2));
    let pn_off = hdr.len();
    hdr.extend_from_slice(&(pn as u16).to_be_bytes());
    let mut nonce = iv;
    for (i, b) in (pn as u64).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let aead = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
    let tag = aead
        .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), &hdr, &mut plain)
        .unwrap();
    let mut pkt = hdr;
    pkt.extend_from_slice(&plain);
    pkt.extend_from_slice(&tag);
    // Header protection: sample 16 bytes starting 4 bytes after the packet number's start.
    let cipher = aes::Aes128::new_from_slice(&hp).unwrap();
    let mut block = aes::Block::clone_from_slice(&pkt[pn_off + 4..pn_off + 20]);
    cipher.encrypt_block(&mut block);
    pkt[0] ^= block[0] & 0x0f;
    for i in 0..pn_len {
        pkt[pn_off + i] ^= block[1 + i];
    }
    pkt
}
