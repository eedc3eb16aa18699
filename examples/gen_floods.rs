//! Flood captures for `bench/floods.sh`: the sensor's state limits under attack traffic.
//! Deterministic (fixed seeds, timestamps from 2025-03-10T12:00:00Z).
//!
//! `cargo run --release --example gen_floods -- OUT_DIR [DIVISOR] [NAME...]`
//!
//! writes into OUT_DIR (counts divided by DIVISOR, default 1, for quick runs):
//! - `syn-flood.pcap`: 1,000,000 SYNs from random spoofed sources to a clinic server (100 k/s);
//! - `dns-random.pcap`: 1,000,000 queries for `<random>.example.com` from random clinic
//!   clients, one in four answered with an A record to a random address (NXDOMAIN otherwise);
//! - `half-hello.pcap`: 100,000 TLS connections that send the first segment of a two-segment
//!   ClientHello and never the rest;
//! - `frag-flood.pcap`: 500,000 first IPv4 fragments (1,480 bytes, random IDs and sources)
//!   whose other fragments never come;
//! - `dns-bomb-flood.pcap`: the DNS bomb of `pcaps/adversarial/dns-bomb.pcap[.held]` (43
//!   fragments, QDCOUNT 4,000, 2,400 answers) 100 times a second for 60 s of capture time.

#[path = "../benches/synth.rs"]
mod synth;

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use synth::Rng;

const START_US: u64 = 1_741_608_000 * 1_000_000;
const GW_MAC: [u8; 6] = [0x02, 0x5a, 0x00, 0x00, 0x00, 0x01];
const RESOLVER: [u8; 4] = [10, 20, 0, 53];
const PORTAL: [u8; 4] = [10, 20, 0, 80];

fn mac(ip: [u8; 4]) -> [u8; 6] {
    [0x02, 0x5a, 0x00, ip[1], ip[2], ip[3]]
}

fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

struct Out {
    w: BufWriter<std::fs::File>,
    n: u64,
    path: PathBuf,
}

impl Out {
    fn new(dir: &Path, name: &str) -> std::io::Result<Out> {
        let path = dir.join(name);
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        synth::pcap_header_with(&mut w, 262_144, 1)?;
        Ok(Out { w, n: 0, path })
    }
    fn put(&mut self, ts_us: u64, f: &[u8]) -> std::io::Result<()> {
        self.n += 1;
        synth::pcap_record(&mut self.w, ts_us, f)
    }
    fn done(mut self) -> std::io::Result<()> {
        self.w.flush()?;
        let len = std::fs::metadata(&self.path)?.len();
        eprintln!("{}: {} packets, {} bytes", self.path.display(), self.n, len);
        Ok(())
    }
}

/// A random clinic client in 10.20.0.0/16 (outside the resolver and server addresses).
fn client(rng: &mut Rng) -> [u8; 4] {
    [10, 20, 1 + rng.below(250) as u8, 1 + rng.below(254) as u8]
}

fn syn_flood(dir: &Path, div: u64) -> std::io::Result<()> {
    let mut o = Out::new(dir, "syn-flood.pcap")?;
    let mut rng = Rng(0x5f10_0d01);
    for i in 0..1_000_000 / div {
        let src = [
            1 + rng.below(223) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
            1 + rng.below(254) as u8,
        ];
        let sp = 1024 + rng.below(64_511) as u16;
        let seq = rng.next_u64() as u32;
        let f = synth::eth_tcp(
            mac(src),
            mac(PORTAL),
            ip4(src),
            ip4(PORTAL),
            51,
            (sp, 443),
            (seq, 0),
            "S",
            &[],
        );
        o.put(START_US + i * 10, &f)?;
    }
    o.done()
}

fn random_label(rng: &mut Rng) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let n = 8 + rng.below(17) as usize;
    (0..n)
        .map(|_| A[rng.below(A.len() as u64) as usize] as char)
        .collect()
}

fn dns_random(dir: &Path, div: u64) -> std::io::Result<()> {
    let mut o = Out::new(dir, "dns-random.pcap")?;
    let mut rng = Rng(0x5f10_0d02);
    let mut ts = START_US;
    for _ in 0..1_000_000 / div {
        let c = client(&mut rng);
        let name = format!("{}.example.com", random_label(&mut rng));
        let id = rng.next_u64() as u16;
        let sp = 1024 + rng.below(64_511) as u16;
        ts += 20; // 50,000 queries a second
        let q = synth::dns(id, &name, None);
        o.put(
            ts,
            &synth::eth_udp(mac(c), GW_MAC, ip4(c), ip4(RESOLVER), 64, (sp, 53), &q),
        )?;
        let a = if rng.below(4) == 0 {
            let ip = [
                rng.below(224) as u8,
                rng.below(256) as u8,
                rng.below(256) as u8,
                1 + rng.below(254) as u8,
            ];
            synth::dns(id, &name, Some(ip))
        } else {
            let mut a = synth::dns(id, &name, None);
            a[2..4].copy_from_slice(&0x8183u16.to_be_bytes()); // NXDOMAIN
            a
        };
        o.put(
            ts + 5,
            &synth::eth_udp(GW_MAC, mac(c), ip4(RESOLVER), ip4(c), 64, (53, sp), &a),
        )?;
    }
    o.done()
}

