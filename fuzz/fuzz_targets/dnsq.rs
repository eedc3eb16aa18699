//! DNS mode's query handling: arbitrary bytes as one query from one of a few clients, through
//! the path the resolver's servers take (`resolver::wire::answer`: hickory's parsing, the
//! handler with its client check, rate limit, bypass names, policy decision, cache and
//! forwarder), with the bundled policy and a stub upstream on the loopback that gives canned
//! answers (A 192.0.2.1, AAAA 2001:db8::1, NXDOMAIN for names starting "nx", else no data).
//!
//! Input: a selector byte, then the message. Selector bits 0-1 pick the client (two inside
//! `clients`, one outside, one IPv4-mapped IPv6), bit 2 the source guard's socket, bit 3 monitor
//! mode (not enforcing), bit 4 DNS over TCP instead of UDP.
//!
//! Invariants: no panic; an answer for every message of 12 bytes or more that is not a
//! response (FORMERR when only its header reads, as hickory's servers do), none otherwise; the answer parses, is a response, and carries the query's id; a client outside
//! `clients` gets REFUSED; a bypass name is answered here (NXDOMAIN or no data, never forwarded);
//! a steered name's address lookup, while enforcing, gets the portal's address, never the
//! upstream's; a UDP answer fits the client's buffer.
#![no_main]
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use hickory_server::net::xfer::Protocol;
use libfuzzer_sys::fuzz_target;
use shadowgate::devices::Devices;
use shadowgate::enforce::grants::Grants;
use shadowgate::pipeline::Judge;
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::resolver::{bypass, cache, config::DnsConf, forward, handler, limit, wire};
use shadowgate::resolver::{DnsCtx, DnsMetrics};

const CLIENTS: [&str; 4] = ["10.9.0.20", "10.9.0.21", "192.0.2.99", "::ffff:10.9.0.20"];
const PORTAL: &str = "10.9.0.1";
const UPSTREAM_A: [u8; 4] = [192, 0, 2, 1];
/// Steered by the bundled policy for every client (consumer AI chat).
const STEERED: [&str; 2] = ["chatgpt.com", "claude.ai"];

static HITS: AtomicU64 = AtomicU64::new(0);

/// The stub upstream: answers every question from the forwarder with the canned records.
static UPSTREAM: LazyLock<SocketAddr> = LazyLock::new(|| {
    let s = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP port for the stub upstream");
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                continue;
            };
            HITS.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = canned(&buf[..n]) {
                let _ = s.send_to(&r, from);
            }
        }
    });
    addr
});

/// The canned answer to a forwarder's question (uncompressed, one question).
fn canned(q: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut first = Vec::new();
    while *q.get(i)? != 0 {
        let l = q[i] as usize;
        if first.is_empty() {
            first = q.get(i + 1..i + 1 + l)?.to_vec();
        }
        i += 1 + l;
    }
    let end = i + 5;
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let mut r = q.get(..end)?.to_vec();
    r[2] = 0x80 | (q[2] & 0x79);
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    let data: &[u8] = match qtype {
        1 => &UPSTREAM_A,
        28 => &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        _ => &[],
    };
    if first.starts_with(b"nx") {
        r[3] |= 3;
    } else if !data.is_empty() {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(data);
    }
    Some(r)
}

