//! Issue 8, trust before enforcement: frames that could kill or flood the sensor (deep nesting,
//! extreme timestamps) and names as the user meant them (IDNA, HTTP, proxies, two SNIs, QUIC).

use crate::common;
use crate::common::cli::bin;
use crate::common::files::{root, scratch};
use crate::common::frames::flows_capture;
use crate::common::policy::bundled;
use crate::common::sensor::{feed_at, small_stack, T0};
use crate::common::synth;

use etherparse::{IpNumber, Ipv4Header, Ipv6Header, PacketBuilder, UdpHeader};
use shadowgate::flow::{Config, Flag, Kind, Observation, Sensor};
use shadowgate::policy::Action;

const C: [u8; 4] = [10, 9, 0, 5];
const S: [u8; 4] = [160, 79, 104, 10];

/// `frames` of `linktype` through a fresh sensor (see `common::sensor::feed`): what it observed,
/// and the sensor.
fn feed(linktype: u32, frames: &[Vec<u8>]) -> (Vec<Observation>, Sensor) {
    let mut s = Sensor::new(Config::default());
    (common::sensor::feed(&mut s, linktype, frames), s)
}

// ---- nesting -------------------------------------------------------------------------------

/// An IPv4 + UDP DNS query for `name`, raw IP.
fn dns_packet(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(C, [10, 0, 0, 53], 64)
        .udp(40000, 53)
        .write(&mut v, &synth::dns(7, name, None))
        .unwrap();
    v
}

fn ip4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), C, S).unwrap();
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

fn udp4(dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = UdpHeader {
        source_port: 1234,
        destination_port: dport,
        length: (8 + payload.len()) as u16,
        checksum: 0,
    };
    let mut d = u.to_bytes().to_vec();
    d.extend_from_slice(payload);
    ip4(17, &d)
}

fn udp6(dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = UdpHeader {
        source_port: 1234,
        destination_port: dport,
        length: (8 + payload.len()) as u16,
        checksum: 0,
    };
    let h = Ipv6Header {
        payload_length: (8 + payload.len()) as u16,
        next_header: IpNumber(17),
        hop_limit: 64,
        source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ..Default::default()
    };
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(&u.to_bytes());
    v.extend_from_slice(payload);
    v
}

fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    v.extend_from_slice(&ether_type.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `layers` tunnels of one kind around a DNS query (raw IP frames; Teredo is IPv6 inside).
fn nest(kind: &str, layers: usize) -> Vec<u8> {
    let mut p = if kind == "teredo" {
        let mut v = Vec::new();
        PacketBuilder::ipv6([0x20; 16], [0x21; 16], 64)
            .udp(40000, 53)
            .write(&mut v, &synth::dns(7, "claude.ai", None))
            .unwrap();
        v
    } else {
        dns_packet("claude.ai")
    };
    for _ in 0..layers {
        p = match kind {
            "ipip" => ip4(4, &p),
            "gre" => ip4(47, &[&[0, 0, 0x08, 0x00][..], &p].concat()),
            "gre-eth" => ip4(47, &[&[0, 0, 0x65, 0x58][..], &eth(0x0800, &p)].concat()),
            "vxlan" => udp4(
                4789,
                &[&[8, 0, 0, 0, 0, 0, 1, 0][..], &eth(0x0800, &p)].concat(),
            ),
            "teredo" => udp6(3544, &p),
            "gtpu" => {
                let mut g = vec![0x30, 0xff];
                g.extend_from_slice(&(p.len() as u16).to_be_bytes());
                g.extend_from_slice(&[0, 0, 0, 1]);
                udp4(2152, &[g, p].concat())
            }
            _ => unreachable!(),
        };
    }
    p
}

/// Ethernet, then `layers` times MPLS (one label) + pseudowire control word + Ethernet, then IP.
fn mpls_pw_nest(layers: usize, ip: &[u8]) -> Vec<u8> {
    let mut p = eth(0x0800, ip);
    for _ in 0..layers {
        let mut m = vec![0, 1, 1, 64, 0, 0, 0, 0]; // label 16, bottom of stack; control word
        m.extend_from_slice(&p);
        p = eth(0x8847, &m);
    }
    p
}

#[test]
fn a_240_kb_nest_of_ethernet_mpls_pseudowire_is_counted_not_fatal() {
    let (obs, too_deep, len) = small_stack(|| {
        let ip = dns_packet("claude.ai");
        let frame = mpls_pw_nest(240_000 / 22, &ip);
        let (obs, s) = feed(1, std::slice::from_ref(&frame));
        (obs.len(), s.stats().malformed.too_deep, frame.len())
    });
    assert!((230_000..262_144).contains(&len), "{len}");
    assert_eq!((obs, too_deep), (0, 1));
    // Real depths still decode: three MPLS/pseudowire layers.
    let (obs, s) = feed(1, &[mpls_pw_nest(3, &dns_packet("claude.ai"))]);
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].name.as_deref(), Some("claude.ai"));
    assert_eq!(s.stats().malformed.too_deep, 0);
}

