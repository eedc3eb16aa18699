//! TLS ClientHello from the start of a client byte stream (or a QUIC CRYPTO stream), via
//! `tls-parser`. Handles a ClientHello split over several TLS records; reports SNI, ALPN,
//! offered versions and whether ECH (0xfe0d) or draft ESNI (0xffce) is present.

use tls_parser::{SNIType, TlsExtension};

/// Largest ClientHello accepted (post-quantum hellos are ~1.8 KB; 16 KiB leaves room for padding).
pub const MAX_HELLO: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// First host_name entry of the server_name extension, rendered (lower-case, A-label or
    /// escaped: see [`crate::decode::wire_name`]).
    pub sni: Option<String>,
    /// Further distinct host names: more host_name entries, or a second server_name extension.
    pub other_snis: Vec<String>,
    /// More than one host_name entry or server_name extension (RFC 6066 allows one of each).
    pub sni_repeated: bool,
    /// A host name was sent as UTF-8 and mapped to its A-label.
    pub sni_idna: bool,
    pub alpn: Vec<String>,
    /// supported_versions (GREASE removed); the legacy version alone when the extension is absent.
    pub versions: Vec<u16>,
    pub ech: bool,
    pub esni: bool,
    /// The hello spanned more than one TLS record.
    pub multi_record: bool,
}

/// Outcome of looking at the first bytes of a client stream.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstFlight {
    /// Could still become a ClientHello: wait for more bytes.
    NeedMore,
    /// Not a TLS handshake stream.
    NotTls,
    /// Starts like TLS but is broken.
    Malformed(&'static str),
    Hello(ClientHello),
}

/// Cheap test: does this look like the start of a TLS handshake record?
#[inline]
pub fn looks_like_tls(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04
}

/// Parse the client's first flight: TLS records carrying a ClientHello handshake message.
pub fn parse_first_flight(buf: &[u8]) -> FirstFlight {
    if buf.is_empty() {
        return FirstFlight::NeedMore;
    }
    if buf[0] != 0x16 || (buf.len() >= 2 && buf[1] != 0x03) || (buf.len() >= 3 && buf[2] > 0x04) {
        return FirstFlight::NotTls;
    }
    let mut pos = 0;
    // Most hellos sit in one record: borrow. Only a hello spread over records is copied.
    let mut joined: Option<Vec<u8>> = None;
    let mut single: &[u8] = &[];
    let mut records = 0;
    loop {
        let Some(hdr) = buf.get(pos..pos + 5) else {
            return FirstFlight::NeedMore;
        };
        if hdr[0] != 0x16 || hdr[1] != 0x03 {
            return if records == 0 {
                FirstFlight::NotTls
            } else {
                FirstFlight::Malformed("non-handshake record inside the ClientHello")
            };
        }
        let len = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        if len == 0 || len > 16384 + 2048 {
            return FirstFlight::Malformed("TLS record length out of range");
        }
        let Some(body) = buf.get(pos + 5..pos + 5 + len) else {
            return FirstFlight::NeedMore;
        };
        records += 1;
        pos += 5 + len;
        let hs: &[u8] = match &mut joined {
            Some(v) => {
                v.extend_from_slice(body);
                v
            }
            None if records == 1 => {
                single = body;
                single
            }
            None => {
                let mut v = Vec::with_capacity(single.len() + body.len());
                v.extend_from_slice(single);
                v.extend_from_slice(body);
                joined = Some(v);
                joined.as_deref().unwrap_or_default()
            }
        };
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return FirstFlight::NotTls;
            }
            let need = 4 + (u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize);
            if need > MAX_HELLO + 4 {
                return FirstFlight::Malformed("ClientHello longer than 16 KiB");
            }
            if hs.len() >= need {
                return match parse_handshake(&hs[..need]) {
                    Ok(mut ch) => {
                        ch.multi_record = records > 1;
                        FirstFlight::Hello(ch)
                    }
                    Err(e) => FirstFlight::Malformed(e),
                };
            }
        }
        if pos >= buf.len() {
            return FirstFlight::NeedMore;
        }
    }
}

/// Total length (header included) of the handshake message at the start of `hs`, once known.
pub fn handshake_len(hs: &[u8]) -> Option<usize> {
    if hs.len() < 4 {
        return None;
    }
    Some(4 + u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize)
}

