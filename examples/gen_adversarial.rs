//! Adversarial regression captures (issue 8, "Trust before enforcement"): hostile or unusual
//! traffic that a clinic gateway sensor must survive and decide correctly. Writes one small pcap
//! per case into a directory (default `pcaps/adversarial/`) plus `expected.json`, the correct
//! outcome of each case as data. Deterministic: fixed seeds, fixed timestamps.
//!
//! `cargo run --example gen_adversarial -- [OUT_DIR]` (or `pcaps/adversarial/make.sh`).

#[path = "../benches/synth.rs"]
mod synth;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use synth::Rng;

/// 2025-03-10T09:00:00Z: captures start on the hour, one hour apart.
const BASE_S: u64 = 1_741_597_200;
const SNAPLEN: u32 = 262_144;

const GW_MAC: [u8; 6] = [0x02, 0x5a, 0x00, 0x00, 0x00, 0x01];
const RESOLVER: [u8; 4] = [10, 20, 0, 53];
/// The CDN address of issue 8 (one anycast address fronting many customers' names).
const CDN: [u8; 4] = [104, 18, 32, 47];
const PROXY: [u8; 4] = [10, 20, 0, 3];

#[derive(Clone, Copy)]
struct Dev {
    mac: [u8; 6],
    ip: [u8; 4],
}

/// Client A (the device under test) and client B (another device on the same network).
const A: Dev = Dev {
    mac: [0x02, 0x5a, 0x00, 0x00, 0x01, 0x0a],
    ip: [10, 20, 1, 10],
};
const B: Dev = Dev {
    mac: [0x02, 0x5a, 0x00, 0x00, 0x01, 0x14],
    ip: [10, 20, 1, 20],
};

fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// One capture being built: timestamped Ethernet frames and the expectations about them.
struct Cap {
    name: &'static str,
    ts_us: u64,
    frames: Vec<(u64, Vec<u8>)>,
    rng: Rng,
}

impl Cap {
    fn new(name: &'static str, hour: u64, seed: u64) -> Cap {
        Cap {
            name,
            ts_us: (BASE_S + hour * 3600) * 1_000_000,
            frames: Vec::new(),
            rng: Rng(seed),
        }
    }

    /// Append a frame `dt_us` after the previous one; returns its 1-based frame number.
    fn push(&mut self, dt_us: u64, frame: Vec<u8>) -> usize {
        assert!(
            frame.len() <= SNAPLEN as usize,
            "{}: frame of {} bytes",
            self.name,
            frame.len()
        );
        self.ts_us += dt_us;
        self.frames.push((self.ts_us, frame));
        self.frames.len()
    }

    fn udp_c2s(
        &mut self,
        dt: u64,
        c: Dev,
        server: [u8; 4],
        ports: (u16, u16),
        payload: &[u8],
    ) -> usize {
        let f = synth::eth_udp(c.mac, GW_MAC, ip4(c.ip), ip4(server), 64, ports, payload);
        self.push(dt, f)
    }

    fn udp_s2c(
        &mut self,
        dt: u64,
        c: Dev,
        server: [u8; 4],
        ports: (u16, u16),
        payload: &[u8],
    ) -> usize {
        let f = synth::eth_udp(
            GW_MAC,
            c.mac,
            ip4(server),
            ip4(c.ip),
            63,
            (ports.1, ports.0),
            payload,
        );
        self.push(dt, f)
    }

    /// A DNS query from `c` to the clinic resolver and its answer; returns both frame numbers.
    fn lookup(&mut self, c: Dev, query: &[u8], answer: &[u8]) -> (usize, usize) {
        let sp = 30_000 + self.rng.below(30_000) as u16;
        let q = self.udp_c2s(1_500, c, RESOLVER, (sp, 53), query);
        let dt = 9_000 + self.rng.below(8_000);
        let a = self.udp_s2c(dt, c, RESOLVER, (sp, 53), answer);
        (q, a)
    }

    fn write(&self, dir: &Path) -> std::io::Result<u64> {
        let p = dir.join(self.name);
        synth::write_pcap_at(&p, SNAPLEN, &self.frames)?;
        Ok(std::fs::metadata(&p)?.len())
    }
}

/// A TCP connection from a client device to a server (through the gateway).
struct Conn {
    c: Dev,
    s: [u8; 4],
    sp: u16,
    dp: u16,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    fn new(cap: &mut Cap, c: Dev, s: [u8; 4], dp: u16) -> Conn {
        Conn {
            c,
            s,
            sp: 40_000 + cap.rng.below(20_000) as u16,
            dp,
            cseq: cap.rng.next_u64() as u32,
            sseq: cap.rng.next_u64() as u32,
        }
    }
    fn c2s(&self, flags: &str, payload: &[u8]) -> Vec<u8> {
        synth::eth_tcp(
            self.c.mac,
            GW_MAC,
            ip4(self.c.ip),
            ip4(self.s),
            64,
            (self.sp, self.dp),
            (self.cseq, self.sseq),
            flags,
            payload,
        )
    }
    fn s2c(&self, flags: &str, payload: &[u8]) -> Vec<u8> {
        synth::eth_tcp(
            GW_MAC,
            self.c.mac,
            ip4(self.s),
            ip4(self.c.ip),
            57,
            (self.dp, self.sp),
            (self.sseq, self.cseq),
            flags,
            payload,
        )
    }
    fn handshake(&mut self, cap: &mut Cap) {
        let f = self.c2s("S", &[]);
        cap.push(2_000, f);
        self.cseq = self.cseq.wrapping_add(1);
        let f = self.s2c("SA", &[]);
        cap.push(18_000, f);
        self.sseq = self.sseq.wrapping_add(1);
        let f = self.c2s("A", &[]);
        cap.push(150, f);
    }
    /// Client data in MSS-sized segments; returns the frame number of the last one.
    fn send(&mut self, cap: &mut Cap, data: &[u8]) -> usize {
        let mut last = 0;
        for part in data.chunks(1448) {
            let f = self.c2s("PA", part);
            last = cap.push(120, f);
            self.cseq = self.cseq.wrapping_add(part.len() as u32);
        }
        let f = self.s2c("A", &[]);
        cap.push(17_000, f);
        last
    }
    fn reply(&mut self, cap: &mut Cap, data: &[u8]) {
        for part in data.chunks(1448) {
            let f = self.s2c("PA", part);
            cap.push(20_000, f);
            self.sseq = self.sseq.wrapping_add(part.len() as u32);
        }
        let f = self.c2s("A", &[]);
        cap.push(200, f);
    }
}

// ------------------------------------------------------------------------------------------
// DNS messages (hand-built so that hostile layouts are possible)
// ------------------------------------------------------------------------------------------

/// A name in wire form, labels taken as raw bytes (UTF-8 stays UTF-8).
fn wire_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

fn dns_header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(512);
    for x in [id, flags, qd, an, ns, ar] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&rtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