static JUDGE: LazyLock<Judge> = LazyLock::new(|| {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"));
    let policy = PolicyHandle::load(dir).expect("bundled policy");
    Judge::new(policy, "fuzz").with_devices(Arc::new(Devices::new()))
});
static CONF: LazyLock<DnsConf> = LazyLock::new(|| {
    toml::from_str(&format!(
        "listen = [\"{PORTAL}:53\"]\nupstreams = [\"{}\"]\nclients = [\"10.9.0.0/24\"]\nrate_per_client = 100000\ncache_size = 64\nupstream_timeout_ms = 2000\n",
        *UPSTREAM
    ))
    .unwrap()
});
static PORTAL_CONF: LazyLock<shadowgate::portal::config::PortalConf> =
    LazyLock::new(|| toml::from_str(&format!("address = \"{PORTAL}\"\n")).unwrap());
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let ip: IpAddr = CLIENTS[(sel & 3) as usize].parse().unwrap();
    let allowed = ip.to_canonical().to_string().starts_with("10.9.0.");
    let guard = sel & 4 != 0;
    let enforcing = sel & 8 == 0;
    let protocol = if sel & 16 != 0 {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let conf = CONF.clone();
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).unwrap();
    let shared = handler::Shared {
        cache: cache::Cache::new(conf.cache_size),
        fwd: forward::Forwarder::new(
            conf.upstreams.clone(),
            std::time::Duration::from_millis(conf.upstream_timeout_ms),
            conf.max_inflight,
            metrics.clone(),
        ),
        limiter: limit::Limiter::new(conf.rate_per_client),
        bypass_seen: bypass::Seen::default(),
        metrics,
        portal: Some(PORTAL_CONF.clone()),
        ctx: DnsCtx {
            judge: JUDGE.clone(),
            grants: Arc::new(Grants::new()),
            enforcing: Arc::new(AtomicBool::new(enforcing)),
            registry,
        },
        conf,
    };
    let h = handler::Handler {
        shared: Arc::new(shared),
        listen: format!("{PORTAL}:53").parse().unwrap(),
        guard,
    };
    let src = SocketAddr::new(ip, 53000);
    let hits = HITS.load(Ordering::Relaxed);
    let out = RT.block_on(wire::answer(&h, msg.to_vec(), src, protocol));
    let forwarded = HITS.load(Ordering::Relaxed) != hits;

    if msg.len() < 12 {
        assert!(out.is_none(), "an answer to a runt");
        return;
    }
    let parsed = Message::from_bytes(msg);
    if parsed.is_ok() && msg[2] & 0x80 != 0 {
        assert!(out.is_none(), "an answer to a response");
        return;
    }
    let out = out.expect("every query is answered (FORMERR when only its header reads)");
    if std::env::var_os("DNSQ_DUMP").is_some() {
        eprintln!("query {:02x?}\nanswer {:02x?}", msg, out);
    }
    let r = Message::from_bytes(&out).expect("the answer parses");
    assert_eq!(
        r.metadata.id,
        u16::from_be_bytes([msg[0], msg[1]]),
        "the answer's id"
    );
    assert_eq!(r.metadata.message_type, MessageType::Response);
    let rcode = r.metadata.response_code;
    let Ok(q) = parsed else {
        assert_eq!(rcode, ResponseCode::FormErr, "an unreadable query");
        assert!(!forwarded);
        return;
    };
    if protocol == Protocol::Udp {
        let max = q
            .edns
            .as_ref()
            .map_or(512, |e| e.max_payload().clamp(512, 4096));
        assert!(
            out.len() <= max as usize,
            "{} bytes for a {max}-byte buffer",
            out.len()
        );
    }
    if rcode == ResponseCode::FormErr {
        assert!(!forwarded);
        return;
    }
    if !allowed {
        assert_eq!(rcode, ResponseCode::Refused, "a client outside `clients`");
        assert!(!forwarded);
        return;
    }
    if rcode == ResponseCode::Refused || q.queries.len() != 1 {
        assert!(!forwarded);
        return;
    }
    let question = &q.queries[0];
    let mut name = question.name().to_ascii().to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    let qtype = question.query_type();
    if rcode == ResponseCode::NotImp
        || matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT)
    {
        assert!(!forwarded);
        return;
    }
    if let Some((a, _)) = bypass::answer(&name) {
        assert!(!forwarded, "{name} was forwarded");
        assert!(r.answers.is_empty(), "{name} answered with data");
        let want = match a {
            bypass::Answer::Nxdomain => ResponseCode::NXDomain,
            bypass::Answer::Nodata => ResponseCode::NoError,
        };
        assert_eq!(rcode, want, "{name}");
        return;
    }
    if enforcing
        && question.query_class() == DNSClass::IN
        && qtype == RecordType::A
        && STEERED
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")))
    {
        assert!(!forwarded, "steered {name} was forwarded");
        for rec in &r.answers {
            if let RData::A(a) = &rec.data {
                assert_eq!(
                    a.0.octets(),
                    PORTAL.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                    "{name}"
                );
            }
        }
        assert!(!r.answers.is_empty(), "steered {name}: no portal address");
    }
});
