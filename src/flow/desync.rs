//! Streams that cannot be desynced. SNI-bypass tools (GoodbyeDPI, zapret) send a fake first
//! flight the server never takes (a TTL that expires at the gateway, a bad checksum, a bad
//! acknowledgement or MD5 option, data in a SYN) and then the real one at the same sequence
//! numbers, or split the real hello with a fake before each part. A sensor that decides on the
//! first version it completes and then stops looking is walked past.
//!
//! So every version of a client's first flight is judged: when a segment carries bytes that
//! differ from what a version holds for the same sequence range, a new version is forked (the
//! newest one, with the segment's bytes in place) and judged when complete; the observation it
//! gives is flagged `desync` and `anomaly`, and downstream the most restrictive decision wins
//! (the enforcer acts on any stop). A judged flow stays watched for [`WATCH_NS`] of capture time
//! and [`WATCH_BYTES`] of later client bytes (segments with a bad checksum count for neither:
//! they never reach the server), at most [`MAX_VERSIONS`] versions, every byte held counted
//! against the sensor's reassembly budget.

use super::emit::{Seg, Sinks};
use super::observation::Flag;
use super::reassembly::{Cmp, Insert, SparseBuf};
use super::state::{Flow, State};
use super::stream::on_stream;
use super::tcp::Place;

/// Versions of one first flight kept at most; past it the newest is overwritten (last wins).
pub(super) const MAX_VERSIONS: usize = 8;
/// Later versions judged per flow at most; past it the watch ends (what was decided stands).
const MAX_JUDGED: u8 = 16;
/// How long a judged flow stays watched (capture time).
pub(super) const WATCH_NS: u64 = 3_000_000_000;
/// Client bytes after the first flight looked at before the watch ends.
pub(super) const WATCH_BYTES: u32 = 16 * 1024;
/// Client segments after the first flight looked at before the watch ends.
const WATCH_SEGMENTS: u16 = 32;

/// The versions of a client's first flight and the window they are watched for.
pub(super) struct Watch {
    /// Sequence number of offset 0 of every version.
    start: u32,
    versions: Vec<Version>,
    /// Capture time the watch ends.
    until: u64,
    bytes_left: u32,
    segments_left: u16,
    /// Later versions judged so far.
    judged: u8,
}

struct Version {
    buf: SparseBuf,
    /// Judged: a name reported, or found to be nothing the sensor reads. A version not judged
    /// yet still takes the bytes that extend it.
    judged: bool,
}

/// What the watch made of a client segment.
pub(super) enum Watched {
    /// Part of the first flight: compared, and judged where it made a new version.
    Taken,
    /// After the first flight (application data, a later HTTP request).
    After,
    /// The window is over: the flow is no longer watched.
    Ended,
}

/// Watch the flow from its client's first flight, `first` (judged, or still wanting bytes),
/// which starts at sequence number `start`.
pub(super) fn begin(flow: &mut Flow, start: u32, first: SparseBuf, judged: bool, now: u64) {
    flow.watch = Some(Box::new(Watch {
        start,
        versions: vec![Version { buf: first, judged }],
        until: now.saturating_add(WATCH_NS),
        bytes_left: WATCH_BYTES,
        segments_left: WATCH_SEGMENTS,
        judged: 0,
    }));
    if judged
        && matches!(
            flow.state,
            State::New | State::Tls | State::H2c | State::Done
        )
    {
        flow.state = State::Watch;
    }
}

/// The watch of a judged first flight, from the bytes judged in place (`first`, at the
/// stream's start `start`); past the watch budget it is skipped (counted; the flow ends as it
/// did before).
pub(super) fn begin_with(
    flow: &mut Flow,
    start: u32,
    first: &[u8],
    sinks: &mut Sinks<'_>,
    cap: usize,
    now: u64,
) {
    let mut buf = SparseBuf::with_budget(cap, sinks.watch_budget);
    if buf.insert(0, first) == Insert::OverBudget {
        sinks.stats.flows.watch_skipped += 1;
        flow.finish();
        return;
    }
    begin(flow, start, buf, true, now);
}

