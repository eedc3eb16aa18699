//! In-process runs of the sensor and the pipeline: frames fed at chosen times, a capture replayed
//! through one sensor, a small stack to run them in, and pipeline outputs that keep what they got.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use shadowgate::capture::{CaptureError, Frame};
use shadowgate::flow::{Config, Observation, Sensor};
use shadowgate::pipeline::Output;
use shadowgate::policy::Decision;
use shadowgate::replay::FileSummary;

/// The capture time of the first synthetic frame (2023-11-14), in ns.
pub const T0: u64 = 1_700_000_000_000_000_000;

/// `frames` one millisecond apart from [`T0`], as (capture time, frame) for [`feed_at`].
pub fn timed(frames: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * 1_000_000, f.clone()))
        .collect()
}

/// Feed `frames` (capture time, bytes) of `linktype` to `sensor`, then finish it: what it observed.
pub fn feed_at(sensor: &mut Sensor, linktype: u32, frames: &[(u64, Vec<u8>)]) -> Vec<Observation> {
    let mut out = Vec::new();
    for (ts, f) in frames {
        let fr = Frame {
            ts_ns: *ts,
            linktype,
            data: f,
            orig_len: f.len() as u32,
            offset: 0,
            csum: Default::default(),
        };
        sensor.process(&fr, &mut out);
    }
    sensor.finish(&mut out);
    out
}

/// How reading a capture file went (`shadowgate::replay::replay_file`).
pub type ReadResult = Result<FileSummary, (CaptureError, FileSummary)>;

/// Feed `frames` of `linktype` to `sensor` one millisecond apart (see [`timed`]), then finish it:
/// what it observed.
pub fn feed(sensor: &mut Sensor, linktype: u32, frames: &[Vec<u8>]) -> Vec<Observation> {
    feed_at(sensor, linktype, &timed(frames))
}

/// Replay the capture `path` through one sensor with the default configuration: every
/// observation (what `finish` flushed too), the sensor, and how reading the file went.
pub fn replay_capture(path: &Path) -> (Vec<Observation>, Sensor, ReadResult) {
    let mut s = Sensor::new(Config::default());
    let mut obs = Vec::new();
    let read = shadowgate::replay::replay_file(path, &mut s, |o| obs.push(o.clone()), |_| {});
    shadowgate::replay::finish(&mut s, |o| obs.push(o.clone()));
    (obs, s, read)
}

/// Run `f` in a thread with a 256 KiB stack: a recursion per nesting level would overflow it.
pub fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no stack overflow, no panic")
}

/// What a [`Keep`] received: each observation with its decision.
pub type Acted = Arc<Mutex<Vec<(Observation, Option<Decision>)>>>;

/// A pipeline output that keeps what it received (the daemon's actions).
pub struct Keep(pub Acted);

impl Output for Keep {
    /// Keep a copy of the observation and its decision.
    fn send(
        &mut self,
        o: &Observation,
        d: Option<&Decision>,
    ) -> Result<Option<shadowgate::record::Enforced>, String> {
        self.0.lock().unwrap().push((o.clone(), d.cloned()));
        Ok(None)
    }
}

/// A writer into shared memory, for what a pipeline prints.
#[derive(Clone, Default)]
pub struct Buf(pub Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    /// Append all of `b`.
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    /// Nothing to flush.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
