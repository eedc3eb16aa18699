//! Blind spots (issue 23, part 5): traffic the gateway cannot name, counted per device from a
//! replayed capture. Two devices use WireGuard, IKE, OpenVPN, an ECH hello with no DNS and
//! iCloud Private Relay; a third address is the clinic's own VPN endpoint (`[sensor]
//! known_tunnels`), whose handshakes are not counted; random UDP is no VPN.

use std::net::IpAddr;

use crate::common::events::{events, of_kind};
use crate::common::files::{policies, store_config, TempDir};
use crate::common::synth;

const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb2];
const A: [u8; 4] = [10, 20, 0, 11];
const B: [u8; 4] = [10, 20, 0, 12];
/// The clinic's own VPN concentrator.
const OWN_VPN: [u8; 4] = [203, 0, 113, 10];
/// A minute boundary (Unix seconds), so minutes of capture time are easy to count.
const T0: u64 = 1_700_000_040;

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// A UDP datagram from `(mac, src)` to `dst` at `t_ms` milliseconds after [`T0`].
fn udp(
    t_ms: u64,
    mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    p: &[u8],
) -> (u64, Vec<u8>) {
    (
        T0 * 1_000_000 + t_ms * 1000,
        synth::eth_udp(mac, GW, ip(src), ip(dst), 64, ports, p),
    )
}

fn wg_initiation(seed: u8) -> Vec<u8> {
    let mut p = vec![1, 0, 0, 0, seed, 0x7f, 0x01, 0x9c];
    p.extend((0..140u32).map(|i| (i * 37 + seed as u32) as u8));
    p
}

fn ike_sa_init() -> Vec<u8> {
    let mut p = vec![0x8a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71];
    p.extend([0; 8]);
    p.extend([33, 0x20, 34, 0x08, 0, 0, 0, 0]);
    p.extend(264u32.to_be_bytes());
    p.extend([0xab; 236]);
    p
}

fn openvpn_reset() -> Vec<u8> {
    let mut p = vec![0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0];
    p.extend([0; 4]);
    p
}

