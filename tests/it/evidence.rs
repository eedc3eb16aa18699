//! Deciding on evidence: the wire SNI decides (GREASE ECH), inferred names by whose lookup they
//! come from, a name cache that cannot be poisoned cheaply, and one decision per DNS lookup.

use crate::common::events::json_lines;
use crate::common::files::policies;
use crate::common::sensor::{Buf, Keep, T0};
use crate::common::synth;

use std::sync::{Arc, Mutex};

use shadowgate::capture::Frame;
use shadowgate::flow::{Config, Flag, Kind, Observation};
use shadowgate::pipeline::{Emit, Format, Pipeline};
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::policy::{Action, Decision};

const A: [u8; 4] = [10, 20, 1, 10];
const B: [u8; 4] = [10, 20, 1, 11];
const C: [u8; 4] = [10, 20, 1, 12];
const DC: [u8; 4] = [10, 0, 0, 2];
const UPSTREAM: [u8; 4] = [9, 9, 9, 9];
const CDN: [u8; 4] = [104, 18, 32, 7];
const MS: u64 = 1_000_000;

/// What a run produced: decisions as `--emit decisions` prints them, and what the actions got.
struct Run {
    printed: Vec<serde_json::Value>,
    acted: Vec<(Observation, Option<Decision>)>,
    stats: shadowgate::flow::Stats,
}

impl Run {
    /// (kind, matched name, evidence, rule, action) of each printed decision.
    fn decisions(&self) -> Vec<(String, String, String, String, String)> {
        self.printed
            .iter()
            .map(|v| {
                let d = &v["decision"];
                let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
                (
                    s(&v["kind"]),
                    s(&d["matched_name"]),
                    s(&d["evidence"]),
                    s(&d["rule_id"]),
                    s(&d["action"]),
                )
            })
            .collect()
    }
}

fn d(
    kind: &str,
    name: &str,
    ev: &str,
    rule: &str,
    action: &str,
) -> (String, String, String, String, String) {
    (
        kind.into(),
        name.into(),
        ev.into(),
        rule.into(),
        action.into(),
    )
}

/// Frames at the given capture times (ms after T0) through a pipeline with the bundled policy.
fn run_with(cfg: Config, frames: &[(u64, Vec<u8>)]) -> Run {
    let policy = PolicyHandle::load(&policies()).unwrap();
    let acted = Arc::new(Mutex::new(Vec::new()));
    let out = Buf::default();
    let mut p = Pipeline::new(cfg)
        .with_policy(policy)
        .with_writer(Box::new(out.clone()), Format::Json, Emit::Decisions)
        .with_output(Box::new(Keep(acted.clone())));
    for (ms, f) in frames {
        p.feed(&Frame {
            ts_ns: T0 + ms * MS,
            linktype: 1,
            data: f,
            orig_len: f.len() as u32,
            offset: 0,
            csum: Default::default(),
        });
    }
    p.finish();
    assert_eq!(p.counts().pending_lookups, 0);
    let printed = json_lines(&out.text());
    let acted = acted.lock().unwrap().clone();
    Run {
        printed,
        acted,
        stats: p.stats(),
    }
}

fn run(frames: &[(u64, Vec<u8>)]) -> Run {
    run_with(Config::default(), frames)
}

/// A client's DNS lookup of `name` -> `ip` through `server` (query, then answer 5 ms later).
fn lookup(
    at: u64,
    client: [u8; 4],
    server: [u8; 4],
    id: u16,
    name: &str,
    ip: [u8; 4],
) -> Vec<(u64, Vec<u8>)> {
    let port = 30_000 + id;
    vec![
        (
            at,
            synth::udp(client, server, port, 53, &synth::dns(id, name, None)),
        ),
        (
            at + 5,
            synth::udp(server, client, 53, port, &synth::dns(id, name, Some(ip))),
        ),
    ]
}

