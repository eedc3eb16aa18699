//! UDP datagrams: tunnels (VXLAN, Teredo, GTP-U), DHCP (client host names), stateless DNS on its
//! ports, and per-flow classification of the rest as QUIC or DNS on an odd port.

use etherparse::UdpSlice;

use crate::decode::{dhcp, dns, quic, tunnel, vpn, Nesting};

use super::checksum;
use super::emit::{Ctx, Seg, Sinks};
use super::observation::*;
use super::ports::is_dns_port;
use super::quic::quic_datagram;
use super::sensor::{Sensor, HOLD_NS, MAX_HELD};
use super::state::{Flow, FlowKey, State};

/// NetBIOS name service uses the DNS wire format with encoded names; it is not DNS.
#[inline]
fn is_netbios(sp: u16, dp: u16) -> bool {
    matches!(sp, 137 | 138) || matches!(dp, 137 | 138)
}

impl Sensor {
    pub(super) fn udp(
        &mut self,
        mut cx: Ctx,
        u: &UdpSlice<'_>,
        nest: Option<Nesting>,
        out: &mut Vec<Observation>,
    ) {
        let (sp, dp, payload) = (u.source_port(), u.destination_port(), u.payload());
        if let Some(mut nest) = nest {
            match tunnel::from_udp(sp, dp, payload, &mut nest) {
                Ok(Some(inner)) => {
                    self.stats.tunneled += 1;
                    cx.tunneled = true;
                    self.ip_packet(&inner, cx, Some(nest), out);
                    return;
                }
                Ok(None) => {}
                Err(_) => {
                    self.stats.malformed.too_deep += 1;
                    return;
                }
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
            watch_budget: &self.watch_budget,
            hosts: &self.hosts,
            names: &mut self.names,
            queries: &mut self.queries,
            public: &mut self.public,
            cache_answers: self.cfg.cache_answers_per_message,
            stats: &mut self.stats,
            out,
            report: !self.shadow,
        };
        if is_dns_port(sp) || is_dns_port(dp) {
            // DNS on its own ports is stateless: no flow entry per query.
            sinks.dns(&seg, payload, &[]);
            return;
        }
        if payload.is_empty() || self.shadow {
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
        flow.last_ns = flow.last_ns.max(cx.ts);
        if flow.state == State::Done
            && flow.client_a == Some(src_a)
            && super::quic::new_connection(flow, payload, &mut sinks)
        {
            flow.restart_quic();
        }
        if flow.state == State::New {
            // A VPN handshake: a blind spot (unless it is the clinic's own VPN), nothing more
            // to learn from the flow.
            if let Some(h) = vpn::classify(sp, dp, payload) {
                flow.finish();
                if self.cfg.is_known_tunnel(cx.src) || self.cfg.is_known_tunnel(cx.dst) {
                    sinks.stats.blind.known_tunnel += 1;
                } else {
                    sinks.blind_spot(super::blind::vpn_spot(h, &seg));
                }
                return;
            }
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
                if !checksum::udp_ok(&cx, u) {
                    sinks.stats.flows.bad_checksum += 1;
                }
                let watched = flow.quic.as_ref().is_some_and(|c| c.until != 0);
                let o = quic_datagram(flow, &seg, payload, &mut sinks);
                let until = flow.quic.as_ref().map_or(0, |c| c.until);
                if !watched && until != 0 {
                    // (the flow table and the watch list are separate fields)
                    if self.watches.len() >= self.cfg.max_flows.max(1) {
                        self.watches.pop_front();
                    }
                    self.watches.push_back((until, key));
                }
                let Some(o) = o else {
                    return;
                };
                // Held until the server answers: a hello in another's name gets no answer
                // the sender can see, and is never acted on. Each version of the hello on
                // the 4-tuple waits for an answer after it.
                flow.awaiting = true;
                if let Some((_, list)) = self.held.get_mut(&key) {
                    list.push(*o);
                    return;
                }
                if self.held.len() >= MAX_HELD {
                    flow.finish();
                    self.stats.quic.unanswered += 1;
                    let mut o = *o;
                    o.unanswered = true;
                    self.report(o, out);
                    return;
                }
                self.held
                    .insert(key, (cx.ts.saturating_add(HOLD_NS), vec![*o]));
            }
            State::Quic if flow.awaiting => {
                // The server answered: the hellos are reported as verified; the 4-tuple stays
                // watched for another version until its window ends.
                flow.awaiting = false;
                if flow.quic.is_none() {
                    flow.finish();
                }
                if let Some((_, list)) = self.held.remove(&key) {
                    for o in list {
                        sinks.emit(o);
                    }
                }
            }
            _ => {}
        }
    }
}
