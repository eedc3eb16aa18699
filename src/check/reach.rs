//! Upstreams and sinks answering: each `[dns]` upstream asked for the root's NS records, each
//! SIEM sink connected to (TCP) or resolved (UDP syslog), all at once and each within a timeout.
//! Failures are warnings: the daemon answers from cache and fails over between upstreams, and
//! it spools events in the store until a sink is back.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Finding;
use crate::config::{Config, SinkKind};
use crate::record::sinks::SyslogTransport;

/// How long one probe waits at most.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// Probes under way.
pub struct Pending {
    rx: mpsc::Receiver<(usize, Finding)>,
    names: Vec<(&'static str, String)>,
    deadline: Instant,
}

/// Start every probe on its own thread.
pub fn start(c: &Config) -> Pending {
    let (tx, rx) = mpsc::channel();
    let mut names = Vec::new();
    let mut spawn = |check: &'static str, what: String, f: Box<dyn FnOnce() -> Finding + Send>| {
        let i = names.len();
        names.push((check, what));
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("sg-check".into())
            .spawn(move || {
                let _ = tx.send((i, f()));
            });
    };
    if let Some(d) = &c.dns {
        let wait =
            Duration::from_millis(d.upstream_timeout_ms.clamp(100, TIMEOUT.as_millis() as u64));
        for &u in &d.upstreams {
            spawn(
                "upstream",
                format!("upstream {u}"),
                Box::new(move || upstream(u, wait)),
            );
        }
    }
    for s in &c.sink {
        let (name, kind) = (s.name.clone(), s.kind.clone());
        spawn(
            "sink",
            format!("sink {name:?}"),
            Box::new(move || sink(&name, &kind)),
        );
    }
    Pending {
        rx,
        names,
        deadline: Instant::now() + TIMEOUT + Duration::from_millis(500),
    }
}

impl Pending {
    /// The findings, in the order the probes were started; a probe still running at the
    /// deadline (a name lookup that hangs) is a warning.
    pub fn finish(self) -> Vec<Finding> {
        let mut got: Vec<Option<Finding>> = vec![None; self.names.len()];
        while got.iter().any(Option::is_none) {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((i, f)) => got[i] = Some(f),
                Err(_) => break,
            }
        }
        got.into_iter()
            .zip(self.names)
            .map(|(f, (check, what))| {
                f.unwrap_or_else(|| {
                    Finding::warn(
                        check,
                        format!(
                            "{what}: no result within {} ms (a name lookup that hangs?)",
                            TIMEOUT.as_millis() + 500
                        ),
                        "check the machine's resolver (/etc/resolv.conf) and the address",
                    )
                })
            })
            .collect()
    }
}

/// A query for the root's NS records (`. IN NS`, recursion desired) with id `id`.
fn root_ns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(17);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&[0, 0, 2, 0, 1]);
    q
}

/// The response code of an answer to query `id`, None if `b` is not one.
fn answer_rcode(b: &[u8], id: u16) -> Option<u8> {
    (b.len() >= 12 && b[..2] == id.to_be_bytes() && b[2] & 0x80 != 0).then(|| b[3] & 0x0f)
}

