//! Desync: the tricks of the public SNI-bypass tools (zapret's nfqws and tpws, GoodbyeDPI and
//! their forks), each built as a connection of its own, and what the sensor decides on it. The
//! rule: the real name (claude.ai) is decided whatever came before it on the connection (a fake
//! for another name the server never takes, parts in any order, extra records), and a decision on
//! a second version of the first flight is flagged `desync` and `anomaly`.
//!
//! The captures are committed in `pcaps/desync/` (one per mode, so a testbed can replay them);
//! `desync_captures_are_current` fails when the builder here and the files disagree (run it with
//! `SG_WRITE_DESYNC=1` to write them again).

use std::path::PathBuf;

use etherparse::PacketBuilder;
use shadowgate::flow::{Config, Flag, Kind, Observation, Sensor};

use crate::common::files::root;
use crate::common::sensor::feed;
use crate::common::synth;

const CLIENT: [u8; 4] = [10, 20, 1, 10];
const SERVER: [u8; 4] = [160, 79, 104, 10];
const CMAC: [u8; 6] = [0x02, 0x5a, 0, 0, 0x01, 0x0a];
const GWMAC: [u8; 6] = [0x02, 0x5a, 0, 0, 0, 0x01];
const REAL: &str = "claude.ai";
const FAKE: &str = "www.example.com";
/// Client and server initial sequence numbers: client data starts at `CISN + 1`.
const CISN: u32 = 0x1000_0000;
const SISN: u32 = 0x5000_0000;

/// How a client segment is sent.
#[derive(Clone, Copy, Default)]
struct How {
    /// IP TTL (64 when 0): 1 or 2 expire at the gateway or the next hop.
    ttl: u8,
    /// The TCP checksum is wrong: the server's stack drops the segment.
    badsum: bool,
    /// Sequence number moved back by 10,000 and acknowledgement by 66,000 (zapret `badseq`):
    /// outside the server's window.
    badseq: bool,
    /// A TCP MD5 signature option (RFC 2385) the server does not expect: dropped.
    md5: bool,
}

const FAKED: How = How {
    ttl: 1,
    badsum: false,
    badseq: false,
    md5: false,
};

/// A client TCP segment with `data` at stream offset `off` (0: the first byte after the SYN).
fn client_seg(port: u16, off: u32, data: &[u8], how: How) -> Vec<u8> {
    let mut seq = CISN.wrapping_add(1).wrapping_add(off);
    let mut ack = SISN.wrapping_add(1);
    if how.badseq {
        seq = seq.wrapping_sub(10_000);
        ack = ack.wrapping_sub(66_000);
    }
    let ttl = if how.ttl == 0 { 64 } else { how.ttl };
    let b = PacketBuilder::ethernet2(CMAC, GWMAC)
        .ipv4(CLIENT, SERVER, ttl)
        .tcp(port, 443, seq, 64240)
        .ack(ack)
        .psh();
    let b = if how.md5 {
        // kind 19, length 18, a 16-byte digest; two NOPs pad the options to 20 bytes.
        let mut opt = vec![19, 18];
        opt.extend_from_slice(&[0x5a; 16]);
        opt.extend_from_slice(&[1, 1]);
        b.options_raw(&opt).unwrap()
    } else {
        b
    };
    let mut v = Vec::new();
    b.write(&mut v, data).unwrap();
    if how.badsum {
        // Ethernet 14 + IPv4 20: the TCP checksum is at 16.
        v[14 + 20 + 16] ^= 0x5a;
    }
    v
}

/// SYN (with `syn_data` in it, zapret `syndata`), SYN-ACK (acknowledging the SYN only: a server
/// without TCP Fast Open ignores data in a SYN), ACK.
fn handshake(port: u16, syn_data: &[u8]) -> Vec<Vec<u8>> {
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CMAC, GWMAC)
        .ipv4(CLIENT, SERVER, 64)
        .tcp(port, 443, CISN, 64240)
        .syn()
        .write(&mut syn, syn_data)
        .unwrap();
    let mut synack = Vec::new();
    PacketBuilder::ethernet2(GWMAC, CMAC)
        .ipv4(SERVER, CLIENT, 58)
        .tcp(443, port, SISN, 65535)
        .syn()
        .ack(CISN.wrapping_add(1))
        .write(&mut synack, &[])
        .unwrap();
    let mut ack = Vec::new();
    PacketBuilder::ethernet2(CMAC, GWMAC)
        .ipv4(CLIENT, SERVER, 64)
        .tcp(port, 443, CISN.wrapping_add(1), 64240)
        .ack(SISN.wrapping_add(1))
        .write(&mut ack, &[])
        .unwrap();
    vec![syn, synack, ack]
}

