//! What the machine offers the daemon: the capture interfaces (present, up), nf_tables (owned
//! tables, element destroy), AF_PACKET with TPACKET_V3, and the process's capabilities.

use super::Finding;
use crate::config::{Config, EnforceMode};

fn enforce_mode(c: &Config) -> bool {
    c.enforce
        .as_ref()
        .is_some_and(|e| e.mode == EnforceMode::Enforce)
}

/// `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The interface flags (`IFF_*`) of `name` in this network namespace; None if there is none.
fn if_flags(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: socket with constant arguments; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: ifreq is a plain C struct; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name (shorter than IFNAMSIZ, the rest zero)
    // and writes the flags into the ifreq we own.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) };
    // SAFETY: the flags member is the one SIOCGIFFLAGS filled.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as u16 as u32;
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    (r == 0).then_some(flags)
}

/// `[capture] interfaces`: missing is an error (the daemon refuses to start), down a warning.
pub fn interfaces(c: &Config) -> Vec<Finding> {
    let Some(cap) = &c.capture else {
        return Vec::new();
    };
    cap.interfaces
        .iter()
        .map(|i| match if_flags(i) {
            None => Finding::error(
                "interface",
                format!("[capture] interface {i:?} does not exist"),
                "name an interface of this machine in [capture] interfaces (`ip -br link` lists them)",
            ),
            Some(f) if f & libc::IFF_UP as u32 == 0 => Finding::warn(
                "interface",
                format!("{i}: down: nothing is captured on it"),
                format!("bring it up (`ip link set {i} up`, and in the network configuration)"),
            ),
            Some(f) if f & libc::IFF_RUNNING as u32 == 0 => Finding::warn(
                "interface",
                format!("{i}: up but no carrier (cable or peer down)"),
                format!("check the link of {i} (`ip -br link show {i}` says LOWER_UP when it has one)"),
            ),
            Some(_) => Finding::ok("interface", format!("{i}: present and up")),
        })
        .collect()
}

/// nf_tables with owned tables, and whether element removals go in one batch: asked on a
/// scratch table (see `enforce::nft::probe`). Needed in enforce mode only.
pub fn nftables(c: &Config) -> Vec<Finding> {
    if !enforce_mode(c) {
        return vec![Finding::ok(
            "nftables",
            "monitor mode: nftables is not used ([enforce] mode = \"monitor\")",
        )];
    }
    let release = kernel_release();
    match crate::enforce::nft::probe() {
        Err(e) => vec![Finding::error(
            "nftables",
            format!("{e:#}"),
            "run the check as the unit does (CAP_NET_ADMIN) or as root; the kernel needs nf_tables (`modprobe nf_tables`)",
        )],
        Ok(k) => {
            let mut out = Vec::new();
            match k.owned_tables {
                Ok(()) => out.push(Finding::ok(
                    "nftables",
                    format!("nf_tables with owned tables (Linux {release})"),
                )),
                Err(why) => {
                    out.push(Finding::error(
                        "nftables",
                        format!("the kernel refused an owned nftables table: {why} (Linux {release})"),
                        "enforce mode needs Linux >= 5.12 with nf_tables (nft_reject, nft_nat, nft_lookup); upgrade the kernel or set [enforce] mode = \"monitor\"",
                    ));
                    return out;
                }
            }
            let forced = std::env::var(crate::daemon::PLAIN_DELETES_ENV).is_ok_and(|v| v == "1");
            out.push(if k.destroy_elem && !forced {
                Finding::ok(
                    "element-destroy",
                    "DESTROYSETELEM: element removals go in one batch",
                )
            } else {
                Finding::warn(
                    "element-destroy",
                    if forced {
                        format!("plain deletes forced by {}=1 (for tests): the daemon removes elements one at a time", crate::daemon::PLAIN_DELETES_ENV)
                    } else {
                        format!("Linux {release} has no DESTROYSETELEM (added in 6.3; Debian 12 ships 6.1): the daemon falls back to one plain delete at a time")
                    },
                    "nothing to do: enforcement works the same, removals on bursts of grants are slower; a kernel >= 6.3 (e.g. Debian backports) batches them; the daemon says it at start and in shadowgate_nft_element_destroy 0",
                )
            });
            out
        }
    }
}

