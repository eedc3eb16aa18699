//! Reset latency on a namespace gateway (run by bench/reset-latency.sh, as root): time from a
//! ClientHello leaving the client to the reset arriving there, against the path's round trip.

#[path = "../tests/nft_net/mod.rs"]
mod nft_net;
#[path = "../benches/synth.rs"]
mod synth;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nft_net::{in_ns, Bed, C1, SERVER};
use prometheus::Registry;
use shadowgate::enforce::config::EnforceConf;
use shadowgate::enforce::enforcer::Enforcer;
use shadowgate::enforce::grants::Grants;
use shadowgate::enforce::nft::{Nft, TableSpec};
use shadowgate::enforce::reset::Resetter;
use shadowgate::flow::Config;
use shadowgate::pipeline::Pipeline;
use shadowgate::policy::reload::PolicyHandle;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// Servers: :443 answers 20 ms late (like a real server), :8443 echoes at once (the baseline).
fn servers(bed: &Bed, stop: Arc<AtomicBool>) {
    for (port, delay) in [(443u16, 20u64), (8443, 0)] {
        let (tx, rx) = mpsc::channel();
        let stop = stop.clone();
        in_ns(&bed.s, move || {
            let l = TcpListener::bind((SERVER, port)).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut b = [0u8; 4096];
                            while let Ok(n) = s.read(&mut b) {
                                if n == 0 {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(delay));
                                if s.write_all(&b[..n.min(16)]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        });
        rx.recv().unwrap();
    }
}

fn main() {
    if let Some(why) = nft_net::unavailable() {
        eprintln!("reset_latency: {why}");
        std::process::exit(2);
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let bed = Bed::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let s2 = stop.clone();
    let gw = in_ns(&bed.gw, move || {
        let reg = Registry::new();
        let spec = TableSpec {
            lan_interfaces: vec!["gc1".into()],
            ..TableSpec::default()
        };
        let nft = Nft::open(&spec, &reg).expect("table");
        let conf: EnforceConf = toml::from_str("mode = \"enforce\"").unwrap();
        let enf = Enforcer::new(
            &conf,
            Some(nft.clone()),
            Some(Resetter::new().expect("raw sockets")),
            Arc::new(Grants::new()),
            Arc::new(AtomicBool::new(true)),
            &reg,
        )
        .unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = Pipeline::new(Config::default())
            .with_policy(PolicyHandle::load(&root.join("policies")).unwrap())
            .with_output(Box::new(enf));
        nft_net::capture_loop(p, &["gc1"], s2, move || tx.send(()).unwrap());
        nft.close().unwrap();
    });
    rx.recv().unwrap();
    servers(&bed, stop.clone());
    let blocked = synth::client_hello("claude.ai", 517);
    let allowed = synth::client_hello("www.example.org", 517);
    let (reset_us, rtt_us, missed) = in_ns(&bed.c1, move || {
        let dst = |port| SocketAddr::new(SERVER.parse::<IpAddr>().unwrap(), port);
        let mut reset_us = Vec::new();
        let mut rtt_us = Vec::new();
        let mut missed = 0;
        let mut buf = [0u8; 64];
        for i in 0..n {
            // Baseline: the same path's round trip (hello out, echo back).
            let mut s = TcpStream::connect(dst(8443)).unwrap();
            s.set_nodelay(true).unwrap();
            let t = Instant::now();
            s.write_all(&allowed).unwrap();
            if s.read(&mut buf).is_ok() {
                rtt_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            drop(s);
            // Blocked: hello out, reset back.
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(C1.parse().unwrap(), 20_000 + i as u16).into())
                .unwrap();
            sock.connect(&dst(443).into()).unwrap();
            let mut s: TcpStream = sock.into();
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let t = Instant::now();
            s.write_all(&blocked).unwrap();
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    reset_us.push(t.elapsed().as_secs_f64() * 1e6)
                }
                _ => missed += 1,
            }
        }
        (reset_us, rtt_us, missed)
    })
    .join()
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let _ = gw.join();
    let (mut r, mut b) = (reset_us, rtt_us);
    let (r50, r99) = (pct(&mut r, 0.5), pct(&mut r, 0.99));
    let (b50, b99) = (pct(&mut b, 0.5), pct(&mut b, 0.99));
    println!("connections={n} reset_received={} missed={missed}", r.len());
    println!(
        "reset_latency_us p50={r50:.0} p99={r99:.0} max={:.0}",
        r.last().copied().unwrap_or(f64::NAN)
    );
    println!("baseline_rtt_us p50={b50:.0} p99={b99:.0}");
    println!("ratio_to_rtt p50={:.2} p99={:.2}", r50 / b50, r99 / b99);
    println!(
        "target p99 < 2000 us: {}",
        if r99 < 2000.0 && missed == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