#[test]
fn mpls_label_stack_is_bounded() {
    let stack = |labels: usize| {
        let mut m = Vec::new();
        for i in 0..labels {
            m.extend_from_slice(&[0, 1, (i + 1 == labels) as u8, 64]);
        }
        m.extend_from_slice(&dns_packet("claude.ai"));
        eth(0x8847, &m)
    };
    let (obs, s) = feed(1, &[stack(16)]);
    assert_eq!((obs.len(), s.stats().malformed.too_deep), (1, 0));
    let (obs, s) = feed(1, &[stack(17), stack(10_000)]);
    assert_eq!((obs.len(), s.stats().malformed.too_deep), (0, 2));
}

#[test]
fn every_tunnel_kind_shares_one_depth_budget() {
    for kind in ["ipip", "gre", "gre-eth", "vxlan", "teredo", "gtpu"] {
        let (shallow, deep) = small_stack(move || {
            let (ok, _) = feed(101, &[nest(kind, 3)]);
            let (_, s) = feed(101, &[nest(kind, 40)]);
            (ok, s.stats().malformed.too_deep)
        });
        assert_eq!(shallow.len(), 1, "{kind}");
        assert_eq!(shallow[0].name.as_deref(), Some("claude.ai"), "{kind}");
        assert!(shallow[0].flags.contains(&Flag::Tunneled), "{kind}");
        assert_eq!(deep, 1, "{kind}");
    }
    // Eight encapsulations in all, whichever kinds: 8 decode, 9 do not.
    let (ok, _) = feed(101, &[nest("gre", 8)]);
    assert_eq!(ok.len(), 1);
    let (none, s) = feed(101, &[nest("gre", 9)]);
    assert_eq!((none.len(), s.stats().malformed.too_deep), (0, 1));
    // Mixed: VXLAN around MPLS/pseudowire nests counts both.
    let inner = mpls_pw_nest(4, &dns_packet("claude.ai")); // 8 steps
    let mixed = udp4(4789, &[&[8, 0, 0, 0, 0, 0, 1, 0][..], &inner].concat());
    let (none, s) = feed(101, &[mixed]);
    assert_eq!((none.len(), s.stats().malformed.too_deep), (0, 1));
}

// ---- timestamps ----------------------------------------------------------------------------

fn hello_flow(sp: u16, sni: &str) -> Vec<Vec<u8>> {
    vec![
        synth::tcp(C, S, sp, 443, 999, 0, "S", &[]),
        synth::tcp(C, S, sp, 443, 1000, 1, "PA", &synth::client_hello(sni, 300)),
    ]
}

#[test]
fn timestamps_near_u64_max_saturate_and_ageing_goes_on() {
    let mut s = Sensor::new(Config::default());
    let mut frames = Vec::new();
    for (i, f) in hello_flow(50000, "claude.ai").into_iter().enumerate() {
        frames.push((u64::MAX - 1 + i as u64, f));
    }
    // Many frames at the very end of time: one sweep there, not one per frame.
    for _ in 0..1000 {
        frames.push((u64::MAX, synth::tcp(C, S, 50000, 443, 1, 1, "A", &[])));
    }
    // Back to normal time: a flow, then one 400 s later (past the 300 s TCP idle time).
    for f in hello_flow(50001, "chatgpt.com") {
        frames.push((T0, f));
    }
    for f in hello_flow(50002, "gemini.google.com") {
        frames.push((T0 + 400_000_000_000, f));
    }
    let obs = feed_at(&mut s, 1, &frames);
    let names: Vec<_> = obs.iter().filter_map(|o| o.name.as_deref()).collect();
    assert_eq!(names, ["claude.ai", "chatgpt.com", "gemini.google.com"]);
    let st = s.stats();
    // The normal-time flow aged out although a far-future flow was seen before it.
    assert_eq!(st.flows.created, 3);
    assert_eq!(st.flows.expired, 1);
    assert_eq!(st.flows.active, 2);
}