/// A TLS ClientHello with outer SNI `cloudflare-ech.com` and an ECH extension (its padding
/// extension retyped as 0xfe0d), from `(mac, src)` to `dst`, with no DNS lookup before it.
fn ech_hello(t_ms: u64, mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> (u64, Vec<u8>) {
    let mut ch = synth::client_hello("cloudflare-ech.com", 400);
    let n = ch.len();
    let at = (0..n - 4)
        .rev()
        .find(|&i| {
            ch[i..i + 2] == [0, 21]
                && i + 4 + u16::from_be_bytes([ch[i + 2], ch[i + 3]]) as usize == n
        })
        .unwrap();
    ch[at..at + 2].copy_from_slice(&0xfe0du16.to_be_bytes());
    (
        T0 * 1_000_000 + t_ms * 1000,
        synth::eth_tcp(
            mac,
            GW,
            ip(src),
            ip(dst),
            64,
            (50_123, 443),
            (1, 1),
            "PA",
            &ch,
        ),
    )
}

fn capture(path: &std::path::Path) {
    let mut f = vec![
        // A: WireGuard (a handshake and its response: one flow), in minute 0...
        udp(
            0,
            MAC_A,
            A,
            [198, 51, 100, 20],
            (40_001, 51_820),
            &wg_initiation(1),
        ),
        // ... IKEv2 on 500 ...
        udp(
            100,
            MAC_A,
            A,
            [198, 51, 100, 21],
            (500, 500),
            &ike_sa_init(),
        ),
        // ... the clinic's own VPN (not counted) ...
        udp(200, MAC_A, A, OWN_VPN, (40_002, 51_820), &wg_initiation(2)),
        udp(300, MAC_A, A, OWN_VPN, (500, 500), &ike_sa_init()),
        // ... random UDP of a WireGuard initiation's size, and a game on 1194: no VPN.
        udp(
            400,
            MAC_A,
            A,
            [198, 51, 100, 99],
            (40_003, 4444),
            &[0x5a; 148],
        ),
        udp(
            500,
            MAC_A,
            A,
            [198, 51, 100, 98],
            (40_004, 1194),
            &[0x38; 64],
        ),
        // ... and WireGuard again two minutes later (a new flow: a new minute).
        udp(
            125_000,
            MAC_A,
            A,
            [198, 51, 100, 20],
            (40_005, 51_820),
            &wg_initiation(3),
        ),
        // B: OpenVPN, a real-ECH hello with no lookup, a lookup of iCloud Private Relay.
        udp(
            1_000,
            MAC_B,
            B,
            [192, 0, 2, 30],
            (50_001, 1_194),
            &openvpn_reset(),
        ),
        ech_hello(1_100, MAC_B, B, [104, 16, 0, 9]),
        udp(
            1_200,
            MAC_B,
            B,
            [10, 20, 0, 1],
            (50_002, 53),
            &synth::dns(7, "mask.icloud.com", None),
        ),
    ];
    // The WireGuard server's response (a handshake too, of the same flow).
    let mut resp = vec![2, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 1, 0x7f, 0x01, 0x9c];
    resp.extend([0x42; 80]);
    f.insert(
        1,
        udp(10, GW, [198, 51, 100, 20], A, (51_820, 40_001), &resp),
    );
    f.sort_by_key(|(t, _)| *t);
    synth::write_pcap_at(path, 65_535, &f).unwrap();
}

#[test]
fn blind_spots_are_counted_per_device_and_the_clinics_vpn_is_not() {
    let d = TempDir::new("blind", "replay");
    let pcap = d.0.join("blind.pcap");
    capture(&pcap);
    let cfg = store_config(&d.0, "shadowgate.toml", &policies(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[sensor]\n",
        "[sensor]\nknown_tunnels = [\"203.0.113.10\"]\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let out = crate::common::cli::bin()
        .args(["replay", "-q", "--stats", "--emit", "decisions", "--config"])
        .arg(&cfg)
        .arg(&pcap)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");

    // The sensor's counters: flows and hellos per kind; the clinic's VPN apart.
    let json = &err[err.find('{').unwrap()..];
    let stats: serde_json::Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let b = &stats["blind"];
    assert_eq!(b["wireguard"], 2, "{b}");
    assert_eq!(b["ike"], 1, "{b}");
    assert_eq!(b["openvpn"], 1, "{b}");
    assert_eq!(b["ech_no_dns"], 1, "{b}");
    assert_eq!(b["private_relay"], 1, "{b}");
    assert_eq!(b["known_tunnel"], 2, "{b}");

    // One `blind_spot` event per device, kind and minute, naming the device.
    let ev = events(&d.0);
    let blind = of_kind(&ev, "blind_spot");
    let mut got: Vec<(String, String, String, String)> = blind
        .iter()
        .map(|e| {
            let detail: serde_json::Value =
                serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
            (
                e.client_ip.clone(),
                e.client_mac.clone().unwrap_or_default(),
                detail["kind"].as_str().unwrap().to_string(),
                e.server_ip.clone(),
            )
        })
        .collect();
    got.sort();
    let s = |a: &str, m: &str, k: &str, srv: &str| {
        (a.to_string(), m.to_string(), k.to_string(), srv.to_string())
    };
    assert_eq!(
        got,
        [
            s("10.20.0.11", "02:00:00:00:00:a1", "ike", "198.51.100.21"),
            s(
                "10.20.0.11",
                "02:00:00:00:00:a1",
                "wireguard",
                "198.51.100.20"
            ),
            s(
                "10.20.0.11",
                "02:00:00:00:00:a1",
                "wireguard",
                "198.51.100.20"
            ),
            s(
                "10.20.0.12",
                "02:00:00:00:00:b2",
                "ech_no_dns",
                "104.16.0.9"
            ),
            s("10.20.0.12", "02:00:00:00:00:b2", "openvpn", "192.0.2.30"),
            s(
                "10.20.0.12",
                "02:00:00:00:00:b2",
                "private_relay",
                "10.20.0.1"
            ),
        ]
    );
    for e in &blind {
        assert_eq!(e.action, "info");
        assert_eq!(e.rule_id, "system.blind_spot");
        assert_ne!(
            e.server_ip, "203.0.113.10",
            "the clinic's own VPN is not a blind spot"
        );
    }
}

/// Real bytes: the bundled captures with IKE (arkime's synthetic capture: IKEv1 main mode and
/// IKEv2 IKE_SA_INIT on UDP 500, two flows) and real ECH (zeek's tls13-ech, no DNS before the
/// hellos) are counted; a capture of plain web traffic shows no blind spot.
#[test]
fn bundled_captures_with_ike_and_ech() {
    use crate::common::files::root;
    use crate::common::sensor::replay_capture;
    let blind = |f: &str| {
        replay_capture(&root().join("pcaps/public").join(f))
            .1
            .stats()
            .blind
    };
    let ike = blind("arkime/arkime-synthetic.pcap");
    assert_eq!((ike.ike, ike.wireguard, ike.openvpn), (2, 0, 0), "{ike:?}");
    let ech = blind("zeek/tls13-ech.pcap");
    assert_eq!((ech.ech_no_dns, ech.ike), (2, 0), "{ech:?}");
    assert!(blind("zeek/tls13-ech.pcap").known_tunnel == 0);
    let plain = replay_capture(&root().join("pcaps/generated/curl-dig.pcap"))
        .1
        .stats()
        .blind;
    assert!(plain.is_zero(), "{plain:?}");
}