/// The server's first answer (a ServerHello record's start), acknowledging `len` client bytes.
fn server_answer(port: u16, len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GWMAC, CMAC)
        .ipv4(SERVER, CLIENT, 58)
        .tcp(443, port, SISN.wrapping_add(1), 65535)
        .ack(CISN.wrapping_add(1).wrapping_add(len))
        .psh()
        .write(&mut v, &[0x16, 3, 3, 0, 0x7a, 2, 0, 0, 0x76, 3, 3])
        .unwrap();
    v
}

/// Both hellos are the same size (the fake is a real hello for another name, as the tools send).
fn real() -> Vec<u8> {
    synth::client_hello(REAL, 517)
}

fn fake() -> Vec<u8> {
    synth::client_hello(FAKE, 517)
}

/// `data` cut at `cuts` (ascending offsets): the parts with their offsets.
fn parts(data: &[u8], cuts: &[usize]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        out.push((from as u32, data[from..c].to_vec()));
        from = c;
    }
    out
}

/// `data` cut at `cuts`, each part sent plainly, last part first with `reversed`.
fn in_parts(data: &[u8], cuts: &[usize], reversed: bool) -> Vec<(u32, Vec<u8>, How)> {
    let mut p: Vec<_> = parts(data, cuts)
        .into_iter()
        .map(|(o, d)| (o, d, How::default()))
        .collect();
    if reversed {
        p.reverse();
    }
    p
}

/// Where the SNI's name starts in [`real`]'s record (the tools split there: `split=sni`).
fn sni_at() -> usize {
    let r = real();
    r.windows(REAL.len())
        .position(|w| w == REAL.as_bytes())
        .unwrap()
}

/// One mode: its name (also its capture's), what it sends, and whether the real name's decision
/// is on a second version of the first flight (flagged `desync`).
struct Mode {
    name: &'static str,
    what: &'static str,
    frames: Vec<Vec<u8>>,
    desync: bool,
}

/// A TCP connection: the handshake, `segs` (offset, bytes, how), the server's answer.
fn tcp_mode(port: u16, segs: Vec<(u32, Vec<u8>, How)>, syn_data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = handshake(port, syn_data);
    for (off, data, how) in segs {
        frames.push(client_seg(port, off, &data, how));
    }
    frames.push(server_answer(port, real().len() as u32));
    frames
}

/// Every fake-then-real mode with a given fake segment (`how`).
fn fake_then_real(port: u16, how: How) -> Vec<Vec<u8>> {
    tcp_mode(
        port,
        vec![(0, fake(), how), (0, real(), How::default())],
        &[],
    )
}

