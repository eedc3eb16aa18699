//! RELP against Debian's real rsyslog (`rsyslogd` with `imrelp`, packages `rsyslog` and
//! `rsyslog-relp`, installed by `.ci/run`): each test starts its own rsyslogd on a free port of
//! 127.0.0.1 with its own configuration and work directory, never the system one. rsyslog writes
//! every message it receives, whole (`%rawmsg%`), to a file the test reads.
//!
//! rsyslog's ruleset for the input runs with a direct queue, so the file write happens before
//! imrelp sends its acknowledgement: a SIGKILL of rsyslog then loses nothing it acknowledged, and
//! the file shows exactly what the sender can be held to. (With rsyslog's default in-memory
//! queue an acknowledged message may still die with the process: see the README.)

use crate::common::cli::{bin, replay_with};
use crate::common::events::events;
use crate::common::files::{policies, store_config, TempDir};
use crate::common::frames::ai_capture;
use crate::common::net::free_port;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shadowgate::record::Store;

/// Messages outstanding at most per RELP session (`relp::DEFAULT_WINDOW`): after a failure at
/// most this many are repeated.
const WINDOW: usize = shadowgate::record::relp::DEFAULT_WINDOW;

/// The syslog sink section for a RELP receiver on `port`.
fn relp_sink(port: u16, tls: Option<&Certs>, batch: usize) -> String {
    let mut s = format!(
        "[[sink]]\nname = \"rsyslog\"\ntype = \"syslog\"\ntransport = \"{}\"\naddress = \"127.0.0.1:{port}\"\nbatch = {batch}\n",
        if tls.is_some() { "relp-tls" } else { "relp" }
    );
    if let Some(c) = tls {
        s += &format!(
            "ca_file = \"{}\"\nserver_name = \"localhost\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            c.ca.display(),
            c.client_cert.display(),
            c.client_key.display()
        );
    }
    s
}