/// A TLS ClientHello for `sni`, with an ECH extension (0xfe0d) when `ech`.
fn hello_bytes(sni: &str, ech: bool) -> Vec<u8> {
    let mut ch = synth::client_hello(sni, 400);
    if ech {
        // The hello ends in a padding extension (type 21): make it an ECH extension instead.
        let n = ch.len();
        let at = (0..n - 4)
            .rev()
            .find(|&i| {
                ch[i..i + 2] == [0, 21]
                    && i + 4 + u16::from_be_bytes([ch[i + 2], ch[i + 3]]) as usize == n
            })
            .unwrap();
        ch[at..at + 2].copy_from_slice(&0xfe0du16.to_be_bytes());
    }
    ch
}

fn hello(at: u64, client: [u8; 4], sni: &str, ech: bool) -> (u64, Vec<u8>) {
    (
        at,
        synth::tcp(client, CDN, 50_000, 443, 1, 0, "PA", &hello_bytes(sni, ech)),
    )
}

#[test]
fn grease_ech_hello_is_decided_by_its_sni() {
    // B resolves chatgpt.com to the CDN address; then A's Chromium hello to the same address
    // names the clinic's EHR in the SNI and carries GREASE ECH, as every Chromium hello does.
    let mut f = lookup(0, B, DC, 1, "chatgpt.com", CDN);
    f.push(hello(100, A, "www.clinic-ehr.example", true));
    let r = run(&f);
    assert_eq!(
        r.decisions(),
        [d(
            "dns_answer",
            "chatgpt.com",
            "wire",
            "SG-300-consumer-ai",
            "steer"
        )]
    );
    let h = r
        .acted
        .iter()
        .find(|(o, _)| o.kind == Kind::TlsClientHello)
        .unwrap();
    assert!(h.0.flags.contains(&Flag::Ech));
    assert!(h.0.inferred_names.is_empty(), "{:?}", h.0);
    assert!(h.1.is_none());
}

#[test]
fn inference_prefers_the_clients_own_lookup() {
    // A resolves claude.ai, B chatgpt.com, both to the same CDN address; A's real-ECH hello
    // (outer SNI = the ECH public name) is A's own claude.ai, not B's chatgpt.com.
    let mut f = lookup(0, A, DC, 1, "claude.ai", CDN);
    f.extend(lookup(20, B, DC, 2, "chatgpt.com", CDN));
    f.push(hello(100, A, "cloudflare-ech.com", true));
    // C looked nothing up: only other clients' lookups name the address (most recent first).
    f.push(hello(200, C, "cloudflare-ech.com", true));
    let r = run(&f);
    assert_eq!(
        r.decisions(),
        [
            d(
                "dns_answer",
                "claude.ai",
                "wire",
                "SG-300-consumer-ai",
                "steer"
            ),
            d(
                "dns_answer",
                "chatgpt.com",
                "wire",
                "SG-300-consumer-ai",
                "steer"
            ),
            d(
                "tls_client_hello",
                "claude.ai",
                "own_lookup",
                "SG-300-consumer-ai",
                "steer"
            ),
            d(
                "tls_client_hello",
                "chatgpt.com",
                "other_client",
                "SG-310-consumer-ai-weak-evidence",
                "alert"
            ),
        ]
    );
    let a = &r.printed[2];
    assert_eq!(a["decision"]["via"], "inferred");
    assert_eq!(
        a["inferred_names"],
        serde_json::json!(["claude.ai", "chatgpt.com"])
    );
    assert_eq!(
        a["inferred_evidence"],
        serde_json::json!(["own_lookup", "other_client"])
    );
}

#[test]
fn a_configured_resolvers_lookup_counts_for_its_clients() {
    // The domain controller forwards: the gateway sees the DC ask upstream, not the client.
    let mut f = lookup(0, DC, UPSTREAM, 1, "claude.ai", CDN);
    f.push(hello(100, A, "cloudflare-ech.com", true));
    let with = run_with(
        Config {
            internal_resolvers: vec!["10.0.0.2".parse().unwrap()],
            ..Config::default()
        },
        &f,
    );
    assert_eq!(
        with.decisions()[1],
        d(
            "tls_client_hello",
            "claude.ai",
            "resolver_lookup",
            "SG-300-consumer-ai",
            "steer"
        )
    );
    let without = run(&f);
    assert_eq!(
        without.decisions()[1],
        d(
            "tls_client_hello",
            "claude.ai",
            "other_client",
            "SG-310-consumer-ai-weak-evidence",
            "alert"
        )
    );
}