#[test]
fn fragments_at_the_end_of_time_are_flushed_at_finish() {
    let mut s = Sensor::new(Config::default());
    let mut v = Vec::new();
    PacketBuilder::ipv4(C, [10, 0, 0, 53], 64)
        .udp(40000, 53)
        .write(&mut v, &synth::dns(9, "claude.ai", None))
        .unwrap();
    // First fragment only (more-fragments set): decoded as partial at finish.
    let mut h = Ipv4Header::from_slice(&v).unwrap().0;
    h.more_fragments = true;
    let payload = &v[20..];
    let mut frag = Vec::new();
    h.total_len = (20 + 16) as u16;
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut frag).unwrap();
    frag.extend_from_slice(&payload[..16]);
    let obs = feed_at(&mut s, 101, &[(u64::MAX, frag)]);
    assert_eq!(s.stats().fragments.expired, 1);
    assert!(obs.iter().all(|o| o.flags.contains(&Flag::Partial)));
}

// ---- deterministic output across processes -------------------------------------------------

#[test]
fn replay_output_is_the_same_in_two_processes() {
    let dir = scratch("sg-harden");
    let pcap = dir.join("many.pcap");
    flows_capture(&pcap, 400, 2);
    let run = || {
        let out = bin()
            .args(["replay", "--policy", "policies", "--stats"])
            .arg(&pcap)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success());
        (out.stdout, out.stderr)
    };
    let (a, b) = (run(), run());
    assert!(a.0.len() > 10_000);
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- names ---------------------------------------------------------------------------------

/// The client's stream in TCP segments (SYN first), plus optional server bytes after the first.
fn stream(parts: &[&[u8]], server_after_first: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut f = vec![
        synth::tcp(C, S, 51000, 8080, 999, 0, "S", &[]),
        synth::tcp(S, C, 8080, 51000, 5000, 1000, "SA", &[]),
    ];
    let mut seq = 1000u32;
    for (i, p) in parts.iter().enumerate() {
        f.push(synth::tcp(C, S, 51000, 8080, seq, 5001, "PA", p));
        seq += p.len() as u32;
        if i == 0 {
            if let Some(r) = server_after_first {
                f.push(synth::tcp(S, C, 8080, 51000, 5001, seq, "PA", r));
            }
        }
    }
    f
}

fn one(obs: &[Observation], kind: Kind) -> &Observation {
    let v: Vec<_> = obs.iter().filter(|o| o.kind == kind).collect();
    assert_eq!(v.len(), 1, "{obs:#?}");
    v[0]
}

#[test]
fn full_width_sni_is_matched_as_its_a_label() {
    let (obs, _) = feed(1, &hello_flow(50000, "ｃｌａｕｄｅ.ai"));
    let o = one(&obs, Kind::TlsClientHello);
    assert_eq!(o.name.as_deref(), Some("claude.ai"));
    assert!(o.flags.contains(&Flag::Anomaly));
    let d = bundled().decide_observation(o).unwrap();
    assert_eq!(d.service.as_deref(), Some("claude"));
    // A U-label in an HTTP Host header becomes its punycode A-label.
    let req = "GET / HTTP/1.1\r\nHost: bücher.example\r\n\r\n";
    let (obs, _) = feed(1, &stream(&[req.as_bytes()], None));
    let o = one(&obs, Kind::HttpRequest);
    assert_eq!(o.name.as_deref(), Some("xn--bcher-kva.example"));
    // A plain ASCII SNI is no anomaly (invalid UTF-8 stays escaped: see decode::wire_name).
    let (obs, _) = feed(1, &hello_flow(50000, "claude.ai"));
    assert!(!one(&obs, Kind::TlsClientHello)
        .flags
        .contains(&Flag::Anomaly));
}

