//! Offline replay: capture files through the sensor, observations to a callback. Shared by the
//! CLI, the integration tests and the benchmarks.

use std::path::Path;

use crate::capture::{CaptureError, CaptureFile, Frame};
use crate::flow::{Observation, Sensor};

/// What happened to one file.
#[derive(Debug, Default, Clone)]
pub struct FileSummary {
    pub frames: u64,
    pub bytes: u64,
    /// Bytes left unread after an error (with `keep_going`).
    pub skipped_bytes: u64,
}

/// Replay one file. On a capture error the frames before it have been processed; the error is
/// returned with the summary so far.
pub fn replay_file(
    path: &Path,
    sensor: &mut Sensor,
    mut on_obs: impl FnMut(&Observation),
    mut progress: impl FnMut(u64),
) -> Result<FileSummary, (CaptureError, FileSummary)> {
    let mut sum = FileSummary::default();
    let file = CaptureFile::open(path).map_err(|e| (e, FileSummary::default()))?;
    let mut frames = file.frames().map_err(|e| {
        (
            e,
            FileSummary {
                skipped_bytes: file.len(),
                ..Default::default()
            },
        )
    })?;
    let mut out = Vec::with_capacity(16);
    // Frames read ahead: each one's flow-table slot is asked for (`Sensor::prefetch`) when it
    // is read and used PREFETCH frames later, so a large table's cache miss is not waited for.
    let mut ring: std::collections::VecDeque<Frame<'_>> =
        std::collections::VecDeque::with_capacity(PREFETCH);
    let mut failed: Option<(CaptureError, u64)> = None;
    let mut eof = false;
    loop {
        while ring.len() < PREFETCH && failed.is_none() && !eof {
            match frames.next() {
                Some(Ok(f)) => {
                    sensor.prefetch(&f);
                    ring.push_back(f);
                }
                Some(Err(e)) => failed = Some((e, frames.remaining())),
                None => eof = true,
            }
        }
        let Some(frame) = ring.pop_front() else {
            break;
        };
        sum.frames += 1;
        sum.bytes += frame.data.len() as u64;
        sensor.process(&frame, &mut out);
        for o in out.drain(..) {
            on_obs(&o);
        }
        if sum.frames & 0xffff == 0 {
            progress(frame.offset);
            file.release_before(frame.offset);
        }
    }
    if let Some((e, remaining)) = failed {
        sum.skipped_bytes = remaining;
        return Err((e, sum));
    }
    progress(frames.position());
    Ok(sum)
}

/// Frames read ahead of the one processed (see [`Sensor::prefetch`]).
const PREFETCH: usize = 16;

/// Flush what the sensor still holds at the end of the input (incomplete fragments).
pub fn finish(sensor: &mut Sensor, mut on_obs: impl FnMut(&Observation)) {
    let mut out = Vec::new();
    sensor.finish(&mut out);
    for o in &out {
        on_obs(o);
    }
}

/// Frames the reader hands out in one round (each shard gets its part of every round).
const ROUND_FRAMES: usize = 4096;
/// Rounds out at the shards before the reader waits for the oldest to be merged.
const ROUNDS_IN_FLIGHT: usize = 8;

/// What a shard adds to each observation before the merge (the pipeline's decision and JSON
/// line), so that this work runs on the shards' threads too. `bytes` is the round's byte
/// buffer; what `prepare` puts there reaches the merge with its result.
pub trait Prepare: Sync {
    type Out: Send;
    /// Each shard's own scratch state (a cache, say).
    type Local: Default;
    fn prepare(&self, local: &mut Self::Local, o: &Observation, bytes: &mut Vec<u8>) -> Self::Out;
}

/// No preparation: the merge gets the observations alone.
pub struct NoPrepare;

impl Prepare for NoPrepare {
    type Out = ();
    type Local = ();
    fn prepare(&self, _: &mut (), _: &Observation, _: &mut Vec<u8>) {}
}

/// One unit of a shard's round.
enum Item<'a> {
    /// The sweep one sensor would run before frame `no` at capture time `now`.
    Sweep { now: u64, no: u64 },
    /// Frame `no`; `owner`: the shard's own (else read for the shared state only).
    Frame {
        no: u64,
        frame: Frame<'a>,
        owner: bool,
    },
}

/// A shard's output for one round: observations in capture order, each tagged with its place
/// (frame number, 0 = from the sweep before the frame / 1 = from the frame itself).
struct Done<T> {
    obs: Vec<((u64, u8), Observation, T)>,
    bytes: Vec<u8>,
}

/// A round for one shard: where the round starts in the file, and the shard's part of it.
struct Round<'a> {
    start: u64,
    items: Vec<Item<'a>>,
}

