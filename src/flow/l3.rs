//! The network layer: IPv4/IPv6 addresses, fragments to the defragmenter and back (also cut-short
//! datagrams), IP tunnels (IP-in-IP, GRE) re-entering at the inner packet, dispatch to TCP/UDP.

use std::net::IpAddr;

use etherparse::{
    Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice, UdpSlice,
};

use crate::decode::{tunnel, Nesting};

use super::defrag::{Fragment, Incomplete};
use super::emit::Ctx;
use super::observation::*;
use super::sensor::Sensor;

impl Sensor {
    /// UDP datagrams whose later fragments never came: decode the start (DNS questions survive).
    pub(super) fn incomplete_datagrams(
        &mut self,
        list: Vec<Incomplete>,
        out: &mut Vec<Observation>,
    ) {
        for inc in list {
            if inc.proto != 17 {
                continue;
            }
            if inc.owned {
                self.incomplete_datagram(inc, out);
            } else {
                self.shadowed(out, |s, out| s.incomplete_datagram(inc, out));
            }
        }
    }

    fn incomplete_datagram(&mut self, inc: Incomplete, out: &mut Vec<Observation>) {
        {
            let cx = Ctx {
                ts: inc.last_ns,
                frame: inc.frame,
                src: inc.src,
                dst: inc.dst,
                src_mac: None,
                dst_mac: None,
                tunneled: false,
                fragmented: true,
                check: false,
            };
            let before = out.len();
            // A datagram cut short is not followed into a tunnel (`None`).
            self.reassembled(17, &inc.data, cx, None, out);
            for o in &mut out[before..] {
                if !o.flags.contains(&Flag::Partial) {
                    o.flags.push(Flag::Partial);
                }
            }
        }
    }

    /// One IP packet; `nest` is the frame's nesting budget so far (`None`: follow no tunnel).
    pub(super) fn ip_packet(
        &mut self,
        p: &LaxSlicedPacket<'_>,
        mut cx: Ctx,
        nest: Option<Nesting>,
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
                let inc = Incomplete {
                    src: cx.src,
                    dst: cx.dst,
                    proto,
                    data: f.payload.to_vec(),
                    last_ns: cx.ts,
                    frame: cx.frame,
                    owned: !self.shadow,
                };
                self.incomplete_datagrams(vec![inc], out);
                return;
            }
            if let Some(whole) = self.defrag.add(f, cx.ts, cx.frame, !self.shadow) {
                cx.fragmented = true;
                self.reassembled(proto, &whole, cx, nest, out);
            }
            return;
        }
        if p.ip_payload().is_none_or(|pl| pl.incomplete) {
            cx.check = false;
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => self.tcp(cx, t, out),
            Some(TransportSlice::Udp(u)) => self.udp(cx, u, nest, out),
            Some(_) => {}
            None => {
                if let (Some(pl), Some(nest)) = (p.ip_payload(), nest) {
                    if self.ip_tunnel(pl.ip_number.0, pl.payload, cx, nest, out) {
                        return;
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

    /// An IP payload that may be a tunnel (IP-in-IP, GRE): decode the inner packet within the
    /// nesting budget. Returns whether the payload was taken (tunnelled, or too deep: counted).
    fn ip_tunnel(
        &mut self,
        proto: u8,
        payload: &[u8],
        mut cx: Ctx,
        mut nest: Nesting,
        out: &mut Vec<Observation>,
    ) -> bool {
        match tunnel::from_ip_payload(proto, payload, &mut nest) {
            Ok(Some(inner)) => {
                self.stats.tunneled += 1;
                cx.tunneled = true;
                self.ip_packet(&inner, cx, Some(nest), out);
                true
            }
            Ok(None) => false,
            Err(_) => {
                self.stats.malformed.too_deep += 1;
                true
            }
        }
    }

    /// A datagram rebuilt from fragments: decode its transport header from the owned bytes.
    pub(super) fn reassembled(
        &mut self,
        proto: u8,
        bytes: &[u8],
        cx: Ctx,
        nest: Option<Nesting>,
        out: &mut Vec<Observation>,
    ) {
        match proto {
            6 => match TcpSlice::from_slice(bytes) {
                Ok(t) => self.tcp(cx, &t, out),
                Err(_) => self.stats.malformed.tcp += 1,
            },
            17 => match UdpSlice::from_slice_lax(bytes) {
                Ok(u) => self.udp(cx, &u, nest, out),
                Err(_) => self.stats.malformed.udp += 1,
            },
            p => {
                if let Some(nest) = nest {
                    self.ip_tunnel(p, bytes, cx, nest, out);
                }
            }
        }
    }
}
