//! The sensor on synthetic traffic with exactly the hard cases: ClientHellos split, reordered
//! and retransmitted, no SYN seen, DNS over TCP framing, IP fragments, floods against the limits,
//! and names inferred from DNS when the hello shows none.

use crate::common::sensor::feed;
use crate::common::synth;

use shadowgate::flow::{Config, Flag, Kind, Observation, Sensor};

const C: [u8; 4] = [10, 9, 0, 5];
const S: [u8; 4] = [160, 79, 104, 10];

fn hello_segments(
    sni: &str,
    size: usize,
    parts: usize,
    with_syn: bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let ch = synth::client_hello(sni, size);
    let mut hs = Vec::new();
    if with_syn {
        hs.push(synth::tcp(C, S, 51000, 443, 999, 0, "S", &[]));
        hs.push(synth::tcp(S, C, 443, 51000, 5000, 1000, "SA", &[]));
        hs.push(synth::tcp(C, S, 51000, 443, 1000, 5001, "A", &[]));
    }
    let chunk = ch.len().div_ceil(parts);
    let segs = ch
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| synth::tcp(C, S, 51000, 443, 1000 + (i * chunk) as u32, 5001, "PA", c))
        .collect();
    (hs, segs)
}

fn only_hello(obs: &[Observation]) -> &Observation {
    let h: Vec<_> = obs
        .iter()
        .filter(|o| o.kind == Kind::TlsClientHello)
        .collect();
    assert_eq!(h.len(), 1, "{obs:?}");
    h[0]
}

#[test]
fn hello_in_order_reordered_and_retransmitted() {
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]] {
        let (mut frames, segs) = hello_segments("claude.ai", 1800, 3, true);
        for &i in &order {
            frames.push(segs[i].clone());
            frames.push(segs[i].clone()); // every segment retransmitted
        }
        let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
        let o = only_hello(&obs);
        assert_eq!(o.name.as_deref(), Some("claude.ai"), "order {order:?}");
        assert!(o.flags.contains(&Flag::Segmented));
        assert_eq!(o.client.ip.to_string(), "10.9.0.5");
        assert_eq!(o.server.port, 443);
    }
}

#[test]
fn hello_without_syn_and_reordered_start() {
    let (_, segs) = hello_segments("chatgpt.com", 1800, 2, false);
    let obs = feed(
        &mut Sensor::new(Config::default()),
        1,
        &[segs[1].clone(), segs[0].clone()],
    );
    assert_eq!(only_hello(&obs).name.as_deref(), Some("chatgpt.com"));
}

#[test]
fn overlapping_retransmission_with_different_cut() {
    let ch = synth::client_hello("gemini.google.com", 1500);
    let (mut frames, _) = hello_segments("x", 100, 1, true);
    frames.push(synth::tcp(C, S, 51000, 443, 1000, 5001, "PA", &ch[..700]));
    frames.push(synth::tcp(
        C,
        S,
        51000,
        443,
        1000 + 500,
        5001,
        "PA",
        &ch[500..1100],
    ));
    frames.push(synth::tcp(
        C,
        S,
        51000,
        443,
        1000 + 1100,
        5001,
        "PA",
        &ch[1100..],
    ));
    let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
    assert_eq!(only_hello(&obs).name.as_deref(), Some("gemini.google.com"));
}

#[test]
fn tls_on_port_80_and_http_on_443_by_content() {
    let ch = synth::client_hello("claude.ai", 400);
    let mut frames = vec![synth::tcp(C, S, 52000, 80, 1, 0, "PA", &ch)];
    frames.push(synth::tcp(
        C,
        S,
        52001,
        443,
        1,
        0,
        "PA",
        b"GET / HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n",
    ));
    let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
    assert!(obs
        .iter()
        .any(|o| o.kind == Kind::TlsClientHello && o.name.as_deref() == Some("claude.ai")));
    let h = obs.iter().find(|o| o.kind == Kind::HttpRequest).unwrap();
    assert_eq!(h.name.as_deref(), Some("chatgpt.com"));
    assert!(h.flags.contains(&Flag::OffPort));
}