/// EDNS(0) OPT pseudo-record (UDP size 1232) with the given options (code, data).
fn opt_rr(options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut v = vec![0];
    v.extend_from_slice(&41u16.to_be_bytes());
    v.extend_from_slice(&1232u16.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(&rdata);
    v
}

/// Query for one name (recursion desired, EDNS with a client cookie as current resolvers send).
fn query(id: u16, name: &str, qtype: u16, cookie: [u8; 8]) -> Vec<u8> {
    let mut v = dns_header(id, 0x0120, 1, 0, 0, 1);
    v.extend_from_slice(&wire_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&opt_rr(&[(10, cookie.to_vec())]));
    v
}

/// Answer to [`query`]: the question again, then `answers` as (type, ttl, rdata) owned by the
/// question name (compression pointer to offset 12).
fn answer(id: u16, name: &str, qtype: u16, answers: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
    let mut v = dns_header(id, 0x8180, 1, answers.len() as u16, 0, 1);
    v.extend_from_slice(&wire_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    for (t, ttl, rdata) in answers {
        v.extend_from_slice(&rr(&[0xc0, 12], *t, *ttl, rdata));
    }
    v.extend_from_slice(&opt_rr(&[]));
    v
}

fn a_lookup(cap: &mut Cap, c: Dev, name: &str, addr: [u8; 4], ttl: u32) -> (usize, usize) {
    let id = cap.rng.next_u64() as u16;
    let cookie = cap.rng.array::<8>();
    let q = query(id, name, 1, cookie);
    let a = answer(id, name, 1, &[(1, ttl, addr.to_vec())]);
    cap.lookup(c, &q, &a)
}

// ------------------------------------------------------------------------------------------
// ECH (draft-ietf-tls-esni): ECHConfigList for the HTTPS record, ECH extension for the hello
// ------------------------------------------------------------------------------------------

/// One ECHConfig (version 0xfe0d) in an ECHConfigList: X25519 KEM (0x0020), HKDF-SHA256 with
/// AES-128-GCM and ChaCha20-Poly1305, maximum_name_length 0, no extensions (as Cloudflare
/// publishes them).
fn ech_config_list(config_id: u8, public_key: &[u8; 32], public_name: &str) -> Vec<u8> {
    let mut contents = vec![config_id];
    contents.extend_from_slice(&0x0020u16.to_be_bytes());
    contents.extend_from_slice(&32u16.to_be_bytes());
    contents.extend_from_slice(public_key);
    let suites: [(u16, u16); 2] = [(0x0001, 0x0001), (0x0001, 0x0003)];
    contents.extend_from_slice(&((suites.len() * 4) as u16).to_be_bytes());
    for (kdf, aead) in suites {
        contents.extend_from_slice(&kdf.to_be_bytes());
        contents.extend_from_slice(&aead.to_be_bytes());
    }
    contents.push(0); // maximum_name_length
    contents.push(public_name.len() as u8);
    contents.extend_from_slice(public_name.as_bytes());
    contents.extend_from_slice(&0u16.to_be_bytes()); // extensions
    let mut cfg = 0xfe0du16.to_be_bytes().to_vec();
    cfg.extend_from_slice(&(contents.len() as u16).to_be_bytes());
    cfg.extend_from_slice(&contents);
    let mut list = (cfg.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&cfg);
    list
}

/// HTTPS record data: priority 1, target ".", alpn, ipv4hint and (optionally) ech.
fn https_rdata(alpn: &[&str], v4: [u8; 4], ech: Option<&[u8]>) -> Vec<u8> {
    let mut v = 1u16.to_be_bytes().to_vec();
    v.push(0);
    let mut param = |key: u16, val: &[u8]| {
        v.extend_from_slice(&key.to_be_bytes());
        v.extend_from_slice(&(val.len() as u16).to_be_bytes());
        v.extend_from_slice(val);
    };
    let mut a = Vec::new();
    for p in alpn {
        a.push(p.len() as u8);
        a.extend_from_slice(p.as_bytes());
    }
    param(1, &a);
    param(4, &v4);
    if let Some(e) = ech {
        param(5, e);
    }
    v
}

/// The outer ECH extension body (ECHClientHello, type outer): HKDF-SHA256 / AES-128-GCM, the
/// config id, a 32-byte X25519 `enc` and an opaque payload. GREASE ECH (Chromium, RFC draft
/// §6.2) has exactly this layout with random values.
fn ech_outer(rng: &mut Rng, config_id: u8, payload_len: usize) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&0x0001u16.to_be_bytes());
    v.extend_from_slice(&0x0001u16.to_be_bytes());
    v.push(config_id);
    v.extend_from_slice(&32u16.to_be_bytes());
    v.extend_from_slice(&rng.bytes(32));
    v.extend_from_slice(&(payload_len as u16).to_be_bytes());
    v.extend_from_slice(&rng.bytes(payload_len));
    v
}

// ------------------------------------------------------------------------------------------
// TLS ClientHello as Chromium sends it
// ------------------------------------------------------------------------------------------

/// server_name extension body listing `names` (all of type host_name), bytes as given.
fn sni_body(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(0);
        list.extend_from_slice(&(n.len() as u16).to_be_bytes());
        list.extend_from_slice(n);
    }
    let mut v = (list.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(&list);
    v
}

fn grease(rng: &mut Rng) -> u16 {
    let g = (rng.below(16) as u16) << 4 | 0x0a;
    g << 8 | g
}

struct Hello<'a> {
    /// Bodies of server_name extensions, in order (empty: no SNI).
    sni: Vec<Vec<u8>>,
    ech: Option<Vec<u8>>,
    alpn: &'a [&'a str],
    /// X25519MLKEM768 key share (Chromium 131+): makes the hello ~1.8 KB.
    pq: bool,
    /// QUIC transport parameters (a hello inside a QUIC Initial).
    quic_tp: Option<Vec<u8>>,
}

