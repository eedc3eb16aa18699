//! The hand-written JSON against serde_json, byte for byte: every observation and decision of
//! every bundled capture replayed with the bundled policy, and synthetic hostile values.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::flow::observation::{DnsAnswer, Transport};
use crate::flow::{Config, Evidence, Flag, Kind, TcpSeq};
use crate::pipeline::{Output, Pipeline};
use crate::policy::reload::PolicyHandle;
use crate::policy::{Action, Category, MatchedBy, Severity, SteerDef, Via};

#[path = "../../../tests/it/common/captures.rs"]
mod support;
use support::captures;

/// serde's observation without its closing brace (what `observation_open` must give).
fn serde_open(o: &Observation) -> Vec<u8> {
    let mut v = serde_json::to_vec(o).unwrap();
    assert_eq!(v.pop(), Some(b'}'));
    v
}

/// Both renderings of one observation with its decision, compared piece by piece and whole.
fn check(o: &Observation, d: Option<&Decision>) {
    let mut ours = b"prefix".to_vec();
    observation_open(o, &mut ours);
    assert_eq!(
        String::from_utf8_lossy(&ours[6..]),
        String::from_utf8_lossy(&serde_open(o)),
        "{o:?}"
    );
    if let Some(d) = d {
        let mut ours = b"prefix".to_vec();
        decision(d, &mut ours);
        assert_eq!(
            String::from_utf8_lossy(&ours[6..]),
            String::from_utf8_lossy(&serde_json::to_vec(d).unwrap()),
            "{d:?}"
        );
    }
    let mut want = serde_open(o);
    if let Some(d) = d {
        want.extend_from_slice(b",\"decision\":");
        want.extend_from_slice(&serde_json::to_vec(d).unwrap());
    }
    want.extend_from_slice(b"}\n");
    let mut got = Vec::new();
    line(o, d, &mut got);
    assert_eq!(got, want);
}

/// Every observation with the decision it came with.
type Seen = Arc<Mutex<Vec<(Observation, Option<Decision>)>>>;

struct Keep(Seen);

impl Output for Keep {
    fn send(
        &mut self,
        o: &Observation,
        d: Option<&Decision>,
    ) -> Result<Option<crate::record::Enforced>, String> {
        self.0.lock().unwrap().push((o.clone(), d.cloned()));
        Ok(None)
    }
}

#[test]
fn every_bundled_capture_renders_as_serde_json_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = PolicyHandle::load(&root.join("policies")).unwrap();
    let mut files = Vec::new();
    captures(&root.join("pcaps"), &mut files);
    assert!(files.len() >= 90, "{} captures", files.len());
    let (mut observations, mut decisions) = (0, 0);
    let (mut steers, mut evidence, mut groups) = (0, 0, 0);
    for f in &files {
        let seen: Seen = Arc::default();
        let mut p = Pipeline::new(Config::default())
            .with_policy(policy.clone())
            .with_output(Box::new(Keep(seen.clone())));
        // A damaged capture ends early; what came before it is still checked.
        let _ = p.replay_file(f, |_| {});
        p.finish();
        for (o, d) in seen.lock().unwrap().iter() {
            check(o, d.as_ref());
            // The policy's own decision too (a DNS answer passes outputs without one).
            if let Some(d) = policy.current().decide_observation(o) {
                check(o, Some(&d));
                decisions += 1;
            }
            observations += 1;
            decisions += usize::from(d.is_some());
            steers += usize::from(d.as_ref().is_some_and(|d| d.steer_to.is_some()));
            groups += usize::from(d.as_ref().is_some_and(|d| !d.groups.is_empty()));
            evidence += usize::from(!o.inferred_evidence.is_empty());
        }
    }
    println!("{observations} observations, {decisions} decisions ({steers} steer, {groups} with groups, {evidence} inferred)");
    assert!(observations > 1000 && decisions > 100 && steers > 0 && groups > 0 && evidence > 0);
}

/// Strings a hostile capture could put in a name, a header or a DNS answer.
fn hostile() -> Vec<String> {
    let mut v: Vec<String> = vec![
        String::new(),
        "claude.ai".into(),
        "\"".into(),
        "\\".into(),
        "a\"b\\c\"\"\\\\".into(),
        "\u{7f}\u{80}\u{ff}".into(),
        "é.example/ü?q=€&𝄞".into(),
        "xn--bcher-kva.example".into(),
        "tab\there\nnew\rline\u{8}\u{c}".into(),
        "</script><!-- ' \" -->".into(),
        "x".repeat(5000),
        format!("{}\u{0}{}", "y".repeat(1000), "z".repeat(7)),
    ];
    v.push((0u8..0x20).map(char::from).collect());
    v.push((0u8..0x80).map(char::from).rev().collect());
    v
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())].clone()
    }
    /// Empty or up to three items.
    fn vec<T: Clone>(&mut self, v: &[T]) -> Vec<T> {
        let n = if self.coin() { 0 } else { 1 + self.below(3) };
        (0..n).map(|_| self.pick(v)).collect()
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if self.coin() {
            Some(f(self))
        } else {
            None
        }
    }
}

