//! A namespace testbed: client, gateway and "internet" namespaces joined by veth pairs, with
//! addresses only inside them; threads can enter a namespace; everything goes on drop.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};

use super::tools::ip;

/// client (10.20.1.2, .3, .4) -- lan0 [gateway 10.20.1.1 | 10.99.2.1] wan0 -- inet (10.99.2.2 ..)
pub struct Testbed {
    pub client: String,
    pub gw: String,
    pub inet: String,
}

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 2);
pub const CLIENT2: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 3);
pub const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 4);
pub const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);
pub const GW_WAN: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 1);
/// Servers on the internet side: each a name in the tests' zone.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 2);
pub const SERVER2: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 3);
pub const SERVER3: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 4);
pub const UPSTREAM_DNS: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 53);

/// Is this process root with `ip netns` available? (CI is; a developer machine may not be.)
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Why the namespace tests cannot run here, if they cannot (see [`can_run`]).
pub fn unavailable() -> Option<String> {
    (!can_run()).then(|| "needs root and `ip netns` (CI has both)".to_string())
}

/// Four hex digits that differ between runs and processes, for names of namespaces and folders
/// that tests running at once must not share.
pub fn suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:04x}", (t ^ std::process::id().rotate_left(7)) & 0xffff)
}

/// Move the calling thread into namespace `ns` (threads it spawns inherit it).
pub fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).expect("open netns");
    // SAFETY: a valid namespace descriptor; setns changes only this thread's namespace.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Run `f` on a new thread inside namespace `ns` (its sockets live there).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}

/// One at a time, across the whole test binary: the tests that time a reset against a server
/// that answers 20 ms late (`enforce`, each on an [`nft_bed::Bed`](super::nft_bed::Bed), and
/// `daemon_enforce`). They were kept apart by a lock of each file and by running in binaries of
/// their own; in one binary they would otherwise run beside each other, and more daemons,
/// capture loops and servers on two loaded cores could make a reset miss. Hold the guard for
/// the test.
pub fn reset_timing_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Testbed {
    /// A fresh testbed whose namespaces are named `{tag}-{pid}-c`, `-g`, `-i`: `tag` is unique
    /// to the test (see the `names` test), the pid keeps two runs of the tests on one machine
    /// apart (a testbed first deletes namespaces of its names).
    pub fn new(tag: &str) -> Testbed {
        let tag = format!("{tag}-{}", std::process::id());
        let t = Testbed {
            client: format!("{tag}-c"),
            gw: format!("{tag}-g"),
            inet: format!("{tag}-i"),
        };
        for ns in [&t.client, &t.gw, &t.inet] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &t.client, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0",
            "netns", &t.gw,
        ]);
        ip(&[
            "-n", &t.gw, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns",
            &t.inet,
        ]);
        for a in [CLIENT, CLIENT2, OUTSIDER] {
            ip(&[
                "-n",
                &t.client,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "eth0",
            ]);
        }
        ip(&["-n", &t.client, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &t.client,
            "route",
            "add",
            "default",
            "via",
            &GW_LAN.to_string(),
        ]);
        ip(&[
            "-n",
            &t.gw,
            "addr",
            "add",
            &format!("{GW_LAN}/24"),
            "dev",
            "lan0",
        ]);
        ip(&[
            "-n",
            &t.gw,
            "addr",
            "add",
            &format!("{GW_WAN}/24"),
            "dev",
            "wan0",
        ]);
        ip(&["-n", &t.gw, "link", "set", "lan0", "up"]);
        ip(&["-n", &t.gw, "link", "set", "wan0", "up"]);
        for a in [SERVER, SERVER2, SERVER3, UPSTREAM_DNS] {
            ip(&[
                "-n",
                &t.inet,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "eth0",
            ]);
        }
        ip(&["-n", &t.inet, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &t.inet,
            "route",
            "add",
            "10.20.1.0/24",
            "via",
            &GW_WAN.to_string(),
        ]);
        let o = t.exec(&t.gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // No offloads: frames on the capture ring are what was on the wire.
        for (ns, dev) in [
            (&t.client, "eth0"),
            (&t.gw, "lan0"),
            (&t.gw, "wan0"),
            (&t.inet, "eth0"),
        ] {
            let _ = t.exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                ],
            );
        }
        t.settle();
        t
    }

    /// Wait (up to 10 s) until no interface has a tentative IPv6 address: duplicate address
    /// detection ends a second or two after a link comes up, and the address change it announces
    /// makes a browser started before then abort its loads with ERR_NETWORK_CHANGED.
    fn settle(&self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until {
            let tentative = [&self.client, &self.gw, &self.inet].iter().any(|ns| {
                Command::new("ip")
                    .args(["-n", ns, "-6", "addr", "show", "tentative"])
                    .output()
                    .map(|o| !o.stdout.is_empty())
                    .unwrap_or(false)
            });
            if !tentative {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Run a command in namespace `ns` and wait for it.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// Start a command in namespace `ns`.
    pub fn spawn(&self, ns: &str, program: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }

    /// Run `f` on a new thread inside namespace `ns` of this testbed (see [`in_ns`]).
    pub fn in_ns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        in_ns(ns, f)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.gw, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