#[test]
fn dns_over_tcp_pipelined_and_split() {
    let mut stream = Vec::new();
    for (i, n) in ["claude.ai", "chatgpt.com", "gemini.google.com"]
        .iter()
        .enumerate()
    {
        let m = synth::dns(i as u16, n, None);
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(&m);
    }
    // Segment boundaries: two messages and a half, then the rest.
    let cut = stream.len() - 10;
    let frames = vec![
        synth::tcp(C, S, 53000, 53, 99, 0, "S", &[]),
        synth::tcp(C, S, 53000, 53, 100, 1, "PA", &stream[..cut]),
        synth::tcp(C, S, 53000, 53, 100 + cut as u32, 1, "PA", &stream[cut..]),
    ];
    let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
    let names: Vec<_> = obs
        .iter()
        .filter(|o| o.kind == Kind::DnsQuery)
        .map(|o| o.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["claude.ai", "chatgpt.com", "gemini.google.com"]);
    assert!(obs[2].flags.contains(&Flag::DnsTcp) && obs[2].flags.contains(&Flag::Segmented));
}

/// Ethernet + IPv4 fragment of `datagram` (UDP header + payload) at byte `off`.
fn fragment(datagram: &[u8], off: usize, len: usize, more: bool) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let part = &datagram[off..(off + len).min(datagram.len())];
    let total = 20 + part.len();
    let flags_off = ((more as u16) << 13) | (off / 8) as u16;
    v.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34]);
    v.extend_from_slice(&flags_off.to_be_bytes());
    v.extend_from_slice(&[64, 17, 0, 0]);
    v.extend_from_slice(&S);
    v.extend_from_slice(&C);
    v.extend_from_slice(part);
    v
}

#[test]
fn fragmented_dns_answer_is_reassembled_in_any_order() {
    let msg = synth::dns(7, "claude.ai", Some(S));
    let mut dgram = Vec::new();
    dgram.extend_from_slice(&53u16.to_be_bytes());
    dgram.extend_from_slice(&5353u16.to_be_bytes());
    dgram.extend_from_slice(&((8 + msg.len()) as u16).to_be_bytes());
    dgram.extend_from_slice(&[0, 0]);
    dgram.extend_from_slice(&msg);
    let frags = [
        fragment(&dgram, 0, 40, true),
        fragment(&dgram, 40, 8, true),
        fragment(&dgram, 48, 100, false),
    ];
    let obs = feed(
        &mut Sensor::new(Config::default()),
        1,
        &[frags[2].clone(), frags[0].clone(), frags[1].clone()],
    );
    assert_eq!(obs.len(), 1, "{obs:?}");
    assert_eq!(obs[0].kind, Kind::DnsAnswer);
    assert!(obs[0].flags.contains(&Flag::Fragmented));
    assert_eq!(
        obs[0].dns.as_ref().unwrap().answers[0].data,
        "160.79.104.10"
    );
    // Only the first fragment: the questions are still reported, flagged partial.
    let obs = feed(&mut Sensor::new(Config::default()), 1, &[frags[0].clone()]);
    assert_eq!(obs.len(), 1, "{obs:?}");
    assert_eq!(obs[0].name.as_deref(), Some("claude.ai"));
    assert!(obs[0].flags.contains(&Flag::Partial));
}

#[test]
fn name_inferred_from_dns_when_hello_has_no_sni_or_ech() {
    let mut frames = vec![synth::udp(
        S,
        C,
        53,
        40000,
        &synth::dns(1, "claude.ai", Some(S)),
    )];
    // An empty host_name reads as "no SNI", which is what a bare-IP connection sends.
    let ch = synth::client_hello("", 300);
    frames.push(synth::tcp(C, S, 51000, 443, 1, 0, "PA", &ch));
    let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
    let h = only_hello(&obs);
    assert_eq!(h.name, None);
    assert_eq!(h.inferred_names, ["claude.ai"]);
    assert!(h.flags.contains(&Flag::Inferred));
}