#[test]
fn spoofed_answers_to_no_query_give_one_decision_per_client_and_name_a_minute() {
    // Any LAN device can send "answers" to any other; each would be an event charged to the
    // victim. 500 in 50 s give one decision; a minute later, one more; another name, one more.
    let mut f: Vec<(u64, Vec<u8>)> = (0..500u64)
        .map(|i| {
            (
                i * 100,
                synth::udp(
                    DC,
                    A,
                    53,
                    40_000 + i as u16,
                    &synth::dns(i as u16, "chatgpt.com", Some(CDN)),
                ),
            )
        })
        .collect();
    f.push((
        61_000,
        synth::udp(DC, A, 53, 39_000, &synth::dns(9, "chatgpt.com", Some(CDN))),
    ));
    f.push((
        61_100,
        synth::udp(DC, A, 53, 39_001, &synth::dns(10, "claude.ai", Some(CDN))),
    ));
    let r = run(&f);
    let names: Vec<String> = r.decisions().into_iter().map(|d| d.1).collect();
    assert_eq!(names, ["chatgpt.com", "chatgpt.com", "claude.ai"]);
}

#[test]
fn an_answer_to_no_seen_query_is_weak_evidence() {
    let f = vec![
        (
            0,
            synth::udp(DC, A, 53, 40_000, &synth::dns(7, "chatgpt.com", Some(CDN))),
        ),
        hello(100, A, "", false),
    ];
    let r = run(&f);
    assert_eq!(
        r.decisions(),
        [
            d(
                "dns_answer",
                "chatgpt.com",
                "unmatched_answer",
                "SG-310-consumer-ai-weak-evidence",
                "alert"
            ),
            d(
                "tls_client_hello",
                "chatgpt.com",
                "unmatched_answer",
                "SG-310-consumer-ai-weak-evidence",
                "alert"
            ),
        ]
    );
    assert_eq!(r.stats.dns.unmatched_answers, 1);
    assert!(r.printed[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&"unmatched".into()));
}

#[test]
fn mdns_and_llmnr_never_feed_the_name_cache() {
    let mdns = [224, 0, 0, 251];
    let f = vec![
        (
            0,
            synth::udp(B, mdns, 5353, 5353, &synth::dns(0, "claude.ai", Some(CDN))),
        ),
        (
            1,
            synth::udp(B, A, 5355, 40_001, &synth::dns(3, "chatgpt.com", Some(CDN))),
        ),
        hello(100, A, "", false),
    ];
    let r = run(&f);
    let h = r
        .acted
        .iter()
        .find(|(o, _)| o.kind == Kind::TlsClientHello)
        .unwrap();
    assert!(h.0.inferred_names.is_empty(), "{:?}", h.0);
    assert!(h.1.is_none());
    assert_eq!(r.stats.names.active, 0);
    assert_eq!(r.stats.dns.link_local_answers, 2);
}

/// `synth::dns` with the answer's TTL set.
fn with_ttl(mut m: Vec<u8>, ttl: u32) -> Vec<u8> {
    let n = m.len();
    m[n - 10..n - 6].copy_from_slice(&ttl.to_be_bytes());
    m
}

#[test]
fn ttls_are_capped_at_a_day() {
    const DAY_MS: u64 = 86_400_000;
    let q = synth::dns(5, "claude.ai", None);
    let week = with_ttl(synth::dns(5, "claude.ai", Some(CDN)), 7 * 86_400);
    let neg = with_ttl(
        synth::dns(6, "chatgpt.com", Some([104, 18, 32, 8])),
        0x8000_0000,
    );
    let f = vec![
        (0, synth::udp(A, DC, 40_000, 53, &q)),
        (1, synth::udp(DC, A, 53, 40_000, &week)),
        (2, synth::udp(DC, A, 53, 40_001, &neg)),
        hello(DAY_MS / 2, A, "", false),
        hello(2 * DAY_MS, A, "", false),
    ];
    let r = run(&f);
    let hellos: Vec<_> = r
        .acted
        .iter()
        .filter(|(o, _)| o.kind == Kind::TlsClientHello)
        .collect();
    assert_eq!(hellos[0].0.inferred_names, ["claude.ai"]);
    // Two days later the week-long TTL has expired (capped at one day, plus grace).
    assert!(hellos[1].0.inferred_names.is_empty());
}

