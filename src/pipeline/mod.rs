//! The pipeline, one library type that replay and the daemon share: sources (capture files in
//! replay, a live interface's ring in each of the daemon's capture threads) -> [`Sensor`] ->
//! policy -> outputs (stdout writer, recorder, actions).
//!
//! A frame enters with [`Pipeline::feed`] (or a whole file with [`Pipeline::replay_file`]); the
//! sensor turns it into observations; the policy in force decides once per observation; every
//! output then receives the observation with its decision. The recorder commits decisions to the
//! event store, from which `record::feed` delivers them to the SIEM on each sink's own cursor.
//!
//! DNS gets one decision per lookup (see [`lookups`]): the actions ([`Output`]) get the query's
//! decision as the query passes; the writer and the recorder get it once, on the answer that
//! completes the query (or on the query itself if no answer comes within `dns_timeout_s`).

pub mod blind;
pub mod json;
pub mod judge;
mod lookups;
pub mod writer;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::capture::{CaptureError, Frame};
use crate::flow::{BlindSpot, Config, Flag, Kind, LookupKey, Observation, Sensor, Stats};
use crate::policy::reload::PolicyHandle;
use crate::policy::Decision;
use crate::record::recorder::Recorder;
use crate::record::{Enforced, Event};
use crate::replay::{self, FileSummary};

pub use judge::{Claims, Judge};
pub use writer::{Format, Writer};

/// Which observations the stdout writer prints when a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Every observation, with its decision when there is one.
    All,
    /// Only observations that got a decision.
    Decisions,
}

/// A further output (the daemon's actions): receives every observation with its decision as it
/// passes. A DNS query comes with the lookup's decision; its answer then comes with none.
pub trait Output: Send {
    /// Take one observation; say what was enforced (the enforcer), which the event of the
    /// decision records. An error stops this output; the others go on.
    fn send(&mut self, o: &Observation, d: Option<&Decision>) -> Result<Option<Enforced>, String>;
    /// A decided DNS query whose answer never came: what became of its decision.
    fn unanswered(&mut self, _query: &Observation, _d: &Decision) -> Option<Enforced> {
        None
    }
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
    decider: Decider,
    writer: Option<(BoxWriter, Emit)>,
    recorder: Option<Recorder>,
    /// The daemon's recording (a queue to the store), instead of a [`Recorder`].
    judge: Option<Judge>,
    extra: Vec<Box<dyn Output>>,
    observations: u64,
    decisions: u64,
    write_err: Option<std::io::Error>,
    store_err: Option<String>,
    extra_err: Vec<Option<String>>,
    lookups: lookups::Lookups,
    expired: Vec<lookups::Held>,
    unmatched: lookups::UnmatchedLimit,
    /// Events of observations whose source may be forged: one per client and name a minute,
    /// and at most [`UNVERIFIED_PER_S`] a second in all, so a flood of forged hellos cannot
    /// crowd real events out of the store (the writer still gets every decision).
    unverified: lookups::UnmatchedLimit,
    unverified_rate: (f64, u64),
    unverified_over_rate: u64,
    /// `blind_spot` events: at most one per device and kind a minute (shared with the judge's
    /// other pipelines).
    blind: blind::SharedBlindLimit,
}

/// Events of unverified observations recorded per second of capture time at most (burst: 4x).
const UNVERIFIED_PER_S: f64 = 50.0;

/// Who decides: the policy, except for traffic another source (shadowgate's own resolver and
/// portal) decides itself (shared by the merge and, in a sharded replay, by every shard).
#[derive(Clone)]
struct Decider {
    policy: Option<Arc<PolicyHandle>>,
    /// What the resolver and the portal claimed ([`Judge::claim`]).
    claims: Option<Arc<arc_swap::ArcSwap<Claims>>>,
}