#[test]
fn flood_of_flows_stays_within_the_table() {
    let mut sensor = Sensor::new(Config {
        max_flows: 1000,
        ..Config::default()
    });
    let mut frames = Vec::new();
    for i in 0..20_000u32 {
        let c = [10, 50, (i >> 8) as u8, i as u8];
        frames.push(synth::tcp(
            c,
            S,
            1024 + (i % 60000) as u16,
            443,
            i,
            0,
            "S",
            &[],
        ));
    }
    // One real hello at the end must still be seen.
    let (mut hs, segs) = hello_segments("claude.ai", 1800, 2, true);
    frames.append(&mut hs);
    frames.extend(segs);
    let obs = feed(&mut sensor, 1, &frames);
    assert_eq!(only_hello(&obs).name.as_deref(), Some("claude.ai"));
    let st = sensor.stats();
    assert!(st.flows.active <= 1000, "{st:?}");
    assert!(st.flows.evicted >= 19_000, "{st:?}");
}

#[test]
fn endless_hello_is_cut_at_the_buffer_cap() {
    // A record header announcing a 16 KiB handshake, then 40 KiB of filler in 1 KiB segments.
    let mut frames = vec![synth::tcp(C, S, 51000, 443, 0, 0, "S", &[])];
    let mut first = vec![0x16, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
    first.resize(1000, 0x41);
    frames.push(synth::tcp(C, S, 51000, 443, 1, 0, "PA", &first));
    for i in 1..40u32 {
        frames.push(synth::tcp(
            C,
            S,
            51000,
            443,
            1 + i * 1000,
            0,
            "PA",
            &[0x41; 1000],
        ));
    }
    let mut sensor = Sensor::new(Config::default());
    let obs = feed(&mut sensor, 1, &frames);
    assert!(obs.is_empty());
    let st = sensor.stats();
    assert!(
        st.flows.reassembly_overflow >= 1 || st.malformed.tls >= 1,
        "{st:?}"
    );
}

#[test]
fn flood_of_half_sent_hellos_stays_within_the_reassembly_budget() {
    let budget = 256 * 1024;
    let mut sensor = Sensor::new(Config {
        reassembly_budget: budget,
        ..Config::default()
    });
    let mut frames = Vec::new();
    // 2,000 flows each sending the first 1,000 bytes of a 16 KiB "ClientHello" and stalling.
    for i in 0..2_000u32 {
        let c = [10, 60, (i >> 8) as u8, i as u8];
        let mut first = vec![0x16, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
        first.resize(1000, 0x41);
        frames.push(synth::tcp(c, S, 40_000, 443, 0, 0, "S", &[]));
        frames.push(synth::tcp(c, S, 40_000, 443, 1, 0, "PA", &first));
    }
    // A single-segment hello needs no buffer and is still seen.
    frames.push(synth::tcp(
        C,
        S,
        51000,
        443,
        1,
        0,
        "PA",
        &synth::client_hello("claude.ai", 500),
    ));
    let obs = feed(&mut sensor, 1, &frames);
    assert_eq!(only_hello(&obs).name.as_deref(), Some("claude.ai"));
    let st = sensor.stats();
    assert!(st.flows.reassembly_bytes <= budget as u64, "{st:?}");
    assert!(st.flows.reassembly_budget_exceeded >= 1_700, "{st:?}");
    // Dropping the sensor's flows gives the bytes back.
    drop(sensor);
}

/// One Ethernet frame at capture time `ts`, without finishing the sensor.
fn process_at(sensor: &mut Sensor, ts: u64, f: &[u8], out: &mut Vec<Observation>) {
    let fr = shadowgate::capture::Frame {
        ts_ns: ts,
        linktype: 1,
        data: f,
        orig_len: f.len() as u32,
        offset: 0,
        csum: Default::default(),
    };
    sensor.process(&fr, out);
}

/// Issue 22: a QUIC ClientHello is held until its server answers. Answered, it is reported at
/// the answer and may be acted on; never answered (a hello in another's name gets its answer
/// nowhere the sender can see), it is reported at the end (or after two seconds of capture
/// time) marked `unanswered`, which the enforcer never acts on. The JSON schema is unchanged.
#[test]
fn a_quic_hello_waits_for_its_servers_answer() {
    use crate::common::frames::{quic_hello, InitialShape};
    use crate::common::sensor::feed_at;
    let initial = |sni: &str| {
        quic_hello(
            sni,
            &InitialShape {
                dcid: &[1, 2, 3, 4, 5, 6, 7, 8],
                scid: &[9; 8],
                hello_size: 300,
                datagram_len: 1250,
            },
        )
    };
    let (c, s) = ([10, 0, 0, 2], [104, 18, 0, 9]);
    let ms = 1_000_000u64;
    // Answered: nothing at the Initial, the hello at the server's first datagram.
    let mut sensor = Sensor::new(Config::default());
    let mut out = Vec::new();
    for (ts, f) in [
        (ms, synth::udp(c, s, 50_000, 443, &initial("claude.ai"))),
        (2 * ms, synth::udp(s, c, 443, 50_000, b"\xc0server initial")),
    ] {
        let n = out.len();
        process_at(&mut sensor, ts, &f, &mut out);
        if ts == ms {
            assert_eq!(out.len(), n, "held until the server answers");
        }
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, Kind::QuicInitial);
    assert_eq!(out[0].name.as_deref(), Some("claude.ai"));
    assert_eq!(out[0].ts, ms, "the hello's own time");
    assert!(!out[0].unanswered);
    assert!(!out[0].flags.contains(&Flag::UnverifiedSource));
    // Never answered: reported at the end, unanswered, counted; the same JSON.
    let mut sensor = Sensor::new(Config::default());
    let obs = feed_at(
        &mut sensor,
        1,
        &[(ms, synth::udp(c, s, 50_001, 443, &initial("chatgpt.com")))],
    );
    assert_eq!(obs.len(), 1);
    assert!(obs[0].unanswered);
    assert!(!obs[0].flags.contains(&Flag::UnverifiedSource));
    assert_eq!(sensor.stats().quic.unanswered, 1);
    assert!(!serde_json::to_string(&obs[0])
        .unwrap()
        .contains("unanswered"));
    // ... or once two seconds of capture time have passed without an answer (before the end).
    let mut sensor = Sensor::new(Config::default());
    let mut obs = Vec::new();
    for (ts, f) in [
        (
            ms,
            synth::udp(c, s, 50_002, 443, &initial("gemini.google.com")),
        ),
        (
            4_000 * ms,
            synth::udp([10, 0, 0, 3], [10, 0, 0, 1], 5, 6, b"x"),
        ),
    ] {
        process_at(&mut sensor, ts, &f, &mut obs);
    }
    assert_eq!(obs.len(), 1);
    assert!(obs[0].unanswered);
}

/// An mDNS query (RFC 6762 §5.3 lets it ask several questions at once) asking for `names`.
fn mdns_query(names: &[&str]) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0, 0, names.len() as u8, 0, 0, 0, 0, 0, 0];
    for n in names {
        for label in n.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        // End of name, QTYPE PTR, QCLASS IN.
        m.extend_from_slice(&[0, 0, 12, 0, 1]);
    }
    m
}

