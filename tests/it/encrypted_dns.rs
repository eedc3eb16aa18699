//! Encrypted DNS only to the clinic (issue 23, part 4): with the bundled policy, DNS over TLS
//! (TCP 853, no SNI), DNS over QUIC (UDP 853) and DNS over HTTPS (SNI `dns.google` on 443) from a
//! device outside IT are stopped (`block`, SG-410), IT's get an alert (SG-400), and a connection
//! to the resolver the configuration names as its `[dns] upstreams` is allowed (rule `upstream`).
//! Through `shadowgate replay` (the daemon's decision path over a capture) and `policy explain`.

use std::path::Path;

use serde_json::Value;

use crate::common::cli::run;
use crate::common::files::{policies, TempDir};
use crate::common::synth;

const OUTSIDE_IT: [u8; 4] = [10, 20, 1, 2];
const IT: [u8; 4] = [10, 99, 0, 5];
/// The configuration's upstream (`[dns] upstreams = ["9.9.9.9:53"]`).
const UPSTREAM: [u8; 4] = [9, 9, 9, 9];

/// A TLS 1.3 ClientHello record with no server_name extension (what many DoT clients send to an
/// address they were configured with).
fn hello_without_sni() -> Vec<u8> {
    let mut exts: Vec<u8> = Vec::new();
    let mut push = |t: u16, d: &[u8]| {
        exts.extend_from_slice(&t.to_be_bytes());
        exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
        exts.extend_from_slice(d);
    };
    push(16, &[0, 4, 3, b'd', b'o', b't']);
    push(43, &[4, 3, 4, 3, 3]);
    push(10, &[0, 6, 0x11, 0xec, 0, 0x1d, 0, 0x17]);
    synth::hello_record(&exts)
}

/// A TCP connection from `client`:`sport` to `server`:`port` (handshake, then `hello`).
fn tcp_hello(
    client: [u8; 4],
    server: [u8; 4],
    sport: u16,
    port: u16,
    hello: &[u8],
) -> Vec<Vec<u8>> {
    vec![
        synth::tcp(client, server, sport, port, 0, 0, "S", &[]),
        synth::tcp(server, client, port, sport, 5000, 1, "SA", &[]),
        synth::tcp(client, server, sport, port, 1, 5001, "A", &[]),
        synth::tcp(client, server, sport, port, 1, 5001, "PA", hello),
    ]
}

/// A QUIC v1 Initial datagram to UDP 853 carrying `hello` (a TLS record: its handshake message
/// goes in the CRYPTO frame).
fn doq(client: [u8; 4], server: [u8; 4], sport: u16, hello: &[u8]) -> Vec<u8> {
    let hs = &hello[5..];
    let mut frames = vec![0x06, 0x00];
    frames.extend(synth::quic_varint(hs.len() as u64, 2));
    frames.extend_from_slice(hs);
    let dcid = [0x85, 0x30, sport as u8, 4, 5, 6, 7, 8];
    let initial = synth::quic_v1_initial(&dcid, &[9; 8], &[], 0, &frames, 1200, true);
    synth::udp(client, server, sport, 853, &initial)
}

/// DoT to 1.1.1.1 (no SNI), DoQ to an address no catalogue entry lists (no SNI: port 853 alone),
/// DoH to 8.8.8.8 (SNI dns.google), from `client`; ports from `sport` up.
fn bypasses(client: [u8; 4], sport: u16, out: &mut Vec<Vec<u8>>) {
    out.extend(tcp_hello(
        client,
        [1, 1, 1, 1],
        sport,
        853,
        &hello_without_sni(),
    ));
    out.push(doq(
        client,
        [203, 0, 113, 53],
        sport + 1,
        &hello_without_sni(),
    ));
    out.extend(tcp_hello(
        client,
        [8, 8, 8, 8],
        sport + 2,
        443,
        &synth::client_hello("dns.google", 600),
    ));
}

/// Replay `frames` with the bundled policy and a configuration whose `[dns] upstreams` is
/// 9.9.9.9:53: the decisions, by (client, server, server port).
fn decide(dir: &Path, frames: &[Vec<u8>]) -> Vec<Value> {
    let pcap = dir.join("encrypted-dns.pcap");
    synth::write_pcap(&pcap, frames).unwrap();
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nid = \"gw-edns\"\n[policy]\ndir = \"{}\"\n[dns]\nlisten = [\"10.0.0.1:53\"]\nupstreams = [\"9.9.9.9:53\"]\nclients = [\"10.0.0.0/8\"]\n",
            policies().display()
        ),
    )
    .unwrap();
    let o = run(&[
        "replay",
        "-q",
        "--emit",
        "decisions",
        "--config",
        cfg.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The decision of the one observation from `client` to `server`:`port`.
fn of<'a>(ds: &'a [Value], client: &str, server: &str, port: u64) -> &'a Value {
    let hits: Vec<&Value> = ds
        .iter()
        .filter(|d| {
            d["client"]["ip"] == client
                && d["server"]["ip"] == server
                && d["server"]["port"] == port
        })
        .collect();
    assert_eq!(hits.len(), 1, "{client} -> {server}:{port} in {ds:#?}");
    &hits[0]["decision"]
}