impl Decider {
    /// Is this traffic another source decides (no decision, no event, no action here)? A
    /// steered client's browser asking the portal for claude.ai is shadowgate's own service
    /// answering, not the service: the portal records it (`portal_view`).
    fn own(&self, o: &Observation) -> bool {
        self.claims.as_ref().is_some_and(|c| c.load().own(o))
    }

    fn decide(&self, o: &Observation) -> Option<Decision> {
        if self.own(o) {
            return None;
        }
        self.policy
            .as_ref()
            .and_then(|h| h.current().decide_observation(o))
    }
}

/// A shard's work for the merge: the decision and the JSON line's pieces (ranges in the
/// round's bytes).
struct Prepared {
    decision: Option<Decision>,
    json: Option<(std::ops::Range<usize>, Option<std::ops::Range<usize>>)>,
}

/// What shards of a sharded replay do for the pipeline: decide, and render JSON if the writer
/// writes JSON.
struct ShardPrepare {
    decider: Decider,
    json: bool,
}

impl replay::Prepare for ShardPrepare {
    type Out = Prepared;
    type Local = writer::RenderedDecisions;
    fn prepare(
        &self,
        cache: &mut writer::RenderedDecisions,
        o: &Observation,
        bytes: &mut Vec<u8>,
    ) -> Prepared {
        let decision = self.decider.decide(o);
        let json = self.json.then(|| {
            let a = bytes.len();
            json::observation_open(o, bytes);
            let b = bytes.len();
            let dec = decision.as_ref().map(|d| {
                cache.render(d, bytes);
                b..bytes.len()
            });
            (a..b, dec)
        });
        Prepared { decision, json }
    }
}

/// An observation's JSON rendered by a shard: opened, and its own decision's.
#[derive(Clone, Copy)]
struct Rendered<'a> {
    open: &'a [u8],
    decision: Option<&'a [u8]>,
}

impl Outputs {
    /// A blind spot the sensor saw: a `blind_spot` event for the daemon's recorder queue or the
    /// replay's store, within the once-a-minute limit (the device's MAC and host name from the
    /// device table when the frame did not carry them).
    fn blind_spot(&mut self, mut b: BlindSpot) {
        if self.judge.is_none() && self.recorder.is_none() {
            return;
        }
        let allowed = self
            .blind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(&b);
        if !allowed {
            return;
        }
        if let Some(j) = self.judge.as_ref() {
            if let Some(d) = j.devices().and_then(|d| d.lookup(b.client.ip)) {
                b.client.mac = b.client.mac.or(d.mac);
                b.client.hostname = b.client.hostname.take().or(d.hostname);
            }
            j.record_event(Event::blind_spot(&b, j.sensor()));
        }
        if let Some(rec) = self.recorder.as_mut() {
            if self.store_err.is_none() {
                let e = Event::blind_spot(&b, rec.sensor());
                if let Err(e) = rec.record_event(e) {
                    self.store_err = Some(e.to_string());
                }
            }
        }
    }

    fn handle(&mut self, o: &Observation) {
        let d = self.decider.decide(o);
        self.handle_decided(o, d, None);
    }