#[test]
fn absolute_form_target_wins_over_host() {
    let req = b"GET http://claude.ai/chat HTTP/1.1\r\nHost: www.example.org\r\n\r\n";
    let (obs, _) = feed(1, &stream(&[req], None));
    let o = one(&obs, Kind::HttpRequest);
    assert_eq!(o.name.as_deref(), Some("claude.ai"));
    assert_eq!(o.wire_names, ["www.example.org"]);
    assert!(o.flags.contains(&Flag::Anomaly));
    assert_eq!(
        o.http.as_ref().unwrap().host.as_deref(),
        Some("www.example.org")
    );
    let d = bundled().decide_observation(o).unwrap();
    assert_eq!(
        (d.action, d.matched_name.as_str()),
        (Action::Steer, "claude.ai")
    );
    // Absolute form to a forward proxy with the same Host is normal.
    let req = b"GET http://claude.ai/ HTTP/1.1\r\nHost: claude.ai\r\n\r\n";
    let (obs, _) = feed(1, &stream(&[req], None));
    let o = one(&obs, Kind::HttpRequest);
    assert!(o.wire_names.is_empty() && !o.flags.contains(&Flag::Anomaly));
}

#[test]
fn repeated_or_conflicting_host_headers_are_anomalies_and_the_strictest_wins() {
    let req = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nHost: claude.ai\r\n\r\n";
    let (obs, _) = feed(1, &stream(&[req], None));
    let o = one(&obs, Kind::HttpRequest);
    assert_eq!(o.name.as_deref(), Some("www.example.org"));
    assert_eq!(o.wire_names, ["claude.ai"]);
    assert!(o.flags.contains(&Flag::Anomaly));
    let d = bundled().decide_observation(o).unwrap();
    assert_eq!(
        (d.action, d.matched_name.as_str()),
        (Action::Steer, "claude.ai")
    );
    let req = b"GET / HTTP/1.1\r\nHost: claude.ai\r\nHost: claude.ai\r\n\r\n";
    let (obs, _) = feed(1, &stream(&[req], None));
    let o = one(&obs, Kind::HttpRequest);
    assert!(o.wire_names.is_empty() && o.flags.contains(&Flag::Anomaly));
}

