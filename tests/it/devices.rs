//! Device attribution: leases files of dnsmasq, ISC dhcpd and Kea (active, expired, malformed),
//! DHCP on the wire through the sensor, the refresh thread, and the kernel neighbour table.

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shadowgate::devices::config::DevicesConf;
use shadowgate::devices::{
    learn_from_observation, leases::parse_leases, load_leases, neighbour, refresh_neighbours,
    spawn_refresh, spawn_refresh_metered, Device, DeviceMetrics, Devices, LeaseFormat, LeaseStats,
    NeighbourSource,
};

use crate::common::files::tmpdir;
use crate::common::frames::{dhcp, SYNTH_CLIENT_MAC};
use crate::common::netns::in_ns;
use crate::common::synth;
use crate::common::tools::ip as ipcmd;
use crate::common::wait::until;

/// 2026-11-18 12:00 UTC: the "now" of the sample files below.
const NOW: i64 = 1_795_003_200;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const DNSMASQ: &str = "\
1795118400 3c:22:fb:1a:2b:3c 10.20.0.23 Reception-PC 01:3c:22:fb:1a:2b:3c
1795090000 a4:83:e7:00:11:22 10.20.0.24 * 01:a4:83:e7:00:11:22
1794900000 f0:18:98:aa:bb:cc 10.20.0.25 old-ipad 01:f0:18:98:aa:bb:cc
0 00:1b:21:aa:00:01 10.20.0.2 printer-lobby *
this is not a lease
1795118400 zz:zz:zz:zz:zz:zz 10.20.0.26 bad-mac *
1795118400 3c:22:fb:1a:2b:3d 10.20.0.300 bad-ip *
duid 00:01:00:01:2c:ab:cd:ef:3c:22:fb:1a:2b:3c
1795118400 1579098 fd00:20::23 reception-pc 00:01:00:01:2c:ab:cd:ef:3c:22:fb:1a:2b:3c
";

const ISC: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\001,\253\315\357RT\000\022\0244";

failover peer "clinic-failover" state {
  my state normal at 3 2026/11/18 08:00:01;
  partner state normal at 3 2026/11/18 08:00:02;
}