#[test]
fn more_than_one_question_is_an_anomaly_and_none_is_nameless() {
    let mut two = synth::dns(9, "claude.ai", Some(CDN));
    two[5] = 2;
    let at = 12 + "claude.ai".len() + 2 + 4;
    let second = [
        7, b'c', b'h', b'a', b't', b'g', b'p', b't', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ];
    two.splice(at..at, second);
    let mut none = synth::dns(10, "x", None);
    none[5] = 0;
    none.truncate(12);
    let f = vec![
        (0, synth::udp(DC, A, 53, 40_000, &two)),
        (1, synth::udp(A, DC, 40_001, 53, &none)),
        hello(100, A, "", false),
    ];
    let r = run(&f);
    let obs: Vec<&Observation> = r.acted.iter().map(|(o, _)| o).collect();
    assert_eq!(obs.len(), 3);
    assert_eq!(obs[0].name.as_deref(), Some("claude.ai"));
    assert!(obs[0].flags.contains(&Flag::Anomaly));
    assert!(obs[0].dns.as_ref().unwrap().answers.is_empty());
    assert_eq!(obs[1].name, None);
    assert!(
        obs[2].inferred_names.is_empty(),
        "a malformed answer feeds nothing"
    );
    assert_eq!(r.stats.dns.multi_question, 1);
    assert_eq!(r.stats.dns.no_question, 1);
    assert_eq!(
        r.decisions(),
        [d(
            "dns_answer",
            "claude.ai",
            "unmatched_answer",
            "SG-310-consumer-ai-weak-evidence",
            "alert"
        )]
    );
}

#[test]
fn one_decision_per_lookup() {
    // Query and answer: one decision, on the answer (with its rcode and answers); the actions
    // got it on the query, as it passed.
    let r = run(&lookup(0, A, DC, 1, "claude.ai", CDN));
    assert_eq!(
        r.decisions(),
        [d(
            "dns_answer",
            "claude.ai",
            "wire",
            "SG-300-consumer-ai",
            "steer"
        )]
    );
    assert_eq!(r.printed[0]["dns"]["rcode"], "NOERROR");
    assert_eq!(r.printed[0]["dns"]["answers"][0]["data"], "104.18.32.7");
    assert_eq!(r.acted.len(), 2);
    assert_eq!(r.acted[0].0.kind, Kind::DnsQuery);
    assert_eq!(r.acted[0].1.as_ref().unwrap().action, Action::Steer);
    assert!(r.acted[1].1.is_none());

    // Query alone: one decision, on the query, at the end of input ...
    let q = |at, id| {
        (
            at,
            synth::udp(A, DC, 30_000 + id, 53, &synth::dns(id, "chatgpt.com", None)),
        )
    };
    let r = run(&[q(0, 2)]);
    assert_eq!(
        r.decisions(),
        [d(
            "dns_query",
            "chatgpt.com",
            "wire",
            "SG-300-consumer-ai",
            "steer"
        )]
    );
    // ... or once the timeout passed, before what follows (a retransmission adds nothing).
    let r = run(&[q(0, 3), q(1000, 3), hello(6_000, A, "claude.ai", false)]);
    assert_eq!(
        r.decisions(),
        [
            d(
                "dns_query",
                "chatgpt.com",
                "wire",
                "SG-300-consumer-ai",
                "steer"
            ),
            d(
                "tls_client_hello",
                "claude.ai",
                "wire",
                "SG-300-consumer-ai",
                "steer"
            ),
        ]
    );
    // An answer alone: one decision (see an_answer_to_no_seen_query_is_weak_evidence).

    // The same with `--emit all`: every observation printed once, the decision once.
    let policy = PolicyHandle::load(&policies()).unwrap();
    let out = Buf::default();
    let mut p = Pipeline::new(Config::default())
        .with_policy(policy)
        .with_writer(Box::new(out.clone()), Format::Json, Emit::All);
    for (ms, f) in lookup(0, A, DC, 1, "claude.ai", CDN) {
        p.feed(&Frame {
            ts_ns: T0 + ms * MS,
            linktype: 1,
            data: &f,
            orig_len: f.len() as u32,
            offset: 0,
            csum: Default::default(),
        });
    }
    p.finish();
    let lines = json_lines(&out.text());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "dns_query");
    assert!(lines[0].get("decision").is_none());
    assert_eq!(lines[1]["decision"]["evidence"], "wire");
    assert_eq!(p.counts().decisions, 1);
}

