//! The soak's load generator and simulated internet (`bench/soak.sh`). Runs as root; each
//! subcommand enters the network namespace it is given before it opens a socket.
//!
//! - `sinks NS ADDR...`: TCP sinks on ADDR:443 and ADDR:80 (accept, read to the end), a UDP sink
//!   on ADDR:443 that answers every datagram (a QUIC server answering an Initial);
//! - `dns NS ADDR DELAY_MS [TTL_S]`: the upstream DNS server: A records for the soak's names
//!   (others get the uncatalogued server's address) with a TTL of TTL_S (default 60), each answer
//!   sent DELAY_MS late (distance);
//! - `load NS SECONDS CONN_RATE QUERY_RATE LOG GW`: TLS hellos, plain HTTP requests, QUIC Initials
//!   from 200 client addresses to the sinks, DNS queries to GW:53, portal views and coach clicks
//!   at GW:80; one line per connection in LOG (tab-separated: ms since start, proto, client ip,
//!   client port, server ip, name, outcome, microseconds from the hello to a reset);
//! - `flood NS SECONDS`: spoofed SYNs, random-subdomain queries to GW:53, half-sent hellos;
//! - `tls NS CLIENT[:PORT] SERVER NAME`: one hello; prints `reset`, `refused` or `open`;
//! - `coach NS CLIENT GW NAME`: the coach page, then its form (token, ack): prints `granted` or why not.

#[path = "../benches/synth.rs"]
mod synth;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

/// Names, the server address their DNS answer and connections use, and whether the soak's
/// policy decides them (catalogued: one event per connection).
const NAMES: &[(&str, [u8; 4], bool)] = &[
    ("claude.ai", [10, 99, 2, 2], true),
    ("chatgpt.com", [10, 99, 2, 2], true),
    ("chat.deepseek.com", [10, 99, 2, 3], true),
    ("gemini.google.com", [10, 99, 2, 4], true),
    ("api.openai.com", [10, 99, 2, 5], true),
    (
        "bedrock-runtime.us-east-1.amazonaws.com",
        [10, 99, 2, 6],
        true,
    ),
    ("example.org", [10, 99, 2, 7], false),
    ("www.epic.com", [10, 99, 2, 7], false),
    ("cdn.jsdelivr.net", [10, 99, 2, 8], false),
    ("www.wikipedia.org", [10, 99, 2, 8], false),
];
/// Where every other name resolves.
const OTHER: [u8; 4] = [10, 99, 2, 9];
/// The flood's SYNs go to an address nothing listens on.
const FLOOD_TARGET: [u8; 4] = [10, 99, 2, 20];
/// The load's client addresses: 10.20.1.10 .. 10.20.1.209.
const CLIENTS: u8 = 200;

fn client(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 20, 1, 10 + (i % CLIENTS as usize) as u8)
}

/// Move this thread (and the threads it starts later) into namespace `ns`.
fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a valid namespace descriptor; setns changes only this thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: soak_load sinks|dns|load|flood|tls|coach NS ... (see the file's header)";
    if a.len() < 2 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    enter(&a[1]);
    let r = rt();
    match a[0].as_str() {
        "sinks" => r.block_on(sinks(a[2..].iter().map(|s| s.parse().unwrap()).collect())),
        "dns" => r.block_on(dns(
            a[2].parse().unwrap(),
            a[3].parse().unwrap(),
            a.get(4).map_or(60, |t| t.parse().unwrap()),
        )),
        "load" => r.block_on(load(
            a[2].parse().unwrap(),
            a[3].parse().unwrap(),
            a[4].parse().unwrap(),
            &a[5],
            a[6].parse().unwrap(),
        )),
        "flood" => r.block_on(flood(a[2].parse().unwrap(), a[3].parse().unwrap())),
        "tls" => {
            let (ip, port) = match a[2].split_once(':') {
                Some((i, p)) => (i.parse().unwrap(), p.parse().unwrap()),
                None => (a[2].parse().unwrap(), 0),
            };
            let out = r.block_on(tls_once(ip, port, a[3].parse().unwrap(), &a[4]));
            println!("{}", out.0);
        }
        "coach" => {
            let out = r.block_on(coach(a[2].parse().unwrap(), a[3].parse().unwrap(), &a[4]));
            println!("{out}");
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

async fn sinks(addrs: Vec<Ipv4Addr>) {
    for a in addrs {
        for port in [443u16, 80] {
            let l = TcpListener::bind(SocketAddr::new(a.into(), port))
                .await
                .unwrap();
            tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let _ = tokio::time::timeout(Duration::from_secs(30), async {
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        })
                        .await;
                    });
                }
            });
        }
        let u = UdpSocket::bind(SocketAddr::new(a.into(), 443))
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                if let Ok((_, peer)) = u.recv_from(&mut buf).await {
                    let _ = u.send_to(b"server initial", peer).await;
                }
            }
        });
    }
    println!("sinks ready");
    std::future::pending::<()>().await;
}

