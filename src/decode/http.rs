//! HTTP/1.x request line and Host header(s) on cleartext TCP, via `httparse`; names from Host, an
//! absolute-form target or a CONNECT target. The path is not kept: URLs can carry patient data.

/// Longest method token accepted (WebDAV and RPC-over-HTTP use long ones: `RPC_OUT_DATA`).
const MAX_METHOD: usize = 20;

/// Largest request head searched for a Host header.
pub const MAX_HEAD: usize = 8 * 1024;

/// Headers parsed in place on the stack; a head with more is parsed again with room for
/// [`MAX_HEADERS`] (a request with hundreds of headers still gives its Host).
const STACK_HEADERS: usize = 64;
/// Most headers read from one head (`MAX_HEAD` bytes hold at most about this many).
const MAX_HEADERS: usize = MAX_HEAD / 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// First Host header value as sent (may carry a port).
    pub host: Option<String>,
    /// The name the request is for, rendered like a DNS name: the authority of an absolute-form
    /// target (`GET http://claude.ai/`, RFC 9112 §3.2.2: it wins over Host) or of a CONNECT
    /// target, else the first Host header without port or brackets.
    pub name: Option<String>,
    /// Other distinct names the head carries (further Host headers, a Host that differs from
    /// the target's authority).
    pub other_names: Vec<String>,
    /// Host given more than once, or a Host that disagrees with the target's authority.
    pub conflict: bool,
    /// A name was sent as UTF-8 and mapped to its A-label.
    pub idna: bool,
    /// `CONNECT host:port`: the port asked for (what follows the head is a tunnel).
    pub connect_port: Option<u16>,
    /// Length of the request head, once complete (where a CONNECT tunnel starts).
    pub head_len: Option<usize>,
    pub version: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HttpParse {
    NeedMore,
    NotHttp,
    Request(Request),
}

/// Empty-line bytes skipped before a request line at most (RFC 9112 §2.2: a server ignores
/// empty lines there, so a bypass tool puts some before the method to hide the request).
const MAX_LEADING_EOL: usize = 8;

/// Cheap test: does the stream start with a method token (upper-case letters, `_` or `-`)
/// followed by a space, after up to [`MAX_LEADING_EOL`] bytes of empty lines? `httparse` then
/// checks the rest of the request line (it skips the same empty lines).
#[inline]
pub fn looks_like_request(b: &[u8]) -> bool {
    let lead = b
        .iter()
        .take(MAX_LEADING_EOL)
        .take_while(|c| matches!(c, b'\r' | b'\n'))
        .count();
    let b = &b[lead..];
    if b.len() < 4 || !b[0].is_ascii_uppercase() {
        return false;
    }
    for (i, &c) in b.iter().take(MAX_METHOD + 1).enumerate() {
        match c {
            b'A'..=b'Z' | b'_' | b'-' => {}
            b' ' => return i >= 3,
            _ => return false,
        }
    }
    false
}

/// Parse a request head at the start of `b`.
pub fn parse_request(b: &[u8]) -> HttpParse {
    if !looks_like_request(b) {
        return HttpParse::NotHttp;
    }
    let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match parse_with(b, &mut headers) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            parse_with(b, &mut many).unwrap_or(HttpParse::NotHttp)
        }
        r => r.unwrap_or(HttpParse::NotHttp),
    }
}