/// A DNS response to A: `qd` copies of the question (compressed), `an` A records.
fn bomb(qd: u16, an: u16) -> Vec<u8> {
    let mut v = vec![0, 77, 0x81, 0x80];
    v.extend_from_slice(&qd.to_be_bytes());
    v.extend_from_slice(&an.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(&[
        7, b'c', b'h', b'a', b't', b'g', b'p', b't', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ]);
    for _ in 1..qd {
        v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    }
    for i in 0..an {
        v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 104, 18]);
        v.extend_from_slice(&i.to_be_bytes());
    }
    v
}

#[test]
fn a_dns_bomb_stays_small() {
    // 4,000 compressed questions and 2,400 answers in one 62 KB response.
    let b = bomb(4_000, 2_400);
    assert!(b.len() > 60_000 && b.len() < 65_000, "{}", b.len());
    let r = run(&[(0, synth::udp(DC, A, 53, 40_000, &b))]);
    assert_eq!(r.acted.len(), 1);
    assert!(r.decisions().len() <= 1);
    assert!(r.printed.iter().map(|v| v.to_string().len()).sum::<usize>() < 4_096);
    assert_eq!(r.stats.names.active, 0);
    // One question and 2,400 answers: a bounded number are read, fewer feed the cache (4 from
    // an answer to no seen query, 32 from one to a seen query).
    let b = bomb(1, 2_400);
    let r = run(&[(0, synth::udp(DC, A, 53, 40_000, &b))]);
    assert_eq!(r.decisions().len(), 1);
    assert!(r.printed[0].to_string().len() < 32_768);
    assert_eq!(r.stats.names.active, 4);
    assert_eq!(r.stats.dns.answers_not_cached, 128 - 4);
    let r = run(&[
        (
            0,
            synth::udp(A, DC, 40_000, 53, &synth::dns(77, "chatgpt.com", None)),
        ),
        (1, synth::udp(DC, A, 53, 40_000, &b)),
    ]);
    assert_eq!(r.stats.names.active, 32);
    assert_eq!(r.stats.dns.answers_not_cached, 128 - 32);
    assert_eq!(r.stats.dns.answers_skipped, 2_400 - 128);
}

fn with_resolver() -> Config {
    Config {
        internal_resolvers: vec!["10.0.0.2".parse().unwrap()],
        ..Config::default()
    }
}

/// The decision on the (first) ClientHello of a run.
fn hello_decision(r: &Run) -> (&Observation, Option<&Decision>) {
    let (o, d) = r
        .acted
        .iter()
        .find(|(o, _)| o.kind == Kind::TlsClientHello)
        .unwrap();
    (o, d.as_ref())
}

#[test]
fn an_uncatalogued_own_lookup_does_not_fall_through_to_a_weaker_level() {
    // A looks up its EHR portal on a CDN; the resolver looked up chatgpt.com -> the same
    // address. A's ECH hello is A's EHR (no rule selects it): no decision, not chatgpt.com.
    let mut f = lookup(0, DC, UPSTREAM, 1, "chatgpt.com", CDN);
    f.extend(lookup(20, A, DC, 2, "ehr-portal.example", CDN));
    f.push(hello(100, A, "cloudflare-ech.com", true));
    let r = run_with(with_resolver(), &f);
    let (o, dec) = hello_decision(&r);
    assert_eq!(o.inferred_names, ["ehr-portal.example", "chatgpt.com"]);
    assert!(dec.is_none(), "{dec:?}");
}

