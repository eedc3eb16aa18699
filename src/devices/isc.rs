//! ISC dhcpd.leases, read as a token stream: `lease IP { ... }` blocks appended as leases change
//! (the last block of an address wins); other blocks (failover, host, ia-na) are skipped.

use std::io::Read;
use std::net::IpAddr;

use super::lease::{mac, Latest, LeaseEntry, LeaseStats, MAX_LINE};

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
}

/// Bytes of a reader, a chunk at a time.
struct Bytes<R> {
    r: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

impl<R: Read> Bytes<R> {
    fn new(r: R) -> Self {
        Bytes {
            r,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            len: 0,
        }
    }

    fn peek(&mut self) -> Option<u8> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = loop {
                match self.r.read(&mut self.buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.unwrap_or(0),
                }
            };
        }
        (self.pos < self.len).then(|| self.buf[self.pos])
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }
}

/// Tokens: words, quoted strings (`\x` kept as `x`), braces and semicolons; `#` comments
/// dropped; a token longer than [`MAX_LINE`] is cut.
struct Tokens<R> {
    b: Bytes<R>,
}

impl<R: Read> Iterator for Tokens<R> {
    type Item = Tok;

    fn next(&mut self) -> Option<Tok> {
        loop {
            let c = self.b.next()?;
            match c {
                b'#' => while self.b.next().is_some_and(|c| c != b'\n') {},
                b'{' => return Some(Tok::Open),
                b'}' => return Some(Tok::Close),
                b';' => return Some(Tok::Semi),
                b'"' => {
                    let mut s = Vec::new();
                    while let Some(mut c) = self.b.next() {
                        if c == b'"' {
                            break;
                        }
                        if c == b'\\' {
                            match self.b.next() {
                                Some(n) => c = n,
                                None => break,
                            }
                        }
                        if s.len() < MAX_LINE {
                            s.push(c);
                        }
                    }
                    return Some(Tok::Str(String::from_utf8_lossy(&s).into_owned()));
                }
                c if c.is_ascii_whitespace() => {}
                c => {
                    let mut s = vec![c];
                    while let Some(n) = self.b.peek() {
                        if n.is_ascii_whitespace() || b"{};\"#".contains(&n) {
                            break;
                        }
                        self.b.next();
                        if s.len() < MAX_LINE {
                            s.push(n);
                        }
                    }
                    return Some(Tok::Word(String::from_utf8_lossy(&s).into_owned()));
                }
            }
        }
    }
}

/// Statements longer than this many tokens keep only their start (none of interest is longer).
const MAX_STMT: usize = 16;

/// What the statements of one lease block said.
#[derive(Default)]
struct Acc {
    mac: Option<[u8; 6]>,
    hostname: Option<String>,
    state: Option<String>,
    ends: Option<i64>,
    bad: bool,
}

impl Acc {
    fn statement(&mut self, s: &[Tok]) {
        let w = |i: usize| match s.get(i) {
            Some(Tok::Word(w)) => Some(w.as_str()),
            _ => None,
        };
        match (w(0), w(1)) {
            (Some("hardware"), Some("ethernet")) => match w(2).and_then(mac) {
                Some(m) if s.len() == 3 => self.mac = Some(m),
                _ => self.bad = true,
            },
            (Some("client-hostname"), _) => match s.get(1) {
                Some(Tok::Str(h)) => self.hostname = Some(h.clone()),
                _ => self.bad = true,
            },
            (Some("binding"), Some("state")) => match w(2) {
                Some(st) => self.state = Some(st.to_string()),
                None => self.bad = true,
            },
            (Some("ends"), Some("never")) => self.ends = Some(i64::MAX),
            (Some("ends"), Some("epoch")) => match w(2).and_then(|e| e.parse().ok()) {
                Some(e) => self.ends = Some(e),
                None => self.bad = true,
            },
            (Some("ends"), Some(_dow)) => match (w(2), w(3)) {
                (Some(d), Some(t)) => match isc_time(d, t) {
                    Some(e) => self.ends = Some(e),
                    None => self.bad = true,
                },
                _ => self.bad = true,
            },
            _ => {}
        }
    }

