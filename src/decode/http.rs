//! HTTP/1.x request line and Host header on cleartext TCP, via `httparse` (no allocation
//! while parsing). The request path is deliberately not kept: URLs can carry patient data.

/// Longest method token accepted (WebDAV and RPC-over-HTTP use long ones: `RPC_OUT_DATA`).
const MAX_METHOD: usize = 20;

/// Largest request head searched for a Host header.
pub const MAX_HEAD: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Host header value as sent (may carry a port).
    pub host: Option<String>,
    /// Host without port or brackets, rendered like a DNS name.
    pub name: Option<String>,
    pub version: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HttpParse {
    NeedMore,
    NotHttp,
    Request(Request),
}

/// Cheap test: does the stream start with a method token (upper-case letters, `_` or `-`)
/// followed by a space? `httparse` then checks the rest of the request line.
#[inline]
pub fn looks_like_request(b: &[u8]) -> bool {
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
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(b) {
        Ok(status) => {
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string());
            if status.is_partial() && host.is_none() {
                return if b.len() >= MAX_HEAD {
                    HttpParse::NotHttp
                } else {
                    HttpParse::NeedMore
                };
            }
            let name = host.as_deref().map(host_name).filter(|n| !n.is_empty());
            HttpParse::Request(Request {
                method: req.method.unwrap_or("").to_string(),
                host,
                name,
                version: req.version.unwrap_or(1),
            })
        }
        Err(httparse::Error::TooManyHeaders) => HttpParse::NotHttp,
        Err(_) => HttpParse::NotHttp,
    }
}

/// `Example.COM:8080` -> `example.com`; `[2001:db8::1]:80` -> `2001:db8::1`.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or("")
    } else {
        h
    };
    super::render_name(h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