#[test]
fn several_names_from_the_resolver_are_ambiguous() {
    // The resolver looked up two sites on one CDN address: a client that looked up nothing
    // reached one of them, which one is not known, so the bundled policy only alerts.
    let mut f = lookup(0, DC, UPSTREAM, 1, "chatgpt.com", CDN);
    f.extend(lookup(20, DC, UPSTREAM, 2, "claude.ai", CDN));
    f.push(hello(100, A, "cloudflare-ech.com", true));
    let r = run_with(with_resolver(), &f);
    let (o, dec) = hello_decision(&r);
    assert_eq!(o.inferred_names, ["claude.ai", "chatgpt.com"]);
    let dec = dec.unwrap();
    assert_eq!(
        (
            dec.matched_name.as_str(),
            dec.evidence,
            dec.rule_id.as_str(),
            dec.action
        ),
        (
            "claude.ai",
            shadowgate::flow::Evidence::OtherClient,
            "SG-310-consumer-ai-weak-evidence",
            Action::Alert
        )
    );
    // One name from the resolver is not ambiguous (a_configured_resolvers_lookup_counts...).
}

/// A DNS record for [`response`]: an A record or a CNAME.
enum Rr<'a> {
    A(&'a str, [u8; 4]),
    Cname(&'a str, &'a str),
}

fn put_name(v: &mut Vec<u8>, name: &str) {
    for l in name.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
}

/// A DNS response `id` to an A question for `q`, with these answer records (TTL 300).
fn response(id: u16, q: &str, rrs: &[Rr]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x81, 0x80, 0, 1]);
    v.extend_from_slice(&(rrs.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    put_name(&mut v, q);
    v.extend_from_slice(&[0, 1, 0, 1]);
    for rr in rrs {
        let (owner, rtype, rdata) = match rr {
            Rr::A(n, ip) => (*n, 1u16, ip.to_vec()),
            Rr::Cname(n, t) => {
                let mut d = Vec::new();
                put_name(&mut d, t);
                (*n, 5, d)
            }
        };
        put_name(&mut v, owner);
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&[0, 1, 0, 0, 1, 0x2c]);
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(&rdata);
    }
    v
}

/// A's query for `q` (A record) and the answer with `rrs`.
fn lookup_with(at: u64, id: u16, q: &str, rrs: &[Rr]) -> Vec<(u64, Vec<u8>)> {
    let port = 30_000 + id;
    vec![
        (at, synth::udp(A, DC, port, 53, &synth::dns(id, q, None))),
        (at + 5, synth::udp(DC, A, 53, port, &response(id, q, rrs))),
    ]
}

#[test]
fn only_the_cname_chain_from_the_question_feeds_the_cache() {
    // The authoritative server for x.evil.example adds `chatgpt.com A <CDN>` to its answer: a
    // resolver discards it, and so does the cache.
    let mut f = lookup_with(
        0,
        1,
        "x.evil.example",
        &[
            Rr::A("chatgpt.com", CDN),
            Rr::Cname("X.Evil.Example", "edge.evil.example"),
            Rr::A("edge.evil.example", [104, 18, 32, 8]),
        ],
    );
    f.push(hello(100, A, "", false));
    let r = run(&f);
    let (o, dec) = hello_decision(&r);
    assert!(o.inferred_names.is_empty(), "{o:?}");
    assert!(dec.is_none(), "{dec:?}");
    assert_eq!(r.stats.dns.answers_off_chain, 1);
    assert_eq!(r.stats.names.active, 1);

    // A real chain (CNAME records in any order and case) feeds the names on it.
    let mut f = lookup_with(
        0,
        2,
        "chatgpt.com",
        &[
            Rr::A("CHATGPT.com.cdn.cloudflare.net", CDN),
            Rr::Cname("chatgpt.com", "chatgpt.com.CDN.cloudflare.net"),
            Rr::A("unrelated.example", CDN),
        ],
    );
    f.push(hello(100, A, "", false));
    let r = run(&f);
    let (o, dec) = hello_decision(&r);
    assert_eq!(
        o.inferred_names,
        ["chatgpt.com", "chatgpt.com.cdn.cloudflare.net"]
    );
    assert_eq!(dec.unwrap().matched_name, "chatgpt.com");
    assert_eq!(r.stats.dns.answers_off_chain, 1);
}