fn half_hello(dir: &Path, div: u64) -> std::io::Result<()> {
    let mut o = Out::new(dir, "half-hello.pcap")?;
    let mut rng = Rng(0x5f10_0d03);
    let server = [104, 18, 32, 47];
    let mut ts = START_US;
    for i in 0..100_000 / div {
        let c = client(&mut rng);
        let sp = 1024 + rng.below(64_511) as u16;
        let (cs, ss) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let sni = synth::SNIS[i as usize % synth::SNIS.len()];
        let ch = synth::client_hello(sni, 1_800);
        let (cm, sm) = (mac(c), GW_MAC);
        let p = (sp, 443);
        let r = (443, sp);
        ts += 50; // 20,000 connections a second
        o.put(
            ts,
            &synth::eth_tcp(cm, sm, ip4(c), ip4(server), 64, p, (cs, 0), "S", &[]),
        )?;
        o.put(
            ts + 10,
            &synth::eth_tcp(
                sm,
                cm,
                ip4(server),
                ip4(c),
                57,
                r,
                (ss, cs.wrapping_add(1)),
                "SA",
                &[],
            ),
        )?;
        o.put(
            ts + 20,
            &synth::eth_tcp(
                cm,
                sm,
                ip4(c),
                ip4(server),
                64,
                p,
                (cs.wrapping_add(1), ss.wrapping_add(1)),
                "A",
                &[],
            ),
        )?;
        o.put(
            ts + 30,
            &synth::eth_tcp(
                cm,
                sm,
                ip4(c),
                ip4(server),
                64,
                p,
                (cs.wrapping_add(1), ss.wrapping_add(1)),
                "PA",
                &ch[..1448],
            ),
        )?;
    }
    o.done()
}

fn frag_flood(dir: &Path, div: u64) -> std::io::Result<()> {
    let mut o = Out::new(dir, "frag-flood.pcap")?;
    let mut rng = Rng(0x5f10_0d04);
    let mut payload = vec![0u8; 1480];
    for i in 0..500_000 / div {
        let src = [
            1 + rng.below(223) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
            1 + rng.below(254) as u8,
        ];
        let dst = client(&mut rng);
        let id = rng.next_u64() as u16;
        // A UDP header claiming a large datagram, then filler: the rest never comes.
        let sp = 1024 + rng.below(64_511) as u16;
        payload[..8].copy_from_slice(&synth::udp_datagram(sp, 53, &[], None));
        payload[4..6].copy_from_slice(&8000u16.to_be_bytes());
        rng.fill(&mut payload[8..40]);
        let mut p = synth::ipv4_header(src, dst, 17, 51, id, payload.len(), (0, true)).to_vec();
        p.extend_from_slice(&payload);
        o.put(
            START_US + i * 20,
            &synth::ether(mac(dst), GW_MAC, 0x0800, &p),
        )?;
    }
    o.done()
}

/// The fragments of the adversarial DNS bomb (every frame after the query).
fn bomb_fragments() -> std::io::Result<Vec<Vec<u8>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/adversarial");
    let p = ["dns-bomb.pcap", "dns-bomb.pcap.held"]
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.exists());
    let Some(p) = p else {
        return Err(std::io::Error::other(
            "pcaps/adversarial/dns-bomb.pcap[.held] missing: run pcaps/adversarial/make.sh",
        ));
    };
    let data = std::fs::read(p)?;
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= data.len() {
        let len = u32::from_le_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        out.push(data[pos + 16..pos + 16 + len].to_vec());
        pos += 16 + len;
    }
    out.remove(0); // the query
    Ok(out)
}

fn bomb_flood(dir: &Path, div: u64) -> std::io::Result<()> {
    let frags = bomb_fragments()?;
    let mut o = Out::new(dir, "dns-bomb-flood.pcap")?;
    for k in 0..6_000 / div {
        // 100 bombs a second; each a new IPv4 datagram (identification changes, checksum fixed).
        let ts = START_US + k * 10_000;
        let id = (0x4000 + k) as u16;
        for (j, f) in frags.iter().enumerate() {
            let mut f = f.clone();
            f[18..20].copy_from_slice(&id.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = synth::inet_checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            o.put(ts + j as u64 * 40, &f)?;
        }
    }
    o.done()
}

type Gen = fn(&Path, u64) -> std::io::Result<()>;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = args
        .next()
        .unwrap_or_else(|| "bench-out/floods".into())
        .into();
    let div: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let only: Vec<String> = args.collect();
    std::fs::create_dir_all(&dir)?;
    let all: [(&str, Gen); 5] = [
        ("syn-flood", syn_flood),
        ("dns-random", dns_random),
        ("half-hello", half_hello),
        ("frag-flood", frag_flood),
        ("dns-bomb-flood", bomb_flood),
    ];
    for (name, f) in all {
        if only.is_empty() || only.iter().any(|o| o == name) {
            f(&dir, div)?;
        }
    }
    Ok(())
}
