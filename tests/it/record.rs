//! Record: the event store survives SIGKILL with every acknowledged event, sinks deliver
//! everything in order once a SIEM that was down is back, and the real transports (JSON lines
//! over TCP, syslog over UDP, TCP and TLS, webhook) carry ECS / CEF as promised. Receivers are
//! listeners the test starts on 127.0.0.1.

use crate::common::cli::{bin, replay_with};
use crate::common::events::{events, json_lines};
use crate::common::files::{policies, store_config, tmpdir};
use crate::common::frames::ai_capture;
use crate::common::net::{free_port, tcp_collector, Collect};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowgate::policy::Action;
use shadowgate::record::{Query, Store, SystemKind};

#[test]
fn store_file_is_private_and_versioned() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmpdir("record", "store");
    let cfg = store_config(&d, "shadowgate.toml", &policies(), "");
    let pcap = ai_capture(&d, 50);
    let out = replay_with(&cfg, &pcap, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["events.db", "events.db-wal", "events.db-shm"] {
        if let Ok(m) = std::fs::metadata(d.join(f)) {
            assert_eq!(
                m.permissions().mode() & 0o077,
                0,
                "{f} is readable by others"
            );
        }
    }
    let st = Store::open(&d.join("events.db")).unwrap();
    // While open, SQLite's -wal and -shm exist: they must be as private as the database (this
    // test process has the ordinary umask, so this checks the store itself, not the CLI's).
    for f in ["events.db-wal", "events.db-shm"] {
        let m = std::fs::metadata(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(
            m.permissions().mode() & 0o077,
            0,
            "{f} is readable by others"
        );
    }
    assert_eq!(st.schema_version(), 4);
    let n = st.count().unwrap();
    assert!(n >= 50, "{n}");
    let claude = st
        .query(&Query {
            service: Some("claude".into()),
            ..Query::default()
        })
        .unwrap();
    assert!(
        !claude.is_empty()
            && claude
                .iter()
                .all(|e| e.service.as_deref() == Some("claude") && e.action == Some(Action::Steer))
    );
    // The CLI query: CSV with a header and one row per event.
    let csv = bin()
        .args(["events", "--format", "csv", "--action", "steer", "--store"])
        .arg(d.join("events.db"))
        .output()
        .unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(text.starts_with("id,seq,ts,sensor,client_ip"), "{text}");
    let steer = st
        .query(&Query {
            action: Some(Some(Action::Steer)),
            ..Query::default()
        })
        .unwrap()
        .len();
    assert_eq!(text.lines().count(), steer + 1);
    // Retention never deletes what a sink has yet to deliver.
    st.set_cursor("slow-siem", 10).unwrap();
    let r = st
        .apply_retention(&["slow-siem".to_string()], 0, u64::MAX)
        .unwrap();
    assert_eq!((r.deleted, r.kept_undelivered), (10, n as u64 - 10));
    assert_eq!(st.count().unwrap(), n - 10);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sigkill_during_a_burst_keeps_every_acknowledged_event_and_delivers_it() {
    let d = tmpdir("record", "kill");
    let out_file = d.join("siem.jsonl");
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &policies(),
        &format!(
            "[[sink]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n",
            out_file.display()
        ),
    );
    let pcap = ai_capture(&d, 40_000);
    let mut child = bin()
        .args([
            "replay",
            "-q",
            "--emit",
            "decisions",
            "--print-commits",
            "--drain-timeout",
            "0",
            "--config",
        ])
        .arg(&cfg)
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0i64;
    let mut commits = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("shadowgate: committed through seq ") {
            acked = n.parse().unwrap();
            commits += 1;
            if commits == 5 {
                child.kill().unwrap(); // SIGKILL, mid-burst
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the replay finished before it could be killed"
    );
    assert!(acked > 0);
    let stored = events(&d);
    assert!(
        stored.len() as i64 >= acked,
        "acknowledged {acked}, stored {}",
        stored.len()
    );
    for (i, e) in stored.iter().enumerate().take(acked as usize) {
        assert_eq!(e.seq, i as i64 + 1);
    }
    // Restarted delivery sends everything that was recorded, in order.
    let out = bin()
        .args(["deliver", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&std::fs::read_to_string(&out_file).unwrap());
    assert_eq!(lines.len(), stored.len());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["event"]["sequence"], i as i64 + 1);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn siem_down_then_back_gets_everything_in_order() {
    let d = tmpdir("record", "down");
    let port = free_port(); // nothing listens yet: the SIEM is down
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &policies(),
        &format!("[[sink]]\nname = \"siem\"\ntype = \"jsonl\"\naddress = \"127.0.0.1:{port}\"\n"),
    );
    // A DNS lookup is one decision (query and answer together): 450 flows give over 500 events.
    let pcap = ai_capture(&d, 450);
    let out = replay_with(&cfg, &pcap, 1);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events wait in the store") && err.contains("Connection refused"),
        "{err}"
    );
    let st = Store::open(&d.join("events.db")).unwrap();
    let total = st.count().unwrap();
    assert!(total > 500);
    assert_eq!(st.cursor("siem").unwrap(), 0);

    // The SIEM comes back.
    let got = tcp_collector(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Collect::WholeConnections,
    );
    let out = bin()
        .args(["deliver", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    let seqs: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["sequence"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // The outage (recorded by the replay's drain) and the recovery are system events in the
    // same feed: the recovery is the one event added by the delivery run.
    let events = st.query(&Query::default()).unwrap();
    assert_eq!(events.len() as i64, total + 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == SystemKind::SinkDown.into())
            .count(),
        1
    );
    assert_eq!(events.last().unwrap().kind, SystemKind::SinkUp.into());
    assert_eq!(seqs, (1..=total + 1).collect::<Vec<_>>());
    assert_eq!(st.cursor("siem").unwrap(), total + 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// Split RFC 6587 octet-counted frames.
fn frames(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(sp) = b.iter().position(|&c| c == b' ') {
        let n: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().unwrap();
        out.push(String::from_utf8(b[sp + 1..sp + 1 + n].to_vec()).unwrap());
        b = &b[sp + 1 + n..];
    }
    out
}

fn check_syslog(msg: &str) {
    assert!(msg.starts_with("<16") && msg.contains(">1 "), "{msg}");
    assert!(
        msg.contains(" shadowgate ") && msg.contains("CEF:0|shadowgate|shadowgate|"),
        "{msg}"
    );
    assert!(msg.contains("act=") && msg.contains("externalId="), "{msg}");
    // Decisions carry the service; system events (start, stop, retention) their detail.
    assert!(
        msg.contains(" decision - CEF") && msg.contains("cs1Label=service")
            || msg.contains(" system - CEF:0|") && msg.contains("cs6Label=detail"),
        "{msg}"
    );
}

#[test]
fn syslog_over_udp_tcp_and_tls_with_cef() {
    let d = tmpdir("record", "syslog");
    // TLS server certificate for "localhost", trusted through ca_file.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca = d.join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let tls_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = tls_listener.local_addr().unwrap().port();
    let tls_got = Arc::new(Mutex::new(Vec::new()));
    {
        let g = Arc::clone(&tls_got);
        let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        let cfg = Arc::new(cfg);
        std::thread::spawn(move || {
            for s in tls_listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = Vec::new();
                let _ = tls.read_to_end(&mut buf);
                g.lock().unwrap().extend_from_slice(&buf);
            }
        });
    }
    let tcp_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp_listener.local_addr().unwrap().port();
    let tcp_got = tcp_collector(tcp_listener, Collect::WholeConnections);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &policies(),
        &format!(
            "[[sink]]\nname = \"udp\"\ntype = \"syslog\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{udp_port}\"\n\
             [[sink]]\nname = \"tcp\"\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{tcp_port}\"\n\
             [[sink]]\nname = \"tls\"\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{tls_port}\"\nca_file = \"{}\"\nserver_name = \"localhost\"\n",
            ca.display()
        ),
    );
    let pcap = ai_capture(&d, 20);
    let out = replay_with(&cfg, &pcap, 10);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("warning"), "{err}");
    let total = Store::open(&d.join("events.db")).unwrap().count().unwrap() as usize;
    let mut udp_msgs = Vec::new();
    let mut buf = [0u8; 65536];
    while udp_msgs.len() < total {
        let (n, _) = udp.recv_from(&mut buf).expect("UDP syslog message");
        udp_msgs.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    udp_msgs.iter().for_each(|m| check_syslog(m));
    std::thread::sleep(Duration::from_millis(300));
    for (what, got) in [("tcp", &tcp_got), ("tls", &tls_got)] {
        let msgs = frames(&got.lock().unwrap());
        assert_eq!(msgs.len(), total, "{what}");
        msgs.iter().for_each(|m| check_syslog(m));
        assert!(
            msgs.iter()
                .any(|m| m.contains("cs1=claude") && m.contains("act=steer")),
            "{what}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn webhook_retries_until_the_server_accepts_and_aggregation_folds_repeats() {
    let d = tmpdir("record", "hook");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    {
        let b = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for (i, s) in listener.incoming().flatten().enumerate() {
                let mut r = BufReader::new(s);
                loop {
                    // One HTTP/1.1 request per loop (keep-alive).
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line);
                    }
                    if head.is_empty() {
                        break;
                    }
                    let len: usize = head
                        .iter()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let first = i == 0 && b.lock().unwrap().is_empty();
                    let status = if first {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    if !first {
                        b.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                    }
                    let _ = write!(
                        r.get_mut(),
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n"
                    );
                    if first {
                        break;
                    }
                }
            }
        });
    }
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &policies(),
        &format!(
            "[[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/ingest\"\nheaders = {{ Authorization = \"Bearer t\" }}\n\
             [[sink]]\nname = \"folded\"\ntype = \"jsonl\"\npath = \"folded.jsonl\"\naggregate_window_s = 3600\n"
        ),
    );
    let pcap = ai_capture(&d, 64);
    let out = replay_with(&cfg, &pcap, 10);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Store::open(&d.join("events.db")).unwrap();
    let total = st.count().unwrap();
    let docs: Vec<serde_json::Value> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect();
    assert_eq!(
        docs.len() as i64,
        total,
        "every event delivered once the webhook accepted"
    );
    let seqs: Vec<i64> = docs
        .iter()
        .map(|d| d["event"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    // Aggregated feed: one alert per (client, service, action), counts adding up; the store keeps all.
    let folded = json_lines(&std::fs::read_to_string(d.join("folded.jsonl")).unwrap());
    let counted: i64 = folded
        .iter()
        .map(|f| f["shadowgate"]["repeat_count"].as_i64().unwrap_or(1))
        .sum();
    // Everything up to the folded sink's cursor (the webhook's outage and recovery events may
    // have been recorded after that sink caught up: they wait for its next run).
    let folded_through = st.cursor("folded").unwrap();
    assert!(folded_through >= total - 2, "{folded_through} of {total}");
    assert_eq!(counted, folded_through);
    // A client's DNS lookup and its hello fold into one alert (QUIC flows' hellos decide nothing).
    assert!(
        folded.len() * 3 < total as usize * 2,
        "{} alerts for {total} events",
        folded.len()
    );
    let mut keys: Vec<_> = folded
        .iter()
        .map(|f| {
            (
                f["source"]["ip"].to_string(),
                f["shadowgate"]["service"].to_string(),
                f["event"]["action"].to_string(),
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "one alert per key within the window");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_full_disk_gives_a_clear_error_and_keeps_what_was_committed() {
    let d = tmpdir("record", "full");
    let mnt = d.join("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    // A 256 KiB tmpfs (we are root in CI); skip where mounting is not allowed.
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let cfg = d.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\ndir = \"{}\"\n[store]\npath = \"tiny/events.db\"\nbatch = 200\n",
            policies().display()
        ),
    )
    .unwrap();
    let pcap = ai_capture(&d, 3_000);
    let out = replay_with(&cfg, &pcap, 30);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events could not be recorded") && err.contains("disk is full"),
        "{err}"
    );
    // The batches committed before the disk filled are intact and readable.
    let q = bin()
        .args(["events", "--format", "json", "--store"])
        .arg(mnt.join("events.db"))
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let n = String::from_utf8_lossy(&q.stdout).lines().count();
    assert!(n >= 200, "{n} events survived");
    drop(_guard);
    let _ = std::fs::remove_dir_all(&d);
}