#[test]
fn cname_chains_are_bounded() {
    // q -> c1 -> ... -> c12, the address on c12: past 8 hops nothing is cached.
    let names: Vec<String> = (0..=12).map(|i| format!("c{i}.example")).collect();
    let mut rrs: Vec<Rr> = names.windows(2).map(|w| Rr::Cname(&w[0], &w[1])).collect();
    rrs.push(Rr::A(&names[12], CDN));
    rrs.push(Rr::A(&names[8], [104, 18, 32, 9]));
    let mut f = lookup_with(0, 3, &names[0], &rrs);
    f.push(hello(100, A, "", false));
    let r = run(&f);
    assert_eq!(r.stats.dns.answers_off_chain, 1);
    let (o, _) = hello_decision(&r);
    assert!(o.inferred_names.is_empty(), "{o:?}");
}

#[test]
fn spoofed_answers_do_not_flush_lookups_and_long_names_are_not_cached() {
    // A looks up claude.ai; then 2,000 spoofed answers (no query seen), each with 32 address
    // records for fresh addresses, into a cache of 256 addresses.
    let mut f = lookup(0, A, DC, 1, "claude.ai", CDN);
    let spoof: Vec<Rr> = (0..32u8)
        .map(|i| Rr::A("spoof.example", [10, 99, 0, i]))
        .collect();
    for k in 0..2_000u16 {
        let mut rrs: Vec<Rr> = Vec::new();
        for (i, r) in spoof.iter().enumerate() {
            if let Rr::A(n, _) = r {
                let [hi, lo] = k.to_be_bytes();
                rrs.push(Rr::A(n, [11, hi, lo, i as u8]));
            }
        }
        let m = response(k, "spoof.example", &rrs);
        f.push((10 + k as u64, synth::udp(DC, A, 53, 40_000, &m)));
    }
    // Escaped names (`\DDD`: up to 4 times the wire length) are not cached, even from a seen
    // query.
    let odd = format!("{}.example", "\u{1}".repeat(60));
    f.extend(lookup_with(
        3_000,
        2,
        &odd,
        &[Rr::A(&odd, [104, 18, 32, 9])],
    ));
    f.push(hello(4_000, A, "", false));
    let r = run_with(
        Config {
            max_names: 256,
            ..Config::default()
        },
        &f,
    );
    let (o, dec) = hello_decision(&r);
    assert_eq!(o.inferred_names, ["claude.ai"]);
    assert_eq!(dec.unwrap().evidence, shadowgate::flow::Evidence::OwnLookup);
    // At most 4 records of each spoofed answer, and the spoofs hold at most 256/8 addresses.
    assert_eq!(r.stats.dns.answers_not_cached, 2_000 * (32 - 4));
    assert!(r.stats.names.active <= 1 + 256 / 8, "{:?}", r.stats.names);
    assert_eq!(r.stats.names.rejected, 1);
}

