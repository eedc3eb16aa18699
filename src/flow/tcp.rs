//! The TCP reassembly driver: flow lookup, SYN bookkeeping and buffering of each direction's first
//! flight until the stream classifier has what it needs.

use etherparse::TcpSlice;

use crate::decode::http;

use super::emit::{Ctx, Seg, Sinks};
use super::observation::*;
use super::reassembly::{Insert, SparseBuf};
use super::sensor::Sensor;
use super::state::{Flow, FlowKey, State, Stream};
use super::stream::{http_observation, on_stream};

impl Sensor {
    pub(super) fn tcp(&mut self, cx: Ctx, t: &TcpSlice<'_>, out: &mut Vec<Observation>) {
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
