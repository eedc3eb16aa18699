//! DHCP server leases files (dnsmasq, ISC dhcpd, Kea memfile CSV), format detected from the
//! content and read as a stream: active leases give address -> MAC + host name; others counted.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;

use super::lease::MAX_LINE;
use super::lease::{mac, Latest};
pub use super::lease::{LeaseEntry, LeaseFormat, LeaseStats, MAX_LEASES};
use super::Devices;

/// Files larger than this are refused (a leases file of a clinic is a few hundred KiB).
pub const MAX_LEASES_FILE: u64 = 64 << 20;
/// What format detection looks at.
const DETECT_BYTES: usize = 64 * 1024;

/// Read a leases file into `devices`. Errors (missing, unreadable, too large, unknown format)
/// name the file and what to check.
pub fn load_leases(path: &Path, devices: &Devices) -> Result<LeaseStats, String> {
    let f = std::fs::File::open(path).map_err(|e| {
        format!(
            "leases file {}: {e} (check [devices] leases_file and that the daemon's user may read it)",
            path.display()
        )
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_LEASES_FILE {
        return Err(format!(
            "leases file {} is {len} bytes, over the 64 MiB limit: refused (is it the right file? \
             remove leases_file from [devices] if it cannot be made smaller)",
            path.display()
        ));
    }
    // A file that grows while read is cut at the limit (its last record then counts as malformed).
    let r = BufReader::with_capacity(64 * 1024, f.take(MAX_LEASES_FILE));
    let (entries, stats) =
        read_leases(r, now_unix()).map_err(|e| format!("leases file {}: {e}", path.display()))?;
    for e in &entries {
        // The DHCP server's own lease binds the address to the MAC.
        match e.mac {
            Some(m) => devices.bind(e.ip, m, e.hostname.as_deref()),
            None => devices.learn(e.ip, e.mac, e.hostname.as_deref()),
        }
    }
    Ok(stats)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Detect the format of `text` and return its active leases at `now` (Unix seconds).
pub fn parse_leases(text: &str, now: i64) -> Result<(Vec<LeaseEntry>, LeaseStats), String> {
    read_leases(text.as_bytes(), now)
}

/// [`parse_leases`] over a reader: the first 64 KiB decide the format, then it is streamed.
pub fn read_leases(mut r: impl BufRead, now: i64) -> Result<(Vec<LeaseEntry>, LeaseStats), String> {
    let mut head = Vec::with_capacity(DETECT_BYTES);
    (&mut r)
        .take(DETECT_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let format = detect(&String::from_utf8_lossy(&head)).ok_or_else(|| {
        "format not recognised: expected dnsmasq (`expiry mac ip hostname clientid`), \
         ISC dhcpd (`lease IP { ... }`) or Kea memfile CSV (header `address,hwaddr,...`)"
            .to_string()
    })?;
    let mut r = std::io::Cursor::new(head).chain(r);
    let mut st = LeaseStats {
        format,
        active: 0,
        expired: 0,
        malformed: 0,
        over_limit: 0,
    };
    let mut latest = Latest::default();
    match format {
        LeaseFormat::Dnsmasq => dnsmasq(&mut r, now, &mut st, &mut latest),
        LeaseFormat::IscDhcpd => super::isc::isc(&mut r, now, &mut st, &mut latest),
        LeaseFormat::Kea => kea(&mut r, now, &mut st, &mut latest)?,
        LeaseFormat::Empty => {}
    }
    let out = latest.finish(&mut st);
    Ok((out, st))
}

fn detect(text: &str) -> Option<LeaseFormat> {
    let mut data = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let first = match data.next() {
        Some(l) => l,
        None => return Some(LeaseFormat::Empty),
    };
    if first.starts_with("address,") {
        return Some(LeaseFormat::Kea);
    }
    let isc_word = [
        "lease ",
        "authoring-byte-order",
        "server-duid",
        "failover peer",
        "ia-na ",
        "ia-ta ",
        "ia-pd ",
        "host ",
    ];
    if isc_word.iter().any(|w| first.starts_with(w)) {
        return Some(LeaseFormat::IscDhcpd);
    }
    let f: Vec<&str> = first.split_whitespace().collect();
    if (f.len() >= 4 && f[0].bytes().all(|b| b.is_ascii_digit())) || f.first() == Some(&"duid") {
        return Some(LeaseFormat::Dnsmasq);
    }
    None
}

/// The next line (without its end), at most [`MAX_LINE`] bytes of it kept, lossily decoded;
/// `None` at the end or on a read error.
pub(super) fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(take + usize::from(done));
        if done {
            break;
        }
    }
    any.then(|| String::from_utf8_lossy(buf).trim().to_string())
}

/// dnsmasq: `expiry mac ip hostname clientid` per line (expiry 0: infinite; hostname `*`:
/// none); DHCPv6 lines carry an IAID instead of the MAC, after a `duid` line.
fn dnsmasq(r: &mut impl BufRead, now: i64, st: &mut LeaseStats, latest: &mut Latest) {
    let mut buf = Vec::new();
    while let Some(line) = next_line(r, &mut buf) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("duid ") {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            let expiry: i64 = f.first()?.parse().ok()?;
            let ip: IpAddr = f.get(2)?.parse().ok()?;
            let m = f.get(1)?;
            let mac = match (mac(m), ip) {
                (Some(m), _) => Some(m),
                // DHCPv6: the second field is the IAID (a number).
                (None, IpAddr::V6(_)) if m.bytes().all(|b| b.is_ascii_digit()) => None,
                (None, _) => return None,
            };
            let hostname = f.get(3).filter(|h| **h != "*").map(|h| h.to_string());
            let live = expiry == 0 || expiry > now;
            Some((ip, live.then_some(LeaseEntry { ip, mac, hostname })))
        })();
        match parsed {
            Some((ip, e)) => latest.set(ip, e, st),
            None => st.malformed += 1,
        }
    }
}

