//! Restarts that lose nothing (issue 25): a flow stopped before a `kill -9` is still stopped after
//! the restart, a coach grant is still granted (for the time it had left, not a fresh one), ended
//! entries are not put back, DNS answers again within 2 s of a restart, and a store keeps a copy
//! before its schema is upgraded (an older shadowgate refuses a newer store and says how back).

use crate::common::cli::bin;
use crate::common::daemon::*;
use crate::common::files::tmpdir;
use crate::common::netns::{
    reset_timing_lock, Testbed, CLIENT, CLIENT2, GW_LAN, SERVER, UPSTREAM_DNS,
};
use crate::common::policy::with_rules;
use crate::common::servers::{dns_server, TlsServer};

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// claude.ai steered (stopped on the wire), gemini coached (a grant lets it through).
const POLICY: &str = r#"
[settings]
default_action = "alert"
default_severity = "medium"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant."

[[rule]]
id = "R-160-coach"
services = ["gemini"]
action = "coach"
severity = "medium"

[[rule]]
id = "R-300-consumer-ai"
categories = ["consumer_ai"]
action = "steer"
steer_to = "approved"
severity = "medium"
min_evidence = "resolver_lookup"
"#;

/// Enforce mode with DNS and the portal; stops last `flow_s`, grants `grant_s`.
fn restart_config(dir: &Path, flow_s: u64, grant_s: u64) -> PathBuf {
    let policy = with_rules(&dir.join("policies"), POLICY);
    config(
        dir,
        &policy,
        &format!(
            "[enforce]\nmode = \"enforce\"\nbreak_glass_file = \"{}\"\nflow_timeout_s = {flow_s}\n\n\
             [dns]\nlisten = [\"{GW_LAN}:53\"]\nupstreams = [\"{UPSTREAM_DNS}:53\"]\n\
             clients = [\"10.20.1.2/31\"]\nrate_per_client = 200\n\n\
             [portal]\naddress = \"{GW_LAN}\"\nhttp = \"{GW_LAN}:80\"\nhttps = \"{GW_LAN}:443\"\ngrant_seconds = {grant_s}\nrate_per_client = 600\n",
            dir.join("glass").display()
        ),
    )
}

/// The upstream resolver and a TLS server for claude.ai and gemini at SERVER.
fn internet(tb: &Testbed) -> TlsServer {
    tb.in_ns(&tb.inet, || {
        dns_server(
            SocketAddr::new(UPSTREAM_DNS.into(), 53),
            vec![("claude.ai", SERVER), ("gemini.google.com", SERVER)],
            Duration::from_millis(5),
        );
        TlsServer::start(
            SocketAddr::new(SERVER.into(), 443),
            &["claude.ai", "gemini.google.com"],
            Duration::from_millis(20),
        )
    })
    .join()
    .unwrap()
}

