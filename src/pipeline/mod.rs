//! The pipeline, one library type that replay and the daemon share: sources (capture files now,
//! live interfaces next) -> [`Sensor`] -> policy -> outputs (stdout writer, recorder, actions).
//!
//! A frame enters with [`Pipeline::feed`] (or a whole file with [`Pipeline::replay_file`]); the
//! sensor turns it into observations; the policy in force decides once per observation; every
//! output then receives the observation with its decision. The recorder commits decisions to the
//! event store, from which `record::feed` delivers them to the SIEM on each sink's own cursor.

pub mod writer;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::capture::{CaptureError, Frame};
use crate::flow::{Config, Observation, Sensor, Stats};
use crate::policy::reload::PolicyHandle;
use crate::policy::Decision;
use crate::record::recorder::Recorder;
use crate::replay::{self, FileSummary};

pub use writer::{Format, Writer};

/// Which observations the stdout writer prints when a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Every observation, with its decision when there is one.
    All,
    /// Only observations that got a decision.
    Decisions,
}

/// A further output (the daemon's actions): receives every observation with its decision.
pub trait Output: Send {
    /// Take one observation. An error stops this output; the others go on.
    fn send(&mut self, o: &Observation, d: Option<&Decision>) -> Result<(), String>;
    /// End of input: finish what is buffered.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// The observation writer for stdout (or any byte sink).
pub type BoxWriter = Writer<Box<dyn Write + Send>>;

/// Everything after the sensor: policy and outputs (a separate struct so that the sensor and the
/// outputs can be borrowed apart while a file is replayed).
struct Outputs {
    policy: Option<Arc<PolicyHandle>>,
    writer: Option<(BoxWriter, Emit)>,
    recorder: Option<Recorder>,
    extra: Vec<Box<dyn Output>>,
    observations: u64,
    decisions: u64,
    write_err: Option<std::io::Error>,
    store_err: Option<String>,
    extra_err: Vec<Option<String>>,
}

impl Outputs {
    fn handle(&mut self, o: &Observation) {
        self.observations += 1;
        let d = self
            .policy
            .as_ref()
            .and_then(|h| h.current().decide_observation(o));
        if d.is_some() {
            self.decisions += 1;
        }
        if let (Some(rec), Some(d)) = (self.recorder.as_mut(), d.as_ref()) {
            if self.store_err.is_none() {
                if let Err(e) = rec.record(o, d) {
                    self.store_err = Some(e.to_string());
                }
            }
        }
        for (out, err) in self.extra.iter_mut().zip(self.extra_err.iter_mut()) {
            if err.is_none() {
                if let Err(e) = out.send(o, d.as_ref()) {
                    *err = Some(e);
                }
            }
        }
        let Some((w, emit)) = self.writer.as_mut() else {
            return;
        };
        if self.write_err.is_some()
            || (self.policy.is_some() && *emit == Emit::Decisions && d.is_none())
        {
            return;
        }
        let r = if self.policy.is_some() {
            w.write_event(o, d.as_ref())
        } else {
            w.write(o)
        };
        if let Err(e) = r {
            self.write_err = Some(e);
        }
    }
}

/// Counters of the pipeline itself (the sensor's are in [`Stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub observations: u64,
    pub decisions: u64,
}

pub struct Pipeline {
    sensor: Sensor,
    outs: Outputs,
    buf: Vec<Observation>,
}

impl Pipeline {
    /// A pipeline with a sensor and no policy or outputs yet (see the `with_*` builders).
    pub fn new(cfg: Config) -> Pipeline {
        Pipeline {
            sensor: Sensor::new(cfg),
            outs: Outputs {
                policy: None,
                writer: None,
                recorder: None,
                extra: Vec::new(),
                observations: 0,
                decisions: 0,
                write_err: None,
                store_err: None,
                extra_err: Vec::new(),
            },
            buf: Vec::with_capacity(16),
        }
    }

    /// Decide every observation with this policy (hot-reloaded behind the handle).
    pub fn with_policy(mut self, policy: Arc<PolicyHandle>) -> Self {
        self.outs.policy = Some(policy);
        self
    }

    /// Print observations (and decisions) to `w`.
    pub fn with_writer(mut self, w: Box<dyn Write + Send>, format: Format, emit: Emit) -> Self {
        self.outs.writer = Some((Writer::new(w, format), emit));
        self
    }