/// What the reader thread ends with.
struct ReadEnd {
    sum: FileSummary,
    error: Option<CaptureError>,
    frames_seen: u64,
    schedule: crate::flow::sensor::Schedule,
}

/// Replay one file over several sensors made by [`Sensor::shard`], one thread each. A reader
/// thread walks the record headers, gives each frame to the shard that owns its address pair
/// ([`crate::flow::wire::shard_of`]; frames that feed the state every shard keeps, DNS and
/// fragments, to the others as well) and keeps the sweep schedule for all shards, so every
/// shard sweeps where one sensor would. The shards run the sensor and `prepare`; this thread
/// merges their outputs back into capture order before `on_obs` (observations of one frame keep
/// their order; those that two shards' sweeps emit before the same frame, incomplete fragments
/// only, come shard by shard). Reading, the shards and the merge overlap: each has its own
/// thread, with at most [`ROUNDS_IN_FLIGHT`] rounds queued between two of them.
pub fn replay_file_sharded<P: Prepare>(
    path: &Path,
    sensors: &mut [Sensor],
    prepare: &P,
    mut on_obs: impl FnMut(&Observation, P::Out, &[u8]),
    mut progress: impl FnMut(u64),
) -> Result<FileSummary, (CaptureError, FileSummary)> {
    use std::sync::mpsc;

    let file = CaptureFile::open(path).map_err(|e| (e, FileSummary::default()))?;
    let frames = file.frames().map_err(|e| {
        (
            e,
            FileSummary {
                skipped_bytes: file.len(),
                ..Default::default()
            },
        )
    })?;
    let first = sensors.first().map_or(0, Sensor::frames_seen);
    let schedule = sensors
        .first()
        .map(Sensor::schedule_state)
        .unwrap_or_default();
    let end = std::thread::scope(|scope| {
        let mut to = Vec::new();
        let mut from = Vec::new();
        for sensor in sensors.iter_mut() {
            let (tx, rx) = mpsc::sync_channel::<Round<'_>>(ROUNDS_IN_FLIGHT);
            let (dtx, drx) = mpsc::sync_channel::<(u64, Done<P::Out>)>(ROUNDS_IN_FLIGHT);
            to.push(tx);
            from.push(Some(drx));
            scope.spawn(move || shard_worker(sensor, prepare, rx, dtx));
        }
        let reader = scope.spawn(move || read_rounds(frames, first, schedule, to));
        // Merge round by round: every shard gets every round (possibly empty), in order.
        loop {
            let mut parts: Vec<Done<P::Out>> = Vec::with_capacity(from.len());
            let mut start = None;
            for r in from.iter_mut() {
                match r.as_ref().map(|r| r.recv()) {
                    Some(Ok((s, d))) => {
                        start = Some(s);
                        parts.push(d);
                    }
                    // Input done (or a shard that panicked: its output ends here).
                    _ => *r = None,
                }
            }
            let Some(start) = start else { break };
            merge(parts, &mut on_obs);
            // Every frame before this round's start is merged: its pages can go.
            progress(start);
            file.release_before(start);
        }
        // A reader that panicked is a bug: it goes on panicking here.
        match reader.join() {
            Ok(end) => end,
            Err(p) => std::panic::resume_unwind(p),
        }
    });
    progress(file.len());
    if let Some(s) = sensors.first_mut() {
        s.set_schedule_state(end.schedule);
    }
    for s in sensors.iter_mut() {
        s.set_frames_seen(end.frames_seen);
    }
    match end.error {
        Some(e) => Err((e, end.sum)),
        None => Ok(end.sum),
    }
}

/// The reader thread of a sharded replay: frames to their shards, round by round.
fn read_rounds<'a>(
    mut frames: crate::capture::Frames<'a>,
    mut no: u64,
    mut schedule: crate::flow::sensor::Schedule,
    to: Vec<std::sync::mpsc::SyncSender<Round<'a>>>,
) -> ReadEnd {
    use crate::flow::wire;
    let n = to.len().max(1) as u32;
    let mut to: Vec<Option<_>> = to.into_iter().map(Some).collect();
    let mut sum = FileSummary::default();
    let mut error = None;
    let mut rounds: Vec<Vec<Item<'a>>> = (0..n).map(|_| Vec::new()).collect();
    let mut in_round = 0usize;
    let mut round_start = frames.position();
    loop {
        let next = frames.next();
        let last = next.is_none();
        match next {
            Some(Ok(frame)) => {
                no += 1;
                sum.frames += 1;
                sum.bytes += frame.data.len() as u64;
                if schedule.due(frame.ts_ns, no) {
                    for r in rounds.iter_mut() {
                        r.push(Item::Sweep {
                            now: frame.ts_ns,
                            no,
                        });
                    }
                }
                let (owner, shared) = wire::dispatch(frame.linktype, frame.data, n);
                for (i, r) in rounds.iter_mut().enumerate() {
                    if i as u32 == owner || shared {
                        r.push(Item::Frame {
                            no,
                            frame,
                            owner: i as u32 == owner,
                        });
                    }
                }
                in_round += 1;
            }
            Some(Err(e)) => {
                sum.skipped_bytes = frames.remaining();
                error = Some(e);
            }
            None => {}
        }
        let stop = last || error.is_some();
        if in_round >= ROUND_FRAMES || (stop && in_round > 0) {
            for (r, t) in rounds.iter_mut().zip(to.iter_mut()) {
                let items = std::mem::replace(r, Vec::with_capacity(r.len() + 64));
                let round = Round {
                    start: round_start,
                    items,
                };
                if t.as_ref().is_some_and(|t| t.send(round).is_err()) {
                    *t = None;
                }
            }
            round_start = frames.position();
            in_round = 0;
        }
        if stop {
            break;
        }
    }
    ReadEnd {
        sum,
        error,
        frames_seen: no,
        schedule,
    }
}

