//! SOCKS 4/4a/5 client handshakes (a proxy bypass hides the real destination): the greeting
//! and CONNECT request at the start of a client stream. What follows the request is the
//! tunnelled stream, which the sensor classifies again (TLS, HTTP, ...).

/// The proxied destination and how many client bytes the handshake took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Domain name if the client sent one (SOCKS4a, SOCKS5 ATYP 3), see `wire_name`.
    pub name: Option<String>,
    /// The name was UTF-8, mapped to its A-label.
    pub idna: bool,
    /// `socks4`, `socks4a` or `socks5`.
    pub protocol: &'static str,
    pub port: u16,
    pub consumed: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SocksParse {
    NeedMore,
    NotSocks,
    Connect(Connect),
}

/// Cheap test on the first client bytes.
pub fn looks_like_socks(b: &[u8]) -> bool {
    match b {
        // SOCKS5 greeting: version, method count (1..=9), then exactly that many methods.
        [5, n, rest @ ..] => {
            (1..=9).contains(n)
                && rest.len() >= *n as usize
                && rest
                    .iter()
                    .take(*n as usize)
                    .all(|m| *m <= 0x09 || *m >= 0x80)
        }
        // SOCKS4 CONNECT.
        [4, 1, ..] => b.len() >= 9,
        _ => false,
    }
}

/// Parse the client side of a SOCKS handshake (greeting and request, SOCKS5 without auth or
/// with the username/password sub-negotiation).
pub fn parse(b: &[u8]) -> SocksParse {
    match b.first() {
        Some(5) => socks5(b),
        Some(4) => socks4(b),
        Some(_) => SocksParse::NotSocks,
        None => SocksParse::NeedMore,
    }
}

fn socks5(b: &[u8]) -> SocksParse {
    let Some(&n) = b.get(1) else {
        return SocksParse::NeedMore;
    };
    let mut pos = 2 + n as usize;
    let Some(methods) = b.get(2..pos) else {
        return SocksParse::NeedMore;
    };
    // Username/password sub-negotiation (RFC 1929) comes before the request when offered.
    if methods.contains(&2) && b.get(pos) == Some(&1) {
        let Some(&ul) = b.get(pos + 1) else {
            return SocksParse::NeedMore;
        };
        let Some(&pl) = b.get(pos + 2 + ul as usize) else {
            return SocksParse::NeedMore;
        };
        pos += 3 + ul as usize + pl as usize;
    }
    let Some(req) = b.get(pos..pos + 4) else {
        return SocksParse::NeedMore;
    };
    if req[0] != 5 || req[2] != 0 || !(1..=3).contains(&req[1]) {
        return SocksParse::NotSocks;
    }
    let (name, addr_len) = match req[3] {
        1 => (None, 4),
        4 => (None, 16),
        3 => {
            let Some(&l) = b.get(pos + 4) else {
                return SocksParse::NeedMore;
            };
            let Some(n) = b.get(pos + 5..pos + 5 + l as usize) else {
                return SocksParse::NeedMore;
            };
            (Some(super::wire_name(n)), 1 + l as usize)
        }
        _ => return SocksParse::NotSocks,
    };
    let port_at = pos + 4 + addr_len;
    let Some(port) = super::be16(b, port_at) else {
        return SocksParse::NeedMore;
    };
    let (name, idna) = name.map_or((None, false), |(n, i)| (Some(n), i));
    SocksParse::Connect(Connect {
        name,
        idna,
        protocol: "socks5",
        port,
        consumed: port_at + 2,
    })
}

fn socks4(b: &[u8]) -> SocksParse {
    if b.len() < 9 {
        return SocksParse::NeedMore;
    }
    if b[1] != 1 {
        return SocksParse::NotSocks;
    }
    let port = u16::from_be_bytes([b[2], b[3]]);
    let Some(uid_end) = b[8..].iter().position(|&c| c == 0).map(|p| 8 + p) else {
        return if b.len() > 264 {
            SocksParse::NotSocks
        } else {
            SocksParse::NeedMore
        };
    };
    // SOCKS4a: address 0.0.0.x (x != 0) means a host name follows the user id.
    if b[4..7] == [0, 0, 0] && b[7] != 0 {
        let rest = &b[uid_end + 1..];
        let Some(end) = rest.iter().position(|&c| c == 0) else {
            return SocksParse::NeedMore;
        };
        let (name, idna) = super::wire_name(&rest[..end]);
        return SocksParse::Connect(Connect {
            name: Some(name),
            idna,
            protocol: "socks4a",
            port,
            consumed: uid_end + 2 + end,
        });
    }
    SocksParse::Connect(Connect {
        name: None,
        idna: false,
        protocol: "socks4",
        port,
        consumed: uid_end + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_domain_connect() {
        let mut b = vec![5, 1, 0, 5, 1, 0, 3, 9];
        b.extend_from_slice(b"Claude.ai");
        b.extend_from_slice(&443u16.to_be_bytes());
        b.extend_from_slice(b"\x16\x03\x01");
        assert!(looks_like_socks(&b));
        let SocksParse::Connect(c) = parse(&b) else {
            panic!()
        };
        assert_eq!(c.name.as_deref(), Some("claude.ai"));
        assert_eq!(c.port, 443);
        assert_eq!(c.consumed, b.len() - 3);
        for cut in 0..c.consumed {
            assert_eq!(parse(&b[..cut]), SocksParse::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn socks4a() {
        let mut b = vec![4, 1, 1, 187, 0, 0, 0, 1];
        b.extend_from_slice(b"user\0chatgpt.com\0");
        let SocksParse::Connect(c) = parse(&b) else {
            panic!()
        };
        assert_eq!(c.name.as_deref(), Some("chatgpt.com"));
        assert_eq!(c.consumed, b.len());
        assert_eq!(parse(b"GET / HTTP/1.1"), SocksParse::NotSocks);
    }
}