/// Kea memfile CSV (v4 or v6), columns found by the header: `address`, `hwaddr`, `expire`,
/// `valid_lifetime`, `hostname`, `state` (0 = assigned). Kea never quotes: it writes a comma
/// inside a field as `&#x2c`. Later rows supersede earlier ones.
fn kea(
    r: &mut impl BufRead,
    now: i64,
    st: &mut LeaseStats,
    latest: &mut Latest,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let head = loop {
        match next_line(r, &mut buf) {
            Some(l) if l.is_empty() || l.starts_with('#') => continue,
            Some(l) => break l,
            None => return Ok(()),
        }
    };
    let cols: Vec<&str> = head.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|h| *h == name);
    let (Some(c_addr), Some(c_exp)) = (col("address"), col("expire")) else {
        return Err("Kea CSV header lacks `address` or `expire`".into());
    };
    let (c_hw, c_host, c_state, c_valid) = (
        col("hwaddr"),
        col("hostname"),
        col("state"),
        col("valid_lifetime"),
    );
    while let Some(line) = next_line(r, &mut buf) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |c: Option<usize>| c.and_then(|c| f.get(c)).copied().filter(|s| !s.is_empty());
        let parsed = (|| {
            let ip: IpAddr = f.get(c_addr)?.parse().ok()?;
            let expire: i64 = f.get(c_exp)?.parse().ok()?;
            let state: u32 = get(c_state).map_or(Some(0), |s| s.parse().ok())?;
            let valid: i64 = get(c_valid).map_or(Some(1), |s| s.parse().ok())?;
            let mac = match get(c_hw) {
                Some(s) => Some(mac(s)?),
                None => None,
            };
            let hostname = get(c_host).map(|h| h.replace("&#x2c", ","));
            let live = state == 0 && valid != 0 && expire > now;
            Some((ip, live.then_some(LeaseEntry { ip, mac, hostname })))
        })();
        match parsed {
            Some((ip, e)) => latest.set(ip, e, st),
            None => st.malformed += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect("\n# nothing\n"), Some(LeaseFormat::Empty));
        assert_eq!(detect("hello world"), None);
        assert!(parse_leases("hello world", 0)
            .unwrap_err()
            .contains("dnsmasq"));
        assert_eq!(parse_leases("", 0).unwrap().1.format, LeaseFormat::Empty);
    }

    #[test]
    fn long_lines_are_cut_not_kept() {
        let mut text = format!("1 02:00:00:00:00:01 10.0.0.1 {}\n", "h".repeat(100_000));
        text.push_str("2000000000 02:00:00:00:00:02 10.0.0.2 short\n");
        let (l, s) = parse_leases(&text, 10).unwrap();
        assert_eq!((s.active, s.expired, s.malformed), (1, 1, 0));
        assert_eq!(l[0].hostname.as_deref(), Some("short"));
        let mut b = Vec::new();
        let mut r = std::io::Cursor::new(text.as_bytes());
        assert_eq!(next_line(&mut r, &mut b).unwrap().len(), MAX_LINE);
    }

    #[test]
    fn bounded_number_of_addresses() {
        let mut t = String::new();
        for i in 0..MAX_LEASES as u32 + 5 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.push_str(&format!("0 02:00:00:00:00:01 {ip} *\n"));
        }
        let (l, s) = parse_leases(&t, 10).unwrap();
        assert_eq!((l.len(), s.over_limit), (MAX_LEASES, 5));
    }
}
