//! The daemon on a namespace testbed (client, gateway, internet): `shadowgate run` captures on
//! the gateway's LAN side, decides, records, answers `/metrics`, reloads and stops cleanly.

use crate::common;
use crate::common::cli::bin;
use crate::common::daemon::*;
use crate::common::events::events;
use crate::common::files::{policies, root, tmpdir};
use crate::common::http;
use crate::common::net::free_port;
use crate::common::netns::{self, Testbed, CLIENT, SERVER, SERVER2};
use crate::common::policy::copy_bundled;
use crate::common::servers::tls_get;
use crate::common::synth;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Monitor mode: a ClientHello for claude.ai is decided (steer) and recorded as "would stop",
/// and the connection goes through; `/metrics` counts it; SIGHUP with a broken policy keeps the
/// old one; SIGTERM stops cleanly with a sensor_stop event.
#[test]
fn monitor_mode_records_would_stop_and_lets_it_through() {
    need_root!();
    let tb = Testbed::new("sgmon");
    let dir = tmpdir("daemon", "monitor");
    let policy = copy_bundled(&dir);
    let cfg = config(
        &dir,
        &policy,
        &format!(
            "[enforce]\nmode = \"monitor\"\nbreak_glass_file = \"{}\"\n",
            dir.join("glass").display()
        ),
    );
    let server = tls_server(&tb, SERVER, &["claude.ai"]);
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);

    let got = tls_from(&tb, CLIENT, SERVER, "claude.ai");
    assert!(
        got.as_deref().unwrap_or("").contains("ok"),
        "{got:?}\n{}",
        d.log()
    );
    let conns = server.wait(1);
    assert!(
        conns[0].handshake_done && conns[0].app_bytes > 0,
        "{conns:?}"
    );

    let e = wait_event(&dir, |e| {
        e.name == "claude.ai" && e.kind == "tls_client_hello"
    });
    assert_eq!(e.action, "steer");
    assert_eq!(e.client_ip, CLIENT.to_string());
    assert_eq!(e.evidence.as_deref(), Some("wire"));
    let detail = e.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("\"enforcement\":\"would_stop\""),
        "{detail}"
    );

    // An uncatalogued site: no event, connection fine.
    let _srv2 = tls_server(&tb, SERVER2, &["example.org"]);
    let got = tls_from(&tb, CLIENT, SERVER2, "example.org");
    assert!(got.is_ok(), "{got:?}");

    // Metrics count frames, observations and the decision.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metric(&m, "shadowgate_frames_total", "lan0") > 0.0, "{m}");
    assert!(
        metric(&m, "shadowgate_observations_total", "tls_client_hello") >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "shadowgate_decisions_total", "action=\"steer\"") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "shadowgate_kernel_drops_total", "lan0") == 0.0,
        "{m}"
    );
    assert!(m.contains("shadowgate_events_written_total"), "{m}");

    // SIGHUP with a broken policy: rejected, the old one keeps deciding.
    std::fs::write(policy.join("policy.toml"), "[[rule]]\nid = \n").unwrap();
    d.signal(libc::SIGHUP);
    wait_event(&dir, |e| e.kind == "policy_rejected");
    std::thread::sleep(Duration::from_millis(300));
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert!(
        metric(&m, "shadowgate_policy_reloads_total", "failed") >= 1.0,
        "{m}"
    );
    let before = events(&dir)
        .iter()
        .filter(|e| e.name == "claude.ai")
        .count();
    let _ = tls_from(&tb, CLIENT, SERVER, "claude.ai");
    let t = Instant::now();
    while events(&dir)
        .iter()
        .filter(|e| e.name == "claude.ai")
        .count()
        == before
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "old policy stopped deciding"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: clean stop, on record.
    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon stops on SIGTERM");
    assert!(st.success(), "{st:?}\n{}", d.log());
    let all = events(&dir);
    assert!(all.iter().any(|e| e.kind == "sensor_start"));
    assert!(all.iter().any(|e| e.kind == "sensor_stop"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The adversarial frames of the trust issue that fit on the wire (up to the MTU) sent at the
/// gateway from a LAN device: the daemon keeps running and deciding, and counts the damage.
#[test]
fn daemon_survives_adversarial_frames_on_the_wire() {
    need_root!();
    let tb = Testbed::new("sgadv");
    let dir = tmpdir("daemon", "adversarial");
    let policy = copy_bundled(&dir);
    let cfg = config(&dir, &policy, "[enforce]\nmode = \"monitor\"\n");
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    let mut frames = Vec::new();
    let mut skipped = 0;
    for entry in std::fs::read_dir(root().join("pcaps/adversarial")).unwrap() {
        let p = entry.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "pcap" && ext != "pcapng" {
            continue;
        }
        let cf = shadowgate::capture::CaptureFile::open(&p).unwrap();
        for f in cf.frames().unwrap().flatten() {
            // Ethernet frames only, up to 1514 bytes (MTU 1500 + header).
            if f.linktype == 1 && f.data.len() <= 1514 && f.data.len() >= 14 {
                frames.push(f.data.to_vec());
            } else {
                skipped += 1;
            }
        }
    }
    assert!(
        frames.len() > 100,
        "{} frames, {skipped} skipped",
        frames.len()
    );
    // And 5,000 mutations of them, up to full frame size (1514 bytes).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = frames.clone();
    for _ in 0..5_000 {
        let mut f = base[(rnd() as usize) % base.len()].clone();
        let grow = (rnd() % 2 == 0) as usize * ((rnd() as usize) % 1514);
        while f.len() < grow {
            f.push(rnd() as u8);
        }
        for _ in 0..1 + rnd() % 8 {
            let i = 14 + (rnd() as usize) % (f.len().max(15) - 14);
            if i < f.len() {
                f[i] = rnd() as u8;
            }
        }
        f.truncate(1514);
        frames.push(f);
    }
    let n = frames.len();
    let sent = tb
        .in_ns(&tb.client, move || send_frames("eth0", &frames))
        .join()
        .unwrap();
    assert!(sent * 10 >= n * 9, "sent {sent} of {n}");
    eprintln!("sent {sent} of {n} adversarial frames ({skipped} too large or not Ethernet)");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "daemon died:\n{}",
        d.log()
    );
    let (code, body) = http_get(&tb, METRICS.parse().unwrap(), "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert!(
        metric(&m, "shadowgate_frames_total", "lan0") >= sent as f64 * 0.9,
        "{m}"
    );
    assert!(metric(&m, "shadowgate_observations_total", "") > 0.0, "{m}");
    // Still deciding real traffic afterwards.
    let _srv = tls_server(&tb, SERVER, &["chatgpt.com"]);
    let got = tls_from(&tb, CLIENT, SERVER, "chatgpt.com");
    assert!(got.is_ok(), "{got:?}");
    wait_event(&dir, |e| {
        e.name == "chatgpt.com" && e.client_ip == CLIENT.to_string()
    });
    d.signal(libc::SIGTERM);
    assert!(d
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kernel drops are visible: with the daemon stopped (SIGSTOP) a burst overflows its small
/// ring; after SIGCONT the drops are in `/metrics` and on record as a `kernel_drops` event.
#[test]
fn kernel_drops_are_counted_and_recorded() {
    need_root!();
    let tb = Testbed::new("sgdrop");
    let dir = tmpdir("daemon", "drops");
    let policy = copy_bundled(&dir);
    let cfg = config(&dir, &policy, "[enforce]\nmode = \"monitor\"\n");
    // A 2 MiB ring (eight 256 KiB blocks).
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("stats_interval_s = 1", "stats_interval_s = 1\nring_mib = 2");
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    d.signal(libc::SIGSTOP);
    // 20,000 UDP frames of 1,000 bytes: ten times the ring.
    let frames: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| {
            synth::eth_udp(
                [2, 0, 0, 0, 0, 2],
                [0xff; 6],
                CLIENT.into(),
                SERVER.into(),
                64,
                (10_000 + (i % 50_000) as u16, 9),
                &[0u8; 958],
            )
        })
        .collect();
    let sent = tb
        .in_ns(&tb.client, move || send_frames("eth0", &frames))
        .join()
        .unwrap();
    assert!(sent > 19_000, "{sent}");
    d.signal(libc::SIGCONT);
    let e = wait_event(&dir, |e| e.kind == "kernel_drops");
    assert!(e.detail.as_deref().unwrap().contains("\"drops\":"), "{e:?}");
    std::thread::sleep(Duration::from_millis(1200));
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    let drops = metric(&m, "shadowgate_kernel_drops_total", "lan0");
    let frames = metric(&m, "shadowgate_frames_total", "lan0");
    assert!(drops > 1_000.0, "{m}");
    let offered = metric(&m, "shadowgate_kernel_packets_total", "lan0");
    eprintln!("{sent} frames sent into a 2 MiB ring while stopped: {offered} offered, {frames} read, {drops} dropped by the kernel");
    // What the ring held was read (eight 256 KiB blocks of ~1 KB frames; a block the timer
    // retired with a frame or two before the burst holds no more), the rest counted.
    assert!(frames > 200.0, "{m}");
    d.signal(libc::SIGTERM);
    assert!(d
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two capture threads sharing the interface by client address: a client's own lookup and its
/// connection without SNI meet on one thread, so the connection is named by the lookup
/// (`own_lookup`) every time. (With `fanout = "flow"` this fails about half the time.)
#[test]
fn two_capture_threads_keep_a_clients_lookup_and_connection_together() {
    need_root!();
    let tb = Testbed::new("sgfan");
    let dir = tmpdir("daemon", "fanout");
    let policy = copy_bundled(&dir);
    let cfg = config(&dir, &policy, "[enforce]\nmode = \"monitor\"\n");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("stats_interval_s = 1", "stats_interval_s = 1\nthreads = 2");
    std::fs::write(&cfg, text).unwrap();
    tb.in_ns(&tb.inet, || {
        common::servers::dns_server(
            SocketAddr::new(netns::UPSTREAM_DNS.into(), 53),
            vec![("claude.ai", SERVER)],
            Duration::from_millis(20),
        );
    })
    .join()
    .unwrap();
    let _srv = tls_server(&tb, SERVER, &["claude.ai"]);
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    for round in 0..6 {
        let got = tb
            .in_ns(&tb.client, || {
                let ips = common::servers::dns_lookup(
                    CLIENT.into(),
                    SocketAddr::new(netns::UPSTREAM_DNS.into(), 53),
                    "claude.ai",
                )?;
                // Connect to the address without SNI (an IP server name sends none).
                tls_get(
                    Some(CLIENT.into()),
                    SocketAddr::new(ips[0].into(), 443),
                    &ips[0].to_string(),
                )
            })
            .join()
            .unwrap();
        assert!(got.is_ok(), "round {round}: {got:?}");
    }
    let t = Instant::now();
    loop {
        let inferred: Vec<_> = events(&dir)
            .into_iter()
            .filter(|e| e.kind == "tls_client_hello")
            .collect();
        if inferred.len() >= 6 {
            for e in &inferred {
                assert_eq!(e.name, "claude.ai", "{e:?}");
                assert_eq!(e.evidence.as_deref(), Some("own_lookup"), "{e:?}");
            }
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{inferred:#?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert!(m.contains("thread=\"1\""), "{m}");
    d.signal(libc::SIGTERM);
    assert!(d
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An upstream resolver on the internet side that can go silent: while `answering` is false it
/// drops every question (an ISP outage), otherwise it answers NXDOMAIN at once.
fn switchable_upstream(tb: &Testbed, answering: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    let addr = SocketAddr::new(netns::UPSTREAM_DNS.into(), 53);
    let sock = tb
        .in_ns(&tb.inet, move || std::net::UdpSocket::bind(addr).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if !answering.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.metadata.response_code = ResponseCode::NXDomain;
            for question in &q.queries {
                r.add_query(question.clone());
            }
            if let Ok(b) = r.to_vec() {
                let _ = sock.send_to(&b, peer);
            }
        }
    });
}

/// Issue 18, part 1: upstream DNS unreachable for 3 minutes. The daemon keeps feeding systemd's
/// watchdog the whole time (so it is not restarted and keeps its cache, grants and stop sets),
/// `/healthz` says degraded (200), the metric says the upstream is down, and the store records
/// one `dns_upstream_down` and, once an upstream answers again, one `dns_upstream_up`.
#[test]
fn upstream_dns_outage_degrades_but_never_starves_the_watchdog() {
    need_root!();
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let tb = Testbed::new("sgwdog");
    let dir = tmpdir("daemon", "watchdog");
    let policy = copy_bundled(&dir);
    let cfg = config(
        &dir,
        &policy,
        &format!(
            "[dns]\nlisten = [\"{}:53\"]\nupstreams = [\"{}:53\"]\nclients = [\"10.20.0.0/16\"]\n\
             upstream_timeout_ms = 400\n",
            netns::GW_LAN,
            netns::UPSTREAM_DNS
        ),
    );
    let answering = Arc::new(AtomicBool::new(true));
    switchable_upstream(&tb, Arc::clone(&answering));
    let notify = NotifySocket::bind(&dir);
    // systemd would kill the daemon after 2 s without a keep-alive; it pings every second.
    let mut d = Daemon::start_with_env(
        &tb,
        &cfg,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    wait_healthy(&tb, &d);
    let lookup = |n: u32| dns_from(&tb, CLIENT, netns::GW_LAN, &format!("q{n}.outage.example"));
    assert_eq!(lookup(0), Err("NXDomain".to_string()), "{}", d.log());

    // The outage: 3 minutes of questions that no upstream answers.
    answering.store(false, Ordering::SeqCst);
    let outage = Instant::now();
    let mut n = 1;
    let mut degraded_seen = None;
    while outage.elapsed() < Duration::from_secs(180) {
        let got = lookup(n);
        assert!(
            got.is_err() && got != Err("NXDomain".to_string()),
            "{got:?}"
        );
        n += 1;
        if degraded_seen.is_none() && outage.elapsed() > Duration::from_secs(75) {
            let (code, body) = http_get(&tb, METRICS.parse().unwrap(), "/healthz").unwrap();
            assert_eq!(code, 200, "degraded is not failing: {body}");
            assert!(body.contains("\"status\":\"degraded\""), "{body}");
            assert!(body.contains("\"dns\":\"failing\""), "{body}");
            let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
            assert_eq!(metric(&m, "shadowgate_dns_upstream_up", ""), 0.0, "{m}");
            assert_eq!(metric(&m, "shadowgate_health_status", ""), 1.0, "{m}");
            degraded_seen = Some(body);
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(degraded_seen.is_some());
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());
    let e = wait_event(&dir, |e| e.kind == "dns_upstream_down");
    assert!(
        e.detail
            .as_deref()
            .unwrap_or("")
            .contains(&netns::UPSTREAM_DNS.to_string()),
        "{e:?}"
    );

    // The ISP is back: the next question is answered, the recovery is on record.
    answering.store(true, Ordering::SeqCst);
    let back = Instant::now();
    // (the upstream answers NXDOMAIN: an answer, where the outage gave none)
    while lookup(n) != Err("NXDomain".to_string()) {
        n += 1;
        assert!(back.elapsed() < Duration::from_secs(10), "{}", d.log());
    }
    wait_event(&dir, |e| e.kind == "dns_upstream_up");
    let t = Instant::now();
    loop {
        let (code, body) = http_get(&tb, METRICS.parse().unwrap(), "/healthz").unwrap();
        if code == 200 && body.contains("\"status\":\"ok\"") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let kinds: Vec<String> = events(&dir)
        .into_iter()
        .filter(|e| e.kind.starts_with("dns_upstream"))
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["dns_upstream_down", "dns_upstream_up"]);

    // The keep-alives never paused for as long as systemd waits (2 s), outage included.
    let pings = notify.keepalives();
    assert!(pings.len() >= 180, "{} keep-alives", pings.len());
    let worst = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(worst < Duration::from_millis(1900), "a {worst:?} gap");
    assert!(
        pings.last().unwrap().elapsed() < Duration::from_secs(2),
        "keep-alives still coming"
    );
    let msgs = notify.messages();
    assert!(msgs.iter().any(|m| m.contains("READY=1")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("STATUS=degraded")),
        "systemctl status shows the outage: {msgs:?}"
    );
    d.signal(libc::SIGTERM);
    assert!(d
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

/// An output that blocks the capture thread (as a wedged syscall would) until released.
struct Wedge(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl shadowgate::pipeline::Output for Wedge {
    fn send(
        &mut self,
        o: &shadowgate::flow::Observation,
        _: Option<&shadowgate::policy::Decision>,
    ) -> Result<Option<shadowgate::record::Enforced>, String> {
        if o.name.as_deref() == Some("wedge.example") {
            let (m, c) = &*self.0;
            let mut wedged = m.lock().unwrap();
            *wedged = true;
            c.notify_all();
            while *wedged {
                wedged = c.wait(wedged).unwrap();
            }
        }
        Ok(None)
    }
}

/// Issue 18, part 1: liveness is the daemon's own. A real capture thread on the gateway's LAN
/// interface feeds the watchdog while it runs; once it is stuck in its pipeline, the keep-alives
/// stop (systemd would restart the daemon); released, they resume.
#[test]
fn a_stalled_capture_thread_stops_the_watchdog() {
    need_root!();
    use shadowgate::capture::live::{LiveCapture, LiveOpts};
    use shadowgate::daemon::{capture, health::Health, metrics::Metrics, Watchdog};
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Condvar, Mutex};
    let tb = Testbed::new("sgstall");
    let dir = tmpdir("daemon", "stall");
    let notify = NotifySocket::bind(&dir);
    let cap = tb
        .in_ns(&tb.gw, || LiveCapture::open("lan0", &LiveOpts::default()))
        .join()
        .unwrap()
        .expect("capture on lan0");
    let health = Arc::new(Health::new(vec!["lan0/0".into()], false));
    let wedge = Arc::new((Mutex::new(false), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = shadowgate::pipeline::Pipeline::new(shadowgate::flow::Config::default())
        .with_output(Box::new(Wedge(Arc::clone(&wedge))));
    let thread = capture::spawn(
        cap,
        pipeline,
        capture::CaptureCtx {
            index: 0,
            stop: Arc::clone(&stop),
            health: Arc::clone(&health),
            metrics: Metrics::new(),
            system: None,
            stats_interval: Duration::from_secs(1),
        },
    )
    .unwrap();
    let mut wd = Watchdog::new(
        Some(Duration::from_millis(1000)),
        Some(notify.path.clone().into_os_string()),
    );
    let run = |wd: &mut Watchdog, secs: u64| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            health.main_beat.now();
            wd.tick(&health);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    run(&mut wd, 3);
    let before = notify.keepalives().len();
    assert!(before >= 4, "{before} keep-alives while alive");

    // A DNS question for wedge.example from the client: the capture thread sees it and wedges.
    let gw = SocketAddr::new(netns::GW_LAN.into(), 53);
    tb.in_ns(&tb.client, move || {
        let _ = common::servers::dns_lookup(CLIENT.into(), gw, "wedge.example");
    });
    let t = Instant::now();
    while !*wedge.0.lock().unwrap() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the capture thread never saw the query"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stalled_at = Instant::now();
    run(&mut wd, 8);
    let alive = health.alive();
    assert!(
        alive
            .as_ref()
            .is_err_and(|e| e.contains("capture thread lan0/0")),
        "{alive:?}"
    );
    // Up to the stale limit (5 s) it may still ping; after it, none.
    let late: Vec<_> = notify
        .keepalives()
        .into_iter()
        .filter(|t| *t > stalled_at + Duration::from_millis(5600))
        .collect();
    assert!(
        late.is_empty(),
        "{} keep-alives from a stalled daemon",
        late.len()
    );

    // Released: it beats again and the keep-alives resume.
    *wedge.0.lock().unwrap() = false;
    wedge.1.notify_all();
    let resumed = Instant::now();
    run(&mut wd, 3);
    assert!(notify.keepalives().iter().any(|t| *t > resumed));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    thread.join().unwrap();
}

/// Issue 18, part 2: a configuration error exits with status 78 (the unit's
/// RestartPreventExitStatus) and one journal line that says what to fix: a DNS port another
/// resolver holds, and a broken configuration file.
#[test]
fn configuration_errors_exit_78_with_one_line_saying_what_to_fix() {
    let dir = tmpdir("daemon", "exit78");
    let policy = policies();
    // Port taken (as by dnsmasq): hold a UDP port on loopback, point [dns] listen at it.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = dir.join("taken.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\ndir = \"{}\"\n[store]\npath = \"{}\"\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\n\
             upstreams = [\"127.0.0.1:9\"]\nclients = [\"127.0.0.0/8\"]\n",
            policy.display(),
            dir.join("events.db").display()
        ),
    )
    .unwrap();
    let run = |cfg: &std::path::Path| {
        bin()
            .args(["run", "--config"])
            .arg(cfg)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    let o = run(&cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("shadowgate: configuration error (exit status 78")
            && last.contains(&format!("127.0.0.1:{port}"))
            && last.contains("another resolver")
            && last.contains("systemctl restart shadowgate"),
        "{err}"
    );
    drop(held);

    // A broken file: the same status, the file and line named.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[store\npath = 1\n").unwrap();
    let o = run(&bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert_eq!(err.lines().count(), 1, "one journal line: {err}");
    assert!(err.contains("bad.toml"), "{err}");

    // A capture interface that does not exist (a typo): the same status, the name said.
    let noif = dir.join("noif.toml");
    std::fs::write(
        &noif,
        format!(
            "[policy]\ndir = \"{}\"\n[store]\npath = \"{}\"\n[capture]\ninterfaces = [\"lan-typo9\"]\n",
            policy.display(),
            dir.join("events.db").display()
        ),
    )
    .unwrap();
    let o = run(&noif);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.lines().last().unwrap_or_default().contains("lan-typo9"),
        "{err}"
    );

    // Something a restart may cure is not a configuration error: a store path that cannot be
    // created (a directory where the file should be stands in for a disk that is not there).
    let blocked = dir.join("blocked.toml");
    std::fs::create_dir_all(dir.join("store-is-a-dir")).unwrap();
    std::fs::write(
        &blocked,
        format!(
            "[policy]\ndir = \"{}\"\n[store]\npath = \"{}\"\n[dns]\nlisten = [\"127.0.0.1:0\"]\n\
             upstreams = [\"127.0.0.1:9\"]\nclients = [\"127.0.0.0/8\"]\n",
            policy.display(),
            dir.join("store-is-a-dir").display()
        ),
    )
    .unwrap();
    let o = run(&blocked);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Issue 18, the disk: the running daemon (without capture: a `[dns]` resolver on 127.0.0.1
/// whose upstream never answers) applies `retention_days` at start and the `max_mb` cap. A store
/// pre-filled with events from three days ago, half delivered by the configured sink (a SIEM that
/// is down) and an old cursor of a removed sink: retention deletes the old delivered events,
/// keeps the old undelivered ones and says how many; over the 1 MiB cap with only undelivered
/// events left, the store is full: one `store_full` event, the metric, and `/healthz` say so,
/// and nothing undelivered is deleted.
#[test]
fn daemon_applies_retention_and_the_size_cap_but_keeps_undelivered_events() {
    need_root!();
    use shadowgate::record::{Event, Store, SystemKind};
    let dir = tmpdir("daemon", "retention");
    let policy = copy_bundled(&dir);
    let db = dir.join("events.db");
    let now = shadowgate::time::now_ns();
    let day = 86_400 * shadowgate::time::SEC;
    {
        let mut st = Store::open(&db).unwrap();
        let ev = |i: usize, ts: u64| {
            let mut e = Event::system(
                SystemKind::SensorStart,
                ts,
                "test-gw",
                "x",
                serde_json::json!({}),
            );
            e.kind = shadowgate::flow::Kind::TlsClientHello.into();
            e.seen_via = "tls".into();
            e.action = Some(shadowgate::policy::Action::Steer);
            e.client_ip = format!("10.0.{}.{}", i / 250, i % 250);
            e.name = "claude.ai".into();
            e.detail = Some("y".repeat(200));
            e
        };
        // seq 1..=6000 three days old, 6001..=7000 an hour old.
        let mut old: Vec<Event> = (0..6000).map(|i| ev(i, now - 3 * day)).collect();
        st.append(&mut old).unwrap();
        let mut recent: Vec<Event> = (0..1000).map(|i| ev(i, now - day / 24)).collect();
        st.append(&mut recent).unwrap();
        st.set_cursor("siem", 3000).unwrap();
        // A sink removed from the configuration: its cursor must not hold anything back.
        st.set_cursor("removed-siem", 10).unwrap();
        assert!(st.size().unwrap().used_bytes() > 2 << 20);
    }
    // An upstream that never answers, a SIEM that refuses connections.
    let upstream = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nid = \"test-gw\"\n\n[policy]\ndir = \"{}\"\n\n\
             [store]\npath = \"{}\"\nbatch = 1\nretention_days = 1\nmax_mb = 1\n\n\
             [dns]\nlisten = [\"127.0.0.1:{}\"]\nupstreams = [\"{}\"]\nclients = [\"127.0.0.0/8\"]\n\n\
             [metrics]\nlisten = \"{metrics}\"\n\n\
             [[sink]]\nname = \"siem\"\ntype = \"jsonl\"\naddress = \"127.0.0.1:{}\"\n",
            policy.display(),
            db.display(),
            free_port(),
            upstream.local_addr().unwrap(),
            free_port(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        stderr: Default::default(),
    };
    let daemon_log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();

    let full = wait_event(&dir, |e| e.kind == "store_full");
    assert_eq!(full.severity, "high");
    assert!(full.name.contains("sink siem"), "{}", full.name);
    let retention = events(&dir)
        .into_iter()
        .find(|e| e.kind == "retention")
        .expect("a retention event");
    let detail: serde_json::Value =
        serde_json::from_str(retention.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["reason"], "retention", "{detail}");
    assert_eq!(detail["days"], 1, "{detail}");
    assert_eq!(detail["deleted"], 3000, "{detail}");
    assert_eq!(detail["kept_undelivered"], 3000, "{detail}");

    // Old delivered events gone, every undelivered one kept (old or not), nothing else deleted.
    let all = events(&dir);
    let decisions: Vec<_> = all.iter().filter(|e| !e.is_system()).collect();
    assert_eq!(decisions.len(), 4000);
    assert!(decisions.iter().all(|e| e.seq > 3000));
    assert_eq!(decisions.iter().filter(|e| e.ts < now - day).count(), 3000);

    // Metrics and health say so (health stays 200: the store's state is a warning).
    let t = Instant::now();
    let m = loop {
        let (_, m) = http::get(metrics, "/metrics").unwrap_or_default();
        if metric(&m, "shadowgate_store_full", "") == 1.0 || t.elapsed() > Duration::from_secs(5) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metric(&m, "shadowgate_store_full", ""), 1.0, "{m}");
    assert_eq!(
        metric(&m, "shadowgate_store_deleted_total", "reason=\"retention\""),
        3000.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "shadowgate_store_deleted_total", "reason=\"size\""),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "shadowgate_store_max_bytes", ""),
        (1u64 << 20) as f64,
        "{m}"
    );
    assert!(
        metric(&m, "shadowgate_store_bytes", "") > (1u64 << 20) as f64,
        "{m}"
    );
    let (code, body) = http::get(metrics, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    let store = h["store"].as_str().unwrap_or_default();
    assert!(
        store.starts_with("full: ") && store.contains("max_mb"),
        "{body}"
    );

    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon stops on SIGTERM");
    assert!(st.success(), "{st:?}\n{}", daemon_log());
    let all = events(&dir);
    assert_eq!(all.iter().filter(|e| e.kind == "store_full").count(), 1);
    assert_eq!(all.iter().filter(|e| !e.is_system()).count(), 4000);
    let _ = std::fs::remove_dir_all(&dir);
}