async fn dns(addr: SocketAddr, delay_ms: u64, ttl: u32) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    let sock = Arc::new(UdpSocket::bind(addr).await.unwrap());
    let zone: HashMap<&str, [u8; 4]> = NAMES.iter().map(|(n, a, _)| (*n, *a)).collect();
    println!("dns ready");
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        for question in &q.queries {
            r.add_query(question.clone());
            let name = question.name().to_ascii();
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.ends_with(".invalid") {
                r.metadata.response_code = ResponseCode::NXDomain;
            } else if question.query_type() == RecordType::A {
                let ip = zone.get(name.as_str()).copied().unwrap_or(OTHER);
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    ttl,
                    RData::A(A(ip.into())),
                ));
            }
        }
        let s = Arc::clone(&sock);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if let Ok(b) = r.to_vec() {
                let _ = s.send_to(&b, peer).await;
            }
        });
    }
}

/// Small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    )
}

/// Connect from `src` (port 0: any), send a hello for `name`, wait up to 300 ms for a reset.
/// Returns (outcome, client port, microseconds from the hello to the reset).
async fn tls_once(src: Ipv4Addr, port: u16, dst: Ipv4Addr, name: &str) -> (String, u16, u64) {
    let hello = synth::client_hello(name, 512);
    stream_once(src, port, SocketAddr::new(dst.into(), 443), &hello).await
}

async fn stream_once(
    src: Ipv4Addr,
    port: u16,
    dst: SocketAddr,
    first: &[u8],
) -> (String, u16, u64) {
    let Ok(s) = TcpSocket::new_v4() else {
        return ("err".into(), 0, 0);
    };
    let _ = s.set_reuseaddr(true);
    if s.bind(SocketAddr::new(src.into(), port)).is_err() {
        return ("bind_err".into(), 0, 0);
    }
    let mut c = match tokio::time::timeout(Duration::from_secs(3), s.connect(dst)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return ("refused".into(), port, 0)
        }
        Ok(Err(e)) if is_reset(&e) => return ("refused".into(), port, 0),
        Ok(Err(_)) => return ("connect_err".into(), port, 0),
        Err(_) => return ("connect_timeout".into(), port, 0),
    };
    let lport = c.local_addr().map(|a| a.port()).unwrap_or(0);
    let t = Instant::now();
    if let Err(e) = c.write_all(first).await {
        return (if is_reset(&e) { "reset" } else { "err" }.into(), lport, 0);
    }
    let mut buf = [0u8; 512];
    let out = match tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
        Ok(Err(e)) if is_reset(&e) => ("reset".to_string(), lport, t.elapsed().as_micros() as u64),
        Ok(Ok(0)) => ("closed".to_string(), lport, 0),
        Ok(_) => ("open".to_string(), lport, 0),
        Err(_) => ("open".to_string(), lport, 0),
    };
    out
}

