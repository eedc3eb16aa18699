//! Write a large synthetic pcap for the replay benchmark:
//! `cargo run --release --example gen_capture -- OUT.pcap PACKETS`.

#[path = "../benches/synth.rs"]
mod synth;

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "bench.pcap".into());
    let target: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    synth::pcap_header(&mut w)?;
    let (mut n, mut bytes, mut flows) = (0u64, 0u64, 0u32);
    let mut frames = Vec::new();
    let mut ts_us: u64 = 1_700_000_000_000_000;
    // Interleave 64 concurrent flows so the flow table sees a realistic working set.
    while n < target {
        let mut batch: Vec<std::vec::IntoIter<Vec<u8>>> = Vec::new();
        for _ in 0..64 {
            frames.clear();
            // 10..50 bulk data segments per flow (plus ACKs): new flows are ~2 % of packets.
            synth::flow(flows, 10 + (flows * 7919) % 40, &mut frames);
            flows += 1;
            batch.push(std::mem::take(&mut frames).into_iter());
        }
        let mut live = true;
        while live && n < target {
            live = false;
            for it in batch.iter_mut() {
                if let Some(f) = it.next() {
                    live = true;
                    ts_us += 7;
                    synth::pcap_record(&mut w, ts_us, &f)?;
                    n += 1;
                    bytes += f.len() as u64;
                    if n >= target {
                        break;
                    }
                }
            }
        }
    }
    w.flush()?;
    eprintln!("{path}: {n} packets, {flows} flows, {bytes} bytes of frames");
    Ok(())
}