const KINDS: [Kind; 6] = [
    Kind::DnsQuery,
    Kind::DnsAnswer,
    Kind::TlsClientHello,
    Kind::QuicInitial,
    Kind::HttpRequest,
    Kind::ProxyConnect,
];
const FLAGS: [Flag; 14] = [
    Flag::Ech,
    Flag::Esni,
    Flag::Inferred,
    Flag::Unmatched,
    Flag::Segmented,
    Flag::MultiRecord,
    Flag::MultiPacket,
    Flag::Fragmented,
    Flag::Tunneled,
    Flag::Partial,
    Flag::DnsTcp,
    Flag::OffPort,
    Flag::Proxied,
    Flag::Anomaly,
];
const EVIDENCE: [Evidence; 5] = [
    Evidence::Wire,
    Evidence::OwnLookup,
    Evidence::ResolverLookup,
    Evidence::OtherClient,
    Evidence::UnmatchedAnswer,
];
const MATCHED_BY: [MatchedBy; 4] = [
    MatchedBy::Name,
    MatchedBy::Address,
    MatchedBy::Port,
    MatchedBy::Upstream,
];
const VIAS: [Via; 7] = [
    Via::Dns,
    Via::Tls,
    Via::Quic,
    Via::Http,
    Via::Proxy,
    Via::Inferred,
    Via::Manual,
];
const ACTIONS: [Action; 5] = [
    Action::Allow,
    Action::Alert,
    Action::Block,
    Action::Steer,
    Action::Coach,
];
const SEVERITIES: [Severity; 5] = [
    Severity::Info,
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];
const CATEGORIES: [Category; 9] = Category::ALL;