#[test]
fn dot_doq_and_doh_are_stopped_outside_it_alerted_for_it_and_the_upstream_is_allowed() {
    let dir = TempDir::new("edns", "replay");
    let mut frames = Vec::new();
    bypasses(OUTSIDE_IT, 40000, &mut frames);
    bypasses(IT, 41000, &mut frames);
    // The clinic's upstream, reached over DoT (no SNI) and DoH (its own name) from outside IT.
    frames.extend(tcp_hello(
        OUTSIDE_IT,
        UPSTREAM,
        42000,
        853,
        &hello_without_sni(),
    ));
    frames.extend(tcp_hello(
        OUTSIDE_IT,
        UPSTREAM,
        42001,
        443,
        &synth::client_hello("dns.quad9.net", 600),
    ));
    let ds = decide(&dir.0, &frames);

    for (client, action, rule) in [
        ("10.20.1.2", "block", "SG-410-encrypted-dns-stop"),
        ("10.99.0.5", "alert", "SG-400-dns-bypass"),
    ] {
        let dot = of(&ds, client, "1.1.1.1", 853);
        let doq = of(&ds, client, "203.0.113.53", 853);
        let doh = of(&ds, client, "8.8.8.8", 443);
        for d in [dot, doq, doh] {
            assert_eq!(
                (d["action"].as_str(), d["rule_id"].as_str()),
                (Some(action), Some(rule)),
                "{d}"
            );
            assert_eq!(d["category"], "dns_resolver", "{d}");
            assert_eq!(d["evidence"], "wire", "{d}");
        }
        // What matched: the address (DoT without SNI), the port (DoQ to an unlisted server), the
        // name (DoH: no matched_by).
        assert_eq!(
            (
                &dot["service"],
                &dot["matched_by"],
                &dot["matched_name"],
                &dot["pattern"],
                &dot["via"]
            ),
            (
                &"cloudflare-dns".into(),
                &"address".into(),
                &"1.1.1.1".into(),
                &"1.1.1.1".into(),
                &"tls".into()
            ),
            "{dot}"
        );
        assert_eq!(
            (
                &doq["service"],
                &doq["matched_by"],
                &doq["pattern"],
                &doq["via"]
            ),
            (
                &"encrypted-dns-port".into(),
                &"port".into(),
                &"port 853".into(),
                &"quic".into()
            ),
            "{doq}"
        );
        assert_eq!(
            (&doh["service"], &doh["matched_name"], doh.get("matched_by")),
            (&"google-dns".into(), &"dns.google".into(), None),
            "{doh}"
        );
    }
    // The upstream: allowed, and the decision says why.
    for port in [853, 443] {
        let d = of(&ds, "10.20.1.2", "9.9.9.9", port);
        assert_eq!(
            (&d["action"], &d["rule_id"], &d["matched_by"], &d["service"]),
            (
                &"allow".into(),
                &"upstream".into(),
                &"upstream".into(),
                &"quad9".into()
            ),
            "{d}"
        );
    }
}

#[test]
fn without_a_configuration_the_same_resolver_is_stopped() {
    // Replay without a configuration knows no upstream: 9.9.9.9 is only Quad9.
    let dir = TempDir::new("edns", "noconf");
    let pcap = dir.0.join("upstream.pcap");
    synth::write_pcap(
        &pcap,
        &tcp_hello(OUTSIDE_IT, UPSTREAM, 42000, 853, &hello_without_sni()),
    )
    .unwrap();
    let pol = policies();
    let o = run(&[
        "replay",
        "-q",
        "--emit",
        "decisions",
        "--policy",
        pol.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ds: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = of(&ds, "10.20.1.2", "9.9.9.9", 853);
    assert_eq!(
        (&d["action"], &d["matched_by"], &d["service"]),
        (&"block".into(), &"address".into(), &"quad9".into()),
        "{d}"
    );
}

#[test]
fn policy_explain_shows_addresses_ports_and_the_address_match() {
    let pol = policies();
    let p = pol.to_str().unwrap();
    let o = run(&[
        "policy",
        "explain",
        "dns.google",
        "--client",
        "10.20.1.2",
        "--dir",
        p,
    ]);
    let t = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "service:   google-dns",
        "addresses: 8.8.8.8 8.8.4.4",
        "rule:      SG-410-encrypted-dns-stop",
        "action:    block",
    ] {
        assert!(t.contains(needle), "{needle:?} in\n{t}");
    }
    let o = run(&[
        "policy",
        "explain",
        "1.1.1.1:853",
        "--client",
        "10.99.0.5",
        "--dir",
        p,
    ]);
    let t = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "server:    1.1.1.1 port 853",
        "service:   cloudflare-dns",
        "matched:   address 1.1.1.1",
        "skipped:   rule SG-410-encrypted-dns-stop would select this name, but client is in excepted group it-admin",
        "rule:      SG-400-dns-bypass",
        "action:    alert",
    ] {
        assert!(t.contains(needle), "{needle:?} in\n{t}");
    }
    let o = run(&["policy", "explain", "192.0.2.7:853", "--dir", p]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("service:   encrypted-dns-port"), "{t}");
    assert!(t.contains("matched:   port 853"), "{t}");
}

#[test]
fn the_bundled_resolver_list_is_long_and_starts_with_the_browsers_built_in_ones() {
    let p = crate::common::policy::bundled();
    let ids: Vec<&str> = p
        .services()
        .iter()
        .filter(|s| s.category == shadowgate::policy::Category::DnsResolver)
        .map(|s| s.id.as_str())
        .collect();
    let providers = ids
        .iter()
        .filter(|i| **i != "encrypted-dns-port" && **i != "mozilla-trr")
        .count();
    assert!(providers >= 30, "{providers}: {ids:?}");
    assert_eq!(
        &ids[..3],
        ["google-dns", "cloudflare-dns", "quad9"],
        "{ids:?}"
    );
    // Each listed address is one resolver's own: no prefix wider than a /24 or a /48.
    for s in p.services() {
        for a in &s.addresses {
            let max = if a.addr().is_ipv4() { 24 } else { 48 };
            assert!(a.prefix_len() >= max, "{}: {a}", s.id);
        }
    }
}
