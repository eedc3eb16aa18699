//! The steering portal's request handling: arbitrary bytes as one client connection (HTTP/1,
//! pipelined requests, any Host, query strings, the coach form POST) through the same hyper
//! server and handler as a real connection (`portal::offline`), with the bundled policy
//! (sora.com is coached, chatgpt.com steered).
//!
//! Input: a selector byte, then the bytes the client sends. Selector bits 0-1 pick the client
//! address, bit 2 serves the connection as HTTPS with the SNI of bits 3-4. Each `@TOKEN@` in the
//! bytes becomes a valid coach form token for that client and the first Host header's name (the
//! only way to a grant: the form key is random per portal).
//!
//! Invariants: no 5xx for anything a client sends; every answer is a well-formed HTTP/1.x
//! response; a page carries its content type and the security headers; a grant (303) only with a
//! token the portal issued, at most one per token, never for another address.
#![no_main]
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use shadowgate::devices::Devices;
use shadowgate::enforce::grants::Grants;
use shadowgate::pipeline::Judge;
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::portal::config::PortalConf;
use shadowgate::portal::offline::Offline;
use shadowgate::portal::PortalCtx;

const CLIENTS: [&str; 4] = ["10.9.0.20", "10.9.0.21", "10.9.7.7", "::ffff:10.9.0.20"];
const SNI: [&str; 4] = [
    "sora.com",
    "chatgpt.com",
    "example.org",
    "xn--bcher-kva.example",
];
const TOKEN: &[u8] = b"@TOKEN@";

static JUDGE: LazyLock<Judge> = LazyLock::new(|| {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"));
    let policy = PolicyHandle::load(dir).expect("bundled policy");
    Judge::new(policy, "fuzz").with_devices(Arc::new(Devices::new()))
});
static CONF: LazyLock<PortalConf> = LazyLock::new(|| {
    toml::from_str("address = \"10.9.0.1\"\nrate_per_client = 100000\njustification_max = 40\n")
        .unwrap()
});
/// The services of the catalogue a coach form can grant (every `id` in it).
static SERVICES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut v = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/catalog");
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(id) = l.strip_prefix("id = \"").and_then(|r| r.strip_suffix('"')) {
                v.push(id.to_string());
            }
        }
    }
    v
});
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
});

/// The first Host header's value (what the token is issued for), as the portal normalises it.
fn host(data: &[u8]) -> Option<String> {
    for line in data.split(|&b| b == b'\n') {
        if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"host:") {
            let v = std::str::from_utf8(&line[5..]).ok()?;
            return shadowgate::portal::host_name(v.trim_end_matches('\r'));
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, req)) = data.split_first() else {
        return;
    };
    let ip: IpAddr = CLIENTS[(sel & 3) as usize].parse().unwrap();
    let peer = SocketAddr::new(ip, 40000);
    let server: SocketAddr = "10.9.0.1:80".parse().unwrap();
    let sni = (sel & 4 != 0).then(|| SNI[((sel >> 3) & 3) as usize].to_string());
    let grants = Arc::new(Grants::new());
    let portal = Offline::new(
        CONF.clone(),
        PortalCtx {
            judge: JUDGE.clone(),
            grants: Arc::clone(&grants),
            registry: prometheus::Registry::new(),
        },
    )
    .expect("portal");
    // Put issued tokens where the input asks for them.
    let mut input = Vec::with_capacity(req.len());
    let mut issued = 0usize;
    let mut rest = req;
    let name = host(req).unwrap_or_default();
    while let Some(i) = rest.windows(TOKEN.len()).position(|w| w == TOKEN) {
        input.extend_from_slice(&rest[..i]);
        input.extend_from_slice(portal.issue_token(ip.to_canonical(), &name).as_bytes());
        issued += 1;
        rest = &rest[i + TOKEN.len()..];
    }
    input.extend_from_slice(rest);

    let out = RT.block_on(portal.exchange(peer, server, sni, &input));

    let mut see_other = 0usize;
    let mut buf = &out[..];
    while !buf.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        let head = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "not an HTTP response ({other:?}): {:?}",
                String::from_utf8_lossy(buf)
            ),
        };
        assert!(matches!(r.version, Some(0 | 1)), "HTTP/1.x answers");
        let code = r.code.unwrap();
        assert!(code < 500, "a {code} for a client's bytes");
        let get = |k: &str| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(k))
                .map(|h| std::str::from_utf8(h.value).expect("header value is text"))
        };
        for h in r.headers.iter() {
            assert!(
                h.value
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b)),
                "header {} has a control or non-ASCII byte",
                h.name
            );
        }
        let len: usize = if (100..200).contains(&code) {
            0
        } else {
            get("content-length").map_or(0, |v| v.parse().expect("content length"))
        };
        if code == 303 {
            see_other += 1;
            assert_eq!(get("location"), Some("/"));
        }
        let after = &buf[head..];
        // A HEAD answer says the length of a body it does not carry: the next answer follows.
        let body = if after.len() >= len && !after.starts_with(b"HTTP/1.") {
            len
        } else {
            0
        };
        if body > 0 {
            assert!(get("content-type").is_some(), "a body without its type");
            assert_eq!(get("x-content-type-options"), Some("nosniff"));
            assert!(
                get("content-security-policy").is_some_and(|c| c.starts_with("default-src 'none'"))
            );
            assert_eq!(get("x-frame-options"), Some("DENY"));
        }
        buf = &after[body..];
    }
    assert_eq!(
        grants.len(),
        see_other,
        "every grant answers 303, and only a grant does"
    );
    assert!(
        see_other <= issued,
        "{see_other} grants from {issued} issued tokens"
    );
    if see_other > 0 {
        let me = ip.to_canonical();
        assert!(
            SERVICES.iter().any(|s| grants.active(me, s)),
            "the grant is for the client"
        );
        for other in CLIENTS
            .iter()
            .map(|c| c.parse::<IpAddr>().unwrap().to_canonical())
        {
            if other != me {
                assert!(
                    !SERVICES.iter().any(|s| grants.active(other, s)),
                    "a grant for {other}"
                );
            }
        }
    }
});
