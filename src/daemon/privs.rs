//! Privilege drop at start, before any thread or listener: keep only CAP_NET_RAW and CAP_NET_ADMIN (and optionally
//! CAP_NET_BIND_SERVICE), empty the bounding set, set no_new_privs, optionally become a user.

use std::fmt;

const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SETPCAP: u32 = 8;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The capabilities kept (permitted and effective), by name.
    pub kept: Vec<&'static str>,
    /// Capabilities removed from the bounding set.
    pub bounding_dropped: usize,
    /// Capabilities left in the bounding set because CAP_SETPCAP was missing (started without
    /// root, e.g. by systemd with `CapabilityBoundingSet=`, which already limits it; with
    /// no_new_privs nothing can gain them back).
    pub bounding_left: Vec<u32>,
    /// The user and group switched to.
    pub user: Option<(u32, u32)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept {}; {} removed from the bounding set",
            self.kept.join(", "),
            self.bounding_dropped
        )?;
        if !self.bounding_left.is_empty() {
            write!(
                f,
                " ({} left there: no CAP_SETPCAP)",
                self.bounding_left.len()
            )?;
        }
        if let Some((u, g)) = self.user {
            write!(f, "; now uid {u} gid {g}")?;
        }
        write!(f, "; no_new_privs set; umask 0077")
    }
}

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c)
}

fn capget() -> Result<u64, String> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as the v3 ABI requires.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if r != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    Ok(d[0].permitted as u64 | (d[1].permitted as u64) << 32)
}

fn capset(effective: u64, permitted: u64) -> Result<(), String> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: as in capget.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    if r != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn prctl(op: libc::c_int, a: libc::c_ulong) -> std::io::Result<libc::c_int> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            op,
            a,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Threads of this process (capabilities, the bounding set and no_new_privs are per thread).
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

fn thread_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    v.sort();
    v
}

/// uid and gid of a user name (or a numeric uid).
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("user {name:?}: bad name"))?;
    // SAFETY: `passwd` is a plain C struct of pointers and integers; all-zero (null pointers) is a
    // valid value, and getpwnam_r fills it before it is read.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all pointers are valid for the sizes given; `out` is null or points to `pw`.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r == 0 && !out.is_null() {
        return Ok((pw.pw_uid, pw.pw_gid));
    }
    Err(format!(
        "user {name:?} does not exist: create it (`useradd --system --no-create-home --shell /usr/sbin/nologin {name}`) or remove the setting"
    ))
}