/// Parse one complete handshake message that must be a ClientHello.
pub fn parse_handshake(hs: &[u8]) -> Result<ClientHello, &'static str> {
    if hs.first() != Some(&1) {
        return Err("handshake message is not a ClientHello");
    }
    let len = handshake_len(hs).ok_or("short handshake header")?;
    let body = hs.get(4..len).ok_or("short ClientHello")?;
    let (_, chc) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|_| "ClientHello does not parse")?;
    let mut ch = ClientHello::default();
    let mut versions: Option<Vec<u16>> = None;
    let mut host_names = 0;
    // Walk the extension list one by one: a single broken extension must not hide the SNI.
    let mut ext = chc.ext.unwrap_or_default();
    while ext.len() >= 4 {
        let ty = u16::from_be_bytes([ext[0], ext[1]]);
        let elen = u16::from_be_bytes([ext[2], ext[3]]) as usize;
        let Some(one) = ext.get(..4 + elen) else {
            break;
        };
        ext = &ext[4 + elen..];
        match ty {
            0xfe0d => ch.ech = true,
            0xffce => ch.esni = true,
            0 | 16 | 43 => {}
            _ => continue,
        }
        match tls_parser::parse_tls_extension(one) {
            Ok((_, TlsExtension::SNI(list))) => {
                host_names += 1; // a second extension counts even when empty
                for (_, name) in list.iter().filter(|(t, _)| *t == SNIType::HostName) {
                    let (n, idna) = crate::decode::wire_name(name);
                    ch.sni_idna |= idna;
                    if ch.sni.is_none() {
                        ch.sni = Some(n);
                        continue;
                    }
                    host_names += 1;
                    if ch.sni.as_deref() != Some(n.as_str()) && !ch.other_snis.contains(&n) {
                        ch.other_snis.push(n);
                    }
                }
            }
            Ok((_, TlsExtension::ALPN(list))) => {
                ch.alpn = list
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            Ok((_, TlsExtension::SupportedVersions(list))) => {
                versions = Some(
                    list.iter()
                        .map(|v| v.0)
                        .filter(|v| v & 0x0f0f != 0x0a0a)
                        .collect(),
                );
            }
            _ => {}
        }
    }
    ch.versions = versions.unwrap_or_else(|| vec![chc.version.0]);
    ch.sni_repeated = host_names > 1;
    ch.other_snis.retain(|n| !n.is_empty());
    if ch.sni.as_deref() == Some("") {
        ch.sni = None;
        if !ch.other_snis.is_empty() {
            ch.sni = Some(ch.other_snis.remove(0));
        }
    }
    Ok(ch)
}

/// Human form of a TLS protocol version number.
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "ssl3.0".into(),
        0x0301 => "tls1.0".into(),
        0x0302 => "tls1.1".into(),
        0x0303 => "tls1.2".into(),
        0x0304 => "tls1.3".into(),
        v if v >> 8 == 0x7f => format!("tls1.3-draft{}", v & 0xff),
        v => format!("0x{v:04x}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a ClientHello handshake message with the given SNI and extra extensions.
    pub fn hello(sni: &str, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut exts = Vec::new();
        let name = sni.as_bytes();
        let mut sn = Vec::new();
        sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sn.push(0);
        sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sn.extend_from_slice(name);
        let mut all = vec![
            (0u16, sn),
            (16u16, vec![0, 3, 2, b'h', b'2']),
            (43u16, vec![4, 0x0a, 0x0a, 3, 4]),
        ];
        all.extend_from_slice(extra);
        for (t, d) in all {
            exts.extend_from_slice(&t.to_be_bytes());
            exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
            exts.extend_from_slice(&d);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    pub fn records(hs: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(split) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn single_record_hello() {
        let r = records(&hello("Claude.AI", &[(0xfe0d, vec![0; 8])]), 16384);
        let FirstFlight::Hello(ch) = parse_first_flight(&r) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("claude.ai"));
        assert_eq!(ch.alpn, vec!["h2"]);
        assert_eq!(ch.versions, vec![0x0304]);
        assert!(ch.ech && !ch.multi_record);
    }

    #[test]
    fn hello_split_over_records_and_truncated() {
        let r = records(&hello("chatgpt.com", &[]), 20);
        let FirstFlight::Hello(ch) = parse_first_flight(&r) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("chatgpt.com"));
        assert!(ch.multi_record);
        for cut in 0..r.len() {
            assert_eq!(
                parse_first_flight(&r[..cut]),
                FirstFlight::NeedMore,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn two_host_names_in_one_extension_or_two_extensions() {
        let mut two = Vec::new();
        for n in [&b"chatgpt.com"[..], b"www.example.org"] {
            two.push(0);
            two.extend_from_slice(&(n.len() as u16).to_be_bytes());
            two.extend_from_slice(n);
        }
        let mut ext = (two.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&two);
        // `hello` puts its own server_name first: three names over two extensions.
        let r = records(&hello("claude.ai", &[(0, ext)]), 16384);
        let FirstFlight::Hello(ch) = parse_first_flight(&r) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("claude.ai"));
        assert_eq!(ch.other_snis, vec!["chatgpt.com", "www.example.org"]);
        assert!(ch.sni_repeated && !ch.sni_idna);
        let one = records(&hello("ｃｌａｕｄｅ.ai", &[]), 16384);
        let FirstFlight::Hello(ch) = parse_first_flight(&one) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("claude.ai"));
        assert!(!ch.sni_repeated && ch.sni_idna && ch.other_snis.is_empty());
    }

    #[test]
    fn not_tls_and_broken_extension() {
        assert_eq!(
            parse_first_flight(b"GET / HTTP/1.1\r\n"),
            FirstFlight::NotTls
        );
        // A broken ALPN extension must not hide the SNI.
        let r = records(&hello("x.example", &[(16, vec![0, 9, 1])]), 16384);
        let FirstFlight::Hello(ch) = parse_first_flight(&r) else {
            panic!()
        };
        assert_eq!(ch.sni.as_deref(), Some("x.example"));
    }
}
