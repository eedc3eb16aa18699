//! The TCP reassembly driver: flow lookup, SYN bookkeeping and buffering of each direction's first
//! flight until the stream classifier (`stream.rs`) has what it needs.

use etherparse::TcpSlice;

use crate::decode::http;

use super::checksum;
use super::desync::{self, Watched};
use super::emit::{Ctx, Seg, Sinks};
use super::observation::*;
use super::reassembly::{Cmp, Insert, SparseBuf};
use super::sensor::Sensor;
use super::state::{Flow, FlowKey, State, Stream};
use super::stream::{http_observation, on_stream};

/// Where a segment's data goes: its direction, its sequence number and the buffer cap.
#[derive(Clone, Copy)]
pub(super) struct Place {
    /// Index into the flow's per-direction state: 0 when the source is endpoint `a`.
    pub(super) dir: usize,
    pub(super) src_a: bool,
    /// Sequence number of the segment's first data byte.
    pub(super) seq: u32,
    /// Largest buffer for this direction (DNS over TCP takes whole messages).
    pub(super) cap: usize,
    /// The checksum is right (or could not be checked).
    pub(super) trusted: bool,
}

impl Sensor {
    /// One TCP segment: find or make its flow, note SYNs, and feed client data to the stream
    /// classifier, in place when it starts the stream, else through the direction's buffer.
    pub(super) fn tcp(&mut self, cx: Ctx, t: &TcpSlice<'_>, out: &mut Vec<Observation>) {
        let before = out.len();
        if let Some((key, until)) = self.tcp_segment(cx, t, out) {
            self.watched(key, until);
        }
        if out.len() > before {
            let verified = self.handshake_verified(cx, t);
            // The observations this segment completed: note where the flow stood.
            let mut next = t.sequence_number().wrapping_add(t.payload().len() as u32);
            if t.syn() {
                next = next.wrapping_add(1);
            }
            if t.fin() {
                next = next.wrapping_add(1);
            }
            let seq = TcpSeq {
                client_next: next,
                server_next: t.acknowledgment_number(),
                has_ack: t.ack(),
            };
            for o in &mut out[before..] {
                if o.transport == Transport::Tcp
                    && o.client.ip == cx.src
                    && o.client.port == t.source_port()
                {
                    o.tcp = Some(seq);
                    if !verified {
                        o.flags.push(Flag::UnverifiedSource);
                    }
                }
            }
        }
    }

    /// Did this segment come from the end that made the connection's handshake? It must
    /// acknowledge the other side's SYN (its ISN + 1), and that SYN must have answered this
    /// side's own. A host that forges another's address without seeing the server's answer
    /// cannot know that number.
    fn handshake_verified(&mut self, cx: Ctx, t: &TcpSlice<'_>) -> bool {
        let (key, src_a) = FlowKey::new(cx.src, t.source_port(), cx.dst, t.destination_port(), 6);
        let Some(f) = self.flows.get_mut(&key) else {
            return false;
        };
        let (mine, theirs) = if src_a { (0, 1) } else { (1, 0) };
        t.ack()
            && f.isn[mine].is_some()
            && f.isn[theirs] == Some(t.acknowledgment_number())
            && f.synack_ok
    }

    /// A segment through [`Sensor::tcp_data`]; the flow and when its watch ends, if the
    /// segment began one.
    fn tcp_segment(
        &mut self,
        cx: Ctx,
        t: &TcpSlice<'_>,
        out: &mut Vec<Observation>,
    ) -> Option<(FlowKey, u64)> {
        if self.shadow || t.payload().is_empty() {
            self.tcp_data(cx, t, out);
            return None;
        }
        let (key, _) = FlowKey::new(cx.src, t.source_port(), cx.dst, t.destination_port(), 6);
        let before = self
            .flows
            .get_mut(&key)
            .is_some_and(|f| desync::until(f).is_some());
        self.tcp_data(cx, t, out);
        if before {
            return None;
        }
        self.flows
            .get_mut(&key)
            .and_then(|f| desync::until(f))
            .map(|until| (key, until))
    }

