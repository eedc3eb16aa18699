//! DNS mode end to end over loopback: shadowgate's resolver in front of a fake upstream that
//! answers 20 ms late, driven by real UDP/TCP clients bound to 127.0.0.x addresses.

use crate::common::events::{words, Event};
use crate::common::files::{policies, tmpdir};
use crate::common::policy::with_rules;
use crate::common::servers::rand_id;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, SvcParamKey, SvcParamValue, SVCB,
};
use hickory_proto::rr::rdata::{A, AAAA, HTTPS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use shadowgate::config::{DnsConf, PortalConf};
use shadowgate::devices::Devices;
use shadowgate::enforce::grants::Grants;
use shadowgate::pipeline::Judge;
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::record::queue::{start, EventTx, RecorderThread};
use shadowgate::record::Store;
use shadowgate::resolver::{serve, DnsCtx, DnsHandle, QueryResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Questions the fake upstream received, per (name, transport).
type Seen = Arc<Mutex<HashMap<(String, &'static str), usize>>>;

/// The fake internet resolver's answer to `q` (`tcp`: asked over TCP).
fn upstream_answer(q: &Message, tcp: bool) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    let Some(qq) = q.queries.first() else {
        m.metadata.response_code = ResponseCode::FormErr;
        return m;
    };
    m.add_query(qq.clone());
    let n = qq.name().clone();
    let lname = n.to_ascii().to_ascii_lowercase();
    let rec = |d: RData| Record::from_rdata(n.clone(), 300, d);
    if lname.starts_with("nx.") {
        m.metadata.response_code = ResponseCode::NXDomain;
        let z = Name::from_ascii("example.").unwrap();
        m.add_authority(Record::from_rdata(
            z.clone(),
            3600,
            RData::SOA(SOA::new(z.clone(), z, 1, 7200, 900, 86400, 60)),
        ));
        return m;
    }
    match qq.query_type() {
        RecordType::A => {
            m.add_answer(rec(RData::A(A::new(192, 0, 2, 1))));
        }
        RecordType::AAAA => {
            m.add_answer(rec(RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))));
        }
        RecordType::HTTPS => {
            m.add_answer(rec(RData::HTTPS(HTTPS(SVCB::new(
                1,
                Name::root(),
                vec![
                    (
                        SvcParamKey::Alpn,
                        SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                    ),
                    (
                        SvcParamKey::Ipv4Hint,
                        SvcParamValue::Ipv4Hint(IpHint(vec![A::new(192, 0, 2, 1)])),
                    ),
                    (
                        SvcParamKey::EchConfigList,
                        SvcParamValue::EchConfigList(EchConfigList(vec![0, 4, 0xfe, 0x0d, 0, 0])),
                    ),
                ],
            )))));
        }
        RecordType::TXT if lname.starts_with("big.") => {
            if tcp {
                for i in 0..40 {
                    m.add_answer(rec(RData::TXT(TXT::new(vec![format!("{i:0>200}")]))));
                }
            } else {
                m.metadata.truncation = true;
            }
        }
        _ => {}
    }
    m
}