/// One QUIC connection attempt: an Initial under `dcid` whose hello has its own `random`, as a
/// real client's has (a hello resent byte for byte under a new DCID is a client's answer to a
/// Retry, not a new connection), then up to 300 ms for the server's answer.
async fn quic_once(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    name: &str,
    dcid: [u8; 8],
    random: [u8; 32],
) -> (String, u16) {
    let mut hello = synth::client_hello(name, 0);
    // Record header (5), handshake header (4), legacy version (2), then the 32-byte random.
    hello[11..43].copy_from_slice(&random);
    let hs = &hello[5..];
    let mut frames = vec![0x06, 0x00];
    frames.extend(synth::quic_varint(hs.len() as u64, 2));
    frames.extend_from_slice(hs);
    let pkt = synth::quic_v1_initial(&dcid, &[1, 2, 3, 4], &[], 0, &frames, 1200, true);
    let Ok(u) = UdpSocket::bind(SocketAddr::new(src.into(), 0)).await else {
        return ("bind_err".into(), 0);
    };
    let port = u.local_addr().map(|a| a.port()).unwrap_or(0);
    if u.send_to(&pkt, SocketAddr::new(dst.into(), 443))
        .await
        .is_err()
    {
        return ("err".into(), port);
    }
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_millis(300), u.recv_from(&mut buf)).await {
        Ok(Ok(_)) => ("answered".into(), port),
        _ => ("silent".into(), port),
    }
}

async fn dns_once(src: Ipv4Addr, gw: Ipv4Addr, name: &str, id: u16) -> (String, u16) {
    let q = synth::dns(id, name, None);
    let Ok(u) = UdpSocket::bind(SocketAddr::new(src.into(), 0)).await else {
        return ("bind_err".into(), 0);
    };
    let port = u.local_addr().map(|a| a.port()).unwrap_or(0);
    if u.send_to(&q, SocketAddr::new(gw.into(), 53)).await.is_err() {
        return ("err".into(), port);
    }
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(Duration::from_millis(3000), u.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) if n >= 4 => (
            match buf[3] & 0x0f {
                0 => "noerror",
                2 => "servfail",
                3 => "nxdomain",
                5 => "refused",
                _ => "other",
            }
            .into(),
            port,
        ),
        _ => ("timeout".into(), port),
    }
}

/// A raw HTTP/1.1 exchange with the portal; the status and body.
async fn http(src: Ipv4Addr, dst: SocketAddr, req: String) -> Option<(u16, String)> {
    let s = TcpSocket::new_v4().ok()?;
    s.bind(SocketAddr::new(src.into(), 0)).ok()?;
    let mut c = tokio::time::timeout(Duration::from_secs(3), s.connect(dst))
        .await
        .ok()?
        .ok()?;
    c.write_all(req.as_bytes()).await.ok()?;
    let mut v = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut v))
        .await
        .ok()?
        .ok()?;
    let t = String::from_utf8_lossy(&v).to_string();
    let code = t.split(' ').nth(1)?.parse().ok()?;
    Some((code, t))
}

/// GET the coach page for `name` from `src`, then post its form. `granted` when the portal
/// answers the form with a redirect (the grant is made).
async fn coach(src: Ipv4Addr, gw: Ipv4Addr, name: &str) -> String {
    let dst = SocketAddr::new(gw.into(), 80);
    let get = format!(
        "GET / HTTP/1.1\r\nHost: {name}\r\nAccept: text/html\r\nSec-Fetch-Dest: document\r\nConnection: close\r\n\r\n"
    );
    let Some((code, page)) = http(src, dst, get).await else {
        return "no_page".into();
    };
    if code == 200 {
        return "granted_already".into();
    }
    let Some(token) = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    else {
        return format!("no_token_{code}");
    };
    let body = format!("token={token}&ack=yes&justification=soak");
    let post = format!(
        "POST /.shadowgate/continue HTTP/1.1\r\nHost: {name}\r\nOrigin: http://{name}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    match http(src, dst, post).await {
        Some((c, _)) if (300..400).contains(&c) => "granted".into(),
        Some((c, _)) => format!("refused_{c}"),
        None => "no_answer".into(),
    }
}

