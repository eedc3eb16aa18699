//! Captures for the live benchmarks (`bench/capture.sh`, `bench/daemon-rss.sh`), every frame
//! within a 1,500-byte MTU so tcpreplay can put it on a veth.
//!
//! `gen_live mix OUT.pcap PACKETS CONCURRENT [FIRST_FLOW]`: the bulk-dominated bench mix of
//! `benches/synth.rs` (per flow a DNS lookup and answer, a TCP handshake and TLS ClientHello, then
//! 10..50 bulk 1,448-byte segments with ACKs; one flow in five is QUIC: Initial then
//! short-header bulk), CONCURRENT flows interleaved at any time (a finished flow is replaced by a
//! new one); flows are numbered from FIRST_FLOW (default 0), so files for parallel senders can
//! hold different flows.
//!
//! `gen_live flows OUT.pcap FLOWS`: FLOWS concurrent TCP flows, each a handshake, a ClientHello
//! for an uncatalogued name and one server data segment, all handshakes first so every flow is
//! open at the end.

#[path = "../benches/synth.rs"]
mod synth;

use std::io::{BufWriter, Write};

fn usage() -> ! {
    eprintln!("usage: gen_live mix OUT.pcap PACKETS CONCURRENT [FIRST_FLOW] | gen_live flows OUT.pcap FLOWS");
    std::process::exit(2)
}

fn num(s: Option<String>) -> u64 {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

/// Frames of flow `i` of the mix (10..50 bulk segments, as examples/gen_capture.rs).
fn mix_flow(i: u32) -> std::vec::IntoIter<Vec<u8>> {
    let mut v = Vec::new();
    synth::flow(i, 10 + (i.wrapping_mul(7919)) % 40, &mut v);
    v.into_iter()
}

fn mix(
    w: &mut impl Write,
    target: u64,
    concurrent: usize,
    first: u32,
) -> std::io::Result<(u64, u64, u32)> {
    let (mut n, mut bytes, mut flows) = (0u64, 0u64, first);
    let mut slots: Vec<std::vec::IntoIter<Vec<u8>>> = (0..concurrent.max(1))
        .map(|_| {
            flows += 1;
            mix_flow(flows - 1)
        })
        .collect();
    let mut ts_us: u64 = 1_700_000_000_000_000;
    'outer: loop {
        for s in slots.iter_mut() {
            let f = match s.next() {
                Some(f) => f,
                None => {
                    *s = mix_flow(flows);
                    flows += 1;
                    s.next().expect("a flow has frames")
                }
            };
            ts_us += 7;
            synth::pcap_record(w, ts_us, &f)?;
            n += 1;
            bytes += f.len() as u64;
            if n >= target {
                break 'outer;
            }
        }
    }
    Ok((n, bytes, flows - first))
}

fn flows(w: &mut impl Write, count: u32) -> std::io::Result<(u64, u64, u32)> {
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut ts_us: u64 = 1_700_000_000_000_000;
    let tuple = |i: u32| {
        let client = [10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let server = [93, 184, (i % 16) as u8, 34];
        (client, server, 30_000 + (i % 30_000) as u16)
    };
    let mut put = |mut w: &mut dyn Write, f: Vec<u8>| -> std::io::Result<()> {
        ts_us += 10;
        synth::pcap_record(&mut w, ts_us, &f)?;
        n += 1;
        bytes += f.len() as u64;
        Ok(())
    };
    // Phase one: every handshake; phase two: every hello and a server segment.
    for i in 0..count {
        let (c, s, sp) = tuple(i);
        let (cs, ss) = (i.wrapping_mul(1_000_003), i.wrapping_mul(7_000_001));
        put(w, synth::tcp(c, s, sp, 443, cs, 0, "S", &[]))?;
        put(w, synth::tcp(s, c, 443, sp, ss, cs + 1, "SA", &[]))?;
        put(w, synth::tcp(c, s, sp, 443, cs + 1, ss + 1, "A", &[]))?;
    }
    let payload = [0x17u8; 1448];
    for i in 0..count {
        let (c, s, sp) = tuple(i);
        let (cs, ss) = (i.wrapping_mul(1_000_003), i.wrapping_mul(7_000_001));
        let ch = synth::client_hello(&format!("host{}.bench.example.org", i % 997), 520);
        put(w, synth::tcp(c, s, sp, 443, cs + 1, ss + 1, "PA", &ch))?;
        let ack = cs + 1 + ch.len() as u32;
        put(w, synth::tcp(s, c, 443, sp, ss + 1, ack, "A", &payload))?;
    }
    Ok((n, bytes, count))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let path = args.next().unwrap_or_else(|| usage());
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    synth::pcap_header(&mut w)?;
    let (n, bytes, f) = match mode.as_str() {
        "mix" => {
            let target = num(args.next());
            let conc = num(args.next()) as usize;
            let first = args.next().map_or(0, |s| num(Some(s)) as u32);
            mix(&mut w, target, conc, first)?
        }
        "flows" => {
            let count = num(args.next());
            flows(&mut w, count as u32)?
        }
        _ => usage(),
    };
    w.flush()?;
    eprintln!("{path}: {n} packets, {f} flows, {bytes} bytes of frames");
    Ok(())
}
