//! The daemon under test on the namespace testbed: start `shadowgate run` in the gateway
//! namespace, read its `/metrics` and `/healthz`, its store, and send raw frames at it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::netns::Testbed;
use shadowgate::record::{Query, Store};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of the bundled policy (tests may break it).
pub fn policy_copy(dir: &Path) -> PathBuf {
    let p = dir.join("policies");
    let o = std::process::Command::new("cp")
        .args(["-r"])
        .arg(root().join("policies"))
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success());
    p
}

/// The daemon under test, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    pub fn start(tb: &Testbed, config: &Path) -> Daemon {
        Self::start_with_env(tb, config, &[])
    }

    /// Start with extra environment (e.g. systemd's NOTIFY_SOCKET and WATCHDOG_USEC).
    pub fn start_with_env(tb: &Testbed, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &tb.gw, env!("CARGO_BIN_EXE_shadowgate")])
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

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

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from the metrics endpoint inside the gateway namespace.
pub fn http_get(tb: &Testbed, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    tb.in_ns(&tb.gw, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.get(9..12)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    })
    .join()
    .unwrap()
}

pub const METRICS: &str = "127.0.0.1:9811";

/// Wait until `/healthz` says ok (capture threads running).
pub fn wait_healthy(tb: &Testbed, d: &Daemon) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if let Some((200, _)) = http_get(tb, METRICS.parse().unwrap(), "/healthz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("daemon not healthy within 15 s; its log:\n{}", d.log());
}

pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

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

pub fn events(dir: &Path) -> Vec<shadowgate::record::Event> {
    Store::open(&dir.join("events.db"))
        .unwrap()
        .query(&Query::default())
        .unwrap()
}

/// Wait until the store holds an event matching `f` (up to 5 s).
pub fn wait_event(
    dir: &Path,
    f: impl Fn(&shadowgate::record::Event) -> bool,
) -> shadowgate::record::Event {
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

#[macro_export]
macro_rules! need_root {
    () => {
        if !common::netns::can_run() {
            eprintln!("skipped: needs root and `ip netns` (CI has both)");
            return;
        }
    };
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