/// Where an observation a sweep emitted goes among the others of that sweep: what fragments
/// completed first (shard by shard), then QUIC hellos whose server never answered, by capture
/// time, as one sensor reports them.
fn sweep_rank(o: &Observation) -> (u8, u64, u64) {
    if o.unanswered {
        (1, o.ts, o.frame)
    } else {
        (0, 0, 0)
    }
}

/// The merge's order: the frame (and sweep or frame), then [`sweep_rank`].
type MergeKey = ((u64, u8), (u8, u64, u64));

/// Merge the shards' outputs of one round into capture order (ties: shard by shard, except as
/// [`sweep_rank`] says).
fn merge<T>(parts: Vec<Done<T>>, on_obs: &mut impl FnMut(&Observation, T, &[u8])) {
    let mut its: Vec<_> = parts
        .into_iter()
        .map(|d| (d.obs.into_iter().peekable(), d.bytes))
        .collect();
    loop {
        let mut best: Option<(MergeKey, usize)> = None;
        for (i, (it, _)) in its.iter_mut().enumerate() {
            if let Some((tag, o, _)) = it.peek() {
                let rank = if tag.1 == 0 { sweep_rank(o) } else { (0, 0, 0) };
                let key = (*tag, rank);
                if best.is_none_or(|(b, _)| key < b) {
                    best = Some((key, i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let (it, bytes) = &mut its[i];
        if let Some((_, o, t)) = it.next() {
            on_obs(&o, t, bytes);
        }
    }
}

/// One shard's thread: its part of each round through its sensor and `prepare`, the outputs
/// back to the merge, round by round.
fn shard_worker<P: Prepare>(
    sensor: &mut Sensor,
    prepare: &P,
    rx: std::sync::mpsc::Receiver<Round<'_>>,
    tx: std::sync::mpsc::SyncSender<(u64, Done<P::Out>)>,
) {
    let mut out = Vec::with_capacity(16);
    let mut local = P::Local::default();
    // Sized as the last round's output (no regrowing: an observation is a large value).
    let (mut n_obs, mut n_bytes) = (64, 64 * 1024);
    while let Ok(Round { start, items }) = rx.recv() {
        let mut done = Done {
            obs: Vec::with_capacity(n_obs + n_obs / 4),
            bytes: Vec::with_capacity(n_bytes + n_bytes / 4),
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(Item::Frame {
                frame, owner: true, ..
            }) = items.get(i + PREFETCH)
            {
                sensor.prefetch(frame);
            }
            let tag = match *item {
                Item::Sweep { now, no } => {
                    sensor.sweep_now(now, no, &mut out);
                    (no, 0)
                }
                Item::Frame { no, frame, owner } => {
                    sensor.process_dispatched(&frame, no, owner, &mut out);
                    (no, 1)
                }
            };
            for o in out.drain(..) {
                let t = prepare.prepare(&mut local, &o, &mut done.bytes);
                done.obs.push((tag, o, t));
            }
        }
        (n_obs, n_bytes) = (done.obs.len().max(16), done.bytes.len().max(4096));
        if tx.send((start, done)).is_err() {
            return;
        }
    }
}

/// [`finish`] for the sensors of a sharded replay, shard by shard.
pub fn finish_sharded(sensors: &mut [Sensor], mut on_obs: impl FnMut(&Observation)) {
    let mut all = Vec::new();
    for s in sensors {
        s.finish(&mut all);
    }
    // As one sensor ends: completed fragments shard by shard, then unanswered hellos by time.
    all.sort_by_key(sweep_rank);
    for o in &all {
        on_obs(o);
    }
}
