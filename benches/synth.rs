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
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
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
