//! The sensor's core: frames in, observations out; all state bounded (see [`Config`]) and swept of
//! idle entries once a second of capture time. Each layer's handling lives in its own file.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use etherparse::LinkSlice;

use crate::capture::{Csum, Frame};
use crate::decode::{link, Nesting};

pub use super::config::Config;
use super::defrag::Defrag;
use super::emit::Ctx;
use super::flow_table::FlowTable;
use super::hosts::HostNames;
use super::lookups::PendingQueries;
use super::names::NameCache;
use super::observation::*;
use super::public_names::PublicNames;
use super::reassembly::Budget;
use super::state::FlowKey;
pub use super::stats::{DnsStats, FlowStats, KindCounts, Malformed, NameStats, QuicStats, Stats};

const SEC: u64 = 1_000_000_000;

/// Sensors for a sharded replay on `n` threads ([`Sensor::shard`]), the flow table and the
/// reassembly budget split between them; empty for `n` below 2 (use one sensor).
pub fn shards(cfg: &Config, n: usize) -> Vec<Sensor> {
    if n < 2 {
        return Vec::new();
    }
    let mut c = cfg.clone();
    c.max_flows = cfg.max_flows.div_ceil(n).max(1);
    c.reassembly_budget = cfg.reassembly_budget.div_ceil(n).max(1);
    (0..n)
        .map(|i| Sensor::shard(c.clone(), i as u32, n as u32))
        .collect()
}

/// Frames between two restarts of the sweep schedule after capture time jumps back (a clock that
/// goes back and forth every frame must not buy a sweep of every table per frame).
const RESCHEDULE_FRAMES: u64 = 256;

pub struct Sensor {
    pub(super) cfg: Config,
    pub(super) flows: FlowTable,
    pub(super) names: NameCache,
    pub(super) queries: PendingQueries,
    pub(super) public: PublicNames,
    pub(super) defrag: Defrag,
    pub(super) hosts: HostNames,
    pub(super) budget: Budget,
    pub(super) stats: Stats,
    frame_no: u64,
    schedule: Schedule,
    /// Take frames that can change nothing but a flow's idle time on the fast path (off only in
    /// tests that compare both paths).
    pub(super) fast: bool,
    /// Sharded replay: this sensor's shard and the number of shards (see [`Sensor::shard`]).
    shard: (u32, u32),
    /// Processing a frame of another shard for the state all shards keep: open no flow.
    pub(super) shadow: bool,
    /// QUIC ClientHellos waiting for their server's first answer (by flow), each with the
    /// capture time after which it is reported unanswered.
    pub(super) held: HashMap<FlowKey, (u64, Vec<Observation>)>,
    /// Flows whose first flight is watched, with the capture time the watch ends (in order):
    /// the sweep ends each watch on time even when its flow sends nothing more.
    pub(super) watches: VecDeque<(u64, FlowKey)>,
    pub(super) watch_budget: Budget,
}

/// Watches ended by one sweep at most.
const WATCHES_PER_SWEEP: usize = 2048;

/// Bytes the versions of watched first flights may hold together (per sensor).
pub(super) const WATCH_BUDGET: usize = 32 << 20;

/// QUIC flows with ClientHellos held at once at most (each up to `quic::MAX_HELLOS` hellos) (past it one is reported unanswered at once).
pub(super) const MAX_HELD: usize = 4096;
/// How long a QUIC ClientHello waits for its server (capture time).
pub(super) const HOLD_NS: u64 = 2 * SEC;

impl Sensor {
    pub fn new(cfg: Config) -> Sensor {
        Sensor {
            flows: FlowTable::new(
                cfg.max_flows,
                cfg.tcp_idle_s.saturating_mul(SEC),
                cfg.udp_idle_s.saturating_mul(SEC),
            ),
            names: NameCache::new(
                cfg.max_names,
                cfg.name_grace_s,
                cfg.internal_resolvers.clone(),
            ),
            queries: PendingQueries::new(cfg.max_pending_queries, cfg.dns_timeout_s),
            public: PublicNames::new(&cfg.ech_public_names, cfg.max_public_names),
            defrag: Defrag::new(cfg.max_fragments, cfg.fragment_timeout_s),
            budget: Budget::new(cfg.reassembly_budget),
            hosts: HostNames::new(cfg.max_names),
            cfg,
            stats: Stats::default(),
            frame_no: 0,
            schedule: Schedule::default(),
            fast: true,
            shard: (0, 1),
            shadow: false,
            held: HashMap::new(),
            watches: VecDeque::new(),
            watch_budget: Budget::new(WATCH_BUDGET),
        }
    }

    /// A sensor for shard `index` of `count` (sharded replay, one sensor per thread, every
    /// frame of the capture given to every shard through [`Sensor::process_at`]). It owns the
    /// flows whose address pair hashes to it ([`super::wire::shard_of`]); frames that feed the
    /// state every shard keeps (DNS, DHCP, IP fragments: the name cache, pending queries, DHCP
    /// host names, ECH public names, the defragmenter) it also reads when another shard owns
    /// them, without reporting or counting them; other shards' frames only advance its clock.
    /// `cfg.max_flows` and `cfg.reassembly_budget` are per shard: divide them by `count`.
    pub fn shard(cfg: Config, index: u32, count: u32) -> Sensor {
        let mut s = Sensor::new(cfg);
        s.shard = (index.min(count.max(1) - 1), count.max(1));
        s
    }

