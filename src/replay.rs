//! Offline replay: capture files through the sensor, observations to a callback. Shared by the
//! CLI, the integration tests and the benchmarks.

use std::path::Path;

use crate::capture::{CaptureError, CaptureFile};
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
    while let Some(item) = frames.next() {
        match item {
            Ok(frame) => {
                sum.frames += 1;
                sum.bytes += frame.data.len() as u64;
                sensor.process(&frame, &mut out);
                for o in out.drain(..) {
                    on_obs(&o);
                }
                if sum.frames & 0xffff == 0 {
                    progress(frames.position());
                    file.release_before(frames.position());
                }
            }
            Err(e) => {
                sum.skipped_bytes = frames.remaining();
                return Err((e, sum));
            }
        }
    }
    progress(frames.position());
    Ok(sum)
}

/// Flush what the sensor still holds at the end of the input (incomplete fragments).
pub fn finish(sensor: &mut Sensor, mut on_obs: impl FnMut(&Observation)) {
    let mut out = Vec::new();
    sensor.finish(&mut out);
    for o in &out {
        on_obs(o);
    }
}

/// Frames a shard processes between two hand-overs of its observations to the merger.
const BATCH_FRAMES: u64 = 8192;

/// Observations of one shard, each tagged with its place in capture order: (frame number,
/// 0 = emitted by the sweep before the frame / 1 = by the frame itself).
struct Batch {
    obs: Vec<((u64, u8), Observation)>,
    /// Every frame up to this number (capture-wide) has been processed by the shard.
    upto: u64,
    /// The shard stopped here (end of file or its first error).
    end: Option<Result<FileSummary, (CaptureError, FileSummary)>>,
}

/// Replay one file over several sensors made by [`Sensor::shard`], one thread each: every
/// thread reads the whole file (record headers cost next to nothing) and processes the frames
/// its sensor owns, and the observations are merged back into capture order before `on_obs`
/// (observations of one frame keep their order; those that two shards' sweeps emit before the
/// same frame, incomplete fragments only, come shard by shard). The file summary and the error,
/// if any, are the first shard's (every shard stops at the same place).
pub fn replay_file_sharded(
    path: &Path,
    sensors: &mut [Sensor],
    mut on_obs: impl FnMut(&Observation),
    mut progress: impl FnMut(u64),
) -> Result<FileSummary, (CaptureError, FileSummary)> {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    if sensors.len() <= 1 {
        return match sensors.first_mut() {
            Some(s) => replay_file(path, s, on_obs, progress),
            None => Ok(FileSummary::default()),
        };
    }
    let file = CaptureFile::open(path).map_err(|e| (e, FileSummary::default()))?;
    // Check the header once here, so that an unreadable file is one error, not one per shard.
    file.frames().map_err(|e| {
        (
            e,
            FileSummary {
                skipped_bytes: file.len(),
                ..Default::default()
            },
        )
    })?;
    let base = sensors[0].frames_seen();
    let positions: Vec<AtomicU64> = sensors.iter().map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        let mut rx = Vec::new();
        for (i, sensor) in sensors.iter_mut().enumerate() {
            let (tx, r) = mpsc::sync_channel::<Batch>(4);
            rx.push(r);
            let (file, pos) = (&file, &positions[i]);
            scope.spawn(move || shard_worker(file, sensor, base, tx, pos));
        }
        let n = rx.len();
        let mut queues: Vec<VecDeque<((u64, u8), Observation)>> = vec![VecDeque::new(); n];
        let mut upto = vec![base; n];
        let mut ends: Vec<Option<Result<FileSummary, (CaptureError, FileSummary)>>> =
            (0..n).map(|_| None).collect();
        let mut batches = 0u64;
        loop {
            // Wait for the shard that is furthest behind (the others may run ahead, up to
            // their channel's capacity), then emit all that every shard has got past.
            let (w, _) = (0..n)
                .filter(|&i| ends[i].is_none())
                .map(|i| (i, upto[i]))
                .min_by_key(|&(_, u)| u)
                .unwrap_or((usize::MAX, u64::MAX));
            if w != usize::MAX {
                match rx[w].recv() {
                    Ok(b) => {
                        queues[w].extend(b.obs);
                        upto[w] = b.upto;
                        if let Some(end) = b.end {
                            ends[w] = Some(end);
                            upto[w] = u64::MAX;
                        }
                    }
                    // A shard that panicked: its output ends here.
                    Err(_) => {
                        ends[w] = Some(Ok(FileSummary::default()));
                        upto[w] = u64::MAX;
                    }
                }
                batches += 1;
            }
            let safe = upto.iter().copied().min().unwrap_or(u64::MAX);
            loop {
                let next = (0..n)
                    .filter_map(|i| queues[i].front().map(|(at, _)| (*at, i)))
                    .filter(|((f, _), _)| *f <= safe)
                    .min();
                let Some((_, i)) = next else { break };
                if let Some((_, o)) = queues[i].pop_front() {
                    on_obs(&o);
                }
            }
            if batches.is_multiple_of(16) {
                let p = positions
                    .iter()
                    .map(|p| p.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                progress(p);
                file.release_before(p);
            }
            if w == usize::MAX {
                break;
            }
        }
        progress(file.len());
        ends.swap_remove(0).unwrap_or(Ok(FileSummary::default()))
    })
}

/// One shard's thread: every frame of the file through its sensor, observations to the merger.
fn shard_worker(
    file: &CaptureFile,
    sensor: &mut Sensor,
    base: u64,
    tx: std::sync::mpsc::SyncSender<Batch>,
    pos: &std::sync::atomic::AtomicU64,
) {
    let mut sum = FileSummary::default();
    let mut out = Vec::with_capacity(16);
    let mut batch = Vec::new();
    let mut no = base;
    let end = match file.frames() {
        Err(e) => Err((e, FileSummary::default())),
        Ok(mut frames) => loop {
            match frames.next() {
                Some(Ok(frame)) => {
                    no += 1;
                    sum.frames += 1;
                    sum.bytes += frame.data.len() as u64;
                    let swept = sensor.process_at(&frame, no, &mut out);
                    for (k, o) in out.drain(..).enumerate() {
                        batch.push(((no, (k >= swept) as u8), o));
                    }
                    if sum.frames % BATCH_FRAMES == 0 {
                        pos.store(frames.position(), std::sync::atomic::Ordering::Relaxed);
                        let b = Batch {
                            obs: std::mem::take(&mut batch),
                            upto: no,
                            end: None,
                        };
                        if tx.send(b).is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    sum.skipped_bytes = frames.remaining();
                    break Err((e, sum));
                }
                None => break Ok(sum),
            }
        },
    };
    pos.store(file.len(), std::sync::atomic::Ordering::Relaxed);
    let _ = tx.send(Batch {
        obs: batch,
        upto: no,
        end: Some(end),
    });
}

/// [`finish`] for the sensors of a sharded replay, shard by shard.
pub fn finish_sharded(sensors: &mut [Sensor], mut on_obs: impl FnMut(&Observation)) {
    for s in sensors {
        finish(s, &mut on_obs);
    }
}
