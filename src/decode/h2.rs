//! HTTP/2 over cleartext TCP with prior knowledge (h2c, RFC 9113 §3.3): the client's connection
//! preface, then its first request's HEADERS (and CONTINUATION) frames, the header block decoded
//! with `loona-hpack`: `:authority`, `:method`, `:path`, `content-type`. DNS over HTTPS sent
//! without TLS (h2c DoH, which resolvers such as dnscrypt-proxy and CoreDNS serve) shows its
//! query in the path (`?dns=`, RFC 8484 GET) or in a DATA frame (POST), and so is read as DNS.
//!
//! A view over the client's first bytes: every length is checked, nothing panics, at most
//! [`MAX_BYTES`] are looked at.

use base64::Engine;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of a client's start read at most: past it without a request, it is given up.
pub const MAX_BYTES: usize = 32 * 1024;
/// Frames read at most before the request's headers.
const MAX_FRAMES: usize = 16;
/// Header fields read from one block at most.
const MAX_FIELDS: usize = 128;

/// A request of an h2c connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `:authority` as sent.
    pub authority: Option<String>,
    /// The authority's host as shadowgate reports names (see [`super::wire_name`]).
    pub name: Option<String>,
    /// A UTF-8 host where the protocol carries A-labels.
    pub idna: bool,
    pub method: String,
    pub path: String,
    /// The DNS message of a DNS-over-HTTPS request (GET `?dns=`, or the POST body), if any.
    pub dns: Option<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    NeedMore,
    NotH2,
    Request(Request),
}

/// Could these first bytes be an h2c preface (all of it, or the start of it)?
pub fn looks_like_preface(b: &[u8]) -> bool {
    let n = b.len().min(PREFACE.len());
    n >= 4 && b[..n] == PREFACE[..n]
}

