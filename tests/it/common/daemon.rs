//! The daemon under test on the namespace testbed: start `shadowgate run` in the gateway
//! namespace, read its `/metrics` and `/healthz`, its store, and send raw frames at it.

#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::events;
use super::netns::Testbed;
use super::wait::until;

/// The daemon under test, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Start `shadowgate run --config CONFIG` in the gateway namespace.
    pub fn start(tb: &Testbed, config: &Path) -> Daemon {
        Self::start_with_env(tb, config, &[])
    }

    /// Start with extra environment (e.g. systemd's NOTIFY_SOCKET and WATCHDOG_USEC).
    pub fn start_with_env(tb: &Testbed, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &tb.gw, super::cli::EXE])
            .args(["run", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn in namespace");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut e = child.stderr.take().unwrap();
        let s2 = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon { child, stderr }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send the daemon signal `sig`.
    pub fn signal(&self, sig: i32) {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Its exit status once it has exited (polled every 20 ms), None if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What it wrote to stderr so far (its journal).
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    /// Kill the daemon and reap it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` (the metrics endpoint) inside the gateway namespace.
pub fn http_get(tb: &Testbed, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    tb.in_ns(&tb.gw, move || super::http::get(addr, &path))
        .join()
        .unwrap()
}

pub const METRICS: &str = "127.0.0.1:9811";

/// Wait until `/healthz` says ok (capture threads running).
pub fn wait_healthy(tb: &Testbed, d: &Daemon) {
    let healthy = || {
        matches!(
            http_get(tb, METRICS.parse().unwrap(), "/healthz"),
            Some((200, _))
        )
    };
    assert!(
        until(Duration::from_secs(15), Duration::from_millis(100), healthy),
        "daemon not healthy within 15 s; its log:\n{}",
        d.log()
    );
}

/// The sum of the samples of metric `name` whose labels contain `labels`, in `/metrics` text.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `dir/shadowgate.toml` for the daemon on the testbed: capture on lan0, the policy in `policy`,
/// the store `dir/events.db` (every event committed at once), metrics on [`METRICS`], and `extra`.
pub fn config(dir: &Path, policy: &Path, extra: &str) -> PathBuf {
    let p = dir.join("shadowgate.toml");
    std::fs::write(
        &p,
        format!(
            "[sensor]\nid = \"test-gw\"\n\n[policy]\ndir = \"{}\"\n\n[store]\npath = \"{}\"\nbatch = 1\n\n\
             [capture]\ninterfaces = [\"lan0\"]\nstats_interval_s = 1\n\n[metrics]\nlisten = \"{METRICS}\"\n\n{extra}",
            policy.display(),
            dir.join("events.db").display()
        ),
    )
    .unwrap();
    p
}

/// Wait until the store holds an event matching `f` (up to 5 s).
pub fn wait_event(dir: &Path, f: impl Fn(&super::events::Event) -> bool) -> super::events::Event {
    let t = Instant::now();
    loop {
        if let Some(e) = events(dir).into_iter().find(|e| f(e)) {
            eprintln!("event after {:?}", t.elapsed());
            return e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no such event in {:#?}",
            events(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send raw Ethernet frames out of `dev` in the calling thread's namespace.
pub fn send_frames(dev: &str, frames: &[Vec<u8>]) -> usize {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let idx = shadowgate::capture::live::ifindex(dev).unwrap();
    // SAFETY: plain socket calls on a descriptor we own.
    let fd = unsafe {
        OwnedFd::from_raw_fd(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        ))
    };
    let mut sent = 0;
    for f in frames {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = idx as i32;
        sll.sll_halen = 6;
        // SAFETY: `f` and `sll` are valid for the call.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr() as *const libc::c_void,
                f.len(),
                0,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r > 0 {
            sent += 1;
        }
    }
    sent
}

/// A TLS connection (with a request) from `src` in the client namespace to `dst`:443, SNI
/// `name` (an IP address as `name` sends no SNI).
pub fn tls_from(
    tb: &Testbed,
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    name: &str,
) -> Result<String, String> {
    let name = name.to_string();
    tb.in_ns(&tb.client, move || {
        super::servers::tls_get(Some(src.into()), SocketAddr::new(dst.into(), 443), &name)
    })
    .join()
    .unwrap()
}

/// A DNS lookup (type A) of `name` from `src` in the client namespace, asking `server`:53: the
/// addresses, or the response code (see `servers::dns_lookup`).
pub fn dns_from(
    tb: &Testbed,
    src: std::net::Ipv4Addr,
    server: std::net::Ipv4Addr,
    name: &str,
) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let name = name.to_string();
    tb.in_ns(&tb.client, move || {
        super::servers::dns_lookup(src.into(), SocketAddr::new(server.into(), 53), &name)
    })
    .join()
    .unwrap()
}

/// A TLS server for `names` on `addr`:443 in the internet namespace, answering 20 ms late.
pub fn tls_server(
    tb: &Testbed,
    addr: std::net::Ipv4Addr,
    names: &'static [&'static str],
) -> super::servers::TlsServer {
    tb.in_ns(&tb.inet, move || {
        super::servers::TlsServer::start(
            SocketAddr::new(addr.into(), 443),
            names,
            Duration::from_millis(20),
        )
    })
    .join()
    .unwrap()
}

/// systemd's side of the notify protocol: a datagram socket that records when each message came.
pub struct NotifySocket {
    pub path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    /// Bind `dir/notify.sock` and record what arrives on a thread of its own.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = Arc::clone(&got);
        std::thread::spawn(move || {
            let mut b = [0u8; 1024];
            while let Ok(n) = sock.recv(&mut b) {
                g.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(&b[..n]).into_owned(),
                ));
            }
        });
        NotifySocket { path, got }
    }

    /// Times of the WATCHDOG=1 keep-alives so far.
    pub fn keepalives(&self) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Every message so far, in the order they came.
    pub fn messages(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }
}