/// Can this flow's first flight be watched? Only a client direction read from its start,
/// outside a proxy tunnel (the proxy, not the server, takes the bytes), by a stream
/// classifier that reads hellos and requests (not DNS over TCP or SOCKS). With `judged`, the
/// classifier just said it wants no more: HTTP counts as judged once a request gave a name (a
/// head still without its Host goes on reading, as long heads do).
pub(super) fn watchable(flow: &Flow, src_a: bool, judged: bool) -> bool {
    flow.client_a == Some(src_a)
        && !flow.proxied
        && match flow.state {
            State::New | State::Tls | State::H2c | State::Done => true,
            State::Http => !judged || flow.last_host != 0,
            _ => false,
        }
}

/// A client segment of a watched flow (`seq` its first data byte, `trusted` false when its
/// checksum is bad).
pub(super) fn segment(
    flow: &mut Flow,
    at: Place,
    payload: &[u8],
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) -> Watched {
    let Place {
        dir,
        src_a,
        seq,
        trusted,
        ..
    } = at;
    let Some(w) = flow.watch.as_mut() else {
        return Watched::After;
    };
    if seg.cx.ts > w.until {
        end(flow);
        return Watched::Ended;
    }
    let rel = seq.wrapping_sub(w.start) as i32;
    if flow.isn[dir] == Some(seq) && seq != w.start && (rel < 0 || rel as usize >= at.cap) {
        // The first byte after a newer SYN, far from the watched flight: a new connection on
        // the same 4-tuple (a reused port). Its first flight is read afresh.
        flow.watch = None;
        flow.state = State::New;
        flow.streams = [None, None];
        flow.last_host = 0;
        return Watched::After;
    }
    let (off, data) = if rel >= 0 {
        (rel as usize, payload)
    } else {
        match payload.get(rel.unsigned_abs() as usize..) {
            Some(d) if !d.is_empty() => (0, d),
            // Wholly before the stream's start: outside the window, never taken.
            _ => return Watched::Taken,
        }
    };
    let first_end = w.versions.iter().map(|v| v.buf.end()).max().unwrap_or(0);
    let open = w.versions.iter().any(|v| !v.judged);
    if off >= first_end && !open {
        if trusted {
            w.bytes_left = w.bytes_left.saturating_sub(data.len() as u32);
            w.segments_left = w.segments_left.saturating_sub(1);
            if w.bytes_left == 0 || w.segments_left == 0 {
                end(flow);
                return Watched::Ended;
            }
        }
        return Watched::After;
    }
    let mut placed = false;
    let mut changed: Vec<usize> = Vec::new();
    for (i, v) in w.versions.iter_mut().enumerate() {
        match v.buf.compare(off, data) {
            Cmp::Conflict => {}
            Cmp::Same => placed = true,
            Cmp::Extends => {
                placed = true;
                // A judged version ends where it was judged: later bytes are application data.
                if !v.judged {
                    match v.buf.insert(off, data) {
                        Insert::OverBudget => {
                            sinks.stats.flows.reassembly_budget_exceeded += 1;
                            end(flow);
                            return Watched::Ended;
                        }
                        Insert::Overflow => sinks.stats.flows.reassembly_overflow += 1,
                        Insert::Stored => {}
                    }
                    changed.push(i);
                }
            }
        }
    }
    if !placed {
        // Different bytes from every version: another version of the first flight.
        sinks.stats.flows.desync += 1;
        let newest = w.versions.len() - 1;
        let at = if w.versions.len() < MAX_VERSIONS {
            let Some(buf) = w.versions[newest].buf.try_clone() else {
                sinks.stats.flows.reassembly_budget_exceeded += 1;
                end(flow);
                return Watched::Ended;
            };
            w.versions.push(Version { buf, judged: false });
            newest + 1
        } else {
            sinks.stats.flows.desync_versions_full += 1;
            newest
        };
        let v = &mut w.versions[at];
        v.judged = false;
        if v.buf.insert(off, data) == Insert::OverBudget {
            sinks.stats.flows.reassembly_budget_exceeded += 1;
            end(flow);
            return Watched::Ended;
        }
        changed.push(at);
    }
    for i in changed {
        if !judge(flow, i, dir, src_a, seg, sinks) {
            end(flow);
            return Watched::Ended;
        }
    }
    Watched::Taken
}