    fn tcp_data(&mut self, cx: Ctx, t: &TcpSlice<'_>, out: &mut Vec<Observation>) {
        if self.shadow {
            return; // another shard's flow (sharded replay)
        }
        let (sp, dp, payload) = (t.source_port(), t.destination_port(), t.payload());
        let (key, src_a) = FlowKey::new(cx.src, sp, cx.dst, dp, 6);
        let dir = if src_a { 0 } else { 1 };
        let flow = match self.flows.get_mut(&key) {
            Some(f) => {
                if (f.state == State::Done || desync::until(f).is_some_and(|u| u < cx.ts))
                    && t.syn()
                    && !t.ack()
                    && f.isn[dir] != Some(t.sequence_number().wrapping_add(1))
                {
                    // A new connection on a finished flow's 4-tuple (a reused port): its own.
                    *f = Flow::new(cx.ts, false);
                    self.stats.flows.created += 1;
                } else if t.syn()
                    && t.ack()
                    && f.client_a == Some(!src_a)
                    && f.pending_syn == Some(t.acknowledgment_number())
                {
                    // The server accepted the client's new SYN on a flow still open to the
                    // sensor (HTTP, DNS over TCP): a new connection on the reused 4-tuple. A
                    // server answers a SYN inside a live connection with an ACK, never this.
                    let client_a = f.client_a;
                    *f = Flow::new(cx.ts, false);
                    f.client_a = client_a;
                    f.isn[1 - dir] = Some(t.acknowledgment_number());
                    self.stats.flows.created += 1;
                    self.stats.flows.reused_tuple += 1;
                }
                f.last_ns = f.last_ns.max(cx.ts);
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
        let seq = note_syn(flow, t, dir, src_a);
        if payload.is_empty() || t.rst() || !wants_data(flow, src_a) {
            return;
        }
        let trusted = checksum::tcp_ok(&cx, t);
        if !trusted {
            self.stats.flows.bad_checksum += 1;
        }
        let seg = Seg {
            cx,
            sp,
            dp,
            transport: Transport::Tcp,
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
        let at = Place {
            dir,
            src_a,
            seq,
            cap: match flow.state {
                State::DnsTcp => 65_537,
                _ => self.cfg.stream_cap,
            },
            trusted,
        };
        // A judged first flight: this segment may be another version of it.
        if flow.watch.is_some() && flow.client_a == Some(src_a) {
            match desync::segment(flow, at, payload, &seg, &mut sinks) {
                Watched::Taken => return,
                Watched::Ended if flow.state != State::Http => return,
                _ => {}
            }
        }
        if flow.state == State::Watch {
            desync::later_hello(flow, at, payload, &seg, &mut sinks);
            return;
        }
        // HTTP after the first request: each later request head is read from its own segment.
        if flow.state == State::Http && flow.last_host != 0 {
            later_http_request(flow, &seg, payload, &mut sinks);
            return;
        }
        if flow.streams[dir].is_none() && start_stream(flow, at, payload, &seg, &mut sinks) {
            return;
        }
        buffered_segment(flow, at, payload, &seg, &mut sinks);
    }
}

/// SYN bookkeeping: the stream's first sequence number and, if not yet known, which side is the
/// client. Returns the sequence number of the segment's first data byte.
fn note_syn(flow: &mut Flow, t: &TcpSlice<'_>, dir: usize, src_a: bool) -> u32 {
    let mut seq = t.sequence_number();
    if t.syn() {
        seq = seq.wrapping_add(1);
        if !t.ack() && flow.synack_ok && flow.isn[dir].is_some_and(|i| i != seq) {
            // Another SYN on a connection whose handshake was seen: a server never takes it
            // (a fake, perhaps TTL-limited, to move where the sensor reads the stream from).
            // A real new connection on the 4-tuple comes after this one finished (TIME_WAIT),
            // when the flow is started afresh, or the server's SYN-ACK to it says so.
            flow.pending_syn = Some(seq);
            return seq;
        }
        // A SYN-ACK answers the other side's SYN: it must acknowledge that SYN's number.
        if t.ack() {
            flow.synack_ok = flow.isn[1 - dir] == Some(t.acknowledgment_number());
        }
        flow.isn[dir] = Some(seq);
        if flow.client_a.is_none() {
            flow.client_a = Some(if t.ack() { !src_a } else { src_a });
        }
    }
    seq
}

/// Does the flow want this side's data? A new, TLS or HTTP flow only takes the client's; DNS over
/// TCP and SOCKS take both sides; a flow done or claimed by a UDP protocol takes none.
pub(super) fn wants_data(flow: &Flow, src_a: bool) -> bool {
    let from_client = flow.client_a.map(|c| c == src_a);
    match flow.state {
        State::New | State::Tls | State::Http | State::H2c | State::Watch
            if from_client == Some(false) =>
        {
            false
        }
        State::Done | State::Quic | State::DnsUdp => false,
        _ => true,
    }
}

/// A later request on an HTTP connection (keep-alive): its head is parsed from this segment alone.
fn later_http_request(flow: &mut Flow, seg: &Seg, payload: &[u8], sinks: &mut Sinks<'_>) {
    if http::looks_like_request(payload) {
        if let http::HttpParse::Request(r) = http::parse_request(payload) {
            http_observation(flow, seg, r, false, sinks);
        }
    }
}

/// The first data segment of a direction without a buffer. Fast path: the segment starts the
/// stream, so parse it in place and buffer only what is left when the parser wants more; returns
/// true (done with the segment). Otherwise open an empty buffer at the stream start; false.
fn start_stream(
    flow: &mut Flow,
    at: Place,
    payload: &[u8],
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) -> bool {
    let base = flow.isn[at.dir].unwrap_or(at.seq);
    if base == at.seq {
        let (used, more) = on_stream(flow, at.dir, at.src_a, payload, false, seg, sinks);
        if !more {
            // Judged in place: keep the bytes, and watch for another version of them.
            if desync::watchable(flow, at.src_a, true) {
                desync::begin_with(flow, at.seq, payload, sinks, at.cap, seg.cx.ts);
            }
            return true;
        }
        let mut buf = SparseBuf::with_budget(at.cap, sinks.budget);
        if buf.insert(0, &payload[used..]) == Insert::OverBudget {
            sinks.stats.flows.reassembly_budget_exceeded += 1;
            flow.finish();
            return true;
        }
        flow.streams[at.dir] = Some(Box::new(Stream {
            base: at.seq.wrapping_add(used as u32),
            buf,
            segments: 1,
            consumed: used > 0,
        }));
        return true;
    }
    flow.streams[at.dir] = Some(Box::new(Stream {
        base,
        buf: SparseBuf::with_budget(at.cap, sinks.budget),
        segments: 0,
        consumed: false,
    }));
    false
}

/// A segment for a direction with a buffer: store it in place, then let the classifier look at
/// the contiguous start again.
fn buffered_segment(flow: &mut Flow, at: Place, payload: &[u8], seg: &Seg, sinks: &mut Sinks<'_>) {
    let isn_known = flow.isn[at.dir].is_some();
    // Bytes that differ from those buffered for the same range: versions from here on.
    let conflict = flow.streams[at.dir].as_ref().is_some_and(|st| {
        let rel = at.seq.wrapping_sub(st.base) as i32;
        !st.consumed && rel >= 0 && st.buf.compare(rel as usize, payload) == Cmp::Conflict
    });
    if conflict && desync::watchable(flow, at.src_a, false) {
        desync::conflict(flow, at, payload, seg, sinks);
        return;
    }
    let Some(st) = flow.streams[at.dir].as_mut() else {
        return;
    };
    let Some(ins) = insert_segment(st, at, payload, isn_known) else {
        return; // retransmission of consumed bytes
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
    reclassify(flow, at, prefix, segmented, seg, sinks);
}

/// Store a segment at its offset in the direction's buffer. A segment before the buffer start
/// moves the start back (reordering with no SYN seen, nothing consumed yet) or gives its bytes
/// past the start. None: a retransmission of bytes already consumed.
fn insert_segment(st: &mut Stream, at: Place, payload: &[u8], isn_known: bool) -> Option<Insert> {
    let rel = at.seq.wrapping_sub(st.base) as i32;
    let ins = if rel >= 0 {
        st.buf.insert(rel as usize, payload)
    } else {
        let back = rel.unsigned_abs() as usize;
        if !st.consumed && !isn_known && back < at.cap {
            // An earlier segment than the one we took as the start (reordering, no SYN seen).
            st.base = at.seq;
            match st.buf.shift_right(back) {
                Insert::Stored => st.buf.insert(0, payload),
                o => o,
            }
        } else if back < payload.len() {
            st.buf.insert(0, &payload[back..])
        } else {
            return None;
        }
    };
    Some(ins)
}

/// Run the classifier over the buffer's contiguous start (`prefix`, taken out of the stream), put
/// the buffer back without the bytes it consumed, and give the flow up when a full buffer yielded
/// nothing or the classifier wants no more.
fn reclassify(
    flow: &mut Flow,
    at: Place,
    prefix: SparseBuf,
    segmented: bool,
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) {
    let start = flow.streams[at.dir]
        .as_ref()
        .filter(|st| !st.consumed)
        .map(|st| st.base);
    let (used, more) = on_stream(
        flow,
        at.dir,
        at.src_a,
        prefix.contiguous(),
        segmented,
        seg,
        sinks,
    );
    if let Some(start) = start.filter(|_| !more && desync::watchable(flow, at.src_a, true)) {
        // Judged from the buffer: it is the first version; watch for another.
        flow.streams[at.dir] = None;
        let mut prefix = prefix;
        if prefix.rebudget(sinks.watch_budget) {
            desync::begin(flow, start, prefix, true, seg.cx.ts);
        } else {
            sinks.stats.flows.watch_skipped += 1;
            flow.finish();
        }
        return;
    }
    if let Some(st) = flow.streams[at.dir].as_mut() {
        st.buf = prefix;
        if used > 0 {
            st.buf.consume(used);
            st.base = st.base.wrapping_add(used as u32);
            st.consumed = true;
        }
        if more && st.buf.end() >= at.cap && used == 0 {
            sinks.stats.flows.reassembly_overflow += 1;
            flow.finish();
        }
    }
    if !more {
        flow.finish_unless_ongoing();
    }
}