fn upstream(u: SocketAddr, wait: Duration) -> Finding {
    let fix = format!(
        "check that {u} is a resolver this gateway may ask (UDP and TCP port {}, firewall, routing); the daemon tries the other upstreams and answers from cache meanwhile",
        u.port()
    );
    let bind: SocketAddr = if u.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal");
    let id =
        (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x5347;
    let asked = Instant::now();
    let r = UdpSocket::bind(bind).and_then(|s| {
        s.set_read_timeout(Some(wait))?;
        s.connect(u)?;
        s.send(&root_ns_query(id))?;
        let mut b = [0u8; 1500];
        let until = Instant::now() + wait;
        loop {
            let n = s.recv(&mut b)?;
            if let Some(rc) = answer_rcode(&b[..n], id) {
                return Ok(rc);
            }
            if Instant::now() >= until {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    });
    match r {
        // NOERROR or NXDOMAIN: it resolves; SERVFAIL, REFUSED and the rest: it does not for us.
        Ok(0 | 3) => Finding::ok(
            "upstream",
            format!("{u}: answers ({} ms)", asked.elapsed().as_millis()),
        ),
        Ok(rc) => Finding::warn(
            "upstream",
            format!("{u}: answers the root NS query with response code {rc} (SERVFAIL 2, REFUSED 5: it does not resolve for this gateway)"),
            fix,
        ),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Finding::warn(
                "upstream",
                format!("{u}: no answer within {} ms", wait.as_millis()),
                fix,
            )
        }
        Err(e) => Finding::warn("upstream", format!("{u}: {e}"), fix),
    }
}

/// Resolve `host:port` and connect over TCP within the timeout.
fn connect(addr: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(_) => return Ok(a),
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

/// `host:port` of a webhook URL (443 for https, 80 for http by default).
fn url_host_port(url: &str) -> Option<String> {
    let (rest, port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        return None;
    };
    let auth = rest.split(['/', '?', '#']).next()?;
    let auth = auth.rsplit('@').next()?;
    if auth.is_empty() {
        return None;
    }
    let has_port = if auth.starts_with('[') {
        auth.contains("]:")
    } else {
        auth.contains(':')
    };
    Some(if has_port {
        auth.to_string()
    } else {
        format!("{auth}:{port}")
    })
}

fn sink(name: &str, kind: &SinkKind) -> Finding {
    let spool = "the daemon keeps the events in the store and delivers them once it is back; check the receiver, the address and the firewall";
    let tcp = |addr: &str, what: &str| match connect(addr) {
        Ok(a) => Finding::ok("sink", format!("{name}: {what} {a} accepts connections")),
        Err(e) => Finding::warn("sink", format!("{name}: {what}: {e}"), spool),
    };
    match kind {
        SinkKind::Syslog {
            address,
            transport: SyslogTransport::Udp,
            ..
        } => match address.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Finding::ok(
                "sink",
                format!("{name}: syslog over UDP to {a} (UDP cannot tell whether it is heard)"),
            ),
            Ok(None) | Err(_) => {
                Finding::warn("sink", format!("{name}: cannot resolve {address}"), spool)
            }
        },
        SinkKind::Syslog {
            address, transport, ..
        } => {
            let what = match transport {
                SyslogTransport::Relp | SyslogTransport::RelpTls => "RELP receiver",
                _ => "syslog receiver",
            };
            tcp(address, what)
        }
        SinkKind::Jsonl {
            address: Some(a), ..
        } => tcp(a, "JSON-lines receiver"),
        SinkKind::Jsonl { path: Some(p), .. } => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if dir.is_dir() {
                Finding::ok("sink", format!("{name}: writes {}", p.display()))
            } else {
                Finding::warn(
                    "sink",
                    format!("{name}: {}: no such folder", dir.display()),
                    format!("create it for the daemon's user (`install -d -m 0700 -o shadowgate {}`; the unit's LogsDirectory= makes /var/log/shadowgate)", dir.display()),
                )
            }
        }
        SinkKind::Jsonl { .. } => Finding::error(
            "sink",
            format!("{name}: give exactly one of path or address"),
            "fix the [[sink]]",
        ),
        SinkKind::Webhook { url, .. } => match url_host_port(url) {
            Some(hp) => tcp(&hp, "webhook"),
            None => Finding::error(
                "sink",
                format!("{name}: webhook url {url:?} is not an http(s) URL"),
                "give url = \"https://host/path\"",
            ),
        },
        SinkKind::Teams { url, .. } | SinkKind::Slack { url, .. } => {
            let what = if matches!(kind, SinkKind::Teams { .. }) {
                "Teams webhook"
            } else {
                "Slack webhook"
            };
            match url_host_port(url) {
                Some(hp) => tcp(&hp, what),
                None => Finding::error(
                    "sink",
                    format!("{name}: {what} url is not an http(s) URL"),
                    "give url = \"https://host/path\" (the URL the workflow or app shows)",
                ),
            }
        }
        SinkKind::Mail { host, port, .. } => tcp(&format!("{host}:{port}"), "mail server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_query_and_its_answer() {
        let q = root_ns_query(0xbeef);
        assert_eq!(q.len(), 17);
        assert_eq!(answer_rcode(&q, 0xbeef), None, "a query is no answer");
        let mut a = q.clone();
        a[2] |= 0x80;
        assert_eq!(answer_rcode(&a, 0xbeef), Some(0));
        a[3] = 0x82;
        assert_eq!(answer_rcode(&a, 0xbeef), Some(2));
        assert_eq!(answer_rcode(&a, 0xbeee), None);
        assert_eq!(answer_rcode(&a[..5], 0xbeef), None);
    }

    #[test]
    fn webhook_urls() {
        assert_eq!(
            url_host_port("https://siem.example/hook").as_deref(),
            Some("siem.example:443")
        );
        assert_eq!(
            url_host_port("http://10.0.0.5:8080/x?y").as_deref(),
            Some("10.0.0.5:8080")
        );
        assert_eq!(
            url_host_port("https://u:p@[2001:db8::1]/").as_deref(),
            Some("[2001:db8::1]:443")
        );
        assert_eq!(
            url_host_port("https://[2001:db8::1]:9/").as_deref(),
            Some("[2001:db8::1]:9")
        );
        assert_eq!(url_host_port("ftp://x/"), None);
        assert_eq!(url_host_port("https:///x"), None);
    }

    #[test]
    fn a_closed_port_is_a_warning_not_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        let f = sink(
            "siem",
            &SinkKind::Syslog {
                address: a.to_string(),
                transport: SyslogTransport::Tcp,
                ca_file: None,
                server_name: None,
                cert_file: None,
                key_file: None,
            },
        );
        assert_eq!(f.severity, super::super::Severity::Warn, "{f:?}");
        assert!(f.fix.contains("store"), "{f:?}");
    }
}