fn parse_with<'h, 'b: 'h>(
    b: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<HttpParse, httparse::Error> {
    let mut req = httparse::Request::new(headers);
    // Servers take several spaces between the request line's parts; so must the reader.
    let status = httparse::ParserConfig::default()
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .parse_request(&mut req, b)?;
    let hosts: Vec<String> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        .collect();
    let method = req.method.unwrap_or("");
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let target = req.path.and_then(|p| target_authority(p, connect));
    let head_len = match status {
        httparse::Status::Complete(n) => Some(n),
        httparse::Status::Partial => None,
    };
    // A CONNECT needs its whole head (the tunnel starts after it); others only a name.
    if head_len.is_none() && ((hosts.is_empty() && target.is_none()) || connect) {
        return Ok(if b.len() >= MAX_HEAD {
            HttpParse::NotHttp
        } else {
            HttpParse::NeedMore
        });
    }
    let mut idna = false;
    let mut names: Vec<String> = Vec::new();
    let mut push = |raw: &str, names: &mut Vec<String>| {
        let (n, i) = host_name_idna(raw);
        idna |= i;
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    if let Some(t) = target {
        push(t, &mut names);
    }
    for h in &hosts {
        push(h, &mut names);
    }
    // More than one Host header (RFC 9112 §3.2: a 400), or names that disagree.
    let conflict = hosts.len() > 1 || names.len() > 1;
    let mut names = names.into_iter();
    Ok(HttpParse::Request(Request {
        method: method.to_string(),
        host: hosts.into_iter().next(),
        name: names.next(),
        other_names: names.collect(),
        conflict,
        idna,
        connect_port: if connect {
            target
                .and_then(|t| t.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
        } else {
            None
        },
        head_len,
        version: req.version.unwrap_or(1),
    }))
}

/// The authority of an absolute-form target (`http://user@Claude.ai:80/x` -> `Claude.ai:80`) or
/// of a CONNECT's authority-form target (`claude.ai:443`); None for origin-form (`/x`) and `*`.
fn target_authority(path: &str, connect: bool) -> Option<&str> {
    if connect {
        return Some(path).filter(|p| !p.is_empty() && !p.starts_with('/'));
    }
    let (scheme, rest) = path.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let auth = rest.split(['/', '?', '#']).next().unwrap_or("");
    let auth = auth.rsplit_once('@').map_or(auth, |(_, a)| a);
    Some(auth).filter(|a| !a.is_empty())
}

/// `Example.COM:8080` -> `example.com`; `[2001:db8::1]:80` -> `2001:db8::1`.
pub fn host_name(host: &str) -> String {
    host_name_idna(host).0
}

/// [`host_name`], and whether the name was UTF-8 mapped to its A-label (see `wire_name`).
fn host_name_idna(host: &str) -> (String, bool) {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or("")
    } else {
        h
    };
    super::wire_name(h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request-line and Host tricks of SNI/Host bypass tools (zapret's tpws and nfqws,
    /// GoodbyeDPI) still give the name.
    #[test]
    fn bypass_tool_host_tricks() {
        let pad = format!("X-Pad: {}\r\n", "a".repeat(2000));
        let cases: Vec<(&str, String)> = vec![
            (
                "hostcase",
                "GET / HTTP/1.1\r\nhost: claude.ai\r\n\r\n".into(),
            ),
            (
                "hostspell",
                "GET / HTTP/1.1\r\nHoSt: claude.ai\r\n\r\n".into(),
            ),
            (
                "hostdot",
                "GET / HTTP/1.1\r\nHost: claude.ai.\r\n\r\n".into(),
            ),
            (
                "hosttab",
                "GET / HTTP/1.1\r\nHost: claude.ai\t\r\n\r\n".into(),
            ),
            (
                "hostnospace",
                "GET / HTTP/1.1\r\nHost:claude.ai\r\n\r\n".into(),
            ),
            (
                "domcase",
                "GET / HTTP/1.1\r\nHost: ClAuDe.Ai\r\n\r\n".into(),
            ),
            (
                "hostpad",
                format!("GET / HTTP/1.1\r\n{pad}Host: claude.ai\r\n\r\n"),
            ),
            (
                "methodspace",
                "GET  / HTTP/1.1\r\nHost: claude.ai\r\n\r\n".into(),
            ),
            (
                "methodeol",
                "\nGET / HTTP/1.1\r\nHost: claude.ai\r\n\r\n".into(),
            ),
            (
                "methodeol-crlf",
                "\r\n\r\nGET / HTTP/1.1\r\nHost: claude.ai\r\n\r\n".into(),
            ),
        ];
        for (mode, req) in cases {
            assert!(looks_like_request(req.as_bytes()), "{mode}");
            let HttpParse::Request(r) = parse_request(req.as_bytes()) else {
                panic!("{mode}: not read");
            };
            assert_eq!(r.name.as_deref(), Some("claude.ai"), "{mode}");
        }
    }

    #[test]
    fn host_header() {
        let r = parse_request(
            b"GET /patient?id=1 HTTP/1.1\r\nHost: Chat.OpenAI.com:8080\r\nX: y\r\n\r\n",
        );
        let HttpParse::Request(r) = r else { panic!() };
        assert_eq!(r.name.as_deref(), Some("chat.openai.com"));
        assert_eq!(r.host.as_deref(), Some("Chat.OpenAI.com:8080"));
        assert_eq!(r.method, "GET");
    }

    #[test]
    fn partial_and_not_http() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nUser-Agent: x"),
            HttpParse::NeedMore
        );
        assert_eq!(parse_request(b"GE"), HttpParse::NotHttp);
        assert!(looks_like_request(b"RPC_IN_DATA /rpc HTTP/1.1"));
        assert!(!looks_like_request(b"POSTX"));
        assert_eq!(parse_request(b"\x16\x03\x01\x00"), HttpParse::NotHttp);
        assert_eq!(host_name("[2001:DB8::1]:80"), "2001:db8::1");
    }
}

#[cfg(test)]
mod rpc_tests {
    use super::*;

    #[test]
    fn rpc_over_http_method() {
        let r = parse_request(b"RPC_IN_DATA /rpc/rpcproxy.dll?MAIL.example.com:6001 HTTP/1.1\r\nHost: mail.example.com\r\nContent-Length: 1073741824\r\n\r\n");
        let HttpParse::Request(r) = r else {
            panic!("{r:?}")
        };
        assert_eq!(r.name.as_deref(), Some("mail.example.com"));
    }
}
