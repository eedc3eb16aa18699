//! systemd's notify protocol (sd_notify(3)): READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and
//! STOPPING=1 as datagrams to $NOTIFY_SOCKET (a path, or `@name` in the abstract namespace).

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Send `state` (newline-separated `KEY=value` assignments) to the service manager. `Ok(false)`
/// when not run by systemd (no $NOTIFY_SOCKET): nothing to do.
pub fn notify(state: &str) -> Result<bool, String> {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// Startup finished: sockets bound, capture running, privileges dropped.
pub fn ready() -> Result<bool, String> {
    notify("READY=1")
}

/// A one-line status `systemctl status` shows.
pub fn status(text: &str) -> Result<bool, String> {
    notify(&format!("STATUS={}", text.replace('\n', " ")))
}

/// The watchdog keep-alive: send it at [`watchdog_interval`] / 2 from the loop that proves the
/// daemon works (not from a timer thread of its own, or a hung daemon would look alive).
pub fn watchdog() -> Result<bool, String> {
    notify("WATCHDOG=1")
}

/// A reload (SIGHUP) began; send [`ready`] when it ended.
pub fn reloading() -> Result<bool, String> {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
}

/// Shutdown began.
pub fn stopping() -> Result<bool, String> {
    notify("STOPPING=1")
}

/// The watchdog period systemd expects (WatchdogSec=), if it is enabled for this process:
/// $WATCHDOG_USEC, and $WATCHDOG_PID (when set) is our pid. Ping at half of it.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// Send to an explicit socket address (what [`notify`] does with $NOTIFY_SOCKET).
pub fn notify_to(socket: Option<&OsStr>, state: &str) -> Result<bool, String> {
    let Some(addr) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let s = UnixDatagram::unbound().map_err(|e| format!("sd_notify: socket: {e}"))?;
    let bytes = addr.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name)
            .map_err(|e| format!("sd_notify: NOTIFY_SOCKET {addr:?}: {e}"))?;
        s.send_to_addr(state.as_bytes(), &a)
    } else if bytes.starts_with(b"/") {
        s.send_to(state.as_bytes(), addr)
    } else {
        return Err(format!(
            "sd_notify: NOTIFY_SOCKET {addr:?} is neither a path nor @abstract (vsock is not supported)"
        ));
    };
    match sent {
        Ok(n) if n == state.len() => Ok(true),
        Ok(n) => Err(format!(
            "sd_notify: short send to {addr:?} ({n} of {} bytes)",
            state.len()
        )),
        Err(e) => Err(format!("sd_notify: sending to {addr:?}: {e}")),
    }
}

fn monotonic_usec() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn recv(s: &UnixDatagram) -> String {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 512];
        let n = s.recv(&mut b).unwrap();
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[test]
    fn path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("sg-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let srv = UnixDatagram::bind(&path).unwrap();
        assert_eq!(notify_to(Some(path.as_os_str()), "READY=1"), Ok(true));
        assert_eq!(recv(&srv), "READY=1");
        assert_eq!(notify_to(Some(path.as_os_str()), "WATCHDOG=1"), Ok(true));
        assert_eq!(recv(&srv), "WATCHDOG=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("sg-notify-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abs = UnixDatagram::bind_addr(&a).unwrap();
        let var = OsString::from(format!("@{name}"));
        assert_eq!(notify_to(Some(&var), "STOPPING=1"), Ok(true));
        assert_eq!(recv(&abs), "STOPPING=1");

        assert_eq!(notify_to(None, "READY=1"), Ok(false));
        assert_eq!(notify_to(Some(OsStr::new("")), "READY=1"), Ok(false));
        assert!(notify_to(Some(OsStr::new("vsock:2:1")), "READY=1").is_err());
        let gone = dir.join("gone.sock");
        assert!(notify_to(Some(gone.as_os_str()), "READY=1")
            .unwrap_err()
            .contains("gone.sock"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_settings() {
        assert_eq!(
            watchdog_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }
}