#[test]
fn a_request_with_300_headers_still_gives_its_host() {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..300 {
        req.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    req.extend_from_slice(b"Host: chatgpt.com\r\n\r\n");
    let (obs, _) = feed(1, &stream(&[&req], None));
    assert_eq!(
        one(&obs, Kind::HttpRequest).name.as_deref(),
        Some("chatgpt.com")
    );
}

#[test]
fn connect_target_is_reported_and_the_tunnelled_hello_read() {
    let connect = b"CONNECT claude.ai:443 HTTP/1.1\r\nHost: claude.ai:443\r\n\r\n";
    let hello = synth::client_hello("claude.ai", 400);
    let frames = stream(
        &[connect, &hello],
        Some(b"HTTP/1.1 200 Connection established\r\n\r\n"),
    );
    let (obs, _) = feed(1, &frames);
    let p = one(&obs, Kind::ProxyConnect);
    assert_eq!(p.name.as_deref(), Some("claude.ai"));
    let info = p.proxy.as_ref().unwrap();
    assert_eq!((info.protocol, info.port), ("http", 443));
    assert_eq!(
        bundled().decide_observation(p).unwrap().via,
        shadowgate::policy::Via::Proxy
    );
    let h = one(&obs, Kind::TlsClientHello);
    assert_eq!(h.name.as_deref(), Some("claude.ai"));
    assert!(h.flags.contains(&Flag::Proxied));
    assert!(obs.iter().all(|o| o.kind != Kind::HttpRequest));
}

#[test]
fn a_segment_of_repeated_connects_is_one_proxy_level_in_a_small_stack() {
    // 2,500 CONNECTs in one 65 KB segment once recursed 2,500 frames deep (stack overflow in a
    // 2 MiB thread) and gave 2,500 decisions.
    let one_connect = b"CONNECT chatgpt.com:443 HTTP/1.1\r\n\r\n";
    let seg: Vec<u8> = one_connect.repeat(1700);
    let frames = stream(&[&seg], None);
    let obs = small_stack(move || feed(1, &frames).0);
    let proxies = obs.iter().filter(|o| o.kind == Kind::ProxyConnect).count();
    let requests = obs.iter().filter(|o| o.kind == Kind::HttpRequest).count();
    assert_eq!(proxies, 1, "{obs:#?}");
    assert!(requests <= 1, "{requests} requests");
}

#[test]
fn socks_destination_is_reported_even_if_nothing_follows() {
    let mut s5 = vec![5, 1, 0, 5, 1, 0, 3, 11];
    s5.extend_from_slice(b"chatgpt.com");
    s5.extend_from_slice(&443u16.to_be_bytes());
    let mut s4a = vec![4, 1, 1, 187, 0, 0, 0, 1];
    s4a.extend_from_slice(b"u\0claude.ai\0");
    for (bytes, proto, name) in [(s5, "socks5", "chatgpt.com"), (s4a, "socks4a", "claude.ai")] {
        let (obs, _) = feed(1, &stream(&[&bytes], None));
        let o = one(&obs, Kind::ProxyConnect);
        assert_eq!(o.name.as_deref(), Some(name));
        assert_eq!(o.proxy.as_ref().unwrap().protocol, proto);
        assert_eq!(obs.len(), 1);
    }
}

/// A ClientHello record whose server_name extension(s) carry `names` (one list per extension).
fn hello_with_snis(exts: &[&[&str]]) -> Vec<u8> {
    let mut all = Vec::new();
    for names in exts {
        let mut list = Vec::new();
        for n in *names {
            list.push(0);
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n.as_bytes());
        }
        let mut e = (list.len() as u16).to_be_bytes().to_vec();
        e.extend_from_slice(&list);
        all.extend_from_slice(&0u16.to_be_bytes());
        all.extend_from_slice(&(e.len() as u16).to_be_bytes());
        all.extend_from_slice(&e);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(all.len() as u16).to_be_bytes());
    body.extend_from_slice(&all);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn two_sni_host_names_are_both_decided() {
    for exts in [
        &[&["www.example.org", "claude.ai"][..]][..],
        &[&["www.example.org"][..], &["claude.ai"][..]][..],
    ] {
        let frames = vec![
            synth::tcp(C, S, 50000, 443, 999, 0, "S", &[]),
            synth::tcp(C, S, 50000, 443, 1000, 1, "PA", &hello_with_snis(exts)),
        ];
        let (obs, _) = feed(1, &frames);
        let o = one(&obs, Kind::TlsClientHello);
        assert_eq!(o.name.as_deref(), Some("www.example.org"));
        assert_eq!(o.wire_names, ["claude.ai"]);
        assert!(o.flags.contains(&Flag::Anomaly));
        let d = bundled().decide_observation(o).unwrap();
        assert_eq!(
            (d.action, d.matched_name.as_str()),
            (Action::Steer, "claude.ai")
        );
        let json = serde_json::to_value(o).unwrap();
        assert_eq!(json["wire_names"][0], "claude.ai");
        assert!(json["flags"]
            .as_array()
            .unwrap()
            .contains(&"anomaly".into()));
    }
    // One name: no wire_names in the JSON, decision as before.
    let (obs, _) = feed(1, &hello_flow(50000, "claude.ai"));
    let json = serde_json::to_value(one(&obs, Kind::TlsClientHello)).unwrap();
    assert!(json.get("wire_names").is_none());
}

// ---- QUIC ----------------------------------------------------------------------------------

#[test]
fn quic_initial_with_greased_fixed_bit_is_decoded() {
    use shadowgate::decode::quic;
    let pkt = synth::quic_initial();
    let hdr = quic::parse_long_header(&pkt).unwrap();
    let keys = quic::InitialKeys::client(quic::V1, hdr.dcid).unwrap();
    let plain = keys.decrypt(&pkt, &hdr).unwrap();
    // RFC 9001 A.2 unprotected header (packet number 2 in 4 bytes), fixed bit cleared.
    let mut header = pkt[..hdr.pn_offset].to_vec();
    header[0] = 0xc3 & !0x40;
    header.extend_from_slice(&[0, 0, 0, 2]);
    let greased = keys.seal(&header, hdr.pn_offset, &plain).unwrap();
    assert_eq!(greased.len(), pkt.len());
    assert_eq!(greased[0] & 0xc0, 0x80);
    // Sealing the original header gives the RFC's packet back.
    header[0] = 0xc3;
    assert_eq!(keys.seal(&header, hdr.pn_offset, &plain).unwrap(), pkt);
    let (obs, s) = feed(1, &[synth::udp(C, S, 50000, 443, &greased)]);
    let o = one(&obs, Kind::QuicInitial);
    assert_eq!(o.name.as_deref(), Some("example.com"));
    assert_eq!(s.stats().quic.decrypted, 1);
}
