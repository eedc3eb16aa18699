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