/// AF_PACKET sockets with TPACKET_V3 rings (the capture), when anything is captured.
pub fn af_packet(c: &Config) -> Vec<Finding> {
    if c.capture.is_none() {
        return Vec::new();
    }
    // SAFETY: socket with constant arguments; closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return vec![Finding::error(
            "af-packet",
            format!("cannot open an AF_PACKET socket: {e}"),
            if e.raw_os_error() == Some(libc::EPERM) {
                "capture needs CAP_NET_RAW: run as the unit does (AmbientCapabilities=CAP_NET_RAW) or as root"
            } else {
                "the kernel needs CONFIG_PACKET (`modprobe af_packet`)"
            },
        )];
    }
    let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    // SAFETY: PACKET_VERSION takes an int; we pass a pointer to one and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &v3 as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let e = std::io::Error::last_os_error();
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    if r != 0 {
        return vec![Finding::error(
            "af-packet",
            format!("AF_PACKET has no TPACKET_V3 rings: {e}"),
            "the capture needs Linux >= 3.2 with TPACKET_V3",
        )];
    }
    vec![Finding::ok("af-packet", "AF_PACKET with TPACKET_V3 rings")]
}

const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// The effective capability mask of `/proc/self/status` text (`CapEff:` line).
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The capabilities the configuration needs, with why.
fn needed(c: &Config) -> Vec<(u32, &'static str, &'static str)> {
    let mut v = Vec::new();
    if c.capture.is_some() || enforce_mode(c) {
        v.push((CAP_NET_RAW, "CAP_NET_RAW", "capture and resets"));
    }
    if enforce_mode(c) {
        v.push((
            CAP_NET_ADMIN,
            "CAP_NET_ADMIN",
            "the nftables table of enforce mode",
        ));
    }
    let low = c
        .dns
        .as_ref()
        .is_some_and(|d| d.listen.iter().any(|a| a.port() < 1024))
        || c.portal.as_ref().is_some_and(|p| {
            p.http.is_none_or(|a| a.port() < 1024) || p.https.is_none_or(|a| a.port() < 1024)
        })
        || c.metrics.as_ref().is_some_and(|m| m.listen.port() < 1024);
    if low {
        v.push((
            CAP_NET_BIND_SERVICE,
            "CAP_NET_BIND_SERVICE",
            "listening on ports below 1024",
        ));
    }
    v
}

/// This process holds what the configuration needs (the unit runs the check as its own user
/// with its capabilities, so this is what the daemon will have).
pub fn capabilities(c: &Config) -> Vec<Finding> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff(&s));
    let Some(eff) = eff else {
        return vec![Finding::warn(
            "capability",
            "cannot read this process's capabilities (/proc/self/status)",
            "mount /proc",
        )];
    };
    needed(c)
        .into_iter()
        .map(|(bit, name, why)| {
            if eff & (1 << bit) != 0 {
                Finding::ok("capability", format!("{name} ({why})"))
            } else {
                Finding::error(
                    "capability",
                    format!("{name} missing: needed for {why}"),
                    format!("run as the unit does (AmbientCapabilities={name}) or as root"),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_capabilities_are_read_from_status() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n";
        let e = cap_eff(s).unwrap();
        assert!(e & (1 << CAP_NET_ADMIN) != 0 && e & (1 << CAP_NET_RAW) != 0);
        assert!(e & (1 << CAP_NET_BIND_SERVICE) == 0);
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn what_a_configuration_needs() {
        let c: Config = toml::from_str("[capture]\ninterfaces = [\"lan0\"]\n").unwrap();
        let n: Vec<_> = needed(&c).into_iter().map(|n| n.1).collect();
        assert_eq!(n, ["CAP_NET_RAW"]);
        let c: Config = toml::from_str(
            "[capture]\ninterfaces = [\"lan0\"]\n[enforce]\nmode = \"enforce\"\n[metrics]\nlisten = \"127.0.0.1:80\"\n",
        )
        .unwrap();
        let n: Vec<_> = needed(&c).into_iter().map(|n| n.1).collect();
        assert_eq!(n, ["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn loopback_is_up_and_a_made_up_name_is_missing() {
        assert!(if_flags("lo").is_some_and(|f| f & libc::IFF_UP as u32 != 0));
        assert_eq!(if_flags("sg-no-such-if"), None);
        assert_eq!(if_flags(""), None);
        assert_eq!(if_flags("a-name-far-too-long-for-linux"), None);
    }
}