#[derive(Default)]
struct Counts {
    tls: AtomicU64,
    http: AtomicU64,
    quic: AtomicU64,
    dns: AtomicU64,
    portal: AtomicU64,
    skipped: AtomicU64,
}

async fn load(seconds: u64, rate: u64, qrate: u64, log: &str, gw: Ipv4Addr) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut f = std::io::BufWriter::new(std::fs::File::create(log).unwrap());
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(l) = rx.blocking_recv() {
            let _ = f.write_all(l.as_bytes());
        }
        let _ = f.flush();
    });
    let start = Instant::now();
    let counts = Arc::new(Counts::default());
    let inflight = Arc::new(tokio::sync::Semaphore::new(6000));
    let mut rng = Rng(0x5eed_50a4 ^ std::process::id() as u64);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut conn_due, mut q_due, mut p_due) = (0f64, 0f64, 0f64);
    let mut id = 0u16;
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        conn_due += rate as f64 / 100.0;
        q_due += qrate as f64 / 100.0;
        p_due += 2.0 / 100.0; // two portal exchanges a second
        while conn_due >= 1.0 || q_due >= 1.0 || p_due >= 1.0 {
            let Ok(permit) = Arc::clone(&inflight).try_acquire_owned() else {
                counts.skipped.fetch_add(1, Ordering::Relaxed);
                conn_due = conn_due.min(1.0) - 1.0;
                q_due = q_due.min(1.0) - 1.0;
                p_due = p_due.min(1.0) - 1.0;
                break;
            };
            let src = client(rng.below(CLIENTS as u64) as usize);
            let (name, server, _) = NAMES[rng.below(NAMES.len() as u64) as usize];
            let server = Ipv4Addr::from(server);
            let tx = tx.clone();
            let c = Arc::clone(&counts);
            let ms = start.elapsed().as_millis();
            if conn_due >= 1.0 {
                conn_due -= 1.0;
                let pick = rng.below(100);
                let dcid = rng.next().to_be_bytes();
                let mut random = [0u8; 32];
                for part in random.chunks_mut(8) {
                    part.copy_from_slice(&rng.next().to_be_bytes());
                }
                tokio::spawn(async move {
                    let _p = permit;
                    let (proto, (out, port, us)) = if pick < 70 {
                        c.tls.fetch_add(1, Ordering::Relaxed);
                        ("tls", tls_once(src, 0, server, name).await)
                    } else if pick < 85 {
                        c.http.fetch_add(1, Ordering::Relaxed);
                        let req = format!(
                            "GET /soak HTTP/1.1\r\nHost: {name}\r\nUser-Agent: soak\r\n\r\n"
                        );
                        (
                            "http",
                            stream_once(src, 0, SocketAddr::new(server.into(), 80), req.as_bytes())
                                .await,
                        )
                    } else {
                        c.quic.fetch_add(1, Ordering::Relaxed);
                        let (o, p) = quic_once(src, server, name, dcid, random).await;
                        ("quic", (o, p, 0))
                    };
                    let _ = tx.send(format!(
                        "{ms}\t{proto}\t{src}\t{port}\t{server}\t{name}\t{out}\t{us}\n"
                    ));
                });
            } else if q_due >= 1.0 {
                q_due -= 1.0;
                id = id.wrapping_add(1);
                // Half the queries for the soak's names (cached), half for new names (upstream).
                let qname = if rng.below(2) == 0 {
                    name.to_string()
                } else {
                    format!(
                        "w{}.soak-site{}.example.net",
                        rng.below(100_000),
                        rng.below(50)
                    )
                };
                let qid = id;
                tokio::spawn(async move {
                    let _p = permit;
                    c.dns.fetch_add(1, Ordering::Relaxed);
                    let (out, port) = dns_once(src, gw, &qname, qid).await;
                    let _ = tx.send(format!(
                        "{ms}\tdns\t{src}\t{port}\t{gw}\t{qname}\t{out}\t0\n"
                    ));
                });
            } else {
                p_due -= 1.0;
                let view = rng.below(2) == 0;
                tokio::spawn(async move {
                    let _p = permit;
                    c.portal.fetch_add(1, Ordering::Relaxed);
                    let out = if view {
                        let get = "GET / HTTP/1.1\r\nHost: claude.ai\r\nAccept: text/html\r\nConnection: close\r\n\r\n".to_string();
                        match http(src, SocketAddr::new(gw.into(), 80), get).await {
                            Some((code, _)) => format!("view_{code}"),
                            None => "no_answer".into(),
                        }
                    } else {
                        coach(src, gw, "gemini.google.com").await
                    };
                    let _ = tx.send(format!(
                        "{ms}\tportal\t{src}\t0\t{gw}\t{}\t{out}\t0\n",
                        if view {
                            "claude.ai"
                        } else {
                            "gemini.google.com"
                        }
                    ));
                });
            }
        }
    }
    // Let the last connections end.
    let _ = inflight.acquire_many(6000).await;
    drop(tx);
    let _ = writer.await;
    let secs = start.elapsed().as_secs_f64();
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let conns = g(&counts.tls) + g(&counts.http) + g(&counts.quic);
    println!(
        "load: {secs:.0} s: {conns} connections ({:.0}/s: tls {}, http {}, quic {}), {} queries ({:.0}/s), {} portal exchanges, {} skipped (6,000 in flight)",
        conns as f64 / secs,
        g(&counts.tls),
        g(&counts.http),
        g(&counts.quic),
        g(&counts.dns),
        g(&counts.dns) as f64 / secs,
        g(&counts.portal),
        g(&counts.skipped)
    );
}