fn addresses() -> Vec<IpAddr> {
    [
        "0.0.0.0",
        "10.0.0.5",
        "255.255.255.255",
        "192.168.100.9",
        "::",
        "::1",
        "2001:db8::1",
        "fe80::1:2:3:4",
        "::ffff:10.1.2.3",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn endpoint_of(r: &mut Rng, strs: &[String]) -> Endpoint {
    let macs = [[0u8; 6], [0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e], [0xff; 6]];
    Endpoint {
        ip: r.pick(&addresses()),
        port: r.pick(&[0, 53, 443, 65_535]),
        mac: r.opt(|r| r.pick(&macs)),
        hostname: r.opt(|r| r.pick(strs)),
    }
}

fn observation_of(r: &mut Rng, i: usize, strs: &[String]) -> Observation {
    let rcodes = ["NOERROR", "NXDOMAIN", "SERVFAIL"];
    let protocols = ["socks4a", "socks5", "http"];
    let any = r.next();
    Observation {
        ts: r.pick(&[0, 1, 1_700_000_000_123_456_789, u64::MAX, any]),
        kind: KINDS[i % KINDS.len()],
        name: r.opt(|r| r.pick(strs)),
        wire_names: r.vec(strs),
        inferred_names: r.vec(strs),
        inferred_evidence: r.vec(&EVIDENCE),
        transport: if r.coin() {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        client: endpoint_of(r, strs),
        server: endpoint_of(r, strs),
        flags: if i < FLAGS.len() {
            vec![FLAGS[i]]
        } else {
            r.vec(&FLAGS)
        },
        dns: r.opt(|r| DnsInfo {
            id: r.pick(&[0, 1, 65_535]),
            qtype: r.pick(strs),
            rcode: r.opt(|r| r.pick(&rcodes)),
            answers: (0..r.pick(&[0, 1, 3]))
                .map(|_| DnsAnswer {
                    name: r.pick(strs),
                    rtype: r.pick(strs),
                    ttl: r.pick(&[0, 300, u32::MAX]),
                    data: r.pick(strs),
                })
                .collect(),
        }),
        tls: r.opt(|r| TlsInfo {
            versions: r.vec(strs),
            alpn: r.vec(strs),
        }),
        quic: r.opt(|r| QuicInfo {
            version: r.pick(strs),
            dcid: r.pick(strs),
            versions: r.vec(strs),
            alpn: r.vec(strs),
        }),
        http: r.opt(|r| HttpInfo {
            method: r.pick(strs),
            host: r.opt(|r| r.pick(strs)),
        }),
        proxy: r.opt(|r| ProxyInfo {
            protocol: r.pick(&protocols),
            port: r.pick(&[0, 1080, 65_535]),
        }),
        frame: r.pick(&[0, 1, 12_345, u64::MAX]),
        tcp: r.opt(|_| TcpSeq {
            client_next: 1,
            server_next: 2,
            has_ack: true,
        }),
        unanswered: false,
    }
}

fn decision_of(r: &mut Rng, i: usize, strs: &[String]) -> Decision {
    Decision {
        service: r.opt(|r| r.pick(strs)),
        service_name: r.opt(|r| r.pick(strs)),
        category: if i < CATEGORIES.len() {
            Some(CATEGORIES[i])
        } else {
            r.opt(|r| r.pick(&CATEGORIES))
        },
        service_kind: r.opt(|r| r.pick(strs)),
        matched_name: r.pick(strs),
        pattern: r.pick(strs),
        via: VIAS[i % VIAS.len()],
        evidence: EVIDENCE[i % EVIDENCE.len()],
        matched_by: MATCHED_BY[i % MATCHED_BY.len()],
        rule_id: r.pick(strs),
        action: ACTIONS[i % ACTIONS.len()],
        severity: SEVERITIES[(i / 5) % SEVERITIES.len()],
        steer_to: r.opt(|r| SteerDef {
            url: r.pick(strs),
            instruction: r.pick(strs),
        }),
        groups: r.vec(strs),
        shared_tenant: r.coin(),
    }
}

#[test]
fn hostile_synthetic_values_render_as_serde_json_does() {
    let strs = hostile();
    let mut r = Rng(0x853c_49e6_748f_ea9b);
    for i in 0..20_000 {
        let o = observation_of(&mut r, i, &strs);
        let d = decision_of(&mut r, i, &strs);
        check(&o, Some(&d));
        check(&o, None);
    }
}

#[test]
fn smallest_and_largest_values_render_as_serde_json_does() {
    let bare = |s: Option<String>| Observation {
        ts: 0,
        kind: Kind::DnsQuery,
        name: s.clone(),
        wire_names: Vec::new(),
        inferred_names: Vec::new(),
        inferred_evidence: Vec::new(),
        transport: Transport::Udp,
        client: Endpoint {
            ip: [0, 0, 0, 0].into(),
            port: 0,
            mac: None,
            hostname: None,
        },
        server: Endpoint {
            ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            port: 0,
            mac: None,
            hostname: s,
        },
        flags: Vec::new(),
        dns: None,
        tls: None,
        quic: None,
        http: None,
        proxy: None,
        frame: 0,
        tcp: None,
        unanswered: false,
    };
    let d = Decision {
        service: None,
        service_name: None,
        category: None,
        service_kind: None,
        matched_name: String::new(),
        pattern: String::new(),
        via: Via::Manual,
        evidence: Evidence::Wire,
        matched_by: MatchedBy::Name,
        rule_id: String::new(),
        action: Action::Allow,
        severity: Severity::Info,
        steer_to: None,
        groups: Vec::new(),
        shared_tenant: false,
    };
    for s in hostile() {
        check(&bare(Some(s)), Some(&d));
    }
    check(&bare(None), Some(&d));
    let mut full = bare(Some("x".into()));
    full.ts = u64::MAX;
    full.frame = u64::MAX;
    full.dns = Some(DnsInfo {
        id: u16::MAX,
        qtype: String::new(),
        rcode: Some(""),
        answers: Vec::new(),
    });
    full.tls = Some(TlsInfo {
        versions: Vec::new(),
        alpn: Vec::new(),
    });
    check(&full, None);
}

/// The writer's and shards' cache of rendered decisions gives what rendering gives, through
/// hits, misses and replacements (more distinct decisions than it holds, each seen often).
#[test]
fn cached_decisions_render_as_fresh_ones() {
    let strs = hostile();
    let mut r = Rng(0xcace);
    let pool: Vec<Decision> = (0..80).map(|i| decision_of(&mut r, i, &strs)).collect();
    let mut cache = crate::pipeline::writer::RenderedDecisions::default();
    for k in 0..5_000usize {
        let d = &pool[(k * 7 + k / 13) % pool.len()];
        let (mut fresh, mut cached) = (b"x".to_vec(), b"x".to_vec());
        decision(d, &mut fresh);
        cache.render(d, &mut cached);
        assert_eq!(fresh, cached, "{d:?}");
    }
}