/// The hello as two TLS records, cut in the SNI (zapret `tlsrec=sni`).
fn two_records() -> Vec<u8> {
    let r = real();
    let hs = &r[5..];
    let cut = sni_at() - 5 + 2;
    let mut out = Vec::new();
    for piece in [&hs[..cut], &hs[cut..]] {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// The IP layer between CLIENT:`port` and SERVER:443 in one direction (`to_server`: the
/// client's), with the source and destination ports.
fn between(
    port: u16,
    ttl: u8,
    to_server: bool,
) -> (
    etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    u16,
    u16,
) {
    if to_server {
        (
            PacketBuilder::ethernet2(CMAC, GWMAC).ipv4(CLIENT, SERVER, ttl),
            port,
            443,
        )
    } else {
        (
            PacketBuilder::ethernet2(GWMAC, CMAC).ipv4(SERVER, CLIENT, ttl),
            443,
            port,
        )
    }
}

/// A UDP datagram between CLIENT:`port` and SERVER:443 (`to_server`: the client's).
fn quic_dg(port: u16, payload: &[u8], ttl: u8, to_server: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let (b, sp, dp) = between(port, ttl, to_server);
    b.udp(sp, dp).write(&mut v, payload).unwrap();
    v
}

/// The client Initials' shape here: a 600-byte hello in a 1,200-byte datagram, under `dcid`.
fn quic_shape(dcid: &'static [u8]) -> crate::common::frames::InitialShape<'static> {
    crate::common::frames::InitialShape {
        dcid,
        scid: &[0xc1; 8],
        hello_size: 600,
        datagram_len: 1200,
    }
}

/// A server's long-header answer (its content does not matter to the sensor).
fn quic_answer() -> Vec<u8> {
    let mut answer = vec![0xc0, 0, 0, 0, 1, 8];
    answer.extend_from_slice(&[0xc1; 8]);
    answer.extend_from_slice(&[8; 9]);
    answer.resize(200, 0);
    answer
}

/// A QUIC connection: a fake Initial (another DCID, another name, TTL 1), the real Initial, and
/// the server's first datagram.
fn quic_fake_initial(port: u16) -> Vec<Vec<u8>> {
    use crate::common::frames::quic_hello;
    let fake = quic_hello(FAKE, &quic_shape(&[0xfa; 8]));
    let real = quic_hello(REAL, &quic_shape(&[0x4e; 8]));
    vec![
        quic_dg(port, &fake, 1, true),
        quic_dg(port, &real, 64, true),
        quic_dg(port, &quic_answer(), 58, false),
    ]
}

fn http(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// Every mode, each on its own client port.
fn modes() -> Vec<Mode> {
    let r = real();
    let f = fake();
    let sni = sni_at();
    let n = sni + 3;
    let plain = How::default();
    let mut m = Vec::new();
    let mut port = 50_000u16;
    let mut add = |name, what, frames: Vec<Vec<u8>>, desync| {
        m.push(Mode {
            name,
            what,
            frames,
            desync,
        });
    };
    let mut next = || {
        port += 1;
        port
    };
    add(
        "fake-ttl",
        "a fake hello for another name with TTL 1 (it expires at the gateway), then the real hello",
        fake_then_real(next(), FAKED),
        true,
    );
    add(
        "fake-badsum",
        "a fake hello with a wrong TCP checksum, then the real hello",
        fake_then_real(
            next(),
            How {
                badsum: true,
                ..plain
            },
        ),
        true,
    );
    add(
        "fake-badseq",
        "a fake hello 10,000 bytes before the window (acknowledgement 66,000 back), then the real",
        fake_then_real(
            next(),
            How {
                badseq: true,
                ..plain
            },
        ),
        false,
    );
    add(
        "fake-md5sig",
        "a fake hello with a TCP MD5 signature option, then the real hello",
        fake_then_real(next(), How { md5: true, ..plain }),
        true,
    );
    add(
        "fake-zeros",
        "a fake of zero bytes as long as the hello (TTL 1), then the real hello",
        tcp_mode(
            next(),
            vec![(0, vec![0; r.len()], FAKED), (0, r.clone(), plain)],
            &[],
        ),
        true,
    );
    add(
        "fake-http",
        "a fake HTTP request (TTL 1), then the real TLS hello",
        tcp_mode(
            next(),
            vec![(0, http(FAKE), FAKED), (0, r.clone(), plain)],
            &[],
        ),
        true,
    );
    add(
        "syndata",
        "the fake hello as data in the SYN (ignored by a server without TCP Fast Open), then the real",
        tcp_mode(next(), vec![(0, r.clone(), plain)], &f),
        true,
    );
    add(
        "split",
        "the real hello in two segments cut at byte 2",
        tcp_mode(next(), in_parts(&r, &[2], false), &[]),
        false,
    );
    add(
        "split-sni",
        "the real hello in two segments cut inside the SNI",
        tcp_mode(next(), in_parts(&r, &[n], false), &[]),
        false,
    );
    add(
        "disorder",
        "the real hello cut inside the SNI, the second part sent first",
        tcp_mode(next(), in_parts(&r, &[n], true), &[]),
        false,
    );
    add(
        "multisplit",
        "the real hello in four segments in order",
        tcp_mode(next(), in_parts(&r, &[1, sni, n], false), &[]),
        false,
    );
    add(
        "multidisorder",
        "the real hello in four segments, last first",
        tcp_mode(next(), in_parts(&r, &[1, sni, n], true), &[]),
        false,
    );
    // fakedsplit: for each part, the fake's bytes for it (TTL 1), the real part, the fake again.
    let faked_parts = |order_rev: bool, cuts: &[usize]| {
        let real_parts = parts(&r, cuts);
        let fake_parts = parts(&f, cuts);
        let mut idx: Vec<usize> = (0..real_parts.len()).collect();
        if order_rev {
            idx.reverse();
        }
        let mut segs = Vec::new();
        for i in idx {
            let (o, fd) = fake_parts[i].clone();
            segs.push((o, fd.clone(), FAKED));
            segs.push((o, real_parts[i].1.clone(), plain));
            segs.push((o, fd, FAKED));
        }
        segs
    };
    add(
        "fakedsplit",
        "cut inside the SNI; each part sent as fake (TTL 1), real, fake again",
        tcp_mode(next(), faked_parts(false, &[n]), &[]),
        true,
    );
    add(
        "fakeddisorder",
        "as fakedsplit, the second part first",
        tcp_mode(next(), faked_parts(true, &[n]), &[]),
        true,
    );
    add(
        "fake-multisplit",
        "four parts, each after a fake of its bytes (TTL 1) and before it again",
        tcp_mode(next(), faked_parts(false, &[1, sni, n]), &[]),
        true,
    );
    add(
        "fake-multidisorder",
        "four parts last first, each between fakes of its bytes (TTL 1)",
        tcp_mode(next(), faked_parts(true, &[1, sni, n]), &[]),
        true,
    );
    add(
        "tlsrec",
        "the hello as two TLS records cut inside the SNI, in one segment",
        tcp_mode(next(), vec![(0, two_records(), plain)], &[]),
        false,
    );
    let recs = two_records();
    add(
        "fake-tlsrec-split",
        "a fake (TTL 1), then the real hello as two TLS records in two segments cut between them",
        tcp_mode(
            next(),
            vec![
                (0, f.clone(), FAKED),
                (0, recs[..sni].to_vec(), plain),
                (sni as u32, recs[sni..].to_vec(), plain),
            ],
            &[],
        ),
        true,
    );
    add(
        "real-then-fake",
        "the real hello, then a fake at the same numbers (TTL 1)",
        tcp_mode(
            next(),
            vec![(0, r.clone(), plain), (0, f.clone(), FAKED)],
            &[],
        ),
        false,
    );
    add(
        "fake-repeats",
        "six different fakes (TTL 1), then the real hello",
        tcp_mode(
            next(),
            (0..6)
                .map(|i| {
                    (
                        0,
                        synth::client_hello(&format!("www{i}.example.com"), 517),
                        FAKED,
                    )
                })
                .chain(std::iter::once((0, r.clone(), plain)))
                .collect(),
            &[],
        ),
        true,
    );
    add(
        "quic-fake-initial",
        "a fake QUIC Initial for another name with another DCID (TTL 1), then the real Initial",
        quic_fake_initial(next()),
        true,
    );
    m
}

/// Names the sensor reported on `port`'s connection, with their flags.
fn on_port(obs: &[Observation], port: u16) -> Vec<(Option<String>, Vec<Flag>)> {
    obs.iter()
        .filter(|o| o.client.port == port)
        .map(|o| (o.name.clone(), o.flags.clone()))
        .collect()
}

fn mode_port(m: &Mode) -> u16 {
    let f = &m.frames[0];
    // Ethernet 14 + IPv4 20: the source port.
    u16::from_be_bytes([f[34], f[35]])
}

/// Every mode: the real name is decided; where a fake came first, on a second version flagged
/// `desync` and `anomaly`.
#[test]
fn every_desync_mode_still_gives_the_real_name() {
    let mut table = Vec::new();
    for m in modes() {
        let mut s = Sensor::new(Config::default());
        let obs = feed(&mut s, 1, &m.frames);
        let port = mode_port(&m);
        let got = on_port(&obs, port);
        let real: Vec<_> = got
            .iter()
            .filter(|(n, _)| n.as_deref() == Some(REAL))
            .collect();
        table.push(format!(
            "{:<20} {:<8} {:?}",
            m.name,
            if real.is_empty() { "MISSED" } else { "held" },
            got.iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect::<Vec<_>>()
        ));
        assert!(
            !real.is_empty(),
            "{}: {}: no decision on {REAL}: {got:?}",
            m.name,
            m.what
        );
        if m.desync {
            assert!(
                real.iter()
                    .all(|(_, f)| f.contains(&Flag::Desync) && f.contains(&Flag::Anomaly)),
                "{}: the real name's decision is not flagged desync: {got:?}",
                m.name
            );
            assert!(
                s.stats().flows.desync >= 1,
                "{}: desync not counted",
                m.name
            );
        }
        for o in obs.iter().filter(|o| o.client.port == port) {
            assert!(matches!(
                o.kind,
                Kind::TlsClientHello | Kind::QuicInitial | Kind::HttpRequest
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// HTTP Host tricks (tpws `hostcase`, `hostdot`, `hostpad`, `methodeol`, ...) and a fake request
/// before the real one, the real one split inside the Host: the real host is decided.
#[test]
fn http_tricks_and_fake_requests_give_the_real_host() {
    let pad = format!("X-Pad: {}\r\n", "a".repeat(2000));
    let reqs: Vec<(&str, Vec<u8>)> = vec![
        (
            "hostcase",
            b"GET / HTTP/1.1\r\nhost: claude.ai\r\n\r\n".to_vec(),
        ),
        (
            "hostdot",
            b"GET / HTTP/1.1\r\nHost: claude.ai.\r\n\r\n".to_vec(),
        ),
        (
            "hostpad",
            format!("GET / HTTP/1.1\r\n{pad}Host: claude.ai\r\n\r\n").into_bytes(),
        ),
        (
            "methodeol",
            b"\nGET / HTTP/1.1\r\nHost: claude.ai\r\n\r\n".to_vec(),
        ),
        (
            "methodspace",
            b"GET  / HTTP/1.1\r\nHost: claude.ai\r\n\r\n".to_vec(),
        ),
    ];
    let mut port = 51_000;
    for (mode, req) in reqs {
        port += 1;
        let mut frames = handshake(port, &[]);
        // The hostpad head is longer than one segment: send it in 1,400-byte parts.
        for (o, d) in parts(
            &req,
            &(1..req.len().div_ceil(1400))
                .map(|i| i * 1400)
                .collect::<Vec<_>>(),
        ) {
            frames.push(client_seg(port, o, &d, How::default()));
        }
        let mut s = Sensor::new(Config::default());
        let obs = feed(&mut s, 1, &frames);
        let got = on_port(&obs, port);
        assert!(
            got.iter().any(|(n, _)| n.as_deref() == Some(REAL)),
            "{mode}: {got:?}"
        );
    }
    // A fake request (TTL 1), then the real one split inside its Host.
    port += 1;
    let real = http(REAL);
    let cut = real.windows(4).position(|w| w == b"laud").unwrap();
    let mut frames = handshake(port, &[]);
    frames.push(client_seg(port, 0, &http(FAKE), FAKED));
    for (o, d) in parts(&real, &[cut]) {
        frames.push(client_seg(port, o, &d, How::default()));
    }
    let mut s = Sensor::new(Config::default());
    let obs = feed(&mut s, 1, &frames);
    let got = on_port(&obs, port);
    assert!(
        got.iter()
            .any(|(n, f)| n.as_deref() == Some(REAL) && f.contains(&Flag::Desync)),
        "fake request then split real: {got:?}"
    );
}

/// Bounded: a connection keeps at most 8 versions of its first flight and judges at most 16;
/// past it the watch ends and is counted (what was decided stands).
#[test]
fn versions_are_bounded_and_counted() {
    let port = 52_000;
    let mut segs: Vec<(u32, Vec<u8>, How)> = (0..40)
        .map(|i| {
            (
                0,
                synth::client_hello(&format!("w{i}.example.com"), 517),
                FAKED,
            )
        })
        .collect();
    segs.push((0, real(), How::default()));
    let frames = tcp_mode(port, segs, &[]);
    let mut s = Sensor::new(Config::default());
    let obs = feed(&mut s, 1, &frames);
    let st = s.stats();
    assert!(st.flows.desync_versions_full >= 1, "{st:?}");
    assert!(
        on_port(&obs, port).len() <= 17,
        "{}",
        on_port(&obs, port).len()
    );
    assert_eq!(
        st.flows.reassembly_bytes, 0,
        "versions still held after the flow ended"
    );
    assert_eq!(
        st.flows.watch_bytes, 0,
        "versions still held after the flow ended"
    );
}

/// A watch ends on time even when its connection sends nothing more (a download: the client
/// only acknowledges): the sweep frees its bytes; before, they are counted.
#[test]
fn watches_end_on_time_without_more_traffic() {
    use crate::common::sensor::{feed_at, T0};
    let port = 52_200;
    let frames = tcp_mode(port, vec![(0, real(), How::default())], &[]);
    let mut timed: Vec<(u64, Vec<u8>)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * 1_000_000, f.clone()))
        .collect();
    let mut s = Sensor::new(Config::default());
    feed_at(&mut s, 1, &timed);
    assert!(s.stats().flows.watch_bytes > 0, "{:?}", s.stats().flows);
    // Five seconds later, another host's DNS query: the sweep ends the watch.
    timed.push((
        T0 + 5_000_000_000,
        synth::udp(
            [10, 20, 1, 99],
            [10, 20, 0, 53],
            5353,
            53,
            &synth::dns(7, "example.org", None),
        ),
    ));
    let mut s = Sensor::new(Config::default());
    feed_at(&mut s, 1, &timed);
    assert_eq!(s.stats().flows.watch_bytes, 0, "{:?}", s.stats().flows);
}

/// A bad-checksum segment is counted and never ends the watch; a re-send of the same hello
/// (a retransmission) is not a version.
#[test]
fn bad_checksums_are_counted_and_retransmissions_are_not_versions() {
    let port = 52_100;
    let r = real();
    let frames = tcp_mode(
        port,
        vec![
            (0, r.clone(), How::default()),
            (0, r.clone(), How::default()),
            (
                0,
                r.clone(),
                How {
                    badsum: true,
                    ..Default::default()
                },
            ),
        ],
        &[],
    );
    let mut s = Sensor::new(Config::default());
    let obs = feed(&mut s, 1, &frames);
    let st = s.stats();
    assert_eq!(st.flows.bad_checksum, 1, "{st:?}");
    assert_eq!(st.flows.desync, 0, "{st:?}");
    assert_eq!(on_port(&obs, port).len(), 1, "{:?}", on_port(&obs, port));
}

fn desync_dir() -> PathBuf {
    root().join("pcaps/desync")
}

/// The committed captures are what the builder makes (`SG_WRITE_DESYNC=1` writes them).
#[test]
fn desync_captures_are_current() {
    let dir = desync_dir();
    let write = std::env::var_os("SG_WRITE_DESYNC").is_some();
    for m in modes() {
        let path = dir.join(format!("{}.pcap", m.name));
        let mut bytes = Vec::new();
        synth::pcap_header(&mut bytes).unwrap();
        for (i, f) in m.frames.iter().enumerate() {
            // 2025-03-10T18:00:00Z, frames 2 ms apart.
            synth::pcap_record(&mut bytes, 1_741_629_600_000_000 + i as u64 * 2_000, f).unwrap();
        }
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let have = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}: run SG_WRITE_DESYNC=1 cargo test --profile ci --test it desync::desync_captures_are_current", path.display())
        });
        assert!(have == bytes, "{} is not what the builder makes: run SG_WRITE_DESYNC=1 cargo test --profile ci --test it desync::desync_captures_are_current", path.display());
    }
}

/// Through the documented interface: `replay --policy policies` over each committed capture
/// decides claude.ai (the bundled policy's consumer-AI rule).
#[test]
fn replay_decides_the_real_name_on_every_capture() {
    for m in modes() {
        let path = desync_dir().join(format!("{}.pcap", m.name));
        let out = crate::common::cli::run(&[
            "replay",
            "--policy",
            root().join("policies").to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            m.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let decided = crate::common::events::json_lines(&text)
            .into_iter()
            .any(|v| v["name"] == REAL && v["decision"]["service"] == "claude");
        assert!(decided, "{}: {REAL} not decided:\n{text}", m.name);
    }
}

/// A new connection on a 4-tuple the sensor already judged (a reused client port, after the
/// watch window: TIME_WAIT keeps a real client from reusing it sooner): its first flight is read
/// afresh. Within the window, another SYN moves nothing (a fake SYN, then a fake hello at its
/// numbers, then the real hello at the connection's: the real one is still judged).
#[test]
fn a_reused_port_is_a_new_connection() {
    use crate::common::sensor::{feed_at, T0};
    // Within the window: a fake SYN and a fake hello at its numbers, then the real hello.
    let port = 52_310;
    let isn2 = CISN.wrapping_add(0x0777_0000);
    let mut frames = handshake(port, &[]);
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CMAC, GWMAC)
        .ipv4(CLIENT, SERVER, 1)
        .tcp(port, 443, isn2, 64240)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    frames.push(syn);
    let mut fake_at = Vec::new();
    PacketBuilder::ethernet2(CMAC, GWMAC)
        .ipv4(CLIENT, SERVER, 1)
        .tcp(port, 443, isn2.wrapping_add(1), 64240)
        .ack(SISN.wrapping_add(1))
        .psh()
        .write(&mut fake_at, &fake())
        .unwrap();
    frames.push(fake_at);
    frames.push(client_seg(port, 0, &real(), How::default()));
    let mut s = Sensor::new(Config::default());
    let obs = feed(&mut s, 1, &frames);
    let got = on_port(&obs, port);
    assert!(
        got.iter().any(|(n, _)| n.as_deref() == Some(REAL)),
        "fake SYN then fake hello: {got:?}"
    );
    {
        let gap_ns = 10_000_000_000u64;
        let port = 52_300;
        let mut frames = tcp_mode(port, vec![(0, fake(), How::default())], &[]);
        // The same 4-tuple again with another initial sequence number and the real hello.
        let isn2 = CISN.wrapping_add(0x0777_0000);
        let mut syn = Vec::new();
        PacketBuilder::ethernet2(CMAC, GWMAC)
            .ipv4(CLIENT, SERVER, 64)
            .tcp(port, 443, isn2, 64240)
            .syn()
            .write(&mut syn, &[])
            .unwrap();
        let mut hello = Vec::new();
        PacketBuilder::ethernet2(CMAC, GWMAC)
            .ipv4(CLIENT, SERVER, 64)
            .tcp(port, 443, isn2.wrapping_add(1), 64240)
            .ack(SISN.wrapping_add(1))
            .psh()
            .write(&mut hello, &real())
            .unwrap();
        let first = frames.len();
        frames.push(syn);
        frames.push(hello);
        let timed: Vec<(u64, Vec<u8>)> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let later = if i >= first { gap_ns } else { 0 };
                (T0 + i as u64 * 1_000_000 + later, f)
            })
            .collect();
        let mut s = Sensor::new(Config::default());
        let obs = feed_at(&mut s, 1, &timed);
        let got = on_port(&obs, port);
        assert!(
            got.iter().any(|(n, _)| n.as_deref() == Some(REAL)),
            "gap {gap_ns}: {got:?}"
        );
    }
}

/// A new QUIC connection on a 4-tuple whose earlier connection was judged and whose watch is
/// over (the kernel gave the client port out again, or a client reused it on purpose after a
/// connection to an allowed name; one CDN address serves many names): the new Initial (another
/// Destination Connection ID) is judged afresh, as a new connection and not as a desync. A late
/// Initial of the first connection (its own DCID) is nothing new.
#[test]
fn a_reused_quic_tuple_is_a_new_connection() {
    use crate::common::frames::quic_hello;
    use crate::common::sensor::T0;
    let port = 52_320;
    let first = quic_hello(FAKE, &quic_shape(&[0x1f; 8]));
    let again = quic_hello(REAL, &quic_shape(&[0x2e; 8]));
    let s1 = 1_000_000_000u64;
    let timed = vec![
        (T0, quic_dg(port, &first, 64, true)),
        (T0 + 20_000_000, quic_dg(port, &quic_answer(), 58, false)),
        // After the 3 s watch: the first connection's Initial once more (same DCID), then a new
        // connection's, and the server's answer to it.
        (T0 + 4 * s1, quic_dg(port, &first, 64, true)),
        (T0 + 5 * s1, quic_dg(port, &again, 64, true)),
        (
            T0 + 5 * s1 + 20_000_000,
            quic_dg(port, &quic_answer(), 58, false),
        ),
    ];
    two_quic_connections(&timed, port, FAKE);
}

/// Feed `timed` (two QUIC connections on CLIENT:`port`, the first to `first`, the second to
/// REAL): one observation each, the second a new connection (counted as `quic.reused_tuple`)
/// and not a desync, and each hello waited for its server's answer.
fn two_quic_connections(timed: &[(u64, Vec<u8>)], port: u16, first: &str) {
    use crate::common::sensor::feed_at;
    let mut s = Sensor::new(Config::default());
    let obs = feed_at(&mut s, 1, timed);
    let got = on_port(&obs, port);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_deref()).collect::<Vec<_>>(),
        vec![Some(first), Some(REAL)],
        "one observation per connection, none for a Retry's answer: {got:?}"
    );
    assert!(
        got.iter().all(|(_, f)| !f.contains(&Flag::Desync)),
        "a new connection, not a desync: {got:?}"
    );
    let st = s.stats();
    assert_eq!(st.quic.reused_tuple, 1, "{:?}", st.quic);
    assert_eq!(st.flows.desync, 0, "{:?}", st.flows);
    assert!(
        obs.iter()
            .filter(|o| o.client.port == port)
            .all(|o| !o.unanswered),
        "each hello waits for its server's answer"
    );
}

/// A new QUIC connection on a 4-tuple while the first connection's watch is still open (the
/// client reopened the port to the same name 2.5 s later, as a soak run saw): it is a new visit
/// and gets its own observation, not a desync. A Retry is not: the client answers the server's
/// Retry with the same hello under the Retry's connection ID, which is nothing new.
#[test]
fn a_new_quic_connection_inside_the_watch_is_a_new_visit() {
    use crate::common::frames::{quic_hello, InitialShape};
    use crate::common::sensor::T0;
    let port = 52_325;
    let ms = 1_000_000u64;
    let first = quic_hello(REAL, &quic_shape(&[0x1f; 8]));
    // The server's Retry: type 3, to the client's SCID, from the ID the client must use next.
    let mut retry = vec![0xf0, 0, 0, 0, 1, 8];
    retry.extend_from_slice(&[0xc1; 8]);
    retry.push(8);
    retry.extend_from_slice(&[0x3a; 8]);
    retry.extend_from_slice(&[0x77; 32]);
    let after_retry = quic_hello(REAL, &quic_shape(&[0x3a; 8]));
    // A new connection: a new DCID and another hello (another size, as a new random would be).
    let again = quic_hello(
        REAL,
        &InitialShape {
            dcid: &[0x2e; 8],
            scid: &[0xc2; 8],
            hello_size: 640,
            datagram_len: 1200,
        },
    );
    let timed = vec![
        (T0, quic_dg(port, &first, 64, true)),
        (T0 + 10 * ms, quic_dg(port, &retry, 58, false)),
        (T0 + 20 * ms, quic_dg(port, &after_retry, 64, true)),
        (T0 + 40 * ms, quic_dg(port, &quic_answer(), 58, false)),
        // 2.5 s later, inside the 3 s watch: a new connection to the same name.
        (T0 + 2_500 * ms, quic_dg(port, &again, 64, true)),
        (T0 + 2_520 * ms, quic_dg(port, &quic_answer(), 58, false)),
    ];
    two_quic_connections(&timed, port, REAL);
}

/// An HTTP connection's client port used again within the flow's idle time (HTTP flows stay
/// open to the sensor, which reads every request): once the server's SYN-ACK acknowledges the new
/// SYN, the new connection's requests are read. A SYN with another ISN that the server never
/// accepts (a fake, TTL 1) starts nothing.
#[test]
fn a_reused_http_port_is_a_new_connection_once_the_server_accepts_it() {
    use crate::common::sensor::{feed_at, T0};
    let port = 52_330;
    let isn2 = CISN.wrapping_add(0x0555_0000);
    let sisn2 = SISN.wrapping_add(0x0333_0000);
    let seg = |from_client: bool, seq: u32, ack: Option<u32>, syn: bool, ttl: u8, data: &[u8]| {
        let (b, sp, dp) = between(port, ttl, from_client);
        let mut b = b.tcp(sp, dp, seq, 64240);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if !data.is_empty() {
            b = b.psh();
        }
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    };
    // The same host on both connections: an open HTTP flow reports each new host once, so
    // without the new connection its request would be taken for a repeat.
    let first = http(REAL);
    let again = http(REAL);
    let fake_isn = CISN.wrapping_add(0x0777_0000);
    let mut frames = handshake(port, &[]);
    frames.push(client_seg(port, 0, &first, How::default()));
    // A fake SYN (TTL 1, never answered) and a request at its numbers: nothing.
    frames.push(seg(true, fake_isn, None, true, 1, &[]));
    frames.push(seg(
        true,
        fake_isn.wrapping_add(1),
        Some(SISN.wrapping_add(1)),
        false,
        1,
        &http(REAL),
    ));
    // The real new connection: SYN, the server's SYN-ACK to it, ACK, a request.
    frames.push(seg(true, isn2, None, true, 64, &[]));
    frames.push(seg(false, sisn2, Some(isn2.wrapping_add(1)), true, 58, &[]));
    frames.push(seg(
        true,
        isn2.wrapping_add(1),
        Some(sisn2.wrapping_add(1)),
        false,
        64,
        &[],
    ));
    frames.push(seg(
        true,
        isn2.wrapping_add(1),
        Some(sisn2.wrapping_add(1)),
        false,
        64,
        &again,
    ));
    let timed: Vec<(u64, Vec<u8>)> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * 100_000_000, f))
        .collect();
    let mut s = Sensor::new(Config::default());
    let obs = feed_at(&mut s, 1, &timed);
    let got = on_port(&obs, port);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_deref()).collect::<Vec<_>>(),
        vec![Some(REAL), Some(REAL)],
        "one decision per connection: {got:?}"
    );
    // Only the SYN the server accepted started a new connection.
    assert_eq!(s.stats().flows.reused_tuple, 1, "{:?}", s.stats().flows);
    // The new connection's request is verified (its handshake was seen with matching numbers).
    let real = obs
        .iter()
        .rfind(|o| o.client.port == port && o.name.as_deref() == Some(REAL))
        .unwrap();
    assert!(
        !real.flags.contains(&Flag::UnverifiedSource),
        "{:?}",
        real.flags
    );
}