    /// An observation with its decision made (by [`Decider::decide`]) and maybe its JSON.
    fn handle_decided(&mut self, o: &Observation, d: Option<Decision>, r: Option<Rendered<'_>>) {
        self.observations += 1;
        let plain = r.map(|r| Rendered {
            open: r.open,
            decision: None,
        });
        if self.decider.own(o) {
            // Decided (and recorded) by the resolver or the portal: one event per lookup.
            self.expire(o.ts);
            self.act(o, None);
            self.deliver(o, None, plain, None);
            return;
        }
        self.expire(o.ts);
        let key = self.decider.policy.as_ref().and_then(|_| LookupKey::of(o));
        match (o.kind, key) {
            (Kind::DnsQuery, Some(k)) => {
                self.act(o, d.as_ref());
                match d {
                    Some(d) if !self.lookups.holds(&k) => {
                        let keep = r.map(|r| (r.open.to_vec(), r.decision.unwrap_or(b"").to_vec()));
                        if let Some(h) = self.lookups.hold(k, o.clone(), d, keep) {
                            self.deliver_held(&h);
                        }
                    }
                    // Undecided, or a retransmission of a held query.
                    _ => self.deliver(o, None, plain, None),
                }
            }
            (Kind::DnsAnswer, Some(k)) => match self.lookups.answer(&k) {
                Some(h) => {
                    // The enforcer acts on the answer with the query's decision: what it did is
                    // the lookup's enforcement.
                    let enforced = self.act(o, None);
                    let q = h.rendered.as_ref().map(|(open, _)| Rendered {
                        open,
                        decision: None,
                    });
                    self.deliver(&h.query, None, q, None);
                    let a = match (r, h.rendered.as_ref()) {
                        (Some(r), Some((_, dec))) => Some(Rendered {
                            open: r.open,
                            decision: Some(dec),
                        }),
                        _ => None,
                    };
                    self.deliver(o, Some(&h.decision), a, enforced);
                }
                // The query was not captured: the answer is the lookup (at most one decision
                // per client and name per minute: such answers are cheap to spoof).
                None if o.flags.contains(&Flag::Unmatched) => {
                    let enforced = self.act(o, d.as_ref());
                    let d = d.filter(|_| self.unmatched.allow(o));
                    self.deliver(o, d.as_ref(), if d.is_some() { r } else { plain }, enforced);
                }
                // The query was seen and got no decision (or already gave it, timed out).
                None => {
                    self.act(o, None);
                    self.deliver(o, None, plain, None);
                }
            },
            _ => {
                let enforced = self.act(o, d.as_ref());
                self.deliver(o, d.as_ref(), r, enforced);
            }
        }
    }

    /// A held query delivered with its decision (no answer came in time, or no room). The
    /// enforcer only remembered the query: with no answer seen there was nothing to act on.
    fn deliver_held(&mut self, h: &lookups::Held) {
        let r = h.rendered.as_ref().map(|(open, dec)| Rendered {
            open,
            decision: Some(dec),
        });
        let mut enforced = None;
        for (out, err) in self.extra.iter_mut().zip(self.extra_err.iter()) {
            if err.is_none() {
                enforced = enforced.or(out.unanswered(&h.query, &h.decision));
            }
        }
        self.deliver(&h.query, Some(&h.decision), r, enforced);
    }

    /// Decided queries unanswered for too long (all of them at `u64::MAX`) carry the decision.
    fn expire(&mut self, now_ns: u64) {
        let mut expired = std::mem::take(&mut self.expired);
        self.lookups.expire(now_ns, &mut expired);
        for h in expired.drain(..) {
            self.deliver_held(&h);
        }
        self.expired = expired;
    }

    /// The actions: every observation as it passes. What the enforcer did (the first output
    /// that says).
    fn act(&mut self, o: &Observation, d: Option<&Decision>) -> Option<Enforced> {
        let mut enforced = None;
        for (out, err) in self.extra.iter_mut().zip(self.extra_err.iter_mut()) {
            if err.is_none() {
                match out.send(o, d) {
                    Ok(e) => enforced = enforced.or(e),
                    Err(e) => *err = Some(e),
                }
            }
        }
        enforced
    }

