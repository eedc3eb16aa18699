//! DHCP server leases files (dnsmasq, ISC dhcpd, Kea memfile CSV), format detected from the
//! content: active leases give address -> MAC + host name; expired ones and bad lines are counted.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use super::Devices;

/// Files larger than this are refused (a leases file of a clinic is a few hundred KiB).
pub const MAX_LEASES_FILE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseFormat {
    Dnsmasq,
    IscDhcpd,
    Kea,
    /// Nothing but blank lines and comments.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStats {
    pub format: LeaseFormat,
    /// Active, unexpired leases learnt.
    pub active: usize,
    /// Leases expired, released, declined or freed (the latest record of each address counts).
    pub expired: usize,
    /// Lines (dnsmasq, Kea) or `lease` blocks (ISC) that could not be read, skipped.
    pub malformed: usize,
}

/// One active lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
}

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
             ISC dhcpd compacts its file hourly; remove leases_file from [devices] if it cannot be read)",
            path.display()
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_LEASES_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("leases file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_LEASES_FILE {
        return Err(format!(
            "leases file {} grew past the 64 MiB limit while read: refused",
            path.display()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    let (entries, stats) = parse_leases(&text, now_unix())
        .map_err(|e| format!("leases file {}: {e}", path.display()))?;
    for e in &entries {
        devices.learn(e.ip, e.mac, e.hostname.as_deref());
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
    match detect(text) {
        Some(LeaseFormat::Dnsmasq) => Ok(dnsmasq(text, now)),
        Some(LeaseFormat::IscDhcpd) => Ok(isc(text, now)),
        Some(LeaseFormat::Kea) => kea(text, now),
        Some(LeaseFormat::Empty) => Ok((Vec::new(), stats(LeaseFormat::Empty))),
        None => Err("format not recognised: expected dnsmasq (`expiry mac ip hostname clientid`), \
                     ISC dhcpd (`lease IP { ... }`) or Kea memfile CSV (header `address,hwaddr,...`)"
            .into()),
    }
}

fn stats(format: LeaseFormat) -> LeaseStats {
    LeaseStats {
        format,
        active: 0,
        expired: 0,
        malformed: 0,
    }
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
    let isc_word = |l: &str| {
        l.starts_with("lease ")
            || l.starts_with("authoring-byte-order")
            || l.starts_with("server-duid")
            || l.starts_with("failover peer")
            || l.starts_with("ia-na ")
            || l.starts_with("ia-pd ")
            || l.starts_with("host ")
    };
    if isc_word(first) {
        return Some(LeaseFormat::IscDhcpd);
    }
    let f: Vec<&str> = first.split_whitespace().collect();
    if (f.len() >= 4 && f[0].bytes().all(|b| b.is_ascii_digit())) || f.first() == Some(&"duid") {
        return Some(LeaseFormat::Dnsmasq);
    }
    None
}

fn mac(s: &str) -> Option<[u8; 6]> {
    crate::policy::parse_mac(s).ok()
}

/// dnsmasq: `expiry mac ip hostname clientid` per line (expiry 0: infinite; hostname `*`:
/// none); DHCPv6 lines carry an IAID instead of the MAC, after a `duid` line.
fn dnsmasq(text: &str, now: i64) -> (Vec<LeaseEntry>, LeaseStats) {
    let mut st = stats(LeaseFormat::Dnsmasq);
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
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
            Some((expiry, LeaseEntry { ip, mac, hostname }))
        })();
        match parsed {
            Some((expiry, _)) if expiry != 0 && expiry <= now => st.expired += 1,
            Some((_, e)) => {
                st.active += 1;
                out.push(e);
            }
            None => st.malformed += 1,
        }
    }
    (out, st)
}

