//! The fast path: a packet that can change nothing but its flow's idle time (a flow already done,
//! a bare ACK, the server side of a hello not yet seen) costs a header view and one lookup.

use crate::capture::Frame;

use super::ports::is_dns_port;
use super::sensor::Sensor;
use super::state::{FlowKey, State};
use super::tcp::wants_data;
use super::wire::{self, TCP_RST, TCP_SYN};

/// UDP ports the slow path looks at before any flow lookup: tunnels (VXLAN, Teredo, GTP-U),
/// DHCP, and DNS (stateless, no flow entry).
#[inline]
fn udp_port_special(p: u16) -> bool {
    matches!(p, 4789 | 8472 | 3544 | 2152 | 67 | 68) || is_dns_port(p)
}

impl Sensor {
    /// Start loading the flow-table memory a frame's lookup will read, a few frames before it
    /// is processed (a reader that can look ahead calls it): at a million flows that lookup is
    /// a cache miss, which this overlaps with the work on the frames in between (with a small
    /// table it returns at once). A hint only: it changes no state and no result.
    #[inline]
    pub fn prefetch(&self, frame: &Frame<'_>) {
        if !self.flows.worth_prefetching() {
            return;
        }
        if let Some(p) = wire::packet(frame.linktype, frame.data) {
            let (key, _) = FlowKey::new(p.src, p.sp, p.dst, p.dp, p.proto);
            self.flows.prefetch(&key);
        }
    }