    /// The limits this sensor runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Frame number of the last frame processed (1-based over all files; 0 before the first).
    pub fn frames_seen(&self) -> u64 {
        self.frame_no
    }

    /// Counters so far (gauges filled in).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.flows.active = self.flows.len() as u64;
        s.flows.reassembly_bytes = self.budget.used() as u64;
        s.flows.watch_bytes = self.watch_budget.used() as u64;
        s.fragments = self.defrag.stats;
        s.names.inserted = self.names.inserted;
        s.names.evicted = self.names.evicted;
        s.names.rejected = self.names.rejected;
        s.names.active = self.names.len() as u64;
        s.names.dhcp_hosts = self.hosts.len() as u64;
        s.names.public_names = self.public.learnt() as u64;
        s.dns.pending_queries = self.queries.len() as u64;
        s
    }

    /// Process one frame; observations are appended to `out`.
    pub fn process(&mut self, frame: &Frame<'_>, out: &mut Vec<Observation>) {
        self.frame_no += 1;
        self.stats.frames += 1;
        self.stats.bytes += frame.data.len() as u64;
        if self.schedule.due(frame.ts_ns, self.frame_no) {
            self.sweep(frame.ts_ns, out);
        }
        if self.fast && self.fast_path(frame) {
            return;
        }
        self.slow_path(frame, out);
    }

    /// Sharded replay: frame number `frame_no` (1-based, of the whole capture), handed to this
    /// shard by the reader because the shard owns it (`owner`, see [`super::wire::shard_of`])
    /// or because it feeds the state every shard keeps ([`super::wire::feeds_shared_state`]:
    /// read without reporting or counting it). The reader keeps the sweep schedule for all
    /// shards ([`Schedule`]) and calls [`Sensor::sweep_now`] where one sensor would sweep.
    pub fn process_dispatched(
        &mut self,
        frame: &Frame<'_>,
        frame_no: u64,
        owner: bool,
        out: &mut Vec<Observation>,
    ) {
        self.frame_no = frame_no;
        if owner {
            self.stats.frames += 1;
            self.stats.bytes += frame.data.len() as u64;
            if !(self.fast && self.fast_path(frame)) {
                self.slow_path(frame, out);
            }
        } else {
            self.shadowed(out, |s, out| s.slow_path(frame, out));
        }
    }

    /// Sharded replay: the sweep one sensor would run before frame `frame_no` at capture time
    /// `now` (the reader's [`Schedule`] said it is due).
    pub fn sweep_now(&mut self, now: u64, frame_no: u64, out: &mut Vec<Observation>) {
        self.frame_no = frame_no;
        self.sweep(now, out);
    }

    /// The sweep schedule (a sharded replay's reader continues it over files).
    pub fn schedule_state(&self) -> Schedule {
        self.schedule.clone()
    }

    pub fn set_schedule_state(&mut self, s: Schedule) {
        self.schedule = s;
    }

    /// Sharded replay: the frame count of the whole capture so far (every shard's).
    pub fn set_frames_seen(&mut self, n: u64) {
        self.frame_no = n;
    }

    /// This shard's place: (index, count).
    pub fn shard_index(&self) -> (u32, u32) {
        self.shard
    }

    /// Run `f` for the shared state only: what it reports is dropped and its counts undone.
    pub(super) fn shadowed(
        &mut self,
        out: &mut Vec<Observation>,
        f: impl FnOnce(&mut Sensor, &mut Vec<Observation>),
    ) {
        let saved = self.stats.clone();
        let before = out.len();
        let was = std::mem::replace(&mut self.shadow, true);
        f(self, out);
        self.shadow = was;
        out.truncate(before);
        self.stats = saved;
    }

    /// Full decoding: link layers, IP (fragments, tunnels), transport and the classifiers.
    fn slow_path(&mut self, frame: &Frame<'_>, out: &mut Vec<Observation>) {
        let mut nest = Nesting::default();
        match link::slice_nested(frame.linktype, frame.data, &mut nest) {
            Ok(p) => {
                let (src_mac, dst_mac) = match &p.link {
                    Some(LinkSlice::Ethernet2(e)) => (Some(e.source()), Some(e.destination())),
                    _ => (None, None),
                };
                let cx = Ctx {
                    ts: frame.ts_ns,
                    frame: self.frame_no,
                    src: IpAddr::from([0u8; 4]),
                    dst: IpAddr::from([0u8; 4]),
                    src_mac,
                    dst_mac,
                    tunneled: false,
                    fragmented: false,
                    check: frame.csum == Csum::Unknown
                        && frame.orig_len as usize == frame.data.len(),
                };
                self.ip_packet(&p, cx, Some(nest), out);
            }
            Err(link::LinkError::NotIp) => self.stats.non_ip += 1,
            Err(link::LinkError::Unsupported(_)) => self.stats.unsupported_link += 1,
            Err(link::LinkError::Malformed) => self.stats.malformed.link += 1,
            Err(link::LinkError::TooDeep) => self.stats.malformed.too_deep += 1,
        }
    }

    /// Expire idle flows, fragments and names (run once per second of capture time).
    fn sweep(&mut self, now: u64, out: &mut Vec<Observation>) {
        let tcp_idle = self.cfg.tcp_idle_s.saturating_mul(SEC);
        let udp_idle = self.cfg.udp_idle_s.saturating_mul(SEC);
        let n = self.flows.expire(now, tcp_idle, udp_idle);
        self.stats.flows.expired += n as u64;
        let incomplete = self.defrag.expire(now);
        self.incomplete_datagrams(incomplete, out);
        self.names.expire(now);
        self.queries.expire(now);
        self.end_watches(now);
        if !self.held.is_empty() {
            let keys: Vec<FlowKey> = self
                .held
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(k, _)| *k)
                .collect();
            let due = keys.iter().filter_map(|k| self.held.remove(k)).collect();
            self.unanswered(due, out);
        }
    }

    /// End the watches whose window is over (their flows may send nothing more), at most
    /// [`WATCHES_PER_SWEEP`] a sweep: a flood's watches end over several seconds instead of
    /// stalling one sweep (and the decisions behind it). A watch due but not yet ended ends at
    /// its flow's next segment all the same.
    fn end_watches(&mut self, now: u64) {
        for _ in 0..WATCHES_PER_SWEEP {
            let Some(&(until, key)) = self.watches.front() else {
                break;
            };
            if until > now {
                break;
            }
            self.watches.pop_front();
            if let Some(f) = self.flows.get_mut(&key) {
                super::desync::end_if_due(f, now);
            }
        }
    }

    /// Note a flow whose watch began (ended by [`Sensor::end_watches`] when it is due).
    pub(super) fn watched(&mut self, key: FlowKey, until: u64) {
        if self.watches.len() >= self.cfg.max_flows.max(1) {
            // Past one entry per flow the oldest goes (its watch then ends at its next packet).
            self.watches.pop_front();
        }
        self.watches.push_back((until, key));
    }

    /// QUIC ClientHellos whose server never answered: reported (in capture order) and marked
    /// `unanswered`, so nothing acts on them. (Not `unverified_source`: a capture of one
    /// direction shows no answers either, and its hellos still count as visits.)
    fn unanswered(&mut self, due: Vec<(u64, Vec<Observation>)>, out: &mut Vec<Observation>) {
        let mut due: Vec<Observation> = due.into_iter().flat_map(|(_, l)| l).collect();
        due.sort_by_key(|o| o.ts);
        for mut o in due {
            self.stats.quic.unanswered += 1;
            o.unanswered = true;
            self.report(o, out);
        }
    }

    /// Report an observation held back (its host name as known now, counted by kind).
    pub(super) fn report(&mut self, o: Observation, out: &mut Vec<Observation>) {
        let mut sinks = super::emit::Sinks {
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
        sinks.emit(o);
    }

    /// End of input: datagrams still waiting for fragments are decoded from what arrived; QUIC
    /// ClientHellos still waiting for their server are reported unanswered.
    pub fn finish(&mut self, out: &mut Vec<Observation>) {
        let incomplete = self.defrag.drain();
        self.incomplete_datagrams(incomplete, out);
        let held: Vec<_> = self.held.drain().map(|(_, v)| v).collect();
        self.unanswered(held, out);
    }
}