    /// Record decisions in the event store.
    pub fn with_recorder(mut self, r: Recorder) -> Self {
        self.outs.recorder = Some(r);
        self
    }

    /// Add an output that receives every observation with its decision.
    pub fn with_output(mut self, out: Box<dyn Output>) -> Self {
        self.outs.extra.push(out);
        self.outs.extra_err.push(None);
        self
    }

    /// One frame from any source.
    pub fn feed(&mut self, frame: &Frame<'_>) {
        self.sensor.process(frame, &mut self.buf);
        for o in self.buf.drain(..) {
            self.outs.handle(&o);
        }
    }

    /// One capture file from start to end (or to its first damaged record, returned with the
    /// summary so far); `progress` gets the byte position now and then.
    pub fn replay_file(
        &mut self,
        path: &Path,
        progress: impl FnMut(u64),
    ) -> Result<FileSummary, (CaptureError, FileSummary)> {
        let outs = &mut self.outs;
        replay::replay_file(path, &mut self.sensor, |o| outs.handle(o), progress)
    }

    /// End of input: flush what the sensor still holds (incomplete fragments), commit the
    /// recorder's last batch and flush the writer and outputs. Errors are kept (see the
    /// accessors); nothing is lost silently.
    pub fn finish(&mut self) {
        let outs = &mut self.outs;
        replay::finish(&mut self.sensor, |o| outs.handle(o));
        if let Some((w, _)) = self.outs.writer.as_mut() {
            if let Err(e) = w.flush() {
                self.outs.write_err.get_or_insert(e);
            }
        }
        if let Some(rec) = self.outs.recorder.as_mut() {
            if self.outs.store_err.is_none() {
                if let Err(e) = rec.commit() {
                    self.outs.store_err = Some(e.to_string());
                }
            }
        }
        for (out, err) in self
            .outs
            .extra
            .iter_mut()
            .zip(self.outs.extra_err.iter_mut())
        {
            if err.is_none() {
                if let Err(e) = out.flush() {
                    *err = Some(e);
                }
            }
        }
    }

    /// Flush the writer now (e.g. before reporting a damaged file on stderr).
    pub fn flush_writer(&mut self) {
        if let Some((w, _)) = self.outs.writer.as_mut() {
            if let Err(e) = w.flush() {
                self.outs.write_err.get_or_insert(e);
            }
        }
    }

    /// The writer's first error (it stops writing after one), taken.
    pub fn take_write_error(&mut self) -> Option<std::io::Error> {
        self.outs.write_err.take()
    }

    /// The recorder's first error (it stops recording after one).
    pub fn store_error(&self) -> Option<&str> {
        self.outs.store_err.as_deref()
    }

    /// Errors of the further outputs, in the order they were added.
    pub fn output_errors(&self) -> impl Iterator<Item = &str> {
        self.outs.extra_err.iter().flatten().map(String::as_str)
    }

    pub fn recorder(&self) -> Option<&Recorder> {
        self.outs.recorder.as_ref()
    }

    pub fn policy(&self) -> Option<&Arc<PolicyHandle>> {
        self.outs.policy.as_ref()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            observations: self.outs.observations,
            decisions: self.outs.decisions,
        }
    }

    pub fn stats(&self) -> Stats {
        self.sensor.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// (name, action) pairs an output received.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// An output that keeps what it received.
    struct Keep(Seen);

    impl Output for Keep {
        fn send(&mut self, o: &Observation, d: Option<&Decision>) -> Result<(), String> {
            self.0.lock().unwrap().push((
                o.name.clone().unwrap_or_default(),
                d.map(|d| d.action.as_str().to_string()),
            ));
            Ok(())
        }
    }

    #[test]
    fn frames_flow_from_capture_to_outputs_with_decisions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policy = PolicyHandle::load(&root.join("policies")).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut p = Pipeline::new(Config::default())
            .with_policy(policy)
            .with_output(Box::new(Keep(got.clone())));
        p.replay_file(&root.join("pcaps/generated/curl-dig.pcap"), |_| {})
            .unwrap();
        p.finish();
        let got = got.lock().unwrap();
        assert_eq!(got.len() as u64, p.counts().observations);
        assert!(p.counts().decisions > 0);
        assert!(got
            .iter()
            .any(|(n, d)| n == "claude.ai" && d.as_deref().is_some()));
        assert!(p.output_errors().next().is_none());
    }
}