/// A fake upstream on `ip` (UDP and TCP, one port) answering after 20 ms.
async fn upstream(ip: &str) -> (SocketAddr, Seen) {
    let udp = Arc::new(UdpSocket::bind((ip, 0)).await.unwrap());
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            note(&s2, &q, "udp");
            let udp = udp.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let a = upstream_answer(&q, false).to_vec().unwrap();
                let _ = udp.send_to(&a, from).await;
            });
        }
    });
    let s3 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = tcp.accept().await else {
                return;
            };
            let seen = s3.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while c.read_exact(&mut len).await.is_ok() {
                    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    let Ok(q) = Message::from_vec(&b) else { return };
                    note(&seen, &q, "tcp");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let a = upstream_answer(&q, true).to_vec().unwrap();
                    let mut out = (a.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&a);
                    if c.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn note(seen: &Seen, q: &Message, t: &'static str) {
    if let Some(qq) = q.queries.first() {
        let n = qq.name().to_ascii().to_ascii_lowercase();
        *seen.lock().unwrap().entry((n, t)).or_default() += 1;
    }
}

fn seen(s: &Seen, name: &str, t: &'static str) -> usize {
    s.lock()
        .unwrap()
        .get(&(name.to_string(), t))
        .copied()
        .unwrap_or(0)
}

fn query(id: u16, name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Ask `server` over UDP from `from` (a 127.0.0.x address).
async fn ask(server: SocketAddr, from: &str, name: &str, t: RecordType) -> Message {
    let s = UdpSocket::bind((from, 0)).await.unwrap();
    let id = rand_id();
    s.send_to(&query(id, name, t, true), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("the resolver answers within 5 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

/// Ask `server` over TCP from `from`.
async fn ask_tcp(server: SocketAddr, from: &str, name: &str, t: RecordType) -> Message {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut c: TcpStream = sock.connect(server).await.unwrap();
    let q = query(7, name, t, false);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    c.write_all(&out).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut len))
        .await
        .expect("the resolver answers over TCP within 5 s")
        .unwrap();
    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut b).await.unwrap();
    Message::from_vec(&b).unwrap()
}

fn a_of(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// A policy with every DNS answer in it: chatgpt coached, sora blocked, claude steered,
/// the rest of the catalogue alerted (the default).
fn test_policy(dir: &Path) -> PathBuf {
    with_rules(
        &dir.join("policy"),
        r#"
[settings]
default_action = "alert"
default_severity = "medium"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant."

[[rule]]
id = "T-coach"
services = ["chatgpt"]
action = "coach"
severity = "medium"

[[rule]]
id = "T-block"
services = ["sora"]
action = "block"
severity = "high"

[[rule]]
id = "T-steer"
services = ["claude"]
action = "steer"
steer_to = "approved"
severity = "medium"
"#,
    )
}

struct Rig {
    handle: DnsHandle,
    server: SocketAddr,
    seen: Seen,
    grants: Arc<Grants>,
    enforcing: Arc<AtomicBool>,
    registry: prometheus::Registry,
    store: PathBuf,
    recorder: Option<RecorderThread>,
}

impl Rig {
    async fn new(tag: &str, policy: &Path, extra: &str) -> Rig {
        let dir = tmpdir("dns", &format!("{tag}-rig"));
        let (up, seen) = upstream("127.0.0.53").await;
        // A dead upstream first: the resolver fails over to the live one.
        let dead = std::net::UdpSocket::bind("127.0.0.54:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        std::mem::forget(dead);
        let conf: DnsConf = toml::from_str(&format!(
            r#"
listen = ["127.0.0.1:0"]
upstreams = ["{dead_addr}", "{up}"]
clients = ["127.0.0.1/32", "127.0.0.2/31", "127.0.0.4/30"]
upstream_timeout_ms = 300
{extra}
"#
        ))
        .unwrap();
        let portal: PortalConf =
            toml::from_str("address = \"10.0.0.1\"\naddress6 = \"fd00::1\"").unwrap();
        let store = dir.join("events.db");
        let (tx, recorder): (EventTx, RecorderThread) =
            start(Store::open(&store).unwrap(), 1024, 16, None);
        let grants = Arc::new(Grants::new());
        let enforcing = Arc::new(AtomicBool::new(true));
        let registry = prometheus::Registry::new();
        let devices = Arc::new(Devices::new());
        // Ignored: the table keeps no loopback addresses.
        devices.learn(
            "127.0.0.1".parse().unwrap(),
            Some([2, 0, 0, 0, 0, 1]),
            Some("frontdesk-1"),
        );
        let ctx = DnsCtx {
            judge: Judge::new(PolicyHandle::load(policy).unwrap(), "gw-test")
                .recording(tx)
                .with_devices(devices),
            grants: grants.clone(),
            enforcing: enforcing.clone(),
            registry: registry.clone(),
        };
        let handle = serve(conf, Some(portal), ctx).await.unwrap();
        let server = handle.local_addrs()[0];
        Rig {
            handle,
            server,
            seen,
            grants,
            enforcing,
            registry,
            store,
            recorder: Some(recorder),
        }
    }

    /// Stop the resolver and the recorder; the stored events.
    async fn finish(mut self) -> Vec<Event> {
        self.handle.shutdown().await;
        if let Some(r) = self.recorder.take() {
            tokio::task::spawn_blocking(move || r.stop()).await.unwrap();
        }
        Store::open(&self.store)
            .unwrap()
            .after(0, 10_000)
            .unwrap()
            .iter()
            .map(words)
            .collect()
    }

    fn count(&self, r: QueryResult) -> u64 {
        self.handle.metrics().get(r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_policy_steers_claude_and_forwards_the_rest() {
    let rig = Rig::new("bundled", &policies(), "").await;
    // claude.ai: steered (SG-300) -> the portal address, short TTL, for A and AAAA.
    let m = ask(rig.server, "127.0.0.1", "claude.ai.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_of(&m), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(m.answers[0].ttl, 30);
    let m = ask(rig.server, "127.0.0.1", "CLAUDE.ai.", RecordType::AAAA).await;
    assert_eq!(a_of(&m), vec!["fd00::1".parse::<IpAddr>().unwrap()]);
    // Its HTTPS query: no data (hints would lead to the real server).
    let m = ask(rig.server, "127.0.0.1", "claude.ai.", RecordType::HTTPS).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{m:?}");
    // Nothing about claude.ai went upstream.
    assert_eq!(seen(&rig.seen, "claude.ai.", "udp"), 0);

    // An uncatalogued name: the real answer (after failing over from the dead upstream), then
    // from the cache with its TTL counting down, the upstream asked once.
    let m = ask(rig.server, "127.0.0.1", "www.example.org.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = ask(rig.server, "127.0.0.1", "www.example.org.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert!(
        m.answers[0].ttl < 300,
        "TTL decremented on a hit: {}",
        m.answers[0].ttl
    );
    assert_eq!(seen(&rig.seen, "www.example.org.", "udp"), 1);
    assert!(rig.handle.healthy());
    assert_eq!(rig.handle.cache_len(), 1);

    // NXDOMAIN is passed on and cached (SOA minimum 60 s).
    let m = ask(rig.server, "127.0.0.1", "nx.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(rig.server, "127.0.0.1", "nx.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.authorities.iter().any(|r| r.ttl <= 60));
    assert_eq!(seen(&rig.seen, "nx.example.", "udp"), 1);

    // Concurrent identical questions: one upstream query.
    let mut js = Vec::new();
    for _ in 0..20 {
        js.push(tokio::spawn(ask(
            rig.server,
            "127.0.0.2",
            "same.example.",
            RecordType::A,
        )));
    }
    for j in js {
        assert_eq!(a_of(&j.await.unwrap()).len(), 1);
    }
    assert_eq!(seen(&rig.seen, "same.example.", "udp"), 1);

    // Truncated upstream answer: retried over TCP; a TCP client gets all of it, a UDP client
    // (1232-byte buffer) a truncated answer telling it to use TCP.
    let m = ask_tcp(rig.server, "127.0.0.1", "big.example.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 40);
    assert_eq!(seen(&rig.seen, "big.example.", "tcp"), 1);
    let m = ask(rig.server, "127.0.0.1", "big.example.", RecordType::TXT).await;
    assert!(m.metadata.truncation);

    assert_eq!(rig.count(QueryResult::Portal), 2);
    assert_eq!(rig.count(QueryResult::Nodata), 1);
    assert!(rig.count(QueryResult::Cached) >= 2);
    assert!(rig.count(QueryResult::Forwarded) >= 3);
    // Every family is on the registry.
    let names: Vec<String> = rig
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    for n in [
        "shadowgate_dns_queries_total",
        "shadowgate_dns_upstream_seconds",
        "shadowgate_dns_upstream_errors_total",
        "shadowgate_dns_cache_entries",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let timeouts = rig
        .registry
        .gather()
        .iter()
        .find(|f| f.name() == "shadowgate_dns_upstream_errors_total")
        .map(|f| {
            f.get_metric()
                .iter()
                .filter(|m| m.get_label().iter().any(|l| l.value() == "timeout"))
                .map(|m| m.get_counter().get_value())
                .sum::<f64>()
        })
        .unwrap();
    assert!(timeouts >= 1.0, "the dead upstream timed out once");

    let events = rig.finish().await;
    // One event per decided lookup: three for claude.ai, none for undecided names.
    let claude: Vec<&Event> = events.iter().filter(|e| e.name == "claude.ai").collect();
    assert_eq!(claude.len(), 3, "{events:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    let e = claude[0];
    assert_eq!(e.kind, "dns_query");
    assert_eq!(e.action, "steer");
    assert_eq!(e.rule_id, "SG-300-consumer-ai");
    assert_eq!(e.client_ip, "127.0.0.1");
    // The device table ignores loopback addresses (never a LAN device), so this loopback client
    // stays unattributed; a LAN client's MAC and host name come from the table
    // (tests/it/devices.rs).
    assert_eq!(e.client_mac, None);
    assert_eq!(e.client_hostname, None);
    assert_eq!(e.server_ip, "127.0.0.1");
    assert_eq!(e.seen_via, "dns");
    let d = e.detail.as_deref().unwrap();
    assert!(
        d.contains("\"dns_answer\":\"portal\"") && d.contains("\"enforcement\":\"stopped\""),
        "{d}"
    );
    assert!(claude.iter().any(|e| e
        .detail
        .as_deref()
        .unwrap()
        .contains("\"dns_answer\":\"nodata\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coach_block_grants_ech_and_monitor_mode() {
    let dir = tmpdir("dns", "policy");
    let policy = test_policy(&dir);
    let rig = Rig::new("coach", &policy, "").await;
    let me = "127.0.0.1";
    // Blocked: NXDOMAIN.
    let m = ask(rig.server, me, "sora.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Coached without a grant: the portal.
    let m = ask(rig.server, me, "chatgpt.com.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    // Acknowledged on the portal: the real answer, TTL capped at portal_ttl_s.
    rig.grants
        .grant(me.parse().unwrap(), "chatgpt", Duration::from_secs(600));
    let m = ask(rig.server, me, "chatgpt.com.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert!(m.answers[0].ttl <= 30, "{}", m.answers[0].ttl);
    // The grant is per client: another client is still coached.
    let m = ask(rig.server, "127.0.0.2", "chatgpt.com.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    // Under the grant its HTTPS answer is real but without ECH.
    let m = ask(rig.server, me, "chatgpt.com.", RecordType::HTTPS).await;
    let RData::HTTPS(h) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert!(
        h.svc_params
            .iter()
            .all(|(k, _)| *k != SvcParamKey::EchConfigList),
        "{h:?}"
    );
    assert!(h.svc_params.iter().any(|(k, _)| *k == SvcParamKey::Alpn));
    // Another catalogued name (alerted): ECH stripped as well.
    let m = ask(rig.server, me, "gemini.google.com.", RecordType::HTTPS).await;
    let RData::HTTPS(h) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert!(h
        .svc_params
        .iter()
        .all(|(k, _)| *k != SvcParamKey::EchConfigList));
    // An uncatalogued name keeps its ECH config.
    let m = ask(rig.server, me, "www.example.org.", RecordType::HTTPS).await;
    let RData::HTTPS(h) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert!(h
        .svc_params
        .iter()
        .any(|(k, _)| *k == SvcParamKey::EchConfigList));
    // Steered name over TCP: the portal too.
    let m = ask_tcp(rig.server, me, "claude.ai.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);

    // Monitor mode (or break glass): the real answer, the event says it would have stopped.
    rig.enforcing.store(false, Ordering::SeqCst);
    let m = ask(rig.server, "127.0.0.5", "sora.com.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    rig.enforcing.store(true, Ordering::SeqCst);

    assert_eq!(rig.count(QueryResult::Blocked), 1);
    assert_eq!(rig.count(QueryResult::Portal), 3);
    let events = rig.finish().await;
    let find = |name: &str, client: &str, detail: &str| {
        events.iter().any(|e| {
            e.name == name
                && e.client_ip == client
                && e.detail.as_deref().is_some_and(|d| d.contains(detail))
        })
    };
    assert!(
        find(
            "sora.com",
            "127.0.0.1",
            r#"{"dns_answer":"nxdomain","enforcement":"stopped"}"#
        ),
        "{events:?}"
    );
    assert!(find(
        "chatgpt.com",
        "127.0.0.1",
        r#"{"dns_answer":"portal","enforcement":"stopped"}"#
    ));
    assert!(find(
        "chatgpt.com",
        "127.0.0.1",
        r#"{"dns_answer":"real","enforcement":"granted"}"#
    ));
    assert!(find(
        "gemini.google.com",
        "127.0.0.1",
        r#""enforcement":"allowed""#
    ));
    assert!(find(
        "sora.com",
        "127.0.0.5",
        r#"{"dns_answer":"real","enforcement":"would_stop"}"#
    ));
    assert!(events
        .iter()
        .any(|e| e.name == "claude.ai" && e.transport == "tcp"));
    assert!(!events.iter().any(|e| e.name == "www.example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_block_answers() {
    let dir = tmpdir("dns", "null");
    let policy = test_policy(&dir);
    let rig = Rig::new("null", &policy, "block_answer = \"null\"").await;
    let m = ask(rig.server, "127.0.0.1", "sora.com.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["0.0.0.0".parse::<IpAddr>().unwrap()]);
    let m = ask(rig.server, "127.0.0.1", "sora.com.", RecordType::AAAA).await;
    assert_eq!(a_of(&m), vec!["::".parse::<IpAddr>().unwrap()]);
    let events = rig.finish().await;
    assert!(events.iter().all(|e| e
        .detail
        .as_deref()
        .unwrap()
        .contains("\"dns_answer\":\"null\"")));
    assert_eq!(events.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_refused_flooders_limited_garbage_survived() {
    let rig = Rig::new(
        "limits",
        &policies(),
        "rate_per_client = 20\ntcp_max_per_client = 2\ntcp_idle_ms = 500",
    )
    .await;
    // A client outside `clients`: REFUSED, over UDP and TCP, counted, not recorded.
    let m = ask(rig.server, "127.0.0.99", "claude.ai.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    let m = ask_tcp(rig.server, "127.0.0.99", "www.example.org.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(rig.count(QueryResult::Refused), 2);

    // A flooding client: 200 queries at once; the burst (40) is answered, the rest REFUSED.
    let s = UdpSocket::bind(("127.0.0.6", 0)).await.unwrap();
    for i in 0..200u16 {
        s.send_to(
            &query(i, "flood.example.", RecordType::A, false),
            rig.server,
        )
        .await
        .unwrap();
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf)).await {
        let m = Message::from_vec(&buf[..n]).unwrap();
        match m.metadata.response_code {
            ResponseCode::Refused => refused += 1,
            ResponseCode::NoError => ok += 1,
            c => panic!("{c:?}"),
        }
        if ok + refused == 200 {
            break;
        }
    }
    assert!((40..=60).contains(&ok), "ok {ok}, refused {refused}");
    assert_eq!(ok + refused, 200);
    assert_eq!(rig.count(QueryResult::Ratelimited), refused);
    // Others are not affected.
    let m = ask(rig.server, "127.0.0.7", "www.example.org.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);

    // Garbage from a LAN client: no crash, no answer to what is not DNS.
    let g = UdpSocket::bind(("127.0.0.4", 0)).await.unwrap();
    let mut seed = 0x1234_5678u32;
    for len in 0..600usize {
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            b.push(seed as u8);
        }
        // Keep the QR bit clear on half of them so they reach the parser as queries.
        if len > 2 && len % 2 == 0 {
            b[2] &= 0x7f;
        }
        g.send_to(&b, rig.server).await.unwrap();
    }
    // Two queries in one message (RFC 9619): FORMERR.
    let mut two = Message::new(9, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(
        Name::from_ascii("a.example.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("claude.ai.").unwrap(),
        RecordType::A,
    ));
    let t = UdpSocket::bind(("127.0.0.5", 0)).await.unwrap();
    t.send_to(&two.to_vec().unwrap(), rig.server).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), t.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Message::from_vec(&buf[..n]).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );

    // TCP: a third connection from one client is closed at once; an idle one is kept until then.
    let mut conns = Vec::new();
    for _ in 0..2 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.5:0".parse().unwrap()).unwrap();
        conns.push(sock.connect(rig.server).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let mut third = sock.connect(rig.server).await.unwrap();
    let mut b = [0u8; 2];
    let r = tokio::time::timeout(Duration::from_secs(2), third.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the third connection is closed"
    );
    // Garbage over TCP closes that connection only.
    conns[0].write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), conns[0].read(&mut b))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)));
    drop(conns);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A query trickled a byte at a time does not keep its connection: the whole query must
    // arrive within tcp_idle_ms (it was per read: 2 bytes every 9 s held a slot for ever).
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.6:0".parse().unwrap()).unwrap();
    let mut slow = sock.connect(rig.server).await.unwrap();
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("example.org.").unwrap(),
        RecordType::A,
    ));
    let q = q.to_vec().unwrap();
    let len = (q.len() as u16).to_be_bytes();
    // Each piece inside the idle time of the one before, the whole beyond it.
    slow.write_all(&len[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let _ = slow.write_all(&len[1..]).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let _ = slow.write_all(&q).await;
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut got)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))) && got.is_empty(),
        "a trickled query is cut off unanswered: {r:?} {got:?}"
    );

    // Still answering.
    let m = ask_tcp(rig.server, "127.0.0.5", "claude.ai.", RecordType::A).await;
    assert_eq!(a_of(&m), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    let events = rig.finish().await;
    assert!(
        events.iter().all(|e| e.client_ip != "127.0.0.99"),
        "refused queries are not recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_errors_name_the_address() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let conf: DnsConf = toml::from_str(&format!(
        "listen = [\"{addr}\"]\nupstreams = [\"127.0.0.53:53\"]\nclients = [\"127.0.0.0/8\"]"
    ))
    .unwrap();
    let ctx = DnsCtx {
        judge: Judge::new(PolicyHandle::load(&policies()).unwrap(), "t")
            .with_devices(Arc::new(Devices::new())),
        grants: Arc::new(Grants::new()),
        enforcing: Arc::new(AtomicBool::new(true)),
        registry: prometheus::Registry::new(),
    };
    let e = serve(conf, None, ctx).await.err().unwrap();
    assert!(
        e.contains(&addr.to_string()) && e.contains("[dns] listen"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_and_unhealthy_when_no_upstream_answers() {
    let dead = std::net::UdpSocket::bind("127.0.0.54:0").unwrap();
    let conf: DnsConf = toml::from_str(&format!(
        "listen = [\"127.0.0.1:0\"]\nupstreams = [\"{}\"]\nclients = [\"127.0.0.0/8\"]\nupstream_timeout_ms = 100",
        dead.local_addr().unwrap()
    ))
    .unwrap();
    let ctx = DnsCtx {
        judge: Judge::new(PolicyHandle::load(&policies()).unwrap(), "t")
            .with_devices(Arc::new(Devices::new())),
        grants: Arc::new(Grants::new()),
        enforcing: Arc::new(AtomicBool::new(true)),
        registry: prometheus::Registry::new(),
    };
    let h = serve(conf, None, ctx).await.unwrap();
    assert!(h.healthy(), "no query yet");
    let m = ask(
        h.local_addrs()[0],
        "127.0.0.1",
        "www.example.org.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(!h.healthy());
    assert_eq!(h.metrics().get(QueryResult::Servfail), 1);
    // Policy answers need no upstream: the resolver still steers.
    let m = ask(h.local_addrs()[0], "127.0.0.1", "claude.ai.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "no [portal]: no data");
    h.shutdown().await;
}

/// Issue 23 part 3: the browsers' and operating systems' own bypasses are answered by the
/// resolver and never forwarded: the Firefox DNS-over-HTTPS canary and iCloud Private Relay get
/// NXDOMAIN (every type), RFC 9462 discovery gets NOERROR without data; each device's lookup is
/// one `dns_bypass` system event an hour; `block_bypass = false` forwards them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_names_are_answered_here_and_never_forwarded() {
    let rig = Rig::new("bypass", &policies(), "").await;
    for (name, t, rcode) in [
        (
            "use-application-dns.net.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "use-application-dns.net.",
            RecordType::AAAA,
            ResponseCode::NXDomain,
        ),
        ("mask.icloud.com.", RecordType::A, ResponseCode::NXDomain),
        (
            "mask-h2.icloud.com.",
            RecordType::HTTPS,
            ResponseCode::NXDomain,
        ),
        (
            "_dns.resolver.arpa.",
            RecordType::SVCB,
            ResponseCode::NoError,
        ),
    ] {
        let m = ask(rig.server, "127.0.0.7", name, t).await;
        assert_eq!(m.metadata.response_code, rcode, "{name} {t:?}");
        assert!(m.answers.is_empty(), "{name}: {m:?}");
    }
    // Asked again: answered again, recorded once.
    let m = ask(
        rig.server,
        "127.0.0.7",
        "use-application-dns.net.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    for n in [
        "use-application-dns.net.",
        "mask.icloud.com.",
        "mask-h2.icloud.com.",
        "_dns.resolver.arpa.",
    ] {
        for t in ["udp", "tcp"] {
            assert_eq!(
                seen(&rig.seen, n, t),
                0,
                "{n} reached the upstream over {t}"
            );
        }
    }
    assert_eq!(rig.count(QueryResult::Bypass), 6);
    let events = rig.finish().await;
    let bypass: Vec<_> = events.iter().filter(|e| e.kind == "dns_bypass").collect();
    assert_eq!(bypass.len(), 3, "one per device and name: {bypass:#?}");
    assert!(
        bypass.iter().all(|e| e.client_ip == "127.0.0.7"),
        "{bypass:#?}"
    );
    assert!(bypass.iter().any(|e| e
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("icloud_private_relay")));

    // Off: forwarded like any name.
    let rig = Rig::new("bypass-off", &policies(), "block_bypass = false").await;
    let _ = ask(
        rig.server,
        "127.0.0.7",
        "use-application-dns.net.",
        RecordType::A,
    )
    .await;
    assert_eq!(seen(&rig.seen, "use-application-dns.net.", "udp"), 1);
    rig.finish().await;
}