/// Keep only CAP_NET_RAW and CAP_NET_ADMIN (plus CAP_NET_BIND_SERVICE with `keep_bind`) in the
/// permitted and effective sets, clear the inheritable and ambient sets, remove every other
/// capability from the bounding set, optionally switch to `user` (its uid and primary gid, no
/// supplementary groups; nothing to do if the process already runs as it) keeping those
/// capabilities, set PR_SET_NO_NEW_PRIVS and umask 0077. Without CAP_SETPCAP (started by
/// systemd as a user with `AmbientCapabilities=`) the bounding set is left as the unit limited
/// it and the report says what stayed.
///
/// Capabilities are per thread: call it while the process has one thread (after binding the
/// sockets, before starting the tokio runtime and capture threads); otherwise it refuses.
pub fn drop_privileges(keep_bind: bool, user: Option<&str>) -> Result<Report, String> {
    let n = threads();
    if n > 1 {
        return Err(format!(
            "privilege drop refused: the process has {n} threads ({}) and capabilities are per \
             thread; bind sockets and drop privileges before starting the runtime, recorder, \
             policy watcher and capture threads",
            thread_names().join(", ")
        ));
    }
    let mut keep = vec![
        (CAP_NET_RAW, "CAP_NET_RAW"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ];
    if keep_bind {
        keep.push((CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"));
    }
    let want = mask(&keep.iter().map(|k| k.0).collect::<Vec<_>>());
    let have = capget()?;
    let missing: Vec<&str> = keep
        .iter()
        .filter(|(c, _)| have & (1 << c) == 0)
        .map(|k| k.1)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: start shadowgate as root, or give the service AmbientCapabilities={}",
            missing.join(" "),
            keep.iter().map(|k| k.1).collect::<Vec<_>>().join(" ")
        ));
    }
    let ids = user.map(user_ids).transpose()?;
    // Store, reports and anything else written from now on: not readable by others.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o077) };

    // Bounding set first: removing from it needs CAP_SETPCAP, which goes next.
    let mut bounding_dropped = 0;
    let mut bounding_left = Vec::new();
    let can_setpcap = have & (1 << CAP_SETPCAP) != 0;
    for cap in 0..=last_cap() {
        if want & (1 << cap) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong) {
            Ok(1) => {}
            _ => continue, // not in the set, or unknown to this kernel
        }
        if !can_setpcap {
            bounding_left.push(cap);
            continue;
        }
        prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)
            .map_err(|e| format!("dropping capability {cap} from the bounding set: {e}"))?;
        bounding_dropped += 1;
    }

    // SAFETY: getters without preconditions.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    // Already that user (systemd's User= with AmbientCapabilities=): nothing to switch.
    if let Some((uid, gid)) = ids.filter(|&ids| ids != me) {
        prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
        // SAFETY: plain id syscalls; results checked.
        unsafe {
            if libc::setgroups(1, &gid) != 0 {
                return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
            }
            if libc::setresgid(gid, gid, gid) != 0 {
                return Err(format!(
                    "setresgid({gid}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(format!(
                    "setresuid({uid}): {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        prctl(libc::PR_SET_KEEPCAPS, 0).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    }
    capset(want, want)?;
    // Ambient capabilities would pass to programs we run; there are none to pass.
    let _ = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    );
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    let now = capget()?;
    if now != want {
        return Err(format!(
            "capabilities after the drop are {now:#x}, expected {want:#x}"
        ));
    }
    Ok(Report {
        kept: keep.iter().map(|k| k.1).collect(),
        bounding_dropped,
        bounding_left,
        user: ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` in a forked child (one thread: the fork's) and return what it wrote.
    fn in_child(f: impl FnOnce() -> String) -> String {
        let mut fds = [0; 2];
        // SAFETY: pipe and fork; the child only runs `f`, writes and _exits.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::close(fds[0]);
                let out = f();
                libc::write(fds[1], out.as_ptr() as *const libc::c_void, out.len());
                libc::_exit(0);
            }
            libc::close(fds[1]);
            let mut out = Vec::new();
            let mut b = [0u8; 4096];
            loop {
                let n = libc::read(fds[0], b.as_mut_ptr() as *mut libc::c_void, b.len());
                if n <= 0 {
                    break;
                }
                out.extend_from_slice(&b[..n as usize]);
            }
            libc::close(fds[0]);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    fn status_field(status: &str, key: &str) -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }

    fn drop_and_status(bind: bool, user: Option<&'static str>) -> String {
        in_child(move || match drop_privileges(bind, user) {
            Ok(r) => format!(
                "report: {r}\n{}",
                std::fs::read_to_string("/proc/self/status").unwrap_or_default()
            ),
            Err(e) => format!("error: {e}"),
        })
    }

    #[test]
    fn drop_keeps_only_net_caps() {
        if capget()
            .map(|c| c & (1 << CAP_SETPCAP) == 0)
            .unwrap_or(true)
        {
            eprintln!("skipped: needs root (CAP_SETPCAP) to test the privilege drop");
            return;
        }
        let s = drop_and_status(false, None);
        assert!(
            s.starts_with("report: kept CAP_NET_RAW, CAP_NET_ADMIN"),
            "{s}"
        );
        assert_eq!(status_field(&s, "CapEff:"), "0000000000003000", "{s}");
        assert_eq!(status_field(&s, "CapPrm:"), "0000000000003000", "{s}");
        assert_eq!(status_field(&s, "CapBnd:"), "0000000000003000", "{s}");
        assert_eq!(status_field(&s, "CapInh:"), "0000000000000000", "{s}");
        assert_eq!(status_field(&s, "CapAmb:"), "0000000000000000", "{s}");
        assert_eq!(status_field(&s, "NoNewPrivs:"), "1", "{s}");
        assert_eq!(status_field(&s, "Umask:"), "0077", "{s}");

        // With the bind capability, as user nobody.
        let s = drop_and_status(true, Some("nobody"));
        assert!(s.contains("now uid 65534"), "{s}");
        assert_eq!(status_field(&s, "CapEff:"), "0000000000003400", "{s}");
        assert_eq!(status_field(&s, "CapBnd:"), "0000000000003400", "{s}");
        assert!(
            status_field(&s, "Uid:").starts_with("65534\t65534\t65534"),
            "{s}"
        );
        assert_eq!(status_field(&s, "Groups:"), "65534", "{s}");

        // What the capabilities are for still works: a packet socket (capture, resets) and
        // a netfilter netlink socket (nftables).
        let s = in_child(|| {
            if let Err(e) = drop_privileges(false, Some("nobody")) {
                return format!("error: {e}");
            }
            // SAFETY: plain socket calls; descriptors closed by the exiting child.
            let pkt = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    (libc::ETH_P_ALL as u16).to_be() as i32,
                )
            };
            // SAFETY: a plain socket call; the exiting child closes the descriptor.
            let nl =
                unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER) };
            format!("packet {} netlink {}", pkt >= 0, nl >= 0)
        });
        assert_eq!(s, "packet true netlink true");

        // Started without root but with the capabilities (systemd's AmbientCapabilities=, the
        // unit in deploy/): no CAP_SETPCAP, so the bounding set is left as systemd limited it.
        let s = in_child(|| {
            if let Err(e) = drop_privileges(true, Some("nobody")) {
                return format!("error: {e}");
            }
            match drop_privileges(false, Some("nobody")) {
                Ok(r) => format!(
                    "report: {r}\n{}",
                    std::fs::read_to_string("/proc/self/status").unwrap_or_default()
                ),
                Err(e) => format!("error: {e}"),
            }
        });
        assert!(s.contains("1 left there: no CAP_SETPCAP"), "{s}");
        assert_eq!(status_field(&s, "CapEff:"), "0000000000003000", "{s}");
        assert_eq!(status_field(&s, "CapBnd:"), "0000000000003400", "{s}");

        let s = drop_and_status(false, Some("sg-no-such-user"));
        assert!(s.contains("does not exist"), "{s}");
    }

    #[test]
    fn refuses_with_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        // This test process has several threads: the drop must refuse, not half-work.
        let e = drop_privileges(false, None).unwrap_err();
        assert!(e.contains("threads"), "{e}");
        tx.send(()).unwrap();
        t.join().unwrap();
    }
}