/// When the sensor sweeps: once capture time is a second past the last sweep. Time that jumps
/// back by a second or more (a far-future frame, then normal ones) restarts the schedule from
/// there without a sweep, at most once per [`RESCHEDULE_FRAMES`] frames; otherwise a far-future
/// frame would stop ageing until capture time caught up with it. All arithmetic saturates. A
/// sharded replay's reader keeps one for all shards, so they sweep where one sensor would.
#[derive(Debug, Default, Clone)]
pub struct Schedule {
    /// Capture time from which the next sweep is due, and when the schedule was last set: by a
    /// sweep (`at`), or by a restart after time went back (`at`, `restarted` frame number).
    next_sweep: u64,
    sweep_at: Option<u64>,
    restarted: Option<u64>,
}

impl Schedule {
    /// Is a sweep due before frame `frame_no` at capture time `now`? (Counts it as done.)
    #[inline]
    pub fn due(&mut self, now: u64, frame_no: u64) -> bool {
        let at = self.sweep_at;
        // (Near u64::MAX the next sweep saturates: never twice at one instant.)
        if now >= self.next_sweep && at != Some(now) {
            self.sweep_at = Some(now);
            self.next_sweep = now.saturating_add(SEC);
            return true;
        }
        if at.is_some_and(|t| t.saturating_sub(now) >= SEC)
            && self
                .restarted
                .is_none_or(|f| frame_no - f >= RESCHEDULE_FRAMES)
        {
            self.restarted = Some(frame_no);
            self.sweep_at = Some(now);
            self.next_sweep = now.saturating_add(SEC);
        }
        false
    }
}