/// Issue 23, part 6: every question of a multi-question mDNS query is reported, the first as
/// the name and the others as wire names (not an anomaly: mDNS may ask several); a unicast
/// query with two questions stays a flagged anomaly.
#[test]
fn every_question_of_an_mdns_query_is_reported() {
    let names = [
        "_airplay._tcp.local",
        "_raop._tcp.local",
        "_googlecast._tcp.local",
        "_raop._tcp.local",
    ];
    let frames = vec![
        synth::udp(
            [10, 0, 0, 7],
            [224, 0, 0, 251],
            5353,
            5353,
            &mdns_query(&names),
        ),
        synth::udp(
            [10, 0, 0, 7],
            [10, 0, 0, 53],
            40_000,
            53,
            &mdns_query(&["claude.ai", "chatgpt.com"]),
        ),
    ];
    let obs = feed(&mut Sensor::new(Config::default()), 1, &frames);
    assert_eq!(obs.len(), 2, "{obs:?}");
    let m = &obs[0];
    assert_eq!(m.kind, Kind::DnsQuery);
    assert_eq!(m.name.as_deref(), Some("_airplay._tcp.local"));
    assert_eq!(m.wire_names, ["_raop._tcp.local", "_googlecast._tcp.local"]);
    assert!(!m.flags.contains(&Flag::Anomaly), "{m:?}");
    let u = &obs[1];
    assert_eq!(u.name.as_deref(), Some("claude.ai"));
    assert!(
        u.wire_names.is_empty() && u.flags.contains(&Flag::Anomaly),
        "{u:?}"
    );
}