    /// Take the frame on the fast path if the slow path would do nothing with it but update
    /// its flow's last-seen time; returns whether it did. Counters and the sweep schedule are
    /// the caller's. Frames the view cannot read (tunnels, fragments, IPv6 extension headers,
    /// other link types, inconsistent lengths) always go to the slow path.
    #[inline]
    pub(super) fn fast_path(&mut self, frame: &Frame<'_>) -> bool {
        let Some(p) = wire::packet(frame.linktype, frame.data) else {
            return false;
        };
        let udp = match p.proto {
            6 => {
                if p.tcp_flags & TCP_SYN != 0 {
                    return false;
                }
                false
            }
            _ => {
                if udp_port_special(p.sp) || udp_port_special(p.dp) {
                    return false;
                }
                // An empty datagram on another port is dropped before the flow lookup.
                if p.payload_len == 0 {
                    return true;
                }
                true
            }
        };
        let (key, src_a) = FlowKey::new(p.src, p.sp, p.dst, p.dp, p.proto);
        let Some(f) = self.flows.get_mut(&key) else {
            // TCP without SYN or data does not open a flow.
            return !udp && p.payload_len == 0;
        };
        f.last_ns = f.last_ns.max(frame.ts_ns);
        match f.state {
            // A QUIC 4-tuple that is done still looks at its client's long-header datagrams: one
            // may open a new connection (`quic::new_connection`).
            State::Done => {
                !(udp && f.quic_dcid != 0 && f.client_a == Some(src_a) && p.first & 0x80 != 0)
            }
            // QUIC: a client datagram without a long header (no Initial: after the handshake),
            // or a server one while no hello waits for it.
            _ if udp => {
                f.state == State::Quic
                    && if f.client_a == Some(src_a) {
                        p.first & 0x80 == 0
                    } else {
                        !f.awaiting
                    }
            }
            _ => p.payload_len == 0 || p.tcp_flags & TCP_RST != 0 || !wants_data(f, src_a),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use etherparse::{LaxNetSlice, PacketBuilder, TransportSlice};

    use super::*;
    use crate::decode::link;
    use crate::flow::{Config, Observation};

    /// xorshift64*: a fixed-seed source of mutations.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);

    /// A frame of a small conversation: flow `i`, packet `k`, over IPv4 or IPv6, with or
    /// without a VLAN tag; TCP flows carry a handshake, one client request (HTTP, or bytes no
    /// classifier takes), then server data and ACKs; UDP flows carry opaque datagrams.
    fn frame(i: u32, k: u32) -> Vec<u8> {
        let v6 = i.is_multiple_of(3);
        let (c4, s4) = ([10, 0, (i >> 8) as u8, i as u8], [192, 0, 2, (i % 7) as u8]);
        let mut c6 = [0u8; 16];
        c6[0] = 0xfd;
        c6[15] = i as u8;
        let mut s6 = [0u8; 16];
        s6[0] = 0x20;
        s6[15] = (i % 7) as u8;
        let vid = etherparse::VlanId::try_new(7).unwrap();
        let eth = if i % 8 == 1 {
            PacketBuilder::ethernet2(MACS.0, MACS.1).single_vlan(vid)
        } else {
            PacketBuilder::ethernet2(MACS.0, MACS.1).double_vlan(vid, vid)
        };
        let eth_plain = PacketBuilder::ethernet2(MACS.0, MACS.1);
        let to_server = k % 3 != 2;
        let ip = match (v6, to_server, i % 4 == 1) {
            (false, true, true) => eth.ipv4(c4, s4, 64),
            (false, false, true) => eth.ipv4(s4, c4, 64),
            (true, true, true) => eth.ipv6(c6, s6, 64),
            (true, false, true) => eth.ipv6(s6, c6, 64),
            (false, true, false) => eth_plain.ipv4(c4, s4, 64),
            (false, false, false) => eth_plain.ipv4(s4, c4, 64),
            (true, true, false) => eth_plain.ipv6(c6, s6, 64),
            (true, false, false) => eth_plain.ipv6(s6, c6, 64),
        };
        let (cp, sp) = (
            40_000 + i as u16,
            if i.is_multiple_of(5) { 8080 } else { 443 },
        );
        let (a, b) = if to_server { (cp, sp) } else { (sp, cp) };
        let mut v = Vec::new();
        if i % 6 == 5 {
            let _ = ip.udp(a, b).write(&mut v, &[0x5a; 40][..(k as usize % 40)]);
            return v;
        }
        let seq = 1000 + k * 100;
        let t = ip.tcp(a, b, seq, 1024);
        let (t, payload): (_, &[u8]) = match k {
            0 => (t.syn(), b""),
            1 => (t.syn().ack(1), b""),
            3 if i.is_multiple_of(5) => (t.ack(1), b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"),
            3 => (t.ack(1), b"\x00\x01 not a protocol anyone speaks"),
            _ if k % 7 == 6 => (t.ack(1).rst(), b""),
            _ => (t.ack(1), &[0x17; 300][..(k as usize * 37) % 300]),
        };
        let _ = t.write(&mut v, payload);
        v
    }

    /// A copy of `f` with a few bytes in the headers changed, or cut short.
    fn mutate(f: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut m = f.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(m.len().min(80));
            if at < m.len() {
                m[at] = rng.next() as u8;
            }
        }
        if rng.below(8) == 0 {
            m.truncate(rng.below(m.len() + 1));
        }
        m
    }

    /// The view agrees with the full decoder whenever it reads a frame: same addresses,
    /// ports, protocol and payload length, no fragment.
    #[test]
    fn view_agrees_with_full_decoding_on_mutated_frames() {
        let mut rng = Rng(0x5eed);
        let mut read = 0;
        for i in 0..300 {
            for k in 0..12 {
                let f = frame(i, k);
                for m in std::iter::once(f.clone()).chain((0..20).map(|_| mutate(&f, &mut rng))) {
                    for lt in [link::LINKTYPE_ETHERNET, link::LINKTYPE_RAW] {
                        let data = if lt == link::LINKTYPE_RAW {
                            m.get(14..).unwrap_or(&[])
                        } else {
                            &m[..]
                        };
                        let Some(p) = wire::packet(lt, data) else {
                            continue;
                        };
                        read += 1;
                        let s =
                            link::slice(lt, data).expect("view read a frame the decoder rejects");
                        let (src, dst, frag): (IpAddr, IpAddr, bool) = match &s.net {
                            Some(LaxNetSlice::Ipv4(v)) => (
                                v.header().source_addr().into(),
                                v.header().destination_addr().into(),
                                v.payload().fragmented,
                            ),
                            Some(LaxNetSlice::Ipv6(v)) => (
                                v.header().source_addr().into(),
                                v.header().destination_addr().into(),
                                v.payload().fragmented,
                            ),
                            _ => panic!("view read a frame without IP: {m:?}"),
                        };
                        assert_eq!((src, dst, frag), (p.src, p.dst, false), "{m:?}");
                        let (sp, dp, len, proto) = match &s.transport {
                            Some(TransportSlice::Tcp(t)) => {
                                (t.source_port(), t.destination_port(), t.payload().len(), 6)
                            }
                            Some(TransportSlice::Udp(u)) => {
                                (u.source_port(), u.destination_port(), u.payload().len(), 17)
                            }
                            _ => panic!("view read a transport the decoder does not: {m:?}"),
                        };
                        assert_eq!(
                            (sp, dp, len, proto),
                            (p.sp, p.dp, p.payload_len, p.proto),
                            "{m:?}"
                        );
                    }
                }
            }
        }
        assert!(read > 50_000, "{read}");
    }

    /// Replay `frames`; with `ahead`, each frame is announced with [`Sensor::prefetch`] that many
    /// frames before it is processed.
    fn run(frames: &[Vec<u8>], fast: bool, ahead: usize) -> (Vec<Observation>, String, usize) {
        // Idle limits near the time between two packets of a flow (100 ms a frame, about 200
        // frames a round): a fast path that failed to keep a flow alive would show in the counts.
        let mut s = Sensor::new(Config {
            tcp_idle_s: 30,
            udp_idle_s: 20,
            ..Config::default()
        });
        s.fast = fast;
        let mut out = Vec::new();
        let fr = |n: usize| Frame {
            ts_ns: 1_700_000_000_000_000_000 + n as u64 * 100_000_000,
            linktype: link::LINKTYPE_ETHERNET,
            data: &frames[n],
            orig_len: frames[n].len() as u32,
            offset: 0,
            csum: Default::default(),
        };
        for n in 0..frames.len() {
            if ahead > 0 && n + ahead < frames.len() {
                s.prefetch(&fr(n + ahead));
            }
            s.process(&fr(n), &mut out);
        }
        s.finish(&mut out);
        let stats = serde_json::to_string(&s.stats()).unwrap();
        (out, stats, s.flows.len())
    }

    /// The same frames (conversations interleaved with mutated copies of their packets) give
    /// the same observations, counters and flow table with and without the fast path, and with
    /// prefetching.
    #[test]
    fn fast_and_slow_paths_give_the_same_results() {
        let mut rng = Rng(0xfa57);
        let mut frames = Vec::new();
        for k in 0..40 {
            for i in 0..200 {
                let f = frame(i, k);
                if rng.below(4) == 0 {
                    frames.push(mutate(&f, &mut rng));
                }
                frames.push(f);
            }
        }
        let (fast_obs, fast_stats, fast_flows) = run(&frames, true, 0);
        let (slow_obs, slow_stats, slow_flows) = run(&frames, false, 0);
        // Prefetching ahead is a hint: the same results again.
        assert_eq!(
            run(&frames, true, 4),
            (fast_obs.clone(), fast_stats.clone(), fast_flows)
        );
        assert!(!fast_obs.is_empty());
        assert!(fast_stats.contains("\"expired\":"), "{fast_stats}");
        assert_eq!(fast_obs, slow_obs);
        assert_eq!(fast_stats, slow_stats);
        assert_eq!(fast_flows, slow_flows);
    }
}
