//! The sensor: frames in, observations out. A flow is classified by content once (TLS, HTTP,
//! DNS over TCP, QUIC, DNS on an odd port); once it has yielded its names it is marked done and
//! its later packets cost one table lookup. All state is bounded (see [`Config`]).

use std::net::IpAddr;

use etherparse::{
    Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TcpSlice, TransportSlice, UdpSlice,
};

use crate::capture::Frame;
use crate::decode::{dhcp, dns, http, link, quic, tunnel};

pub use super::config::Config;
use super::defrag::{Defrag, Fragment};
use super::emit::{Ctx, Seg, Sinks};
use super::hosts::HostNames;
use super::names::NameCache;
use super::observation::*;
use super::quic::quic_datagram;
use super::reassembly::{Budget, Insert, SparseBuf};
use super::state::{Flow, FlowKey, State, Stream};
pub use super::stats::{FlowStats, KindCounts, Malformed, NameStats, QuicStats, Stats};
use super::stream::{http_observation, on_stream};
use super::table::BoundedMap;

const MAX_DEPTH: u8 = 3;
const SEC: u64 = 1_000_000_000;

#[inline]
pub(super) fn is_dns_port(p: u16) -> bool {
    matches!(p, 53 | 5353 | 5355)
}

/// NetBIOS name service uses the DNS wire format with encoded names; it is not DNS.
#[inline]
fn is_netbios(sp: u16, dp: u16) -> bool {
    matches!(sp, 137 | 138) || matches!(dp, 137 | 138)
}

pub struct Sensor {
    cfg: Config,
    flows: BoundedMap<FlowKey, Flow>,
    names: NameCache,
    defrag: Defrag,
    hosts: HostNames,
    budget: Budget,
    stats: Stats,
    frame_no: u64,
    next_sweep: u64,
}

impl Sensor {
    pub fn new(cfg: Config) -> Sensor {
        Sensor {
            flows: BoundedMap::new(cfg.max_flows),
            names: NameCache::new(cfg.max_names, cfg.name_grace_s),
            defrag: Defrag::new(cfg.max_fragments, cfg.fragment_timeout_s),
            budget: Budget::new(cfg.reassembly_budget),
            hosts: HostNames::new(cfg.max_names),
            cfg,
            stats: Stats::default(),
            frame_no: 0,
            next_sweep: 0,
        }
    }