fn be24(b: &[u8]) -> usize {
    (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize
}

/// A frame's payload without its padding (and, for HEADERS, the priority fields); None when
/// the lengths disagree.
fn unpadded(flags: u8, mut p: &[u8], priority: bool) -> Option<&[u8]> {
    let mut pad = 0;
    if flags & 0x08 != 0 {
        pad = *p.first()? as usize;
        p = &p[1..];
    }
    if priority && flags & 0x20 != 0 {
        p = p.get(5..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

/// Read the first request of an h2c connection from the client's first bytes.
pub fn parse(b: &[u8]) -> Parse {
    if b.len() < PREFACE.len() {
        return if PREFACE.starts_with(b) {
            Parse::NeedMore
        } else {
            Parse::NotH2
        };
    }
    if &b[..PREFACE.len()] != PREFACE {
        return Parse::NotH2;
    }
    let more = || {
        if b.len() >= MAX_BYTES {
            Parse::NotH2
        } else {
            Parse::NeedMore
        }
    };
    let mut pos = PREFACE.len();
    let mut block: Vec<u8> = Vec::new();
    let mut stream = None;
    let mut req: Option<Request> = None;
    for _ in 0..MAX_FRAMES {
        let Some(h) = b.get(pos..pos + 9) else {
            return more();
        };
        let (len, ty, flags) = (be24(h), h[3], h[4]);
        let sid = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
        let Some(p) = b.get(pos + 9..pos + 9 + len) else {
            return more();
        };
        pos += 9 + len;
        match (ty, &mut req) {
            // HEADERS, then CONTINUATION of the same stream until END_HEADERS.
            (1, None) if stream.is_none() && sid != 0 => {
                let Some(frag) = unpadded(flags, p, true) else {
                    return Parse::NotH2;
                };
                block.extend_from_slice(frag);
                stream = Some(sid);
            }
            (9, None) if stream == Some(sid) => block.extend_from_slice(p),
            (1 | 9, None) => return Parse::NotH2,
            // The body of a POST (DNS over HTTPS): its first DATA frame.
            (0, Some(r)) if stream == Some(sid) => {
                if let Some(body) = unpadded(flags, p, false) {
                    r.dns = Some(body.to_vec());
                }
                return Parse::Request(req.take().unwrap_or_default());
            }
            // SETTINGS, WINDOW_UPDATE, PRIORITY, PING and the like: not the request.
            _ => {}
        }
        if req.is_none() && stream.is_some() && matches!(ty, 1 | 9) && flags & 0x04 != 0 {
            let Some((r, doh_post)) = request(&block) else {
                return Parse::NotH2;
            };
            // A DNS POST's query follows in a DATA frame (END_STREAM not yet set).
            let body_follows = doh_post && flags & 0x01 == 0;
            if !body_follows {
                return Parse::Request(r);
            }
            req = Some(r);
        }
    }
    match req {
        Some(r) => Parse::Request(r),
        None => Parse::NotH2,
    }
}

/// The request's fields from its decoded header block, and whether it is a DNS-over-HTTPS POST
/// (None: a block HPACK cannot decode).
fn request(block: &[u8]) -> Option<(Request, bool)> {
    let mut r = Request::default();
    let mut content_type = String::new();
    let mut fields = 0;
    let mut dec = loona_hpack::Decoder::new();
    dec.decode_with_cb(block, |n, v| {
        fields += 1;
        if fields > MAX_FIELDS {
            return;
        }
        let v = String::from_utf8_lossy(&v);
        match &n[..] {
            b":authority" => r.authority = Some(v.trim().to_string()),
            b":method" => r.method = v.to_string(),
            b":path" => r.path = v.to_string(),
            b"host" if r.authority.is_none() => r.authority = Some(v.trim().to_string()),
            b"content-type" => content_type = v.to_ascii_lowercase(),
            _ => {}
        }
    })
    .ok()?;
    if let Some(a) = &r.authority {
        let host = match a.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None if a.matches(':').count() == 1 => a.split(':').next().unwrap_or(""),
            None => a,
        };
        let (name, idna) = super::wire_name(host.as_bytes());
        r.idna = idna;
        r.name = (!name.is_empty()).then_some(name);
    }
    if r.method == "GET" {
        r.dns = dns_param(&r.path);
    }
    let doh_post = r.method == "POST" && content_type.starts_with("application/dns-message");
    Some((r, doh_post))
}

/// The `dns` query parameter of a DoH GET (RFC 8484 §4.1: base64url without padding).
fn dns_param(path: &str) -> Option<Vec<u8>> {
    let (_, query) = path.split_once('?')?;
    let v = query.split('&').find_map(|kv| kv.strip_prefix("dns="))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame (stream 1, END_HEADERS, `end_stream`) with `fields` HPACK-encoded.
    fn headers(fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let mut enc = loona_hpack::Encoder::new();
        let block = enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        frame(1, 0x04 | if end_stream { 0x01 } else { 0 }, &block)
    }

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[ty, flags, 0, 0, 0, 1]);
        f.extend_from_slice(payload);
        f
    }

    fn start() -> Vec<u8> {
        let mut b = PREFACE.to_vec();
        // SETTINGS (stream 0) and a WINDOW_UPDATE, as clients send them.
        b.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        b.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0xf, 0, 1]);
        b
    }

    #[test]
    fn doh_get_and_post_give_the_query() {
        let q =
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06claude\x02ai\x00\x00\x01\x00\x01";
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(q);
        let mut b = start();
        b.extend(headers(
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "dns.example.net"),
                (":path", &format!("/dns-query?dns={enc}")),
                ("accept", "application/dns-message"),
            ],
            true,
        ));
        for cut in 0..b.len() {
            assert!(matches!(parse(&b[..cut]), Parse::NeedMore), "cut {cut}");
        }
        let Parse::Request(r) = parse(&b) else {
            panic!()
        };
        assert_eq!(r.name.as_deref(), Some("dns.example.net"));
        assert_eq!(r.method, "GET");
        assert_eq!(r.dns.as_deref(), Some(&q[..]));

        let mut b = start();
        b.extend(headers(
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "dns.example.net:8053"),
                (":path", "/dns-query"),
                ("content-type", "application/dns-message"),
            ],
            false,
        ));
        assert_eq!(parse(&b), Parse::NeedMore);
        b.extend(frame(0, 0x01, q));
        let Parse::Request(r) = parse(&b) else {
            panic!()
        };
        assert_eq!(r.name.as_deref(), Some("dns.example.net"));
        assert_eq!(r.dns.as_deref(), Some(&q[..]));
    }

    #[test]
    fn plain_requests_and_garbage() {
        let mut b = start();
        b.extend(headers(
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "ChatGPT.com"),
                (":path", "/"),
            ],
            true,
        ));
        let Parse::Request(r) = parse(&b) else {
            panic!()
        };
        assert_eq!(r.name.as_deref(), Some("chatgpt.com"));
        assert_eq!(r.dns, None);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::NotH2);
        assert!(looks_like_preface(b"PRI * HT"));
        assert!(!looks_like_preface(b"PRINT"));
        // Garbage after the preface (and every prefix and mutation of a real start): never a
        // panic, and a bounded answer.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut m = b.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = PREFACE.len() + (rng as usize) % (m.len() - PREFACE.len());
                m[at] = (rng >> 32) as u8;
            }
            let cut = (rng >> 40) as usize % (m.len() + 1);
            let _ = parse(&m[..cut]);
            let _ = parse(&m);
        }
        let mut big = PREFACE.to_vec();
        big.extend(std::iter::repeat_n(0u8, MAX_BYTES));
        assert_eq!(parse(&big), Parse::NotH2);
    }
}