/// A ClientHello handshake message (type 1, no record header) shaped like Chromium's: GREASE
/// values, the extension set of Chrome 13x in a shuffled order, GREASE first and last.
fn client_hello(rng: &mut Rng, h: &Hello<'_>) -> Vec<u8> {
    let mut exts: Vec<(u16, Vec<u8>)> = Vec::new();
    let g1 = grease(rng);
    let quic = h.quic_tp.is_some();
    for s in &h.sni {
        exts.push((0, s.clone()));
    }
    exts.push((0x0017, vec![]));
    exts.push((0xff01, vec![0]));
    let gg = grease(rng);
    let mut groups = vec![gg];
    if h.pq {
        groups.push(0x11ec);
    }
    groups.extend_from_slice(&[0x001d, 0x0017, 0x0018]);
    let mut g = ((groups.len() * 2) as u16).to_be_bytes().to_vec();
    for x in groups {
        g.extend_from_slice(&x.to_be_bytes());
    }
    exts.push((0x000a, g));
    if !quic {
        exts.push((0x000b, vec![1, 0]));
        exts.push((0x0023, vec![]));
    }
    let mut alpn = Vec::new();
    for p in h.alpn {
        alpn.push(p.len() as u8);
        alpn.extend_from_slice(p.as_bytes());
    }
    let mut a = (alpn.len() as u16).to_be_bytes().to_vec();
    a.extend_from_slice(&alpn);
    exts.push((0x0010, a));
    exts.push((0x0005, vec![1, 0, 0, 0, 0]));
    let sigs: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    let mut s = ((sigs.len() * 2) as u16).to_be_bytes().to_vec();
    for x in sigs {
        s.extend_from_slice(&x.to_be_bytes());
    }
    exts.push((0x000d, s));
    exts.push((0x0012, vec![]));
    let mut ks = Vec::new();
    ks.extend_from_slice(&gg.to_be_bytes());
    ks.extend_from_slice(&[0, 1, 0]);
    if h.pq {
        ks.extend_from_slice(&0x11ecu16.to_be_bytes());
        ks.extend_from_slice(&1216u16.to_be_bytes());
        ks.extend_from_slice(&rng.bytes(1216));
    }
    ks.extend_from_slice(&0x001du16.to_be_bytes());
    ks.extend_from_slice(&32u16.to_be_bytes());
    ks.extend_from_slice(&rng.bytes(32));
    let mut k = (ks.len() as u16).to_be_bytes().to_vec();
    k.extend_from_slice(&ks);
    exts.push((0x0033, k));
    exts.push((0x002d, vec![1, 1]));
    let gv = grease(rng);
    let mut sv = vec![if quic { 4 } else { 6 }];
    sv.extend_from_slice(&gv.to_be_bytes());
    sv.extend_from_slice(&[3, 4]);
    if !quic {
        sv.extend_from_slice(&[3, 3]);
    }
    exts.push((0x002b, sv));
    exts.push((0x001b, vec![2, 0, 2]));
    exts.push((0x44cd, vec![0, 3, 2, b'h', b'2']));
    if let Some(tp) = &h.quic_tp {
        exts.push((0x0039, tp.clone()));
    }
    if let Some(e) = &h.ech {
        exts.push((0xfe0d, e.clone()));
    }
    // Chrome 110+ permutes its extensions on every connection. Several server_name
    // extensions (two-sni.pcap) keep their relative order.
    for i in (1..exts.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        exts.swap(i, j);
    }
    let mut snis = h.sni.iter();
    for (t, d) in exts.iter_mut() {
        if *t == 0 {
            *d = snis.next().unwrap().clone();
        }
    }
    let mut eb = Vec::new();
    let mut put = |t: u16, d: &[u8]| {
        eb.extend_from_slice(&t.to_be_bytes());
        eb.extend_from_slice(&(d.len() as u16).to_be_bytes());
        eb.extend_from_slice(d);
    };
    put(g1, &[]);
    for (t, d) in &exts {
        put(*t, d);
    }
    let g2 = grease(rng);
    put(if g2 == g1 { g2 ^ 0x1010 } else { g2 }, &[0]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&rng.bytes(32));
    if quic {
        body.push(0);
    } else {
        body.push(32);
        body.extend_from_slice(&rng.bytes(32));
    }
    let gc = grease(rng);
    let mut suites = vec![gc, 0x1301, 0x1302, 0x1303];
    if !quic {
        suites.extend_from_slice(&[
            0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f,
            0x0035,
        ]);
    }
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for x in suites {
        body.extend_from_slice(&x.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(eb.len() as u16).to_be_bytes());
    body.extend_from_slice(&eb);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    hs
}

fn tls_record(hs: &[u8]) -> Vec<u8> {
    let mut v = vec![0x16, 3, 1];
    v.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    v.extend_from_slice(hs);
    v
}

/// A browser TLS connection to `server`: handshake, the hello; returns the hello's last frame.
fn tls_connect(cap: &mut Cap, c: Dev, server: [u8; 4], port: u16, h: &Hello<'_>) -> usize {
    let mut conn = Conn::new(cap, c, server, port);
    conn.handshake(cap);
    let hs = client_hello(&mut cap.rng, h);
    conn.send(cap, &tls_record(&hs))
}

fn chromium<'a>(sni: Option<&str>, ech: Option<Vec<u8>>) -> Hello<'a> {
    Hello {
        sni: sni
            .map(|s| vec![sni_body(&[s.as_bytes()])])
            .unwrap_or_default(),
        ech,
        alpn: &["h2", "http/1.1"],
        pq: true,
        quic_tp: None,
    }
}

// ------------------------------------------------------------------------------------------
// Expectations
// ------------------------------------------------------------------------------------------

struct Expect(Vec<Value>);

impl Expect {
    /// An observation the sensor must report at `frame`, and the service its decision must name
    /// (`None`: no decision, the name is not catalogued). `never`: services it must not name.
    #[allow(clippy::too_many_arguments)]
    fn obs(
        &mut self,
        cap: &str,
        frame: usize,
        kind: &str,
        client: [u8; 4],
        name: Option<&str>,
        service: Option<&str>,
        never: &[&str],
        why: &str,
    ) {
        let mut v = json!({
            "capture": cap,
            "frame": frame,
            "kind": kind,
            "client": Ipv4Addr::from(client).to_string(),
            "name": name,
            "service": service,
            "why": why,
        });
        if !never.is_empty() {
            v["never_service"] = json!(never);
        }
        self.0.push(v);
    }
    /// A whole-capture property (survives, bounded output, ...).
    fn capture(&mut self, cap: &str, props: Value, why: &str) {
        let mut v = json!({ "capture": cap });
        for (k, x) in props.as_object().unwrap() {
            v[k] = x.clone();
        }
        v["why"] = json!(why);
        self.0.push(v);
    }
}

// ------------------------------------------------------------------------------------------
// The cases
// ------------------------------------------------------------------------------------------

/// Issue 8 (1): GREASE ECH makes every Chromium hello look like ECH, and the sensor then
/// "infers" a name from whatever another device resolved to the same CDN address.
fn grease_ech(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("grease-ech.pcap", 0, 0xec01);
    let n = cap.name;
    let (q, _) = a_lookup(&mut cap, A, "www.clinic-ehr.example", CDN, 300);
    e.obs(
        n,
        q,
        "dns_query",
        A.ip,
        Some("www.clinic-ehr.example"),
        None,
        &[],
        "A resolves its EHR host on the CDN",
    );
    let (q, a) = a_lookup(&mut cap, B, "chatgpt.com", CDN, 300);
    e.obs(
        n,
        q,
        "dns_query",
        B.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        "B's own lookup",
    );
    e.obs(
        n,
        a,
        "dns_answer",
        B.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        "B's own answer: 104.18.32.47, TTL 300",
    );
    let ech = ech_outer(&mut cap.rng, 0x9c, 176);
    let f = tls_connect(
        &mut cap,
        A,
        CDN,
        443,
        &chromium(Some("www.clinic-ehr.example"), Some(ech)),
    );
    e.obs(
        n,
        f,
        "tls_client_hello",
        A.ip,
        Some("www.clinic-ehr.example"),
        None,
        &["chatgpt"],
        "GREASE ECH (random payload, as Chromium sends on every connection) must not turn the wire SNI into a guess: decided on www.clinic-ehr.example (uncatalogued), never on B's chatgpt.com",
    );
    cap
}

/// Issue 8 (2): inference across clients. A resolves claude.ai (its HTTPS record publishes an
/// ECH config with public_name cloudflare-ech.com), B resolves chatgpt.com to the same address,
/// then A sends a real-ECH hello whose outer SNI is the public name.
fn cross_client(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("cross-client.pcap", 1, 0xec02);
    let n = cap.name;
    let (q, a) = a_lookup(&mut cap, A, "claude.ai", CDN, 300);
    e.obs(
        n,
        q,
        "dns_query",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "A's lookup",
    );
    e.obs(
        n,
        a,
        "dns_answer",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "A's answer: 104.18.32.47",
    );
    let config_id = 0x2b;
    let pk = cap.rng.array::<32>();
    let ecl = ech_config_list(config_id, &pk, "cloudflare-ech.com");
    let id = cap.rng.next_u64() as u16;
    let cookie = cap.rng.array::<8>();
    let hq = query(id, "claude.ai", 65, cookie);
    let ha = answer(
        id,
        "claude.ai",
        65,
        &[(65, 300, https_rdata(&["h3", "h2"], CDN, Some(&ecl)))],
    );
    let (q, a) = cap.lookup(A, &hq, &ha);
    e.obs(
        n,
        q,
        "dns_query",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "A's HTTPS (type 65) lookup",
    );
    e.obs(
        n,
        a,
        "dns_answer",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "HTTPS answer with ech= (public_name cloudflare-ech.com, config_id 0x2b)",
    );
    let (q, a) = a_lookup(&mut cap, B, "chatgpt.com", CDN, 300);
    e.obs(
        n,
        q,
        "dns_query",
        B.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        "B's lookup",
    );
    e.obs(
        n,
        a,
        "dns_answer",
        B.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        "B's answer: the same address",
    );
    let ech = ech_outer(&mut cap.rng, config_id, 208);
    let f = tls_connect(
        &mut cap,
        A,
        CDN,
        443,
        &chromium(Some("cloudflare-ech.com"), Some(ech)),
    );
    e.obs(
        n,
        f,
        "tls_client_hello",
        A.ip,
        Some("cloudflare-ech.com"),
        Some("claude"),
        &["chatgpt"],
        "real ECH: the outer SNI is the public name of the config A got for claude.ai; only A's own lookups may be used to infer the inner name, never B's chatgpt.com",
    );
    cap
}

/// MPLS label entry: label, bottom-of-stack bit, TTL 255.
fn mpls(label: u32, bos: bool) -> [u8; 4] {
    (label << 12 | (bos as u32) << 8 | 255).to_be_bytes()
}

/// One nesting level of Ethernet / MPLS / pseudowire: an Ethernet header with EtherType MPLS,
/// a label stack (1 or 2 entries, the last with bottom-of-stack), then a zero control word;
/// an Ethernet frame follows.
fn mpls_pw_level(i: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(26);
    v.extend_from_slice(&[0x02, 0x5a, 0, 0, 0x10 | (i >> 8 & 0x0f) as u8, i as u8]);
    v.extend_from_slice(&[0x02, 0x5a, 0, 0, 0x20 | (i >> 8 & 0x0f) as u8, i as u8]);
    v.extend_from_slice(&0x8847u16.to_be_bytes());
    if i.is_multiple_of(4) {
        v.extend_from_slice(&mpls(16_000 + (i % 1000) as u32, false));
    }
    v.extend_from_slice(&mpls(299_776 + (i % 1000) as u32, true));
    v.extend_from_slice(&[0, 0, 0, 0]);
    v
}

/// A DNS query for `name` from A to the resolver, as an IPv4 packet.
fn dns_ip(rng: &mut Rng, name: &str) -> Vec<u8> {
    let id = rng.next_u64() as u16;
    let q = query(id, name, 1, rng.array::<8>());
    let udp = synth::udp_datagram(
        33_000 + rng.below(20_000) as u16,
        53,
        &q,
        Some((&A.ip, &RESOLVER)),
    );
    synth::ipv4_packet(A.ip, RESOLVER, 17, 64, rng.next_u64() as u16, &udp)
}

/// Issue 8 (3): one frame of ~10,000 nested Ethernet/MPLS/pseudowire levels (~240 KB, under the
/// 262,144-byte snap length), then an ordinary DNS query.
fn deep_nesting(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("deep-nesting.pcap", 2, 0xdee9);
    let n = cap.name;
    let inner_ip = dns_ip(&mut cap.rng, "mpls.deep.example");
    let inner = synth::ether(GW_MAC, A.mac, 0x0800, &inner_ip);
    let mut frame = Vec::with_capacity(245_000);
    let mut levels = 0;
    while frame.len() + inner.len() + 26 <= 240_000 {
        frame.extend_from_slice(&mpls_pw_level(levels));
        levels += 1;
    }
    frame.extend_from_slice(&inner);
    let len = frame.len();
    let f = cap.push(1_000, frame);
    e.capture(
        n,
        json!({ "frame": f, "survives": true, "nesting_levels": levels }),
        &format!("{levels} nested Ethernet/MPLS/pseudowire levels in one {len}-byte frame: the sensor must bound its recursion (count the frame as malformed or too deep) and go on; reporting the innermost name (mpls.deep.example) is not required"),
    );
    let (q, _) = a_lookup(&mut cap, A, "claude.ai", [160, 79, 104, 10], 300);
    e.obs(
        n,
        q,
        "dns_query",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "after the deep frame the sensor still decodes",
    );
    cap
}

fn gre(proto: u16, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(inner);
    v
}

/// Wrap `inner` (an IP packet) with `wrap` while the result stays within NESTED_IP_BYTES
/// (the capture stays small; a few hundred levels are far past any sane depth limit).
fn nest_ip(
    inner: Vec<u8>,
    per_level: usize,
    mut wrap: impl FnMut(usize, &[u8]) -> Vec<u8>,
) -> (Vec<u8>, usize) {
    let mut p = inner;
    let mut n = 0;
    while p.len() + per_level <= NESTED_IP_BYTES {
        p = wrap(n, &p);
        n += 1;
    }
    (p, n)
}

const NESTED_IP_BYTES: usize = 24_000;
const OUTER_SRC: [u8; 4] = [192, 0, 2, 1];
const OUTER_DST: [u8; 4] = [192, 0, 2, 2];

/// Deeply nested tunnels of every kind the sensor decodes, one frame each, then a DNS query.
fn deep_tunnels(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("deep-tunnels.pcap", 3, 0xdee7);
    let n = cap.name;
    let mut frames: Vec<(&str, Vec<u8>, usize)> = Vec::new();
    // GRE (IPv4 in GRE in IPv4 ...).
    let inner = dns_ip(&mut cap.rng, "gre.deep.example");
    let (p, lv) = nest_ip(inner, 24, |i, p| {
        synth::ipv4_packet(OUTER_SRC, OUTER_DST, 47, 64, i as u16, &gre(0x0800, p))
    });
    frames.push((
        "GRE (IPv4 over GRE over IPv4, repeated)",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    // IP-in-IP (4in4).
    let inner = dns_ip(&mut cap.rng, "ipip.deep.example");
    let (p, lv) = nest_ip(inner, 20, |i, p| {
        synth::ipv4_packet(OUTER_SRC, OUTER_DST, 4, 64, i as u16, p)
    });
    frames.push((
        "IP-in-IP (protocol 4, repeated)",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    // VXLAN: IPv4/UDP 4789/VXLAN/Ethernet/IPv4/UDP 4789/...
    let inner = dns_ip(&mut cap.rng, "vxlan.deep.example");
    let (p, lv) = nest_ip(inner, 50, |i, p| {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0x10, (i >> 8) as u8, i as u8];
        vx.extend_from_slice(&synth::ether(GW_MAC, A.mac, 0x0800, p));
        let udp = synth::udp_datagram(49_152 + (i % 1000) as u16, 4789, &vx, None);
        synth::ipv4_packet(OUTER_SRC, OUTER_DST, 17, 64, i as u16, &udp)
    });
    frames.push((
        "VXLAN (UDP 4789, repeated)",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    // Teredo: IPv4/UDP 3544/IPv6/UDP 3544/IPv6/.../UDP 53.
    let (s6, d6) = (
        [
            0x20, 0x01, 0, 0, 0x41, 0x36, 0xe3, 0x78, 0x80, 0, 0x63, 0xbf, 0x3f, 0xff, 0xfd, 0xd2,
        ],
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
        ],
    );
    let id = cap.rng.next_u64() as u16;
    let q = query(id, "teredo.deep.example", 1, cap.rng.array::<8>());
    let mut p = synth::ipv6_packet(
        s6,
        d6,
        17,
        64,
        &synth::udp_datagram(40_000, 53, &q, Some((&s6, &d6))),
    );
    let mut lv = 0;
    while p.len() + 48 + 28 <= NESTED_IP_BYTES {
        p = synth::ipv6_packet(s6, d6, 17, 64, &synth::udp_datagram(3544, 3544, &p, None));
        lv += 1;
    }
    let p = synth::ipv4_packet(
        OUTER_SRC,
        OUTER_DST,
        17,
        64,
        1,
        &synth::udp_datagram(3544, 3544, &p, None),
    );
    frames.push((
        "Teredo (IPv6 in UDP 3544, repeated)",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv + 1,
    ));
    // GTP-U: IPv4/UDP 2152/GTP-U G-PDU/IPv4/UDP 2152/...
    let inner = dns_ip(&mut cap.rng, "gtpu.deep.example");
    let (p, lv) = nest_ip(inner, 36, |i, p| {
        let mut g = vec![0x30, 0xff];
        g.extend_from_slice(&(p.len() as u16).to_be_bytes());
        g.extend_from_slice(&(0x1000_0000u32 + i as u32).to_be_bytes());
        g.extend_from_slice(p);
        let udp = synth::udp_datagram(2152, 2152, &g, None);
        synth::ipv4_packet(OUTER_SRC, OUTER_DST, 17, 64, i as u16, &udp)
    });
    frames.push((
        "GTP-U (UDP 2152 G-PDU, repeated)",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    // GRE and VXLAN as the entrance to the Ethernet/MPLS/pseudowire loop (each new Ethernet
    // layer restarts a per-layer depth count).
    let inner = synth::ether(
        GW_MAC,
        A.mac,
        0x0800,
        &dns_ip(&mut cap.rng, "gre-mpls.deep.example"),
    );
    let mut chain = Vec::new();
    let mut lv = 0;
    while chain.len() + inner.len() + 26 + 24 + 8 <= 65_535 {
        chain.extend_from_slice(&mpls_pw_level(lv));
        lv += 1;
    }
    chain.extend_from_slice(&inner);
    // GRE with EtherType MPLS: the label stack starts right after the GRE header.
    let p = synth::ipv4_packet(OUTER_SRC, OUTER_DST, 47, 64, 7, &gre(0x8847, &chain[14..]));
    frames.push((
        "GRE carrying MPLS/pseudowire/Ethernet, repeated",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
    vx.extend_from_slice(&chain);
    let p = synth::ipv4_packet(
        OUTER_SRC,
        OUTER_DST,
        17,
        64,
        8,
        &synth::udp_datagram(49_999, 4789, &vx, None),
    );
    frames.push((
        "VXLAN carrying Ethernet/MPLS/pseudowire, repeated",
        synth::ether(GW_MAC, A.mac, 0x0800, &p),
        lv,
    ));
    let mut list = Vec::new();
    for (what, f, lv) in frames {
        let len = f.len();
        let no = cap.push(2_000, f);
        list.push(json!({ "frame": no, "tunnel": what, "nesting_levels": lv, "bytes": len }));
    }
    e.capture(
        n,
        json!({ "survives": true, "frames": list }),
        "each frame nests one tunnel type thousands of times (IP lengths consistent at every level): the sensor must stop at its depth limit, count the frame, and go on; the innermost names (*.deep.example) need not be reported",
    );
    let (q, _) = a_lookup(&mut cap, A, "claude.ai", [160, 79, 104, 10], 300);
    e.obs(
        n,
        q,
        "dns_query",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "after the deep frames the sensor still decodes",
    );
    cap
}

/// Split an IPv4 datagram payload into fragments of `frag` bytes (a multiple of 8).
fn fragments(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    payload: &[u8],
    frag: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + frag).min(payload.len());
        let more = end < payload.len();
        let mut p =
            synth::ipv4_header(src, dst, proto, 57, id, end - off, ((off / 8) as u16, more))
                .to_vec();
        p.extend_from_slice(&payload[off..end]);
        out.push(p);
        off = end;
    }
    out
}

/// The DNS bomb of issue 8 (4): a 62 KB response (IPv4 fragments) with QDCOUNT 4,000 and 2,400
/// A answers, all names compressed.
pub fn dns_bomb_message(rng: &mut Rng, id: u16) -> Vec<u8> {
    const DISTINCT: usize = 200;
    const QD: usize = 4000;
    const AN: usize = 2400;
    let mut v = dns_header(id, 0x8180, QD as u16, AN as u16, 0, 0);
    // Question 0: x0.chatgpt.com in full; the suffix chatgpt.com starts at offset 15.
    let mut offsets = Vec::with_capacity(DISTINCT);
    offsets.push(v.len());
    v.extend_from_slice(&wire_name("x0.chatgpt.com"));
    v.extend_from_slice(&[0, 1, 0, 1]);
    // Questions 1..200: x{i} then a pointer to the shared suffix.
    for i in 1..DISTINCT {
        offsets.push(v.len());
        let l = format!("x{i}");
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(&[0xc0, 15, 0, 1, 0, 1]);
    }
    // The other 3,800 questions are bare pointers to the first 200 names.
    for i in DISTINCT..QD {
        let o = offsets[i % DISTINCT] as u16;
        v.extend_from_slice(&(0xc000 | o).to_be_bytes());
        v.extend_from_slice(&[0, 1, 0, 1]);
    }
    for i in 0..AN {
        let o = offsets[i % DISTINCT] as u16;
        let addr = [104, 18, (i / 250) as u8, 1 + (i % 250) as u8];
        v.extend_from_slice(&rr(&(0xc000 | o).to_be_bytes(), 1, 300, &addr));
    }
    let _ = rng;
    v
}

fn dns_bomb(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("dns-bomb.pcap", 4, 0xb0b0);
    let n = cap.name;
    let id = cap.rng.next_u64() as u16;
    let sp = 51_234;
    let q = query(id, "x0.chatgpt.com", 1, cap.rng.array::<8>());
    let fq = cap.udp_c2s(1_000, A, RESOLVER, (sp, 53), &q);
    e.obs(
        n,
        fq,
        "dns_query",
        A.ip,
        Some("x0.chatgpt.com"),
        Some("chatgpt"),
        &[],
        "the query that the bomb answers",
    );
    let msg = dns_bomb_message(&mut cap.rng, id);
    let udp = synth::udp_datagram(53, sp, &msg, Some((&RESOLVER, &A.ip)));
    let ipid = cap.rng.next_u64() as u16;
    let frags = fragments(RESOLVER, A.ip, 17, ipid, &udp, 1480);
    let nfr = frags.len();
    let mut last = 0;
    for f in frags {
        last = cap.push(40, synth::ether(A.mac, GW_MAC, 0x0800, &f));
    }
    e.capture(
        n,
        json!({
            "frame": last,
            "dns_message_bytes": msg.len(),
            "ip_fragments": nfr,
            "qdcount": 4000,
            "ancount": 2400,
            "max_observations": 16,
            "max_decisions": 16,
            "max_output_bytes": 1_048_576,
            "max_rss_mib": 256,
        }),
        "one response must not become 4,000 observations each carrying 2,400 answers (4,000 decisions, 637 MB of JSON, 1.6 GB RSS in issue 8): QDCOUNT > 1 is malformed for QUERY (RFC 9619); report at most a bounded number of observations for the message and keep output and memory bounded",
    );
    cap
}

fn dns_qdcount(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("dns-qdcount.pcap", 5, 0x0dc0);
    let n = cap.name;
    // A query with two questions.
    let id = cap.rng.next_u64() as u16;
    let mut q = dns_header(id, 0x0100, 2, 0, 0, 0);
    q.extend_from_slice(&wire_name("claude.ai"));
    q.extend_from_slice(&[0, 1, 0, 1]);
    q.extend_from_slice(&wire_name("chatgpt.com"));
    q.extend_from_slice(&[0, 1, 0, 1]);
    // FORMERR answer without questions, as BIND and Unbound send for QDCOUNT > 1.
    let r = dns_header(id, 0x8101, 0, 0, 0, 0);
    let (fq, fa) = cap.lookup(A, &q, &r);
    e.obs(
        n,
        fq,
        "dns_query",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "first of two questions",
    );
    e.obs(n, fq, "dns_query", A.ip, Some("chatgpt.com"), Some("chatgpt"), &[], "the second question must not hide behind the first (QDCOUNT 2 is malformed per RFC 9619, but a resolver may still answer it)");
    e.obs(
        n,
        fa,
        "dns_answer",
        A.ip,
        None,
        None,
        &[],
        "FORMERR response with QDCOUNT 0: no name, no decision",
    );
    // QDCOUNT 0: a DNS COOKIE-only query (RFC 7873 §5.4) and the server's reply.
    let id = cap.rng.next_u64() as u16;
    let cc = cap.rng.array::<8>();
    let mut q = dns_header(id, 0x0000, 0, 0, 0, 1);
    q.extend_from_slice(&opt_rr(&[(10, cc.to_vec())]));
    let mut sc = cc.to_vec();
    sc.extend_from_slice(&cap.rng.bytes(16));
    let mut r = dns_header(id, 0x8000, 0, 0, 0, 1);
    r.extend_from_slice(&opt_rr(&[(10, sc)]));
    let (fq, fa) = cap.lookup(B, &q, &r);
    e.obs(
        n,
        fq,
        "dns_query",
        B.ip,
        None,
        None,
        &[],
        "cookie-only query (QDCOUNT 0, OPT with COOKIE): valid, no name, no decision",
    );
    e.obs(
        n,
        fa,
        "dns_answer",
        B.ip,
        None,
        None,
        &[],
        "cookie-only answer: no name, no decision",
    );
    cap
}

fn http_get(host: &[u8], target: &str, extra: &[String]) -> Vec<u8> {
    let mut v = format!("GET {target} HTTP/1.1\r\nHost: ").into_bytes();
    v.extend_from_slice(host);
    v.extend_from_slice(b"\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36\r\nAccept: */*\r\n");
    for h in extra {
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

fn idn(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("idn.pcap", 6, 0x1d17);
    let n = cap.name;
    let web = [198, 51, 100, 80];
    // TLS with UTF-8 in the SNI (RFC 6066 wants A-labels; some stacks send U-labels anyway).
    let f = tls_connect(
        &mut cap,
        A,
        CDN,
        443,
        &chromium(Some("ｃｌａｕｄｅ.ai"), None),
    );
    e.obs(
        n,
        f,
        "tls_client_hello",
        A.ip,
        Some("claude.ai"),
        Some("claude"),
        &[],
        "SNI in UTF-8 full-width letters (U+FF43 ...): UTS 46 maps it to claude.ai",
    );
    let f = tls_connect(
        &mut cap,
        A,
        web,
        443,
        &chromium(Some("bücher.example"), None),
    );
    e.obs(
        n,
        f,
        "tls_client_hello",
        A.ip,
        Some("xn--bcher-kva.example"),
        None,
        &[],
        "SNI in UTF-8: normalised to punycode, uncatalogued",
    );
    // HTTP Host headers in UTF-8.
    for (host, name, service, why) in [
        (
            "ｃｌａｕｄｅ.ai",
            "claude.ai",
            Some("claude"),
            "Host in full-width letters maps to claude.ai",
        ),
        (
            "bücher.example",
            "xn--bcher-kva.example",
            None,
            "Host in UTF-8: punycode, uncatalogued",
        ),
        (
            "chatgpt．com",
            "chatgpt.com",
            Some("chatgpt"),
            "full-width full stop (U+FF0E) is a label separator under UTS 46",
        ),
    ] {
        let mut c = Conn::new(&mut cap, A, web, 80);
        c.handshake(&mut cap);
        let f = c.send(&mut cap, &http_get(host.as_bytes(), "/", &[]));
        e.obs(n, f, "http_request", A.ip, Some(name), service, &[], why);
    }
    // A DNS query whose label is raw UTF-8 (mDNS-style; unicast resolvers pass it on).
    let id = cap.rng.next_u64() as u16;
    let q = query(id, "ｃｈａｔｇｐｔ.com", 1, cap.rng.array::<8>());
    let sp = 35_353;
    let f = cap.udp_c2s(3_000, A, RESOLVER, (sp, 53), &q);
    e.obs(
        n,
        f,
        "dns_query",
        A.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        "QNAME with a UTF-8 full-width label",
    );
    cap
}

fn http_tricks(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("http-tricks.pcap", 7, 0x4774);
    let n = cap.name;
    let web = [198, 51, 100, 80];
    // Absolute-form target: RFC 9112 §3.2.2, the target's authority wins over Host.
    let mut c = Conn::new(&mut cap, A, web, 80);
    c.handshake(&mut cap);
    let f = c.send(
        &mut cap,
        &http_get(b"www.example.org", "http://claude.ai/", &[]),
    );
    e.obs(n, f, "http_request", A.ip, Some("claude.ai"), Some("claude"), &[], "absolute-form GET http://claude.ai/ with Host: www.example.org: a server or proxy uses the target's authority (RFC 9112 3.2.2), so must the sensor");
    // Two Host headers, both orders (RFC 9112 3.2: a server must reject; proxies differ).
    for (first, second) in [
        ("claude.ai", "www.example.org"),
        ("www.example.org", "claude.ai"),
    ] {
        let mut c = Conn::new(&mut cap, A, web, 80);
        c.handshake(&mut cap);
        let f = c.send(
            &mut cap,
            &http_get(first.as_bytes(), "/", &[format!("Host: {second}")]),
        );
        e.obs(n, f, "http_request", A.ip, Some("claude.ai"), Some("claude"), &[], &format!("two Host headers ({first}, then {second}): the AI name must not hide behind the other one"));
    }
    // 300 headers, Host last.
    let mut c = Conn::new(&mut cap, A, web, 80);
    c.handshake(&mut cap);
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..299 {
        req.extend_from_slice(
            format!("X-Trace-{i:03}: {:016x}\r\n", cap.rng.next_u64()).as_bytes(),
        );
    }
    req.extend_from_slice(b"Host: chatgpt.com\r\n\r\n");
    let f = c.send(&mut cap, &req);
    e.obs(
        n,
        f,
        "http_request",
        A.ip,
        Some("chatgpt.com"),
        Some("chatgpt"),
        &[],
        &format!("300 header fields ({} bytes), Host last", req.len()),
    );
    // HTTP CONNECT through a proxy, then the real ClientHello inside the tunnel.
    for (target, sni, service) in [
        ("chatgpt.com", "chatgpt.com", "chatgpt"),
        ("www.example.org", "claude.ai", "claude"),
    ] {
        let mut c = Conn::new(&mut cap, A, PROXY, 3128);
        c.handshake(&mut cap);
        let req = format!("CONNECT {target}:443 HTTP/1.1\r\nHost: {target}:443\r\nProxy-Connection: keep-alive\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36\r\n\r\n");
        let f = c.send(&mut cap, req.as_bytes());
        let tsvc = if target == "chatgpt.com" {
            Some("chatgpt")
        } else {
            None
        };
        e.obs(
            n,
            f,
            "http_request",
            A.ip,
            Some(target),
            tsvc,
            &[],
            "the CONNECT request names the tunnel's destination",
        );
        c.reply(&mut cap, b"HTTP/1.1 200 Connection established\r\n\r\n");
        let hs = client_hello(&mut cap.rng, &chromium(Some(sni), None));
        let f = c.send(&mut cap, &tls_record(&hs));
        e.obs(n, f, "tls_client_hello", A.ip, Some(sni), Some(service), &[], &format!("ClientHello inside the CONNECT {target}:443 tunnel (flag proxied): the tunnelled SNI must be reported too"));
    }
    // SOCKS5 CONNECT by domain name, then nothing more from the client.
    let mut c = Conn::new(&mut cap, A, PROXY, 1080);
    c.handshake(&mut cap);
    c.send(&mut cap, &[5, 1, 0]);
    c.reply(&mut cap, &[5, 0]);
    let mut r = vec![5, 1, 0, 3, 9];
    r.extend_from_slice(b"claude.ai");
    r.extend_from_slice(&443u16.to_be_bytes());
    let f = c.send(&mut cap, &r);
    c.reply(&mut cap, &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    e.obs(n, f, "*", A.ip, Some("claude.ai"), Some("claude"), &[], "SOCKS5 CONNECT by name (ATYP 3) and nothing after it: the name in the request must be reported even though no TLS follows (the kind may be reported as a TLS/HTTP observation with flag proxied; what matters is the name)");
    cap
}

fn two_sni(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("two-sni.pcap", 8, 0x2511);
    let n = cap.name;
    let mut h = chromium(None, None);
    h.sni = vec![sni_body(&[b"www.example.org", b"claude.ai"])];
    let f = tls_connect(&mut cap, A, CDN, 443, &h);
    e.obs(n, f, "tls_client_hello", A.ip, Some("claude.ai"), Some("claude"), &[], "one server_name extension with two host_name entries (RFC 6066 forbids it): the second name must not hide behind the first");
    let mut h = chromium(None, None);
    h.sni = vec![sni_body(&[b"www.example.org"]), sni_body(&[b"claude.ai"])];
    let f = tls_connect(&mut cap, B, CDN, 443, &h);
    e.obs(n, f, "tls_client_hello", B.ip, Some("claude.ai"), Some("claude"), &[], "two server_name extensions (duplicate extensions are illegal, RFC 8446 4.2): the second must not hide behind the first");
    cap
}

/// QUIC transport parameters as Chromium sends them, plus grease_quic_bit (0x2ab2).
fn quic_tp(rng: &mut Rng, scid: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut p = |id: u64, val: &[u8]| {
        v.extend_from_slice(&synth::quic_varint(id, 1));
        v.extend_from_slice(&synth::quic_varint(val.len() as u64, 1));
        v.extend_from_slice(val);
    };
    p(0x01, &synth::quic_varint(30_000, 1));
    p(0x03, &synth::quic_varint(1472, 1));
    p(0x04, &synth::quic_varint(15_728_640, 1));
    p(0x05, &synth::quic_varint(6_291_456, 1));
    p(0x06, &synth::quic_varint(6_291_456, 1));
    p(0x07, &synth::quic_varint(6_291_456, 1));
    p(0x08, &synth::quic_varint(100, 1));
    p(0x09, &synth::quic_varint(103, 1));
    p(0x0f, scid);
    p(0x2ab2, &[]);
    let g = 0x1b + 31 * (rng.below(1 << 20));
    p(g, &rng.bytes(4));
    v
}

fn quic_grease_bit(e: &mut Expect) -> Cap {
    let mut cap = Cap::new("quic-grease-bit.pcap", 9, 0x9b17);
    let n = cap.name;
    for (dev, fixed) in [(A, false), (B, true)] {
        let (q, _) = a_lookup(&mut cap, dev, "chatgpt.com", CDN, 300);
        e.obs(
            n,
            q,
            "dns_query",
            dev.ip,
            Some("chatgpt.com"),
            Some("chatgpt"),
            &[],
            "the lookup before the QUIC connection",
        );
        let dcid = cap.rng.bytes(8);
        let scid = cap.rng.bytes(8);
        let token = cap.rng.bytes(if fixed { 0 } else { 57 });
        let tp = quic_tp(&mut cap.rng, &scid);
        let cid = cap.rng.next_u64() as u8;
        let ech = ech_outer(&mut cap.rng, cid, 144);
        let h = Hello {
            sni: vec![sni_body(&[b"chatgpt.com"])],
            ech: Some(ech),
            alpn: &["h3"],
            pq: false,
            quic_tp: Some(tp),
        };
        let hs = client_hello(&mut cap.rng, &h);
        let mut frames = vec![0x06, 0x00];
        frames.extend_from_slice(&synth::quic_varint(hs.len() as u64, 2));
        frames.extend_from_slice(&hs);
        let pkt = synth::quic_v1_initial(&dcid, &scid, &token, 0, &frames, 1250, fixed);
        // Self-check with the sensor's own decoder: the packet decrypts to this hello.
        let hdr = shadowgate::decode::quic::parse_long_header(&pkt).expect("long header");
        let keys = shadowgate::decode::quic::InitialKeys::client(hdr.version, hdr.dcid).unwrap();
        let plain = keys.decrypt(&pkt, &hdr).expect("our Initial decrypts");
        let cf = shadowgate::decode::quic::crypto_frames(&plain).unwrap();
        let ch = shadowgate::decode::tls::parse_handshake(cf[0].1).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("chatgpt.com"));
        assert_eq!(pkt[0] & 0x40 != 0, fixed);
        let sp = 50_000 + cap.rng.below(10_000) as u16;
        let f = cap.udp_c2s(3_000, dev, CDN, (sp, 443), &pkt);
        if fixed {
            e.obs(
                n,
                f,
                "quic_initial",
                dev.ip,
                Some("chatgpt.com"),
                Some("chatgpt"),
                &[],
                "control: the same kind of Initial with the fixed bit set",
            );
        } else {
            e.obs(n, f, "quic_initial", dev.ip, Some("chatgpt.com"), Some("chatgpt"), &[], "QUIC v1 client Initial with the fixed bit (0x40) cleared, as RFC 9287 allows after the server sent grease_quic_bit (the token from NEW_TOKEN is included); correctly protected, must still be decrypted");
        }
    }
    cap
}

// ------------------------------------------------------------------------------------------
// Timestamps at the edge: classic pcap (32-bit seconds) and pcapng (64-bit units)
// ------------------------------------------------------------------------------------------

fn pcapng_block(ty: u32, body: &[u8]) -> Vec<u8> {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    let mut v = ty.to_le_bytes().to_vec();
    v.extend_from_slice(&total.to_le_bytes());
    v.extend_from_slice(body);
    v.extend(std::iter::repeat_n(0, pad));
    v.extend_from_slice(&total.to_le_bytes());
    v
}

fn pcapng_idb(tsresol: u8) -> Vec<u8> {
    let mut b = 1u16.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&SNAPLEN.to_le_bytes());
    b.extend_from_slice(&9u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&[tsresol, 0, 0, 0]);
    b.extend_from_slice(&[0, 0, 0, 0]);
    pcapng_block(1, &b)
}

fn pcapng_epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
    let mut b = iface.to_le_bytes().to_vec();
    b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(ts as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    pcapng_block(6, &b)
}

fn dns_frame(rng: &mut Rng, c: Dev, name: &str) -> Vec<u8> {
    let q = query(rng.next_u64() as u16, name, 1, rng.array::<8>());
    synth::eth_udp(
        c.mac,
        GW_MAC,
        ip4(c.ip),
        ip4(RESOLVER),
        64,
        (30_000 + rng.below(30_000) as u16, 53),
        &q,
    )
}

fn far_future(dir: &Path, e: &mut Expect) -> std::io::Result<Vec<(String, u64)>> {
    let mut rng = Rng(0xfa2f);
    let mut written = Vec::new();
    // pcapng: interface 0 in nanoseconds (if_tsresol 9), interface 1 in microseconds.
    let now_ns = (BASE_S + 10 * 3600) * 1_000_000_000;
    let y2500_ns: u64 = 16_725_225_600 * 1_000_000_000; // 2500-01-01T00:00:00Z
    let plan: [(u32, u64, &str, Option<&str>, &str); 7] = [
        (
            0,
            now_ns,
            "claude.ai",
            Some("claude"),
            "2025: an ordinary frame",
        ),
        (
            0,
            y2500_ns,
            "chatgpt.com",
            Some("chatgpt"),
            "year 2500 (ns since the epoch still fits u64)",
        ),
        (
            0,
            now_ns + 1_000_000,
            "gemini.google.com",
            Some("gemini"),
            "back in 2025 after the year-2500 frame (time goes backwards)",
        ),
        (
            0,
            u64::MAX - 500_000_000,
            "copilot.microsoft.com",
            Some("copilot-consumer"),
            "0.5 s before u64 nanoseconds overflow (year 2554): any `ts + timeout` overflows",
        ),
        (
            1,
            u64::MAX / 1000 + 1,
            "www.perplexity.ai",
            Some("perplexity"),
            "microsecond interface: value * 1000 overflows u64 (the reader clamps)",
        ),
        (
            1,
            u64::MAX,
            "chat.deepseek.com",
            Some("deepseek"),
            "microsecond interface, the largest representable timestamp",
        ),
        (
            0,
            now_ns + 2_000_000,
            "claude.ai",
            Some("claude"),
            "2025 again: the sensor must still decode and decide",
        ),
    ];
    let mut ng = Vec::new();
    let mut shb = 0x1a2b3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng.extend_from_slice(&pcapng_block(0x0a0d0d0a, &shb));
    ng.extend_from_slice(&pcapng_idb(9));
    ng.extend_from_slice(&pcapng_idb(6));
    for (i, (iface, ts, name, svc, why)) in plan.iter().enumerate() {
        let dev = if i % 2 == 0 { A } else { B };
        ng.extend_from_slice(&pcapng_epb(*iface, *ts, &dns_frame(&mut rng, dev, name)));
        e.obs(
            "far-future.pcapng",
            i + 1,
            "dns_query",
            dev.ip,
            Some(name),
            *svc,
            &[],
            why,
        );
    }
    let p = dir.join("far-future.pcapng");
    std::fs::write(&p, &ng)?;
    written.push(("far-future.pcapng".to_string(), ng.len() as u64));
    // Classic pcap: 32-bit seconds end in 2106; sub-second fields out of range.
    let mut v = Vec::new();
    synth::pcap_header_with(&mut v, SNAPLEN, 1)?;
    let plan: [(u32, u32, &str, Option<&str>, &str); 5] = [
        (
            (BASE_S + 10 * 3600) as u32,
            0,
            "claude.ai",
            Some("claude"),
            "2025: an ordinary frame",
        ),
        (
            u32::MAX,
            999_999,
            "chatgpt.com",
            Some("chatgpt"),
            "the last microsecond of 32-bit pcap time (2106-02-07)",
        ),
        (
            u32::MAX,
            u32::MAX,
            "gemini.google.com",
            Some("gemini"),
            "ts_usec 4,294,967,295 (not below 1,000,000: out of range)",
        ),
        (
            (BASE_S + 10 * 3600) as u32,
            1,
            "copilot.microsoft.com",
            Some("copilot-consumer"),
            "back in 2025",
        ),
        (
            0,
            0,
            "claude.ai",
            Some("claude"),
            "the epoch itself (1970), after 2106",
        ),
    ];
    for (i, (s, us, name, svc, why)) in plan.iter().enumerate() {
        let dev = if i % 2 == 0 { A } else { B };
        let f = dns_frame(&mut rng, dev, name);
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&us.to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&f);
        e.obs(
            "far-future.pcap",
            i + 1,
            "dns_query",
            dev.ip,
            Some(name),
            *svc,
            &[],
            why,
        );
    }
    std::fs::write(dir.join("far-future.pcap"), &v)?;
    written.push(("far-future.pcap".to_string(), v.len() as u64));
    e.capture("far-future.pcapng", json!({ "survives": true }), "timestamps near u64 overflow and in year 2500, interleaved with 2025: no panic (debug builds check overflow), no wrap-around that expires state or stalls sweeps, every frame decoded");
    e.capture(
        "far-future.pcap",
        json!({ "survives": true }),
        "32-bit pcap time at its end and out-of-range microseconds: no panic, every frame decoded",
    );
    Ok(written)
}

fn main() -> std::io::Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "pcaps/adversarial".into())
        .into();
    std::fs::create_dir_all(&dir)?;
    let mut e = Expect(Vec::new());
    let caps = [
        grease_ech(&mut e),
        cross_client(&mut e),
        deep_nesting(&mut e),
        deep_tunnels(&mut e),
        dns_bomb(&mut e),
        dns_qdcount(&mut e),
        idn(&mut e),
        http_tricks(&mut e),
        two_sni(&mut e),
        quic_grease_bit(&mut e),
    ];
    for c in &caps {
        let size = c.write(&dir)?;
        eprintln!(
            "{:<22} {:>3} frames {:>8} bytes",
            c.name,
            c.frames.len(),
            size
        );
    }
    for (name, size) in far_future(&dir, &mut e)? {
        eprintln!(
            "{name:<22} {:>3} frames {size:>8} bytes",
            if name.ends_with("ng") { 7 } else { 5 }
        );
    }
    let doc = json!({
        "about": "Correct outcomes for the captures in this folder (see README.md). Observation entries: the sensor must report an observation of `kind` at `frame` (1-based, the frame that completes it) from `client` (`kind` \"*\": any kind) with `name` (normalised: lower-case, punycode); with the bundled policy (policies/) its decision must name `service` (a catalogue id), or there must be no decision when `service` is null; `never_service` lists services the decision must never name. Capture entries (no `kind`) state whole-capture properties: `survives` (exit status 0, no panic, no signal), and limits such as `max_observations`.",
        "cases": e.0,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap();
    s.push('\n');
    std::fs::write(dir.join("expected.json"), s)?;
    Ok(())
}