async fn flood(seconds: u64, gw: Ipv4Addr) {
    // Spoofed SYNs through a raw socket (the kernel routes them to the gateway).
    let syn = std::thread::spawn(move || {
        // SAFETY: plain socket call; the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut rng = Rng(0xf100d);
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            for _ in 0..100 {
                let src = [10, 20, 1, 220 + rng.below(30) as u8];
                let mut v = Vec::with_capacity(64);
                etherparse::PacketBuilder::ipv4(src, FLOOD_TARGET, 64)
                    .tcp(
                        1024 + rng.below(60000) as u16,
                        443,
                        rng.next() as u32,
                        64240,
                    )
                    .syn()
                    .write(&mut v, &[])
                    .unwrap();
                // SAFETY: zeroed sockaddr_in is valid; fields set below.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes(FLOOD_TARGET);
                // SAFETY: `v` and `sa` are valid for the call.
                let r = unsafe {
                    libc::sendto(
                        fd,
                        v.as_ptr() as *const libc::c_void,
                        v.len(),
                        0,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    )
                };
                sent += (r > 0) as u64;
            }
            // About 10,000 SYNs a second.
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        sent
    });
    // Random subdomains (2,000 a second) and half-sent hellos (200 a second).
    let start = Instant::now();
    let mut rng = Rng(0xd0d0);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut q, mut h) = (0u64, 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        for _ in 0..20 {
            let src = client(rng.below(CLIENTS as u64) as usize);
            let name = format!("r{:x}.flood.example.com", rng.next());
            q += 1;
            tokio::spawn(async move {
                let _ = dns_once(src, gw, &name, 7).await;
            });
        }
        for _ in 0..2 {
            let src = client(rng.below(CLIENTS as u64) as usize);
            let (_, server, _) = NAMES[rng.below(NAMES.len() as u64) as usize];
            h += 1;
            tokio::spawn(async move {
                let hello = synth::client_hello("half.flood.example.com", 1200);
                let s = TcpSocket::new_v4().ok()?;
                s.bind(SocketAddr::new(src.into(), 0)).ok()?;
                let mut c = s
                    .connect(SocketAddr::new(Ipv4Addr::from(server).into(), 443))
                    .await
                    .ok()?;
                c.write_all(&hello[..hello.len() / 2]).await.ok()?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                Some(())
            });
        }
    }
    let syns = syn.join().unwrap_or(0);
    println!("flood: {seconds} s: {syns} SYNs, {q} random-subdomain queries, {h} half hellos");
    let _ = IpAddr::from(gw);
}