    /// May the event of this unverified observation be stored? Once per client and name a
    /// minute, and within the overall rate (capture time).
    fn may_store(&mut self, o: &Observation) -> bool {
        if !self.unverified.allow(o) {
            return false;
        }
        let (tokens, last) = &mut self.unverified_rate;
        let dt = o.ts.saturating_sub(*last) as f64 / 1e9;
        if o.ts > *last {
            *last = o.ts;
        }
        *tokens = (*tokens + dt * UNVERIFIED_PER_S).min(4.0 * UNVERIFIED_PER_S);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.unverified_over_rate += 1;
            false
        }
    }

    /// The recorder and the stdout writer: every observation, a DNS lookup's decision once,
    /// with what enforcement did about it.
    fn deliver(
        &mut self,
        o: &Observation,
        d: Option<&Decision>,
        r: Option<Rendered<'_>>,
        enforced: Option<Enforced>,
    ) {
        if d.is_some() {
            self.decisions += 1;
        }
        // What the daemon records: an event whose source may be forged only within its limits.
        let record = d.is_some()
            && self.judge.is_some()
            && (!o.flags.contains(&Flag::UnverifiedSource) || self.may_store(o));
        if let (Some(j), Some(d), true) = (self.judge.as_ref(), d, record) {
            // A full queue is counted by the queue and stored as a coverage gap.
            j.record(o.kind.into(), o, d, enforced, None);
        }
        // A capture file replayed into a store keeps every event: the limits are the daemon's.
        if let (Some(rec), Some(d)) = (self.recorder.as_mut(), d) {
            if self.store_err.is_none() {
                if let Err(e) = rec.record(o, d) {
                    self.store_err = Some(e.to_string());
                }
            }
        }
        let Some((w, emit)) = self.writer.as_mut() else {
            return;
        };
        if self.write_err.is_some()
            || (self.decider.policy.is_some() && *emit == Emit::Decisions && d.is_none())
        {
            return;
        }
        let res = match r {
            Some(r) if w.is_json() => w.write_rendered(o, d, r.open, r.decision),
            _ if self.decider.policy.is_some() => w.write_event(o, d),
            _ => w.write(o),
        };
        if let Err(e) = res {
            self.write_err = Some(e);
        }
    }
}

/// Counters of the pipeline itself (the sensor's are in [`Stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub observations: u64,
    /// Decisions delivered to the writer and the recorder (one per DNS lookup).
    pub decisions: u64,
    /// Decided DNS queries waiting for their answers now.
    pub pending_lookups: u64,
    /// Decisions on answers to no seen query left out: the same client and name had one in the
    /// last minute.
    pub unmatched_suppressed: u64,
    /// Events of observations whose source may be forged not stored: the same client and name
    /// had one in the last minute, or past the overall rate.
    pub unverified_suppressed: u64,
}

/// Completes an observation before it is decided (the daemon adds what the device table knows
/// of the client: MAC from the neighbour table, host name from DHCP leases).
pub type Enrich = Box<dyn FnMut(&mut Observation) + Send>;

pub struct Pipeline {
    sensor: Sensor,
    /// Sharded replay (`with_threads`): one sensor per thread, used instead of `sensor` by
    /// `replay_file`, `finish` and `stats`.
    shards: Vec<Sensor>,
    outs: Outputs,
    buf: Vec<Observation>,
    enrich: Option<Enrich>,
}

impl Pipeline {
    /// A pipeline with a sensor and no policy or outputs yet (see the `with_*` builders).
    pub fn new(cfg: Config) -> Pipeline {
        let lookups = lookups::Lookups::new(cfg.max_pending_queries, cfg.dns_timeout_s);
        Pipeline {
            sensor: Sensor::new(cfg),
            shards: Vec::new(),
            outs: Outputs {
                decider: Decider {
                    policy: None,
                    claims: None,
                },
                writer: None,
                recorder: None,
                judge: None,
                extra: Vec::new(),
                observations: 0,
                decisions: 0,
                write_err: None,
                store_err: None,
                extra_err: Vec::new(),
                lookups,
                expired: Vec::new(),
                unmatched: lookups::UnmatchedLimit::new(16_384, 60),
                unverified: lookups::UnmatchedLimit::new(16_384, 60),
                unverified_rate: (4.0 * UNVERIFIED_PER_S, 0),
                unverified_over_rate: 0,
                blind: Default::default(),
            },
            buf: Vec::with_capacity(16),
            enrich: None,
        }
    }

    /// Complete each live observation with `f` before it is decided.
    pub fn with_enrich(mut self, f: Enrich) -> Self {
        self.enrich = Some(f);
        self
    }