    /// `Some(entry)` if active at `now`: `binding state active` (files without binding states:
    /// any) and `ends` in the future, `never` or absent.
    fn active(self, ip: IpAddr, now: i64) -> Option<LeaseEntry> {
        let bound = self.state.as_deref().is_none_or(|s| s == "active");
        (bound && self.ends.is_none_or(|e| e > now)).then_some(LeaseEntry {
            ip,
            mac: self.mac,
            hostname: self.hostname,
        })
    }
}

pub(super) fn isc(r: impl Read, now: i64, st: &mut LeaseStats, latest: &mut Latest) {
    let mut toks = Tokens { b: Bytes::new(r) };
    loop {
        // One top-level statement head: words up to `;` or `{`.
        let mut head = Vec::new();
        let end = loop {
            match toks.next() {
                None => break None,
                Some(t @ (Tok::Semi | Tok::Open | Tok::Close)) => break Some(t),
                Some(t) => {
                    if head.len() < MAX_STMT {
                        head.push(t)
                    }
                }
            }
        };
        let is_lease = head.first() == Some(&Tok::Word("lease".into()));
        match end {
            None => {
                if is_lease {
                    st.malformed += 1; // a lease statement cut off at the end
                }
                return;
            }
            Some(Tok::Open) => {}
            Some(_) => continue, // a top-level statement, or a stray `}`
        }
        // The block: its own statements at depth 1; nested blocks (`on expiry { ... }`) skipped.
        let mut acc = Acc::default();
        let (mut depth, mut closed, mut stmt) = (1, false, Vec::new());
        for t in toks.by_ref() {
            match t {
                Tok::Open => {
                    depth += 1;
                    stmt.clear();
                }
                Tok::Close => {
                    depth -= 1;
                    stmt.clear();
                    if depth == 0 {
                        closed = true;
                        break;
                    }
                }
                Tok::Semi => {
                    if depth == 1 && is_lease {
                        acc.statement(&stmt);
                    }
                    stmt.clear();
                }
                t => {
                    if depth == 1 && stmt.len() < MAX_STMT {
                        stmt.push(t)
                    }
                }
            }
        }
        if !is_lease {
            continue;
        }
        let ip = match &head[..] {
            [_, Tok::Word(w)] => w.parse::<IpAddr>().ok(),
            _ => None,
        };
        match ip {
            Some(ip) if closed && !acc.bad => latest.set(ip, acc.active(ip, now), st),
            _ => st.malformed += 1,
        }
    }
}

/// `2026/11/19` `20:00:00` (UTC, dhcpd's default) as Unix seconds.
fn isc_time(date: &str, time: &str) -> Option<i64> {
    let mut d = date.split('/').map(|p| p.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&dd)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&s)
    {
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
    use super::super::leases::{parse_leases, LeaseFormat};
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(isc_time("1970/01/01", "00:00:00"), Some(0));
        assert_eq!(isc_time("2026/11/19", "20:00:00"), Some(1_795_118_400));
        assert_eq!(isc_time("2024/02/29", "12:00:00"), Some(1_709_208_000));
        assert_eq!(isc_time("2024/13/29", "12:00:00"), None);
        assert_eq!(isc_time("-5/01/01", "12:00:00"), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        let t =
            "lease 10.0.0.1 { hardware ethernet 02:00:00:00:00:01; client-hostname \"a\\\"b\"; }";
        for cut in 0..t.len() {
            let _ = parse_leases(&t[..cut], 0);
        }
        let (l, s) = parse_leases("lease 10.0.0.1 {{{ hardware ethernet x; ", 0).unwrap();
        assert_eq!(s.format, LeaseFormat::IscDhcpd);
        assert!(l.is_empty());
        assert_eq!(s.malformed, 1);
        let (l, s) = parse_leases(
            "lease 10.0.0.2 { client-hostname \"a\\\"b\"; binding state active; }\n}}};",
            0,
        )
        .unwrap();
        assert_eq!(l[0].hostname.as_deref(), Some("a\"b"));
        assert_eq!(s.malformed, 0);
    }
}