    /// Counters so far (gauges filled in).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.flows.active = self.flows.len() as u64;
        s.flows.reassembly_bytes = self.budget.used() as u64;
        s.fragments = self.defrag.stats;
        s.names.inserted = self.names.inserted;
        s.names.evicted = self.names.evicted;
        s.names.active = self.names.len() as u64;
        s.names.dhcp_hosts = self.hosts.len() as u64;
        s
    }

    /// Process one frame; observations are appended to `out`.
    pub fn process(&mut self, frame: &Frame<'_>, out: &mut Vec<Observation>) {
        self.frame_no += 1;
        self.stats.frames += 1;
        self.stats.bytes += frame.data.len() as u64;
        if frame.ts_ns >= self.next_sweep {
            self.sweep(frame.ts_ns, out);
        }
        match link::slice(frame.linktype, frame.data) {
            Ok(p) => {
                let (src_mac, dst_mac) = match &p.link {
                    Some(LinkSlice::Ethernet2(e)) => (Some(e.source()), Some(e.destination())),
                    _ => (None, None),
                };
                let cx = Ctx {
                    ts: frame.ts_ns,
                    frame: self.frame_no,
                    src: IpAddr::from([0u8; 4]),
                    dst: IpAddr::from([0u8; 4]),
                    src_mac,
                    dst_mac,
                    tunneled: false,
                    fragmented: false,
                };
                self.ip_packet(&p, cx, 0, out);
            }
            Err(link::LinkError::NotIp) => self.stats.non_ip += 1,
            Err(link::LinkError::Unsupported(_)) => self.stats.unsupported_link += 1,
            Err(link::LinkError::Malformed) => self.stats.malformed.link += 1,
        }
    }

    /// Expire idle flows, fragments and names (run once per second of capture time).
    fn sweep(&mut self, now: u64, out: &mut Vec<Observation>) {
        self.next_sweep = now + SEC;
        let (tcp_idle, udp_idle) = (self.cfg.tcp_idle_s * SEC, self.cfg.udp_idle_s * SEC);
        let n = self
            .flows
            .retain(|f| f.last_ns + if f.udp { udp_idle } else { tcp_idle } >= now);
        self.stats.flows.expired += n as u64;
        let incomplete = self.defrag.expire(now);
        self.incomplete_datagrams(incomplete, out);
        self.names.expire(now);
    }

    /// End of input: datagrams still waiting for fragments are decoded from what arrived.
    pub fn finish(&mut self, out: &mut Vec<Observation>) {
        let incomplete = self.defrag.expire(u64::MAX);
        self.incomplete_datagrams(incomplete, out);
    }

    /// UDP datagrams whose later fragments never came: decode the start (DNS questions survive).
    fn incomplete_datagrams(
        &mut self,
        list: Vec<super::defrag::Incomplete>,
        out: &mut Vec<Observation>,
    ) {
        for inc in list {
            if inc.proto != 17 {
                continue;
            }
            let cx = Ctx {
                ts: inc.last_ns,
                frame: inc.frame,
                src: inc.src,
                dst: inc.dst,
                src_mac: None,
                dst_mac: None,
                tunneled: false,
                fragmented: true,
            };
            let before = out.len();
            self.reassembled(17, &inc.data, cx, MAX_DEPTH, out);
            for o in &mut out[before..] {
                if !o.flags.contains(&Flag::Partial) {
                    o.flags.push(Flag::Partial);
                }
            }
        }
    }

    fn ip_packet(
        &mut self,
        p: &LaxSlicedPacket<'_>,
        mut cx: Ctx,
        depth: u8,
        out: &mut Vec<Observation>,
    ) {
        let frag = match &p.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                cx.src = IpAddr::V4(h.source_addr());
                cx.dst = IpAddr::V4(h.destination_addr());
                let pl = v4.payload();
                pl.fragmented.then(|| Fragment {
                    src: cx.src,
                    dst: cx.dst,
                    id: h.identification() as u32,
                    proto: pl.ip_number.0,
                    offset: h.fragments_offset(),
                    more: h.more_fragments(),
                    payload: pl.payload,
                })
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                cx.src = IpAddr::V6(h.source_addr());
                cx.dst = IpAddr::V6(h.destination_addr());
                let pl = v6.payload();
                if pl.fragmented {
                    v6.extensions().clone().into_iter().find_map(|e| match e {
                        Ipv6ExtensionSlice::Fragment(f) => Some(Fragment {
                            src: cx.src,
                            dst: cx.dst,
                            id: f.identification(),
                            proto: pl.ip_number.0,
                            offset: f.fragment_offset(),
                            more: f.more_fragments(),
                            payload: pl.payload,
                        }),
                        _ => None,
                    })
                } else {
                    None
                }
            }
            _ => {
                self.stats.non_ip += 1;
                return;
            }
        };
        if let Some(f) = frag {
            let proto = f.proto;
            if f.offset.value() == 0
                && proto == 17
                && p.ip_payload().is_some_and(|pl| pl.incomplete)
            {
                // The snap length cut the first fragment: the rest can never be put together.
                // Decode what was captured (DNS questions survive) instead of waiting for it.
                let inc = super::defrag::Incomplete {
                    src: cx.src,
                    dst: cx.dst,
                    proto,
                    data: f.payload.to_vec(),
                    last_ns: cx.ts,
                    frame: cx.frame,
                };
                self.incomplete_datagrams(vec![inc], out);
                return;
            }
            if let Some(whole) = self.defrag.add(f, cx.ts, cx.frame) {
                cx.fragmented = true;
                self.reassembled(proto, &whole, cx, depth, out);
            }
            return;
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => self.tcp(cx, t, out),
            Some(TransportSlice::Udp(u)) => self.udp(cx, u, depth, out),
            Some(_) => {}
            None => {
                if let Some(pl) = p.ip_payload() {
                    if depth < MAX_DEPTH {
                        if let Some(inner) = tunnel::from_ip_payload(pl.ip_number.0, pl.payload) {
                            self.stats.tunneled += 1;
                            cx.tunneled = true;
                            self.ip_packet(&inner, cx, depth + 1, out);
                            return;
                        }
                    }
                }
                if let Some((_, layer)) = &p.stop_err {
                    use etherparse::err::Layer;
                    match layer {
                        Layer::TcpHeader => self.stats.malformed.tcp += 1,
                        Layer::UdpHeader => self.stats.malformed.udp += 1,
                        _ => self.stats.malformed.ip += 1,
                    }
                }
            }
        }
    }

    /// A datagram rebuilt from fragments: decode its transport header from the owned bytes.
    fn reassembled(
        &mut self,
        proto: u8,
        bytes: &[u8],
        cx: Ctx,
        depth: u8,
        out: &mut Vec<Observation>,
    ) {
        match proto {
            6 => match TcpSlice::from_slice(bytes) {
                Ok(t) => self.tcp(cx, &t, out),
                Err(_) => self.stats.malformed.tcp += 1,
            },
            17 => match UdpSlice::from_slice_lax(bytes) {
                Ok(u) => self.udp(cx, &u, depth, out),
                Err(_) => self.stats.malformed.udp += 1,
            },
            p if depth < MAX_DEPTH => {
                if let Some(inner) = tunnel::from_ip_payload(p, bytes) {
                    let mut cx = cx;
                    cx.tunneled = true;
                    self.ip_packet(&inner, cx, depth + 1, out);
                }
            }
            _ => {}
        }
    }

    fn udp(&mut self, mut cx: Ctx, u: &UdpSlice<'_>, depth: u8, out: &mut Vec<Observation>) {
        let (sp, dp, payload) = (u.source_port(), u.destination_port(), u.payload());
        if depth < MAX_DEPTH {
            if let Some(inner) = tunnel::from_udp(sp, dp, payload) {
                self.stats.tunneled += 1;
                cx.tunneled = true;
                self.ip_packet(&inner, cx, depth + 1, out);
                return;
            }
        }
        if matches!((sp, dp), (68, 67) | (67, 68)) {
            match dhcp::parse(payload) {
                Some(lease) => self.hosts.learn(&lease, cx.ts),
                None => self.stats.malformed.udp += 1,
            }
            return;
        }
        let seg = Seg {
            cx,
            sp,
            dp,
            transport: Transport::Udp,
        };
        let mut sinks = Sinks {
            budget: &self.budget,
            hosts: &self.hosts,
            names: &mut self.names,
            stats: &mut self.stats,
            out,
        };
        if is_dns_port(sp) || is_dns_port(dp) {
            // DNS on its own ports is stateless: no flow entry per query.
            sinks.dns(&seg, payload, &[]);
            return;
        }
        if payload.is_empty() {
            return;
        }
        let (key, src_a) = FlowKey::new(cx.src, sp, cx.dst, dp, 17);
        let flow = match self.flows.get_mut(&key) {
            Some(f) => f,
            None => {
                sinks.stats.flows.created += 1;
                let (f, evicted) = self.flows.insert(key, Flow::new(cx.ts, true));
                if evicted {
                    sinks.stats.flows.evicted += 1;
                }
                f
            }
        };
        flow.last_ns = cx.ts;
        if flow.state == State::New {
            if quic::looks_like_quic_long(payload) {
                flow.state = State::Quic;
                flow.client_a = Some(src_a);
            } else if !is_netbios(sp, dp)
                && dns::looks_like_dns(payload)
                && dns::parse(payload).is_ok_and(|m| !m.partial)
            {
                flow.state = State::DnsUdp;
            } else {
                flow.tries += 1;
                if flow.tries >= 4 {
                    flow.finish();
                }
                return;
            }
        }
        match flow.state {
            State::DnsUdp => sinks.dns(&seg, payload, &[Flag::OffPort]),
            State::Quic if flow.client_a == Some(src_a) => {
                quic_datagram(flow, &seg, payload, &mut sinks)
            }
            _ => {}
        }
    }

    fn tcp(&mut self, cx: Ctx, t: &TcpSlice<'_>, out: &mut Vec<Observation>) {
        let (sp, dp, payload) = (t.source_port(), t.destination_port(), t.payload());
        let (key, src_a) = FlowKey::new(cx.src, sp, cx.dst, dp, 6);
        let dir = if src_a { 0 } else { 1 };
        let flow = match self.flows.get_mut(&key) {
            Some(f) => {
                f.last_ns = cx.ts;
                if f.state == State::Done {
                    return;
                }
                f
            }
            None => {
                if payload.is_empty() && !t.syn() {
                    return;
                }
                self.stats.flows.created += 1;
                let (f, evicted) = self.flows.insert(key, Flow::new(cx.ts, false));
                if evicted {
                    self.stats.flows.evicted += 1;
                }
                f
            }
        };
        let mut seq = t.sequence_number();
        if t.syn() {
            seq = seq.wrapping_add(1);
            flow.isn[dir] = Some(seq);
            if flow.client_a.is_none() {
                flow.client_a = Some(if t.ack() { !src_a } else { src_a });
            }
        }
        if payload.is_empty() || t.rst() {
            return;
        }
        let from_client = flow.client_a.map(|c| c == src_a);
        match flow.state {
            State::New | State::Tls | State::Http if from_client == Some(false) => return,
            State::Done | State::Quic | State::DnsUdp => return,
            _ => {}
        }
        let seg = Seg {
            cx,
            sp,
            dp,
            transport: Transport::Tcp,
        };
        let mut sinks = Sinks {
            budget: &self.budget,
            hosts: &self.hosts,
            names: &mut self.names,
            stats: &mut self.stats,
            out,
        };
        // HTTP after the first request: each later request head is read from its own segment.
        if flow.state == State::Http && flow.last_host != 0 {
            if http::looks_like_request(payload) {
                if let http::HttpParse::Request(r) = http::parse_request(payload) {
                    http_observation(flow, &seg, r, false, &mut sinks);
                }
            }
            return;
        }
        let cap = match flow.state {
            State::DnsTcp => 65_537,
            _ => self.cfg.stream_cap,
        };
        // Fast path: the segment starts the stream and nothing is buffered yet: parse in place.
        if flow.streams[dir].is_none() {
            let base = flow.isn[dir].unwrap_or(seq);
            if base == seq {
                let (used, more) = on_stream(flow, dir, src_a, payload, false, &seg, &mut sinks);
                if !more {
                    return;
                }
                let mut buf = SparseBuf::with_budget(cap, &self.budget);
                if buf.insert(0, &payload[used..]) == Insert::OverBudget {
                    sinks.stats.flows.reassembly_budget_exceeded += 1;
                    flow.finish();
                    return;
                }
                flow.streams[dir] = Some(Box::new(Stream {
                    base: seq.wrapping_add(used as u32),
                    buf,
                    segments: 1,
                    consumed: used > 0,
                }));
                return;
            }
            flow.streams[dir] = Some(Box::new(Stream {
                base,
                buf: SparseBuf::with_budget(cap, &self.budget),
                segments: 0,
                consumed: false,
            }));
        }
        let isn_known = flow.isn[dir].is_some();
        let Some(st) = flow.streams[dir].as_mut() else {
            return;
        };
        let rel = seq.wrapping_sub(st.base) as i32;
        let ins = if rel >= 0 {
            st.buf.insert(rel as usize, payload)
        } else {
            let back = rel.unsigned_abs() as usize;
            if !st.consumed && !isn_known && back < cap {
                // An earlier segment than the one we took as the start (reordering, no SYN seen).
                st.base = seq;
                match st.buf.shift_right(back) {
                    Insert::Stored => st.buf.insert(0, payload),
                    o => o,
                }
            } else if back < payload.len() {
                st.buf.insert(0, &payload[back..])
            } else {
                return; // retransmission of consumed bytes
            }
        };
        st.segments = st.segments.saturating_add(1);
        match ins {
            Insert::Stored => {}
            Insert::Overflow => sinks.stats.flows.reassembly_overflow += 1,
            Insert::OverBudget => {
                // Every buffer together is at the budget: give this flow up rather than grow.
                sinks.stats.flows.reassembly_budget_exceeded += 1;
                flow.finish();
                return;
            }
        }
        let segmented = st.segments > 1;
        let prefix = std::mem::take(&mut st.buf);
        let (used, more) = on_stream(
            flow,
            dir,
            src_a,
            prefix.contiguous(),
            segmented,
            &seg,
            &mut sinks,
        );
        if let Some(st) = flow.streams[dir].as_mut() {
            st.buf = prefix;
            if used > 0 {
                st.buf.consume(used);
                st.base = st.base.wrapping_add(used as u32);
                st.consumed = true;
            }
            if more && st.buf.end() >= cap && used == 0 {
                sinks.stats.flows.reassembly_overflow += 1;
                flow.finish();
            }
        }
        if !more {
            flow.finish_unless_ongoing();
        }
    }
}