    /// Decide every observation with this policy (hot-reloaded behind the handle).
    pub fn with_policy(mut self, policy: Arc<PolicyHandle>) -> Self {
        self.outs.decider.policy = Some(policy);
        self
    }

    /// Replay files on `n` threads (flows sharded by address pair, see `Sensor::shard`; the flow
    /// table and reassembly budget are split between them). `n` of 0 or 1: one sensor.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.shards = crate::flow::sensor::shards(self.sensor.config(), n);
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

    /// Decide with the judge's policy and queue each decision's event for the daemon's recorder
    /// thread (never blocks: a full queue drops and counts). Traffic the resolver and the
    /// portal claim is theirs: capture still learns names from it but decides nothing twice.
    pub fn with_judge(mut self, judge: Judge) -> Self {
        self.outs.decider.policy = Some(Arc::clone(judge.policy()));
        self.outs.decider.claims = Some(judge.claims());
        self.outs.blind = judge.blind_limit();
        self.outs.judge = Some(judge);
        self
    }

    /// The clock moved without frames (live capture): decide DNS lookups whose answer is late.
    pub fn tick(&mut self, now_ns: u64) {
        self.outs.expire(now_ns);
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
        for mut o in self.buf.drain(..) {
            if let Some(f) = self.enrich.as_mut() {
                f(&mut o);
            }
            self.outs.handle(&o);
        }
        for b in self.sensor.take_blind_spots() {
            self.outs.blind_spot(b);
        }
    }

    /// Blind spots the sensors saw and the pipeline has not taken yet.
    fn take_blind_spots(&mut self) {
        let mut all = self.sensor.take_blind_spots();
        for s in &mut self.shards {
            all.extend(s.take_blind_spots());
        }
        all.sort_by_key(|b| b.ts);
        for b in all {
            self.outs.blind_spot(b);
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
        if !self.shards.is_empty() {
            let prepare = ShardPrepare {
                decider: outs.decider.clone(),
                json: outs.writer.as_ref().is_some_and(|(w, _)| w.is_json()),
            };
            let res = replay::replay_file_sharded(
                path,
                &mut self.shards,
                &prepare,
                |o, p: Prepared, bytes| {
                    let r = p.json.as_ref().map(|(open, dec)| Rendered {
                        open: &bytes[open.clone()],
                        decision: dec.as_ref().map(|d| &bytes[d.clone()]),
                    });
                    outs.handle_decided(o, p.decision, r);
                },
                progress,
            );
            self.take_blind_spots();
            return res;
        }
        let res = replay::replay_file(path, &mut self.sensor, |o| outs.handle(o), progress);
        self.take_blind_spots();
        res
    }

    /// End of input: flush what the sensor still holds (incomplete fragments), commit the
    /// recorder's last batch and flush the writer and outputs. Errors are kept (see the
    /// accessors); nothing is lost silently.
    pub fn finish(&mut self) {
        let outs = &mut self.outs;
        replay::finish(&mut self.sensor, |o| outs.handle(o));
        replay::finish_sharded(&mut self.shards, |o| outs.handle(o));
        self.take_blind_spots();
        self.outs.expire(u64::MAX);
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
        self.outs.decider.policy.as_ref()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            observations: self.outs.observations,
            decisions: self.outs.decisions,
            pending_lookups: self.outs.lookups.len() as u64,
            unmatched_suppressed: self.outs.unmatched.suppressed,
            unverified_suppressed: self.outs.unverified.suppressed + self.outs.unverified_over_rate,
        }
    }

    pub fn stats(&self) -> Stats {
        if !self.shards.is_empty() {
            let all: Vec<Stats> = self.shards.iter().map(Sensor::stats).collect();
            return Stats::merged(&all);
        }
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
        fn send(
            &mut self,
            o: &Observation,
            d: Option<&Decision>,
        ) -> Result<Option<Enforced>, String> {
            self.0.lock().unwrap().push((
                o.name.clone().unwrap_or_default(),
                d.map(|d| d.action.as_str().to_string()),
            ));
            Ok(None)
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
