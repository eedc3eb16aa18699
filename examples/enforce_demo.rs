//! Drives the nftables enforcement by hand and for tests: `hold` keeps the table until killed
//! (the `kill -9` fail-open test), `bench N` measures element operations, `stop`/`quic` add one.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use prometheus::Registry;
use shadowgate::enforce::nft::{Nft, TableSpec};

fn usage() -> ! {
    eprintln!(
        "usage: enforce_demo hold [--quic-all] [--intercept ADDR:PORT] [--lan-if IF]...\n\
         \x20      enforce_demo bench N\n\
         \x20      enforce_demo stop CLIENT:PORT SERVER:PORT SECONDS (then holds)\n\
         \x20      enforce_demo quic CLIENT SERVER SECONDS (then holds)"
    );
    std::process::exit(2)
}

fn hold() -> ! {
    println!("ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let mut spec = TableSpec::default();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--quic-all" => spec.block_all_quic = true,
            "--intercept" => {
                i += 1;
                spec.intercept
                    .push(args.get(i).unwrap_or_else(|| usage()).parse()?);
            }
            "--lan-if" => {
                i += 1;
                spec.lan_interfaces
                    .push(args.get(i).unwrap_or_else(|| usage()).clone());
            }
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    let nft = Nft::open(&spec, &Registry::new())?;
    match cmd.as_str() {
        "hold" => hold(),
        "stop" if rest.len() == 3 => {
            let c: SocketAddr = rest[0].parse()?;
            let s: SocketAddr = rest[1].parse()?;
            nft.stop_flow(c, s, Duration::from_secs(rest[2].parse()?));
            nft.sync();
            hold()
        }
        "quic" if rest.len() == 3 => {
            let c: IpAddr = rest[0].parse()?;
            let s: IpAddr = rest[1].parse()?;
            nft.drop_quic(c, s, Duration::from_secs(rest[2].parse()?));
            nft.sync();
            hold()
        }
        "bench" if rest.len() == 1 => {
            let n: u32 = rest[0].parse()?;
            let c = |i: u32| SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 40000));
            let s = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 443));
            // Queued in bulk: the thread batches up to 1024 operations per transaction.
            let t = Instant::now();
            for i in 0..n {
                nft.stop_flow(c(i), s, Duration::from_secs(60));
            }
            nft.sync();
            let bulk = t.elapsed();
            // One at a time, each waited for: the latency of a single operation.
            let t = Instant::now();
            for i in 0..n.min(2000) {
                nft.drop_quic(c(i).ip(), s.ip(), Duration::from_secs(60));
                nft.sync();
            }
            let single = t.elapsed() / n.clamp(1, 2000);
            let errors = nft.metrics().errors.get();
            println!(
                "elements={n} bulk_s={:.3} elements_per_s={:.0} single_op_ms={:.3} errors={errors}",
                bulk.as_secs_f64(),
                n as f64 / bulk.as_secs_f64(),
                single.as_secs_f64() * 1e3
            );
            nft.close()?;
            Ok(())
        }
        _ => usage(),
    }
}
