//! Test bed of the enforcement tests: namespaces (two clients, a forwarding gateway, a server)
//! joined by veth pairs, removed on drop; a gateway capture loop. (Threads inside one of them:
//! `common::netns::in_ns`.)

#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use shadowgate::capture::Frame;
use shadowgate::pipeline::Pipeline;

use super::netns::reset_timing_lock;
use super::tools::{must, run};

/// Why these tests cannot run here (not root, or a tool missing), if so.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!(
                "`{tool}` not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

/// c1 (10.77.1.2) and c2 (10.77.3.2) - gw (10.77.1.1, .3.1, .2.1; forwarding) - s (10.77.2.2);
/// the same with fd77:N::2 / fd77:N::1 for IPv6.
pub struct Bed {
    /// One test bed at a time, and none while a `daemon_enforce` test runs (one lock for both,
    /// [`reset_timing_lock`]): the tests time resets against a server that answers 20 ms late,
    /// which other beds' threads on a loaded machine could delay.
    _serial: std::sync::MutexGuard<'static, ()>,
    pub c1: String,
    pub c2: String,
    pub gw: String,
    pub s: String,
}

pub const C1: &str = "10.77.1.2";
pub const C2: &str = "10.77.3.2";
pub const SERVER: &str = "10.77.2.2";
pub const C1_V6: &str = "fd77:1::2";
pub const SERVER_V6: &str = "fd77:2::2";

impl Bed {
    /// Build the namespaces and links (one bed at a time: this waits for the one in use, or for
    /// a `daemon_enforce` test).
    pub fn new() -> Bed {
        let tag = format!(
            "{:x}",
            (std::process::id() as u64) << 16
                ^ SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64
        );
        let tag = &tag[tag.len().saturating_sub(6)..];
        let b = Bed {
            _serial: reset_timing_lock(),
            c1: format!("sgnft-c1-{tag}"),
            c2: format!("sgnft-c2-{tag}"),
            gw: format!("sgnft-gw-{tag}"),
            s: format!("sgnft-s-{tag}"),
        };
        for n in [&b.c1, &b.c2, &b.gw, &b.s] {
            must(&["ip", "netns", "add", n]);
            must(&["ip", "-n", n, "link", "set", "lo", "up"]);
            // No duplicate address detection: IPv6 addresses (link-local too) usable at once.
            for k in ["all", "default"] {
                let key = format!("net.ipv6.conf.{k}.accept_dad=0");
                must(&["ip", "netns", "exec", n, "sysctl", "-qw", &key]);
            }
        }
        for (peer, gif, net) in [(&b.c1, "gc1", "1"), (&b.c2, "gc2", "3"), (&b.s, "gs", "2")] {
            must(&[
                "ip", "-n", &b.gw, "link", "add", gif, "type", "veth", "peer", "name", "eth0",
                "netns", peer,
            ]);
            must(&[
                "ip",
                "-n",
                &b.gw,
                "addr",
                "add",
                &format!("10.77.{net}.1/24"),
                "dev",
                gif,
            ]);
            must(&["ip", "-n", &b.gw, "link", "set", gif, "up"]);
            must(&[
                "ip",
                "-n",
                peer,
                "addr",
                "add",
                &format!("10.77.{net}.2/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", peer, "link", "set", "eth0", "up"]);
            must(&[
                "ip",
                "-n",
                peer,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{net}.1"),
            ]);
            let (gw6, peer6, via6) = (
                format!("fd77:{net}::1/64"),
                format!("fd77:{net}::2/64"),
                format!("fd77:{net}::1"),
            );
            must(&["ip", "-n", &b.gw, "addr", "add", &gw6, "dev", gif, "nodad"]);
            must(&[
                "ip", "-n", peer, "addr", "add", &peer6, "dev", "eth0", "nodad",
            ]);
            must(&[
                "ip", "-n", peer, "-6", "route", "add", "default", "via", &via6,
            ]);
        }
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            must(&["ip", "netns", "exec", &b.gw, "sysctl", "-qw", sysctl]);
        }
        b
    }

    /// `nft -j list table inet shadowgate` in the gateway: Some(json) if the table exists.
    pub fn table_json(&self) -> Option<String> {
        let o = run(&[
            "ip",
            "netns",
            "exec",
            &self.gw,
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            "shadowgate",
        ]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `nft list set inet shadowgate NAME` in the gateway.
    pub fn set_text(&self, name: &str) -> String {
        let o = run(&[
            "ip",
            "netns",
            "exec",
            &self.gw,
            "nft",
            "list",
            "set",
            "inet",
            "shadowgate",
            name,
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Bed {
    /// Delete the namespaces (and with them the links).
    fn drop(&mut self) {
        for n in [&self.c1, &self.c2, &self.gw, &self.s] {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}

/// A non-blocking AF_PACKET socket bound to interface `ifname` (all protocols).
fn packet_socket(ifname: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            proto as i32,
        )
    };
    assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(idx > 0, "no interface {ifname}");
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = idx as i32;
    // SAFETY: sll is a valid sockaddr_ll.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "bind AF_PACKET");
    fd
}

/// Capture on the gateway's client-facing interfaces and feed `pipeline` until `stop`.
/// Call from a thread inside the gateway namespace.
/// `ready` runs once the sockets are open.
pub fn capture_loop(
    mut pipeline: Pipeline,
    ifaces: &[&str],
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> Pipeline {
    let socks: Vec<OwnedFd> = ifaces.iter().map(|i| packet_socket(i)).collect();
    ready();
    let mut buf = vec![0u8; 65536];
    // SGNFT_PCAP=file: also write what was captured (classic pcap) for debugging a test.
    let mut dump = std::env::var_os("SGNFT_PCAP").map(|p| {
        let mut f = std::fs::File::create(p).unwrap();
        use std::io::Write;
        f.write_all(&[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ])
        .unwrap();
        f
    });
    while !stop.load(Ordering::Relaxed) {
        let mut pfds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfds is a valid array.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as u64, 50) };
        for s in &socks {
            loop {
                // SAFETY: buf is valid for its length.
                let n = unsafe {
                    libc::recv(
                        s.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                    )
                };
                if n <= 0 {
                    break;
                }
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                if let Some(f) = dump.as_mut() {
                    use std::io::Write;
                    let mut h = Vec::new();
                    h.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
                    h.extend_from_slice(&((ts / 1000 % 1_000_000) as u32).to_le_bytes());
                    h.extend_from_slice(&(n as u32).to_le_bytes());
                    h.extend_from_slice(&(n as u32).to_le_bytes());
                    f.write_all(&h).unwrap();
                    f.write_all(&buf[..n as usize]).unwrap();
                }
                pipeline.feed(&Frame {
                    ts_ns: ts,
                    linktype: 1,
                    data: &buf[..n as usize],
                    orig_len: n as u32,
                    offset: 0,
                    csum: Default::default(),
                });
            }
        }
    }
    pipeline
}