/// Kea memfile CSV (v4 or v6), columns found by the header: `address`, `hwaddr`, `expire`,
/// `valid_lifetime`, `hostname`, `state` (0 = assigned). Later rows supersede earlier ones.
fn kea(text: &str, now: i64) -> Result<(Vec<LeaseEntry>, LeaseStats), String> {
    let mut st = stats(LeaseFormat::Kea);
    let mut rd = csv::ReaderBuilder::new()
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let head = rd
        .headers()
        .map_err(|e| format!("Kea CSV header: {e}"))?
        .clone();
    let col = |name: &str| head.iter().position(|h| h == name);
    let (Some(c_addr), Some(c_exp)) = (col("address"), col("expire")) else {
        return Err("Kea CSV header lacks `address` or `expire`".into());
    };
    let (c_hw, c_host, c_state, c_valid) = (
        col("hwaddr"),
        col("hostname"),
        col("state"),
        col("valid_lifetime"),
    );
    let mut latest: HashMap<IpAddr, Option<LeaseEntry>> = HashMap::new();
    let mut order = Vec::new();
    for rec in rd.records() {
        let Ok(r) = rec else {
            st.malformed += 1;
            continue;
        };
        let parsed = (|| {
            let ip: IpAddr = r.get(c_addr)?.parse().ok()?;
            let expire: i64 = r.get(c_exp)?.parse().ok()?;
            let state: u32 = match c_state.and_then(|c| r.get(c)) {
                Some(s) if !s.is_empty() => s.parse().ok()?,
                _ => 0,
            };
            let valid: i64 = match c_valid.and_then(|c| r.get(c)) {
                Some(s) if !s.is_empty() => s.parse().ok()?,
                _ => 1,
            };
            let mac = match c_hw.and_then(|c| r.get(c)) {
                Some(s) if !s.is_empty() => Some(mac(s)?),
                _ => None,
            };
            let hostname = c_host
                .and_then(|c| r.get(c))
                .filter(|h| !h.is_empty())
                // Kea escapes commas in text fields as `&#x2c`.
                .map(|h| h.replace("&#x2c", ","));
            let live = state == 0 && valid != 0 && expire > now;
            Some((ip, live.then_some(LeaseEntry { ip, mac, hostname })))
        })();
        match parsed {
            Some((ip, e)) => {
                if latest.insert(ip, e).is_none() {
                    order.push(ip);
                }
            }
            None => st.malformed += 1,
        }
    }
    Ok((collect(order, latest, &mut st), st))
}

fn collect(
    order: Vec<IpAddr>,
    mut latest: HashMap<IpAddr, Option<LeaseEntry>>,
    st: &mut LeaseStats,
) -> Vec<LeaseEntry> {
    let mut out = Vec::new();
    for ip in order {
        match latest.remove(&ip).flatten() {
            Some(e) => {
                st.active += 1;
                out.push(e);
            }
            None => st.expired += 1,
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    Open,
    Close,
    Semi,
}

/// Tokens of a dhcpd.leases file: words, quoted strings (with `\"` and octal escapes kept
/// as text), braces and semicolons; `#` comments dropped.
fn tokens(text: &str) -> Vec<Tok<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                out.push(Tok::Open);
                i += 1;
            }
            b'}' => {
                out.push(Tok::Close);
                i += 1;
            }
            b';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    s.push(b[i]);
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(String::from_utf8_lossy(&s).into_owned()));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && !b"{};\"#".contains(&b[i]) {
                    i += 1;
                }
                // `start..i` is on ASCII delimiters, so on char boundaries.
                out.push(Tok::Word(&text[start..i]));
            }
        }
    }
    out
}