fn nft_set(tb: &Testbed, name: &str) -> String {
    let o = tb.exec(&tb.gw, &["nft", "list", "set", "inet", "shadowgate", name]);
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// One plain HTTP exchange with the portal from `src` in the client namespace.
fn portal_http(tb: &Testbed, src: Ipv4Addr, req: String) -> String {
    tb.in_ns(&tb.client, move || {
        let s =
            crate::common::servers::socket2_connect(src.into(), SocketAddr::new(GW_LAN.into(), 80))
                .unwrap();
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .join()
    .unwrap()
}

/// Acknowledge the coach page for gemini from `src`: the grant (the portal's answer status).
fn acknowledge(tb: &Testbed, src: Ipv4Addr) -> String {
    let host = "gemini.google.com";
    let page = portal_http(
        tb,
        src,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Dest: document\r\nConnection: close\r\n\r\n"),
    );
    let i = page.find("name=\"token\" value=\"").expect("coach form") + 20;
    let token = page[i..].split('"').next().unwrap().to_string();
    let body = format!("token={token}&ack=yes&justification=restart+test");
    portal_http(
        tb,
        src,
        format!(
            "POST /.shadowgate/continue HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nSec-Fetch-Site: same-origin\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A TCP connection from exactly `src` (address and port) to SERVER:443, the port reused.
fn connect_from(tb: &Testbed, src: SocketAddr) -> std::io::Result<TcpStream> {
    tb.in_ns(&tb.client, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&src.into())?;
        s.connect_timeout(
            &SocketAddr::new(SERVER.into(), 443).into(),
            Duration::from_secs(2),
        )?;
        Ok(s.into())
    })
    .join()
    .unwrap()
}

/// The state file next to the store holds `n` lines of `kind` (waits up to 5 s): how long it
/// took.
fn wait_state(d: &Daemon, dir: &Path, kind: &str, n: usize) -> Duration {
    let t = Instant::now();
    let path = dir.join("enforce.state");
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text
            .lines()
            .filter(|l| l.starts_with(&format!("{kind} ")))
            .count()
            >= n
        {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no {kind} entry in {}: {text}\n{}",
            path.display(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_9(d: &mut Daemon) {
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5)).expect("killed");
}

/// A flow stopped before `kill -9` stays stopped after the restart (a new connection on its
/// addresses and ports is reset by the restored entry, the daemon seeing no hello), and a grant
/// given before it is still granted after, for the time it had left.
#[test]
fn a_stopped_flow_and_a_grant_survive_kill_9() {
    need_root!();
    let _serial = reset_timing_lock();
    let tb = Testbed::new("sgrst");
    let dir = tmpdir("restart", "survive");
    let grant_s = 14;
    let cfg = restart_config(&dir, 300, grant_s);
    let _srv = internet(&tb);
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);

    // Stop a TLS flow to claude.ai, and note its client port.
    assert!(
        tls_from(&tb, CLIENT, SERVER, "claude.ai").is_err(),
        "{}",
        d.log()
    );
    let stopped = wait_event(&dir, |e| {
        e.name == "claude.ai" && e.kind == "tls_client_hello"
    });
    let src = SocketAddr::new(CLIENT.into(), stopped.client_port);
    // Coach gemini, then acknowledge: granted.
    let q = |c| dns_from(&tb, c, GW_LAN, "gemini.google.com");
    assert_eq!(q(CLIENT), Ok(vec![GW_LAN]), "coached first\n{}", d.log());
    let ack = acknowledge(&tb, CLIENT);
    let granted_at = Instant::now();
    // Written within a second (the persist lag).
    let lag_grant = wait_state(&d, &dir, "grant", 1);
    assert!(
        ack.starts_with("HTTP/1.1 30") || ack.starts_with("HTTP/1.1 200"),
        "{ack}"
    );
    assert_eq!(q(CLIENT), Ok(vec![SERVER]), "granted\n{}", d.log());
    let lag_stop = wait_state(&d, &dir, "stop", 1);
    eprintln!("persist lag: grant in the state file {lag_grant:?} after the acknowledgement (stop entry: there {lag_stop:?} after the checks)");
    assert!(lag_grant < Duration::from_secs(1), "{lag_grant:?}");
    // Some of the grant's time passes before the crash.
    std::thread::sleep(Duration::from_secs(4));
    kill_9(&mut d);
    let d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    assert!(d.log().contains("restored from"), "{}", d.log());

    // The stopped flow: its entry is back with the time it had left (under 300 s) ...
    let set = nft_set(&tb, "stop4");
    assert!(
        set.contains(&format!("{CLIENT} . {} . {SERVER} . 443", src.port())),
        "{set}"
    );
    // ... and a connection on the same addresses and ports is reset (the daemon sees no
    // hello: only the restored entry can stop it).
    let again = connect_from(&tb, src);
    assert!(again.is_err(), "the stopped flow got through: {again:?}");
    // The grant: no coach again for the client that acknowledged; the other client still is.
    assert_eq!(q(CLIENT), Ok(vec![SERVER]), "still granted\n{}", d.log());
    assert_eq!(q(CLIENT2), Ok(vec![GW_LAN]));
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert_eq!(
        metric(&m, "shadowgate_restored_total", "kind=\"grant\""),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "shadowgate_restored_total", "kind=\"stop\"") >= 1.0,
        "{m}"
    );
    // It ends when it would have without the restart (a fresh grant would last 4 s longer).
    let end = Duration::from_secs(grant_s) + Duration::from_millis(1500);
    std::thread::sleep(end.saturating_sub(granted_at.elapsed()));
    assert!(
        granted_at.elapsed() < Duration::from_secs(grant_s + 4),
        "too slow to tell the remaining time from a fresh grant"
    );
    assert_eq!(
        q(CLIENT),
        Ok(vec![GW_LAN]),
        "coached again once the grant ended"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(d);
}

/// Entries that ended while the daemon was down are not put back.
#[test]
fn ended_entries_are_not_restored() {
    need_root!();
    let _serial = reset_timing_lock();
    let tb = Testbed::new("sgrsx");
    let dir = tmpdir("restart", "ended");
    let cfg = restart_config(&dir, 2, 2);
    let _srv = internet(&tb);
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    assert!(
        tls_from(&tb, CLIENT, SERVER, "claude.ai").is_err(),
        "{}",
        d.log()
    );
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "gemini.google.com"),
        Ok(vec![GW_LAN])
    );
    acknowledge(&tb, CLIENT);
    wait_state(&d, &dir, "stop", 1);
    wait_state(&d, &dir, "grant", 1);
    kill_9(&mut d);
    std::thread::sleep(Duration::from_secs(3));
    let d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    assert!(d.log().contains("had ended"), "{}", d.log());
    let set = nft_set(&tb, "stop4");
    assert!(!set.contains(&CLIENT.to_string()), "{set}");
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "gemini.google.com"),
        Ok(vec![GW_LAN]),
        "an ended grant is not put back"
    );
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert_eq!(metric(&m, "shadowgate_restored_total", ""), 0.0, "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One quick lookup (200 ms wait): the addresses, or why not.
fn quick_lookup(src: Ipv4Addr, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let sock =
        std::net::UdpSocket::bind(SocketAddr::new(src.into(), 0)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut m = Message::query();
    m.metadata.id = crate::common::servers::rand_id();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    sock.send_to(&m.to_vec().unwrap(), SocketAddr::new(GW_LAN.into(), 53))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
    let r = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

/// DNS mode: from the restart after a `kill -9` to the first correct answer, under 2 s.
#[test]
fn dns_answers_resume_within_2_s_of_a_restart() {
    need_root!();
    let _serial = reset_timing_lock();
    let tb = Testbed::new("sgrsd");
    let dir = tmpdir("restart", "dns");
    let cfg = restart_config(&dir, 300, 60);
    let _srv = internet(&tb);
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "claude.ai"),
        Ok(vec![GW_LAN]),
        "{}",
        d.log()
    );
    kill_9(&mut d);
    let t = Instant::now();
    let d = Daemon::start(&tb, &cfg);
    let took = tb
        .in_ns(&tb.client, move || loop {
            if quick_lookup(CLIENT, "claude.ai") == Ok(vec![GW_LAN]) {
                return t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(10) {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        })
        .join()
        .unwrap();
    eprintln!("DNS resume after kill -9: first correct answer {took:?} after the start");
    assert!(took < Duration::from_secs(2), "{took:?}\n{}", d.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An older shadowgate on a store a newer one upgraded: refused (configuration error, no
/// restart loop), saying how to go back: the newer binary, or the copy taken before the upgrade.
#[test]
fn an_older_binary_refuses_a_newer_store_and_says_how_back() {
    let dir = tmpdir("restart", "newer");
    let store = dir.join("events.db");
    // A store this binary made, upgraded "by a newer one": user_version past what it knows.
    shadowgate::record::Store::open(&store).unwrap();
    let c = rusqlite::Connection::open(&store).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "user_version", v + 1).unwrap();
    drop(c);
    let bak = PathBuf::from(format!("{}.pre-v{}.bak", store.display(), v + 1));
    std::fs::write(&bak, b"").unwrap();
    let o = bin()
        .args(["events", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    for want in [
        format!("schema version {}", v + 1),
        "Install the newer shadowgate again".to_string(),
        "systemctl stop shadowgate".to_string(),
        format!("mv {} {}", bak.display(), store.display()),
    ] {
        assert!(err.contains(&want), "{want:?} not in: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store at an older schema (the last column added taken away again) is copied before it is
/// upgraded: the copy keeps the old version and the events, the store is upgraded.
#[test]
fn an_upgrade_keeps_a_copy_of_the_older_store() {
    let dir = tmpdir("restart", "upgrade");
    let store = dir.join("events.db");
    let s = shadowgate::record::Store::open(&store).unwrap();
    let now = s.schema_version();
    drop(s);
    let c = rusqlite::Connection::open(&store).unwrap();
    c.execute_batch(&format!(
        "ALTER TABLE events DROP COLUMN evidence; PRAGMA user_version = {};",
        now - 1
    ))
    .unwrap();
    drop(c);
    let o = bin()
        .args(["events", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("schema upgrade"), "{err}");
    let bak = PathBuf::from(format!("{}.pre-v{now}.bak", store.display()));
    let c = rusqlite::Connection::open(&bak).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, now - 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bak).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    let upgraded = shadowgate::record::Store::open(&store).unwrap();
    assert_eq!(upgraded.schema_version(), now);
    let _ = std::fs::remove_dir_all(&dir);
}