lease 10.20.0.30 {
  starts 3 2026/11/18 09:00:00;
  ends 3 2026/11/18 21:00:00;
  cltt 3 2026/11/18 09:00:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 3c:22:fb:00:00:30;
  uid "\001<\"\373\000\0000";
  set vendor-class-identifier = "MSFT 5.0";
  client-hostname "Nurse-Laptop";
}
lease 10.20.0.31 {
  starts 2 2026/11/17 08:00:00;
  ends 2 2026/11/17 20:00:00;
  tstp 2 2026/11/17 20:00:00;
  cltt 2 2026/11/17 08:00:00;
  binding state free;
  hardware ethernet 3c:22:fb:00:00:31;
  client-hostname "gone-tablet";
}
lease 10.20.0.32 {
  starts 3 2026/11/18 10:00:00;
  ends never;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:32;
  client-hostname "xray-workstation";
  on expiry { set ddns-fwd-name = "x"; }
}
lease 10.20.0.33 {
  starts 3 2026/11/18 06:00:00;
  ends epoch 1795010400; # Wed Nov 18 14:00:00 2026
  binding state active;
  hardware ethernet 3c:22:fb:00:00:33;
}
lease 10.20.0.34 {
  starts 3 2026/11/18 01:00:00;
  ends 3 2026/11/18 05:00:00;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:34;
  client-hostname "stale-but-active-state";
}
lease 10.20.0.999 {
  binding state active;
  hardware ethernet 3c:22:fb:00:00:35;
}
lease 10.20.0.36 {
  binding state active;
  hardware ethernet 3c:22:fb:00:00;
}
lease 10.20.0.30 {
  starts 3 2026/11/18 11:00:00;
  ends 3 2026/11/18 23:00:00;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:30;
  client-hostname "nurse-laptop-2";
}
lease 10.20.0.37 {
  starts 3 2026/11/18 11:00:00;
  binding state active;
"#;

const KEA: &str = "\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id
10.20.0.40,3c:22:fb:00:00:40,01:3c:22:fb:00:00:40,4000,1795006800,1,1,1,nurse-station-1.clinic.example.,0,,0
10.20.0.41,3c:22:fb:00:00:41,,4000,1794990000,1,0,0,old-laptop,0,,0
10.20.0.42,3c:22:fb:00:00:42,,4000,1795006800,1,0,0,declined-device,1,,0
10.20.0.43,3c:22:fb:00:00:43,,4000,1795006800,1,0,0,dr-smith&#x2cmacbook,0,{ \"comment\": \"x\" },0
10.20.0.44,3c:22:fb:00:00:44,,4000,1795006800,1,0,0,released-later,0,,0
10.20.0.45,,,4000,1795006800,1,0,0,no-mac,0,,0
10.20.0.x,nonsense
10.20.0.46,3c:22:fb:00:00,,4000,1795006800,1,0,0,short-mac,0,,0
10.20.0.44,3c:22:fb:00:00:44,,0,1795003100,1,0,0,released-later,0,,0
";

#[test]
fn dnsmasq_leases() {
    let (l, s) = parse_leases(DNSMASQ, NOW).unwrap();
    assert_eq!(
        s,
        LeaseStats {
            format: LeaseFormat::Dnsmasq,
            active: 4,
            expired: 1,
            malformed: 3,
            over_limit: 0,
        }
    );
    let d = Devices::new();
    for e in &l {
        d.learn(e.ip, e.mac, e.hostname.as_deref());
    }
    assert_eq!(
        d.lookup(ip("10.20.0.23")),
        Some(Device {
            mac: Some([0x3c, 0x22, 0xfb, 0x1a, 0x2b, 0x3c]),
            hostname: Some("reception-pc".into())
        })
    );
    assert_eq!(d.lookup(ip("10.20.0.24")).unwrap().hostname, None);
    assert_eq!(
        d.lookup(ip("10.20.0.2")).unwrap().hostname.as_deref(),
        Some("printer-lobby")
    );
    assert_eq!(d.lookup(ip("10.20.0.25")), None);
    assert_eq!(
        d.lookup(ip("fd00:20::23")),
        Some(Device {
            mac: None,
            hostname: Some("reception-pc".into())
        })
    );
}

#[test]
fn isc_dhcpd_leases() {
    let (l, s) = parse_leases(ISC, NOW).unwrap();
    assert_eq!(
        s,
        LeaseStats {
            format: LeaseFormat::IscDhcpd,
            active: 3,    // .30 (its latest block), .32 (never ends), .33 (epoch, 14:00)
            expired: 2,   // .31 free, .34 ended at 05:00
            malformed: 3, // .999, a five-octet MAC, the block cut off at the end
            over_limit: 0,
        }
    );
    let by: Vec<(String, Option<String>)> = l
        .iter()
        .map(|e| (e.ip.to_string(), e.hostname.clone()))
        .collect();
    assert_eq!(
        by,
        [
            ("10.20.0.30".into(), Some("nurse-laptop-2".into())),
            ("10.20.0.32".into(), Some("xray-workstation".into())),
            ("10.20.0.33".into(), None),
        ]
    );
    assert_eq!(l[0].mac, Some([0x3c, 0x22, 0xfb, 0, 0, 0x30]));
    // At 15:00 the epoch lease has ended too.
    let (_, s) = parse_leases(ISC, NOW + 3 * 3600).unwrap();
    assert_eq!((s.active, s.expired), (2, 3));
}

#[test]
fn kea_memfile_leases() {
    let (l, s) = parse_leases(KEA, NOW).unwrap();
    assert_eq!(
        s,
        LeaseStats {
            format: LeaseFormat::Kea,
            active: 3,  // .40, .43, .45
            expired: 3, // .41 expired, .42 declined, .44 released (valid_lifetime 0 later)
            malformed: 2,
            over_limit: 0,
        }
    );
    let d = Devices::new();
    for e in &l {
        d.learn(e.ip, e.mac, e.hostname.as_deref());
    }
    assert_eq!(
        d.lookup(ip("10.20.0.40")).unwrap().hostname.as_deref(),
        Some("nurse-station-1.clinic.example")
    );
    assert_eq!(
        d.lookup(ip("10.20.0.43")).unwrap().hostname.as_deref(),
        Some("dr-smith,macbook")
    );
    assert_eq!(
        d.lookup(ip("10.20.0.45")),
        Some(Device {
            mac: None,
            hostname: Some("no-mac".into())
        })
    );
    assert_eq!(d.lookup(ip("10.20.0.44")), None);
}

#[test]
fn load_leases_from_files() {
    let dir = tmpdir("devices", "load");
    let d = Devices::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let p = dir.join("dnsmasq.leases");
    std::fs::write(
        &p,
        format!(
            "{} 02:aa:00:00:00:01 10.9.0.5 front-desk *\n{} 02:aa:00:00:00:02 10.9.0.6 old *\n",
            now + 3600,
            now - 3600
        ),
    )
    .unwrap();
    let s = load_leases(&p, &d).unwrap();
    assert_eq!(
        (s.format, s.active, s.expired),
        (LeaseFormat::Dnsmasq, 1, 1)
    );
    assert_eq!(
        d.lookup(ip("10.9.0.5")).unwrap().hostname.as_deref(),
        Some("front-desk")
    );

    let e = load_leases(&dir.join("missing.leases"), &d).unwrap_err();
    assert!(
        e.contains("missing.leases") && e.contains("leases_file"),
        "{e}"
    );

    let junk = dir.join("junk");
    std::fs::write(&junk, b"\xff\xfe binary \x00 garbage\n").unwrap();
    let e = load_leases(&junk, &d).unwrap_err();
    assert!(e.contains("not recognised"), "{e}");

    // Over 64 MiB: refused before reading (a sparse file costs no disk).
    let big = dir.join("big.leases");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(65 << 20).unwrap();
    let e = load_leases(&big, &d).unwrap_err();
    assert!(e.contains("64 MiB"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DHCP request with a host name, the server's ACK, then a TLS hello from that client: the
/// sensor's observation carries the MAC and host name, and the device table learns them.
#[test]
fn learns_from_observations() {
    let mac = SYNTH_CLIENT_MAC;
    let frames = [
        dhcp(mac, Some("Exam-Room-2"), None),
        dhcp(mac, None, Some([10, 20, 9, 9])),
        synth::tcp(
            [10, 20, 9, 9],
            [160, 79, 104, 10],
            50000,
            443,
            1,
            0,
            "PA",
            &synth::client_hello("claude.ai", 600),
        ),
    ];
    let mut sensor = shadowgate::flow::Sensor::new(Default::default());
    let out = crate::common::sensor::feed(&mut sensor, 1, &frames);
    assert_eq!(out.len(), 1, "{out:?}");
    let d = Devices::new();
    learn_from_observation(&d, &out[0]);
    assert_eq!(
        d.lookup(ip("10.20.9.9")),
        Some(Device {
            mac: Some(mac),
            hostname: Some("exam-room-2".into())
        })
    );
    // The same DHCP message straight from the decoder.
    let lease = shadowgate::decode::dhcp::Lease {
        mac: [2, 0, 0, 0, 0, 2],
        hostname: Some("lab-pc".into()),
        ip: None,
    };
    shadowgate::devices::learn_from_dhcp(&d, &lease);
    assert_eq!(
        d.hostname_of_mac([2, 0, 0, 0, 0, 2]).as_deref(),
        Some("lab-pc")
    );
}

#[test]
fn refresh_thread_rereads_the_leases_file_and_stops() {
    let dir = tmpdir("devices", "refresh");
    let p = dir.join("kea-leases4.csv");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let head = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n";
    std::fs::write(
        &p,
        format!(
            "{head}10.7.0.5,02:bb:00:00:00:05,,3600,{},1,0,0,pharmacy,0,\n",
            now + 3600
        ),
    )
    .unwrap();
    let devices = Arc::new(Devices::new());
    let conf = DevicesConf {
        leases_file: Some(p.clone()),
        refresh_s: 1,
        neighbours: false,
        forget_after_s: 3600,
    };
    let registry = prometheus::Registry::new();
    let metrics = DeviceMetrics::register(&registry).unwrap();
    let r = spawn_refresh_metered(conf, devices.clone(), Some(metrics));
    let wait = |ipaddr: &str| {
        assert!(
            until(Duration::from_secs(10), Duration::from_millis(20), || {
                devices.lookup(ip(ipaddr)).is_some()
            }),
            "{ipaddr} not learnt"
        );
    };
    wait("10.7.0.5");
    std::fs::write(
        &p,
        format!(
            "{head}10.7.0.6,02:bb:00:00:00:06,,3600,{},1,0,0,lab,0,\n",
            now + 3600
        ),
    )
    .unwrap();
    wait("10.7.0.6");
    assert!(!r.failing.load(std::sync::atomic::Ordering::Relaxed));
    let t = Instant::now();
    r.stop();
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    for line in [
        "shadowgate_devices_known 2",
        "shadowgate_devices_leases{state=\"active\"} 1",
        "shadowgate_devices_leases{state=\"malformed\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("shadowgate_devices_refreshes_total{result=\"ok\",source=\"leases\"}"),
        "{text}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop waited a whole period"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace with a veth pair, removed on drop (even when the test fails).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Root: a neighbour entry added with `ip neigh add` in a namespace of our own is seen by
/// refresh_neighbours (netlink) and by the /proc/net/arp fallback.
#[test]
fn neighbour_table_in_a_namespace() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs `ip` (iproute2)");
        return;
    }
    let ns = Netns(format!("sgdev-{}", std::process::id() % 100_000));
    let _ = Command::new("ip")
        .args(["netns", "del", &ns.0])
        .stderr(std::process::Stdio::null())
        .status();
    ipcmd(&["netns", "add", &ns.0]);
    let n = ns.0.as_str();
    ipcmd(&[
        "-n", n, "link", "add", "sgdev-a", "type", "veth", "peer", "name", "sgdev-b",
    ]);
    ipcmd(&["-n", n, "link", "set", "sgdev-a", "up"]);
    ipcmd(&["-n", n, "link", "set", "sgdev-b", "up"]);
    ipcmd(&["-n", n, "addr", "add", "10.99.0.1/24", "dev", "sgdev-a"]);
    ipcmd(&[
        "-n",
        n,
        "addr",
        "add",
        "fd99::1/64",
        "dev",
        "sgdev-a",
        "nodad",
    ]);
    ipcmd(&[
        "-n",
        n,
        "neigh",
        "add",
        "10.99.0.7",
        "lladdr",
        "02:5a:00:00:00:07",
        "dev",
        "sgdev-a",
    ]);
    ipcmd(&[
        "-n",
        n,
        "neigh",
        "add",
        "fd99::7",
        "lladdr",
        "02:5a:00:00:00:07",
        "dev",
        "sgdev-a",
    ]);
    ipcmd(&[
        "-n",
        n,
        "neigh",
        "add",
        "10.99.0.8",
        "lladdr",
        "02:5a:00:00:00:08",
        "dev",
        "sgdev-a",
        "nud",
        "stale",
    ]);

    let res = in_ns(n, move || {
        let d = Devices::new();
        d.learn(ip("10.99.0.7"), None, Some("exam-room-3"));
        let st = refresh_neighbours(&d).unwrap();
        let arp = neighbour::proc_arp().unwrap();
        let via_thread = Arc::new(Devices::new());
        let r = spawn_refresh(
            DevicesConf {
                leases_file: None,
                refresh_s: 60,
                neighbours: true,
                forget_after_s: 3600,
            },
            via_thread.clone(),
        );
        // Waited for, not asserted: the lookup below says what the thread saw.
        until(Duration::from_secs(5), Duration::from_millis(10), || {
            via_thread.lookup(ip("10.99.0.7")).is_some()
        });
        r.stop();
        (d, st, arp, via_thread.lookup(ip("fd99::7")))
    })
    .join()
    .unwrap();
    let (d, st, arp, thread_saw) = res;
    assert_eq!(st.source, NeighbourSource::Netlink);
    assert!(st.learnt >= 3, "{st:?}");
    let mac7 = Some([2, 0x5a, 0, 0, 0, 7]);
    assert_eq!(
        d.lookup(ip("10.99.0.7")),
        Some(Device {
            mac: mac7,
            hostname: Some("exam-room-3".into())
        })
    );
    assert_eq!(
        d.lookup(ip("10.99.0.8")).unwrap().mac,
        Some([2, 0x5a, 0, 0, 0, 8])
    );
    // The IPv6 neighbour is named by the MAC's host name.
    assert_eq!(
        d.lookup(ip("fd99::7")),
        Some(Device {
            mac: mac7,
            hostname: Some("exam-room-3".into())
        })
    );
    assert_eq!(thread_saw.unwrap().mac, mac7);
    // The fallback sees the IPv4 entries of the same namespace, not the host's.
    let mut arp_ips: Vec<String> = arp.0.iter().map(|n| n.ip.to_string()).collect();
    arp_ips.sort();
    assert_eq!(arp_ips, ["10.99.0.7", "10.99.0.8"]);
    // The host namespace does not have them.
    assert!(neighbour::dump()
        .unwrap()
        .0
        .iter()
        .all(|n| !n.ip.to_string().starts_with("10.99.0.")));
}