/// An ECHConfigList with one config per public name.
fn ech_list(names: &[&str]) -> Vec<u8> {
    let mut configs = Vec::new();
    for n in names {
        let mut c = vec![7, 0, 0x20];
        c.extend_from_slice(&32u16.to_be_bytes());
        c.extend_from_slice(&[0xab; 32]);
        c.extend_from_slice(&4u16.to_be_bytes());
        c.extend_from_slice(&[0, 1, 0, 1]);
        c.push(0);
        c.push(n.len() as u8);
        c.extend_from_slice(n.as_bytes());
        c.extend_from_slice(&0u16.to_be_bytes());
        configs.extend_from_slice(&0xfe0du16.to_be_bytes());
        configs.extend_from_slice(&(c.len() as u16).to_be_bytes());
        configs.extend_from_slice(&c);
    }
    let mut v = (configs.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(&configs);
    v
}

/// `client`'s HTTPS (type 65) lookup of `q` through `server`, answered with an ECH config whose
/// public name is `public`.
fn https_lookup(
    at: u64,
    client: [u8; 4],
    server: [u8; 4],
    id: u16,
    q: &str,
    public: &str,
) -> Vec<(u64, Vec<u8>)> {
    let port = 31_000 + id;
    let mut query = synth::dns(id, q, None);
    let n = query.len();
    query[n - 3] = 65;
    let mut ans = query.clone();
    ans[2] = 0x81;
    ans[3] = 0x80;
    ans[7] = 1;
    let list = ech_list(&[public]);
    let mut rdata = vec![0, 1, 0];
    rdata.extend_from_slice(&5u16.to_be_bytes());
    rdata.extend_from_slice(&(list.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&list);
    ans.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0x2c]);
    ans.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    ans.extend_from_slice(&rdata);
    vec![
        (at, synth::udp(client, server, port, 53, &query)),
        (at + 5, synth::udp(server, client, 53, port, &ans)),
    ]
}

#[test]
fn a_public_name_is_learnt_for_its_client_and_never_a_sites_own_name() {
    // B looks up an attacker's HTTPS record naming the clinic's EHR as its ECH public name, and
    // chatgpt.com (same CDN address as the EHR).
    let mut f = https_lookup(0, B, DC, 1, "evil.example", "www.clinic-ehr.example");
    f.extend(lookup(10, B, DC, 2, "chatgpt.com", CDN));
    f.extend(lookup(20, A, DC, 3, "chatgpt.com", CDN));
    // A (who never looked up the HTTPS record) reaches the EHR with a GREASE-ECH hello: its SNI.
    f.push(hello(100, A, "www.clinic-ehr.example", true));
    let r = run(&f);
    let (o, dec) = hello_decision(&r);
    assert!(o.inferred_names.is_empty(), "{o:?}");
    assert!(dec.is_none(), "{dec:?}");
    assert_eq!(r.stats.names.public_names, 1);

    // B itself looked the EHR up (-> the CDN address): the name is the site's own, not a
    // public name, even for B.
    let mut f = https_lookup(0, B, DC, 1, "evil.example", "www.clinic-ehr.example");
    f.extend(lookup(10, B, DC, 2, "chatgpt.com", CDN));
    f.extend(lookup(20, B, DC, 3, "www.clinic-ehr.example", CDN));
    f.push(hello(100, B, "www.clinic-ehr.example", true));
    let r = run(&f);
    let (o, dec) = hello_decision(&r);
    assert!(o.inferred_names.is_empty(), "{o:?}");
    assert!(dec.is_none(), "{dec:?}");

    // A real public name: inferred for the client that looked it up, and for every client when
    // the configured resolver did.
    let mut f = https_lookup(0, B, DC, 1, "chatgpt.com", "ech.cdn.example");
    f.extend(lookup(10, B, DC, 2, "chatgpt.com", CDN));
    f.push(hello(100, B, "ech.cdn.example", true));
    f.push(hello(200, A, "ech.cdn.example", true));
    let r = run(&f);
    let hellos: Vec<_> = r
        .acted
        .iter()
        .filter(|(o, _)| o.kind == Kind::TlsClientHello)
        .collect();
    assert_eq!(hellos[0].0.inferred_names, ["chatgpt.com"]);
    assert!(hellos[1].0.inferred_names.is_empty());
    let mut f = https_lookup(0, DC, UPSTREAM, 1, "chatgpt.com", "ech.cdn.example");
    f.extend(lookup(10, B, DC, 2, "chatgpt.com", CDN));
    f.push(hello(200, A, "ech.cdn.example", true));
    let r = run_with(with_resolver(), &f);
    let (o, _) = hello_decision(&r);
    assert_eq!(o.inferred_names, ["chatgpt.com"]);
}