/// Test PKI made with rcgen: a CA, rsyslog's server certificate for "localhost" and
/// shadowgate's client certificate (imrelp over TLS always authenticates the client).
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shadowgate test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, eku: ExtendedKeyUsagePurpose, tag: &str| {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{tag}.pem")),
            dir.join(format!("{tag}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let (server_cert, server_key) =
        leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, "server");
    let (client_cert, client_key) = leaf(
        "shadowgate.test",
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    Certs {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// An rsyslogd of our own: imrelp on 127.0.0.1:`port` writing each message to `out`.
struct Rsyslog {
    conf: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    fn configure(dir: &Path, port: u16, tls: Option<&Certs>) -> Rsyslog {
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("received.log");
        let tls = match tls {
            None => String::new(),
            Some(c) => format!(
                " tls=\"on\" tls.cacert=\"{}\" tls.mycert=\"{}\" tls.myprivkey=\"{}\" tls.authmode=\"name\" tls.permittedpeer=[\"shadowgate.test\"]",
                c.ca.display(),
                c.server_cert.display(),
                c.server_key.display()
            ),
        };
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
module(load="imrelp")
template(name="whole" type="string" string="%rawmsg%\n")
# Direct queue: the message is in the file before imrelp acknowledges it.
ruleset(name="fromrelp" queue.type="Direct") {{
  action(type="omfile" file="{out}" template="whole")
}}
input(type="imrelp" address="127.0.0.1" port="{port}" ruleset="fromrelp"{tls})
"#,
                work = work.display(),
                out = out.display(),
            ),
        )
        .unwrap();
        Rsyslog {
            conf,
            pidfile: dir.join("rsyslogd.pid"),
            log: dir.join("rsyslogd.stderr"),
            port,
            child: None,
        }
    }

    /// Start rsyslogd and wait until it listens.
    fn start(&mut self) {
        assert!(self.child.is_none());
        let _ = std::fs::remove_file(&self.pidfile);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Debian installs it in /usr/sbin, which a non-login PATH may lack.
        let exe = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("rsyslogd");
        let child = Command::new(exe)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pidfile)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-relp; .ci/run installs them)");
        self.child = Some(child);
        let t = Instant::now();
        while !listening(self.port) {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rsyslogd exited with {s}: {}", self.stderr());
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "rsyslogd does not listen: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush, close sessions or say `serverclose`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze it where it is (SIGSTOP), so what it wrote cannot move on before the SIGKILL.
    fn freeze(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Is a TCP socket listening on 127.0.0.1:`port`? (Read from /proc: a trial connection would
/// make imrelp log a broken session.)
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// The received messages, one a line.
fn received(dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(dir.join("received.log")) {
        Ok(t) => t.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Counts the lines of the received file as it grows (reading only what is new).
struct LineCounter {
    path: PathBuf,
    file: Option<std::fs::File>,
    lines: usize,
}

impl LineCounter {
    fn new(dir: &Path) -> LineCounter {
        LineCounter {
            path: dir.join("received.log"),
            file: None,
            lines: 0,
        }
    }

    fn lines(&mut self) -> usize {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(f) = &mut self.file {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                self.lines += buf[..n].iter().filter(|&&c| c == b'\n').count();
            }
        }
        self.lines
    }
}

/// Store sequence of each received message, found through its CEF `externalId` (event id).
fn seqs(dir: &Path, msgs: &[String]) -> Vec<i64> {
    let by_id: HashMap<String, i64> = events(dir).into_iter().map(|e| (e.id, e.seq)).collect();
    msgs.iter()
        .map(|m| {
            assert!(
                m.starts_with("<16") && m.contains(">1 ") && m.contains(" shadowgate "),
                "{m}"
            );
            assert!(m.contains("CEF:0|shadowgate|shadowgate|"), "{m}");
            let id = m
                .split(' ')
                .find_map(|f| f.strip_prefix("externalId="))
                .unwrap_or_else(|| panic!("no externalId: {m}"));
            *by_id
                .get(id)
                .unwrap_or_else(|| panic!("{id} is not in the store"))
        })
        .collect()
}

/// Received sequence numbers after failures: runs of consecutive events, each run starting at
/// most `window` events before the end of the previous one (the repeated in-flight window) and
/// never after it (nothing skipped), together 1..=total. A repeated event is byte-identical to
/// its first delivery (same event id, same message). Returns how many were repeated.
fn check_at_least_once_in_order(msgs: &[String], seqs: &[i64], total: i64, window: usize) -> usize {
    let mut first: HashMap<i64, &String> = HashMap::new();
    let mut high = 0i64; // highest sequence seen so far
    let mut expect = 1i64; // the next sequence in the current run
    let mut repeated = 0;
    for (m, &s) in msgs.iter().zip(seqs) {
        if s != expect {
            // A new run: a resend after a failure, from within the last window.
            assert!(
                s <= high + 1 && high - s < window as i64,
                "after seq {} came seq {s} (highest {high}, window {window})",
                expect - 1
            );
        }
        if s <= high {
            repeated += 1;
            assert_eq!(first[&s], m, "seq {s} repeated with another message");
        } else {
            first.insert(s, m);
            high = s;
        }
        expect = s + 1;
    }
    assert_eq!(high, total, "the last events never arrived");
    assert_eq!(first.len() as i64, total, "events missing");
    repeated
}

#[test]
fn a_burst_over_relp_arrives_whole_and_in_order() {
    let d = TempDir::new("relp", "burst");
    let port = free_port();
    let mut rs = Rsyslog::configure(&d.0, port, None);
    rs.start();
    let cfg = store_config(
        &d.0,
        "shadowgate.toml",
        &policies(),
        &relp_sink(port, None, 500),
    );
    let pcap = ai_capture(&d.0, 1700);
    let t = Instant::now();
    let out = replay_with(&cfg, &pcap, 30);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("warning"), "{err}");
    let total = Store::open(&d.0.join("events.db"))
        .unwrap()
        .count()
        .unwrap();
    assert!(total >= 2000, "{total}");
    let msgs = received(&d.0);
    eprintln!(
        "{total} events recorded and acknowledged over RELP in {:?}",
        t.elapsed()
    );
    // Acknowledged means written here (direct queue): everything is in the file, once, in order.
    assert_eq!(seqs(&d.0, &msgs), (1..=total).collect::<Vec<_>>());
    let st = Store::open(&d.0.join("events.db")).unwrap();
    assert_eq!(st.cursor("rsyslog").unwrap(), total);
    assert!(
        msgs.iter()
            .any(|m| m.contains("cs1=claude") && m.contains("act=steer")),
        "CEF payload"
    );
    // The session ended politely (`close`), not as a broken connection.
    assert!(!rs.stderr().contains("session broken"), "{}", rs.stderr());
}

/// A child process killed (if still running) and reaped when dropped, also on a failed assert.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Record `flows` flows without sinks, then `shadowgate deliver` to rsyslog over RELP while rsyslog
/// is SIGKILLed `kills` times mid-stream and restarted: every event arrives, in order, with at most
/// the in-flight window repeated each time.
fn kill_and_restart_mid_stream(tag: &str, tls: bool, kills: usize) {
    let d = TempDir::new("relp", tag);
    let certs = tls.then(|| make_certs(&d.0));
    let port = free_port();
    let mut rs = Rsyslog::configure(&d.0, port, certs.as_ref());
    let rec = store_config(&d.0, "record.toml", &policies(), "");
    let out = replay_with(&rec, &ai_capture(&d.0, 1700), 0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = Store::open(&d.0.join("events.db"))
        .unwrap()
        .count()
        .unwrap();
    assert!(total >= 2000, "{total}");
    // Small batches: several are delivered before and after each kill.
    let cfg = store_config(
        &d.0,
        "deliver.toml",
        &policies(),
        &relp_sink(port, certs.as_ref(), 200),
    );
    rs.start();
    let t = Instant::now();
    let mut deliver = Reaped(
        bin()
            .args(["deliver", "--timeout", "50", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut at_kill = Vec::new();
    let mut counter = LineCounter::new(&d.0);
    for k in 0..kills {
        // Kill when the file holds a share of the events: 1/3, 2/3.
        let mark = total as usize * (k + 1) / (kills + 1);
        let waited = Instant::now();
        while counter.lines() < mark {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "rsyslog got only {} of {total} events: {}",
                counter.lines(),
                rs.stderr()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        rs.freeze();
        let n = counter.lines();
        rs.kill();
        at_kill.push(n);
        assert!(
            (n as i64) < total,
            "delivery finished before the kill: {n} of {total} (kill {k})"
        );
        std::thread::sleep(Duration::from_millis(300));
        rs.start();
    }
    let mut err = String::new();
    let _ = deliver.0.stderr.take().unwrap().read_to_string(&mut err);
    let status = deliver.0.wait().unwrap();
    assert!(status.success(), "{err}");
    let elapsed = t.elapsed();
    let msgs = received(&d.0);
    let s = seqs(&d.0, &msgs);
    // The outages and recoveries are system events recorded during delivery (sink_down and
    // sink_up, at most one pair per kill), delivered like any other event.
    let st = Store::open(&d.0.join("events.db")).unwrap();
    let recorded = st.last_seq().unwrap();
    assert!(
        recorded > total && recorded <= total + 2 * kills as i64,
        "{recorded} events for {total} decisions and {kills} kills"
    );
    let total = recorded;
    let repeated = check_at_least_once_in_order(&msgs, &s, total, WINDOW);
    assert!(
        repeated <= kills * WINDOW,
        "{repeated} repeated for {kills} kills"
    );
    eprintln!(
        "{total} events over {} with {kills} SIGKILLs of rsyslog at {at_kill:?} received lines: \
         all arrived in order, {repeated} repeated, in {elapsed:?}",
        if tls { "relp-tls" } else { "relp" }
    );
    let st = Store::open(&d.0.join("events.db")).unwrap();
    assert_eq!(st.cursor("rsyslog").unwrap(), total);
}

#[test]
fn rsyslog_killed_and_restarted_mid_stream_loses_nothing() {
    kill_and_restart_mid_stream("kill", false, 2);
}

#[test]
fn relp_over_tls_with_a_kill_mid_stream_loses_nothing() {
    kill_and_restart_mid_stream("tls", true, 1);
}

#[test]
fn a_receiver_that_is_down_then_back_gets_everything() {
    // Nothing listens: the replay records, delivery fails and the events wait in the store.
    let d = TempDir::new("relp", "down");
    let port = free_port();
    let cfg = store_config(
        &d.0,
        "shadowgate.toml",
        &policies(),
        &relp_sink(port, None, 500),
    );
    let out = replay_with(&cfg, &ai_capture(&d.0, 100), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("events wait in the store"),
        "{err}"
    );
    let total = Store::open(&d.0.join("events.db"))
        .unwrap()
        .count()
        .unwrap();
    let mut rs = Rsyslog::configure(&d.0, port, None);
    rs.start();
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
    let msgs = received(&d.0);
    // The recovery is recorded (sink_up) and delivered too.
    let evs = events(&d.0);
    assert_eq!(evs.len() as i64, total + 1);
    assert_eq!(evs.last().unwrap().kind, "sink_up");
    assert_eq!(seqs(&d.0, &msgs), (1..=total + 1).collect::<Vec<_>>());
}