/// Judge version `i` (a flow of its own, so the real flow's state is untouched); returns false
/// when the flow has judged as many versions as it may.
fn judge(
    flow: &mut Flow,
    i: usize,
    dir: usize,
    src_a: bool,
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) -> bool {
    let mut tmp = Flow::new(seg.cx.ts, false);
    tmp.client_a = flow.client_a;
    tmp.isn = flow.isn;
    tmp.synack_ok = flow.synack_ok;
    let Some(w) = flow.watch.as_mut() else {
        return false;
    };
    let v = &mut w.versions[i];
    let data = v.buf.contiguous();
    if data.is_empty() {
        return true;
    }
    let before = sinks.out.len();
    let (_, more) = on_stream(&mut tmp, dir, src_a, data, true, seg, sinks);
    for o in &mut sinks.out[before..] {
        o.flags.push(Flag::Desync);
        if !o.flags.contains(&Flag::Anomaly) {
            o.flags.push(Flag::Anomaly);
        }
    }
    if more && tmp.state != State::Done {
        return true;
    }
    v.judged = true;
    w.judged = w.judged.saturating_add(1);
    // A request: the connection goes on as HTTP (later requests read one by one).
    if tmp.state == State::Http {
        flow.state = State::Http;
        flow.last_host = tmp.last_host;
    } else if flow.state != State::Http && w.versions.iter().all(|v| v.judged) {
        flow.state = State::Watch;
    }
    if w.judged >= MAX_JUDGED {
        sinks.stats.flows.desync_versions_full += 1;
        return false;
    }
    true
}

/// The sweep: end the flow's watch (TCP) or QUIC watch if its window is over.
pub(super) fn end_if_due(flow: &mut Flow, now: u64) {
    if flow.watch.as_ref().is_some_and(|w| w.until <= now) {
        end(flow);
    }
    if flow.state == State::Quic
        && !flow.awaiting
        && flow
            .quic
            .as_ref()
            .is_some_and(|c| c.until != 0 && c.until <= now)
    {
        flow.finish();
    }
}

/// When the flow's watch ends (capture time), if it has one.
pub(super) fn until(flow: &Flow) -> Option<u64> {
    flow.watch.as_ref().map(|w| w.until)
}

/// The window is over: a flow judged but for its watch is done; HTTP keeps reading requests.
fn end(flow: &mut Flow) {
    flow.watch = None;
    if flow.state != State::Http {
        flow.finish();
    }
}

/// A client segment of a flow not yet judged that conflicts with its buffered first flight:
/// the buffer becomes the first version (not judged yet) and the segment a second one.
pub(super) fn conflict(
    flow: &mut Flow,
    at: Place,
    payload: &[u8],
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) {
    let Some(st) = flow.streams[at.dir].take() else {
        return;
    };
    let mut st = *st;
    if !st.buf.rebudget(sinks.watch_budget) {
        sinks.stats.flows.watch_skipped += 1;
        flow.finish();
        return;
    }
    begin(flow, st.base, st.buf, false, seg.cx.ts);
    segment(flow, at, payload, seg, sinks);
}

/// A segment after a judged TLS first flight that starts another ClientHello (the second hello
/// after a HelloRetryRequest, whose name a server may not compare with the first): judged from
/// this segment alone, within the watch window.
pub(super) fn later_hello(
    flow: &Flow,
    at: Place,
    payload: &[u8],
    seg: &Seg,
    sinks: &mut Sinks<'_>,
) {
    if payload.len() < 6 || payload[0] != 0x16 || payload[5] != 0x01 {
        return;
    }
    let mut tmp = Flow::new(seg.cx.ts, false);
    tmp.client_a = flow.client_a;
    tmp.isn = flow.isn;
    on_stream(&mut tmp, at.dir, at.src_a, payload, false, seg, sinks);
}
