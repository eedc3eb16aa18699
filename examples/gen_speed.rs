//! Captures of one packet class each, for the cost model (bench/speed.sh): bulk over a set of
//! concurrent flows, new flows, DNS, TLS hellos, QUIC Initials. `gen_speed OUT.pcap CLASS N [F]`.
//!
//! Classes (N packets of the class, 7 us apart):
//! - `setup F`: F TCP flows opened (SYN, then a 520-byte ClientHello: the flow is done).
//! - `bulk F`: the same F flows set up, then N server data segments (64 bytes) round robin over
//!   them, so F flows are live at once (the cost of bulk is the difference with `setup F`).
//! - `syn`: N SYNs of N new flows.
//! - `dns`: N/2 lookups (query and answer, one A record) of N/2 clients.
//! - `hello`: N ClientHellos (520 bytes), each the first packet of its own flow.
//! - `quic`: N QUIC client Initials (RFC 9001 A.2), each of its own flow.

#[path = "../benches/synth.rs"]
mod synth;

use std::io::{BufWriter, Write};

fn client(i: u32) -> [u8; 4] {
    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn server(i: u32) -> [u8; 4] {
    [104, 18, 0, (i % 251) as u8]
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen_speed OUT.pcap setup|bulk|syn|dns|hello|quic N [FLOWS]";
    let (Some(path), Some(class), Some(n)) = (
        args.first(),
        args.get(1),
        args.get(2).and_then(|s| s.parse::<u32>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let flows: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    synth::pcap_header(&mut w)?;
    let mut ts: u64 = 1_700_000_000_000_000;
    let mut count = 0u64;
    let mut put = |w: &mut BufWriter<std::fs::File>, f: &[u8]| {
        ts += 7;
        count += 1;
        synth::pcap_record(w, ts, f)
    };
    let hello = synth::client_hello("claude.ai", 520);
    let sp = |i: u32| 1024 + (i % 60_000) as u16;
    match class.as_str() {
        "setup" | "bulk" => {
            for i in 0..flows {
                let (c, s) = (client(i), server(i));
                put(&mut w, &synth::tcp(c, s, sp(i), 443, 1000, 0, "S", &[]))?;
                put(&mut w, &synth::tcp(c, s, sp(i), 443, 1001, 1, "PA", &hello))?;
            }
            if class == "bulk" {
                let data = [0x17u8; 64];
                for k in 0..n {
                    let i = k % flows;
                    let seq = 2 + (k / flows).wrapping_mul(64);
                    let f = synth::tcp(server(i), client(i), 443, sp(i), seq, 1001, "A", &data);
                    put(&mut w, &f)?;
                }
            }
        }
        "syn" => {
            for i in 0..n {
                put(
                    &mut w,
                    &synth::tcp(client(i), server(i), sp(i), 443, 1000, 0, "S", &[]),
                )?;
            }
        }
        "dns" => {
            let resolver = [10, 255, 0, 53];
            for i in 0..n / 2 {
                let name = synth::SNIS[i as usize % synth::SNIS.len()];
                let q = synth::dns(i as u16, name, None);
                let a = synth::dns(i as u16, name, Some(server(i)));
                put(&mut w, &synth::udp(client(i), resolver, sp(i), 53, &q))?;
                put(&mut w, &synth::udp(resolver, client(i), 53, sp(i), &a))?;
            }
        }
        "hello" => {
            for i in 0..n {
                put(
                    &mut w,
                    &synth::tcp(client(i), server(i), sp(i), 443, 1001, 1, "PA", &hello),
                )?;
            }
        }
        "quic" => {
            let init = synth::quic_initial();
            for i in 0..n {
                put(&mut w, &synth::udp(client(i), server(i), sp(i), 443, &init))?;
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    w.flush()?;
    eprintln!("{path}: {count} packets");
    Ok(())
}
