//! JSON scalars written straight into a byte buffer, exactly as serde_json writes them: strings
//! escaped (clean runs found 8 bytes at a time), integers (itoa), IP addresses, timestamps.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// serde_json's escapes: 0 for a byte copied as is, else the letter after the backslash
/// (`u` for `\u00XX`). Only `"`, `\` and the control bytes below 0x20 are escaped.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Does any of the 8 bytes of `w` need an escape? Exact as a yes/no (the classic "has a byte
/// less than n" and "has a zero byte" tests; they only misplace which byte, unused here).
#[inline]
fn word_needs_escape(w: u64) -> bool {
    let ctl = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let q = q.wrapping_sub(ONES) & !q;
    let bs = w ^ (ONES * b'\\' as u64);
    let bs = bs.wrapping_sub(ONES) & !bs;
    (ctl | q | bs) & HIGHS != 0
}

/// The escape of one byte that needs one.
#[inline(never)]
fn escape_byte(out: &mut Vec<u8>, b: u8, esc: u8) {
    if esc == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', esc]);
    }
}

/// A JSON string: quoted, escaped as serde_json does, clean runs copied with one extend.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(w)) {
            start = escape_some(out, b, start, i, i + 8);
        }
        i += 8;
    }
    start = escape_some(out, b, start, i, b.len());
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Escape the bytes of `b[from..to]` that need it; `b[start..from]` is a clean run not yet
/// copied. Returns where the clean run not yet copied now starts.
#[inline]
fn escape_some(out: &mut Vec<u8>, b: &[u8], mut start: usize, from: usize, to: usize) -> usize {
    for (k, &c) in b[from..to].iter().enumerate() {
        let j = from + k;
        let esc = ESCAPE[c as usize];
        if esc != 0 {
            out.extend_from_slice(&b[start..j]);
            escape_byte(out, c, esc);
            start = j + 1;
        }
    }
    start
}

/// A string known to need no escape (an enum's name): quoted, copied.
#[inline]
pub fn plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A JSON array of strings.
pub fn strings(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// An unsigned integer as serde_json writes it (itoa).
#[inline]
pub fn uint(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// `true` or `false`.
#[inline]
pub fn boolean(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A timestamp as `crate::time::rfc3339_micros` renders it, quoted.
#[inline]
pub fn timestamp(out: &mut Vec<u8>, ns: u64) {
    out.push(b'"');
    out.extend_from_slice(&crate::time::rfc3339_micros_bytes(ns));
    out.push(b'"');
}

/// An IP address as its `Display` text, quoted (what serde writes for a human-readable format).
pub fn ip(out: &mut Vec<u8>, a: &IpAddr) {
    out.push(b'"');
    match a {
        IpAddr::V4(a) => ipv4(out, a),
        IpAddr::V6(a) => ipv6(out, a),
    }
    out.push(b'"');
}

/// Dotted quad by hand: each octet in 1 to 3 digits.
fn ipv4(out: &mut Vec<u8>, a: &Ipv4Addr) {
    let mut b = [0u8; 15];
    let mut n = 0;
    for (i, &o) in a.octets().iter().enumerate() {
        if i > 0 {
            b[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            b[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            b[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        b[n] = b'0' + o % 10;
        n += 1;
    }
    out.extend_from_slice(&b[..n]);
}

/// std's IPv6 text (zero compression, embedded IPv4 forms) through a stack buffer.
fn ipv6(out: &mut Vec<u8>, a: &Ipv6Addr) {
    let mut s = Stack { b: [0; 48], n: 0 };
    if write!(s, "{a}").is_ok() {
        out.extend_from_slice(&s.b[..s.n]);
    } else {
        // Longer than any IPv6 text std writes (at most 45 bytes); kept for safety.
        out.extend_from_slice(a.to_string().as_bytes());
    }
}

/// A `fmt::Write` into a fixed buffer (fails when full).
struct Stack {
    b: [u8; 48],
    n: usize,
}

impl std::fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.n + s.len();
        let dst = self.b.get_mut(self.n..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    fn ours(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        string(&mut v, s);
        v
    }

    #[test]
    fn every_byte_escapes_as_serde_json_does_at_every_offset() {
        // Each ASCII byte (and a multi-byte character) at every position of strings of length
        // 1 to 40, so both the 8-byte scan and the tail see it.
        let mut pieces: Vec<String> = (0u8..0x80).map(|b| (b as char).to_string()).collect();
        pieces.extend(["é", "€", "𝄞", "\u{7f}", "\u{80}", "\u{ffff}"].map(String::from));
        for p in &pieces {
            for len in 0..40 {
                for at in 0..=len {
                    let s = format!("{}{}{}", "a".repeat(at), p, "b".repeat(len - at));
                    assert_eq!(ours(&s), serde(&s), "{s:?}");
                }
            }
        }
        for s in ["", "\"\\\"", "\u{0}\u{1f}\n\r\t\u{8}\u{c}", "claude.ai"] {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
    }

    #[test]
    fn mixed_random_strings_match_serde_json() {
        let alphabet: Vec<char> = "aZ09.-_\"\\\n\r\t\u{0}\u{1}\u{1f}\u{7f} é€𝄞/"
            .chars()
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 70) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            assert_eq!(ours(&s), serde(&s), "{s:?}");
        }
        let long = "x".repeat(100_000) + "\u{1}" + &"y".repeat(9);
        assert_eq!(ours(&long), serde(&long));
    }

    #[test]
    fn numbers_and_addresses_match_serde_json() {
        for v in [0u64, 1, 9, 10, 99, 100, 65_535, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap());
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for o in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            ips.push(Ipv4Addr::new(o, 255 - o, o / 2, 7).into());
        }
        for s in [
            "::",
            "::1",
            "fe80::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:0:0:1:0:0:0:1",
            "1:0:1:0:1:0:1:0",
        ] {
            ips.push(s.parse().unwrap());
        }
        for a in ips {
            let mut out = Vec::new();
            ip(&mut out, &a);
            assert_eq!(out, serde_json::to_vec(&a).unwrap(), "{a}");
        }
    }
}