/// ISC dhcpd.leases: `lease IP { ... }` blocks, appended as they change (the last block of an
/// address wins). Active when `binding state active` (or, in files without binding states,
/// not past `ends`) and `ends` is in the future or `never`.
fn isc(text: &str, now: i64) -> (Vec<LeaseEntry>, LeaseStats) {
    let mut st = stats(LeaseFormat::IscDhcpd);
    let toks = tokens(text);
    let mut latest: HashMap<IpAddr, Option<LeaseEntry>> = HashMap::new();
    let mut order = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        // One top-level statement: words up to `;` or a block.
        let start = i;
        while i < toks.len() && !matches!(toks[i], Tok::Semi | Tok::Open) {
            if toks[i] == Tok::Close {
                break;
            }
            i += 1;
        }
        if i >= toks.len() {
            if toks[start..]
                .iter()
                .any(|t| matches!(t, Tok::Word("lease")))
            {
                st.malformed += 1; // a lease block cut off at the end
            }
            break;
        }
        match toks[i] {
            Tok::Semi | Tok::Close => {
                i += 1;
                continue;
            }
            _ => {}
        }
        // A block: find its end (nested blocks skipped by depth).
        let body_start = i + 1;
        let mut depth = 1;
        let mut j = body_start;
        while j < toks.len() && depth > 0 {
            match toks[j] {
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let head = &toks[start..i];
        let is_lease = matches!(head.first(), Some(Tok::Word("lease")));
        if is_lease {
            let closed = depth == 0;
            let ip = match head.get(1) {
                Some(Tok::Word(w)) if head.len() == 2 => w.parse::<IpAddr>().ok(),
                _ => None,
            };
            let body = &toks[body_start..if closed { j - 1 } else { j }];
            match (ip, closed, ip.and_then(|ip| isc_lease(ip, body, now))) {
                (Some(ip), true, Some(e)) => {
                    if latest.insert(ip, e).is_none() {
                        order.push(ip);
                    }
                }
                _ => st.malformed += 1,
            }
        }
        i = j;
    }
    (collect(order, latest, &mut st), st)
}

/// The statements of one lease block: `Some(Some(entry))` if active, `Some(None)` if not,
/// `None` if malformed.
fn isc_lease(ip: IpAddr, body: &[Tok], now: i64) -> Option<Option<LeaseEntry>> {
    let (mut mac_addr, mut hostname, mut state, mut ends) = (None, None, None, None::<i64>);
    let mut depth = 0;
    for stmt in body.split(|t| *t == Tok::Semi) {
        // Statements inside nested blocks (`on expiry { ... }`) are not the lease's own.
        let nested_before = depth > 0;
        for t in stmt {
            match t {
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                _ => {}
            }
        }
        if nested_before || stmt.iter().any(|t| matches!(t, Tok::Open | Tok::Close)) {
            continue;
        }
        match stmt {
            [Tok::Word("hardware"), Tok::Word("ethernet"), Tok::Word(m)] => {
                mac_addr = Some(mac(m)?);
            }
            [Tok::Word("client-hostname"), Tok::Str(h)] => hostname = Some(h.clone()),
            [Tok::Word("binding"), Tok::Word("state"), Tok::Word(s)] => state = Some(*s),
            [Tok::Word("ends"), Tok::Word("never")] => ends = Some(i64::MAX),
            [Tok::Word("ends"), Tok::Word("epoch"), Tok::Word(s), ..] => {
                ends = Some(s.parse().ok()?)
            }
            [Tok::Word("ends"), Tok::Word(_dow), Tok::Word(date), Tok::Word(time)] => {
                ends = Some(isc_time(date, time)?)
            }
            _ => {}
        }
    }
    let active = match state {
        Some(s) => s == "active",
        None => true,
    } && ends.is_none_or(|e| e > now);
    Some(active.then_some(LeaseEntry {
        ip,
        mac: mac_addr,
        hostname,
    }))
}

/// `2026/11/19` `20:00:00` (UTC, dhcpd's default) as Unix seconds.
fn isc_time(date: &str, time: &str) -> Option<i64> {
    let mut d = date.split('/').map(|p| p.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, m, dd) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(isc_time("1970/01/01", "00:00:00"), Some(0));
        assert_eq!(isc_time("2026/11/19", "20:00:00"), Some(1_795_118_400));
        assert_eq!(isc_time("2024/02/29", "12:00:00"), Some(1_709_208_000));
        assert_eq!(isc_time("2024/13/29", "12:00:00"), None);
    }

    #[test]
    fn detection() {
        assert_eq!(detect("\n# nothing\n"), Some(LeaseFormat::Empty));
        assert_eq!(detect("hello world"), None);
        assert!(parse_leases("hello world", 0)
            .unwrap_err()
            .contains("dnsmasq"));
    }

    #[test]
    fn hostile_isc_input_never_panics() {
        let t =
            "lease 10.0.0.1 { hardware ethernet 02:00:00:00:00:01; client-hostname \"a\\\"b\"; }";
        for cut in 0..t.len() {
            let _ = isc(&t[..cut], 0);
        }
        let (l, s) = isc("}}}; lease { ; lease 10.0.0.1 {{{ ", 0);
        assert!(l.is_empty());
        assert!(s.malformed >= 1);
    }
}
