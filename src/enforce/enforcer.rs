//! The enforcer: a pipeline output that turns decisions into actions (exact resets and a stopped
//! flow for TCP, QUIC drops per client and address for QUIC and DNS answers), or counts them.
//!
//! State is per flow or per (client, address), always with expiry: a shared address is never
//! blocked for every client because one of them looked up a name. On the capture thread only the
//! reset is sent; every table change is queued to the nftables thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ipnet::IpNet;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::config::{EnforceConf, EnforceMode};
use super::grants::{Grant, Grants};
use super::nft::{flow_key, pair_key, Nft, SetKind};
use super::persist::Entry;
use super::reset::Resetter;
use super::shrink_sparse;
use crate::flow::observation::Transport;
use crate::flow::{Flag, Kind, Observation};
use crate::pipeline::Output;
use crate::policy::config::Category;
use crate::policy::{Action, Decision};
use crate::record::queue::EventTx;
use crate::record::{Enforced, How, Outcome};

/// Entries of each state table at most (past it, expired ones go, then the oldest).
pub const MAX_STATE: usize = 131_072;

/// How often ended entries leave the state tables. Without it a table kept every entry it ever
/// held until it reached [`MAX_STATE`]: bounded, but its memory grew for minutes after each
/// start (the soak's memory row saw it) and stayed at the cap.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Stop-set entries one client holds at most at once: past it, its flows are still reset but not
/// added, so no client (or forger) can fill the set all clients share.
pub const STOPS_PER_CLIENT: usize = 256;
/// QUIC drops one client holds at most at once.
pub const QUIC_PER_CLIENT: usize = 512;

/// Entries in force per client, each with when it ends.
#[derive(Default)]
struct Quota {
    per_client: HashMap<IpAddr, Vec<Instant>>,
}

impl Quota {
    /// Count one more entry for `client` until `until`, unless it holds `max` in force already.
    fn take(&mut self, client: IpAddr, until: Instant, max: usize) -> bool {
        let now = Instant::now();
        if self.per_client.len() >= MAX_STATE {
            self.per_client.retain(|_, v| v.iter().any(|u| *u > now));
        }
        let v = self.per_client.entry(client).or_default();
        if v.len() >= max {
            v.retain(|u| *u > now);
            if v.len() >= max {
                return false;
            }
        }
        v.push(until);
        true
    }

    /// Forget the entries that have ended, and the clients that hold none.
    fn sweep(&mut self, now: Instant) {
        self.per_client.retain(|_, v| {
            v.retain(|u| *u > now);
            !v.is_empty()
        });
        shrink_sparse(&mut self.per_client);
    }
}
/// How long a decided DNS query waits for its answer.
const QUERY_WAIT: Duration = Duration::from_secs(10);

/// `shadowgate_flows_stopped_total{how}` and `shadowgate_would_stop_total`.
#[derive(Clone)]
pub struct EnforceMetrics {
    /// how: `tcp_reset` (resets sent), `tcp_table` (flow added to the stop set), `quic`
    /// (QUIC Initial: the pair dropped), `dns_quic` (a DNS answer: its addresses dropped).
    pub stopped: IntCounterVec,
    pub would_stop: IntCounter,
    /// Resets that could not be sent (routing, permissions).
    pub reset_errors: IntCounter,
    /// Entries not added because a client held its quota, by set (`stop`, `quic`).
    pub quota_full: IntCounterVec,
}

impl EnforceMetrics {
    pub fn new(reg: &Registry) -> Result<EnforceMetrics> {
        let stopped = IntCounterVec::new(
            Opts::new("shadowgate_flows_stopped_total", "Flows stopped, by how"),
            &["how"],
        )?;
        let would_stop = IntCounter::new(
            "shadowgate_would_stop_total",
            "Decisions that would have stopped a flow (monitor mode or break glass)",
        )?;
        let reset_errors = IntCounter::new(
            "shadowgate_reset_errors_total",
            "TCP resets that could not be sent",
        )?;
        let quota_full = IntCounterVec::new(
            Opts::new(
                "shadowgate_enforce_quota_full_total",
                "Stop entries and QUIC drops not in force, by set: stop and quic (the client held its quota), refused (nftables refused the entry after 3 tries)",
            ),
            &["set"],
        )?;
        // Every set at 0 from the start: a dashboard or an alert on it has a series before the
        // first client reaches its quota.
        for set in ["stop", "quic", "refused"] {
            quota_full.with_label_values(&[set]);
        }
        reg.register(Box::new(quota_full.clone()))?;
        reg.register(Box::new(stopped.clone()))?;
        reg.register(Box::new(would_stop.clone()))?;
        reg.register(Box::new(reset_errors.clone()))?;
        Ok(EnforceMetrics {
            stopped,
            would_stop,
            reset_errors,
            quota_full,
        })
    }
}

/// Timeouts of the actions (from `[enforce]`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub flow: Duration,
    pub quic_min: Duration,
    pub quic_max: Duration,
}

impl Timeouts {
    pub fn from_conf(c: &EnforceConf) -> Timeouts {
        let quic_min = Duration::from_secs(c.quic_min_s.max(1));
        Timeouts {
            flow: Duration::from_secs(c.flow_timeout_s.max(1)),
            quic_min,
            quic_max: Duration::from_secs(c.quic_max_s).max(quic_min),
        }
    }

    fn quic(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.quic_min, self.quic_max)
    }
}

/// QUIC drops in force per (client, address), with the service that caused them (so a grant
/// can lift them) and when they end.
#[derive(Default)]
struct QuicState {
    drops: HashMap<(IpAddr, IpAddr), (String, Instant)>,
    quota: Quota,
}

impl QuicState {
    /// Record a drop; true if the table must be told (new, or extended by more than a tenth).
    fn put(&mut self, client: IpAddr, addr: IpAddr, service: &str, until: Instant) -> Put {
        let now = Instant::now();
        if self.drops.len() >= MAX_STATE {
            self.drops.retain(|_, (_, e)| *e > now);
            if self.drops.len() >= MAX_STATE {
                if let Some(k) = self.drops.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k) {
                    self.drops.remove(&k);
                }
            }
        }
        match self.drops.get_mut(&(client, addr)) {
            Some((s, e)) if *e > now => {
                let left = e.saturating_duration_since(now);
                if until > *e + left / 10 {
                    *e = until;
                    *s = service.to_string();
                    Put::Refresh
                } else {
                    Put::Known
                }
            }
            _ => {
                if !self.quota.take(client, until, QUIC_PER_CLIENT) {
                    return Put::Full;
                }
                self.drops
                    .insert((client, addr), (service.to_string(), until));
                Put::New
            }
        }
    }

    /// Remove and return the client's dropped addresses for `service`.
    fn take(&mut self, client: IpAddr, service: &str) -> Vec<IpAddr> {
        let addrs: Vec<IpAddr> = self
            .drops
            .iter()
            .filter(|((c, _), (s, _))| *c == client && s == service)
            .map(|((_, a), _)| *a)
            .collect();
        for a in &addrs {
            self.drops.remove(&(client, *a));
        }
        addrs
    }

    fn sweep(&mut self, now: Instant) {
        self.drops.retain(|_, (_, e)| *e > now);
        shrink_sparse(&mut self.drops);
        self.quota.sweep(now);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Put {
    New,
    Refresh,
    Known,
    /// The client holds its quota of drops: not added.
    Full,
}

/// Flows stopped (client, server) -> until, and the addresses DNS answered each client for each
/// stopped service, with when the answer's TTL ends: the only addresses a grant opens. A server
/// address of a flow is the client's choice (any address, a shared CDN's), so it never is.
#[derive(Default)]
struct FlowState {
    stopped: HashMap<(SocketAddr, SocketAddr), Instant>,
    answered: HashMap<(IpAddr, String), Vec<(IpAddr, Instant)>>,
    quota: Quota,
}

/// Addresses kept per client and service from its answers.
const MAX_ANSWERED: usize = 64;

impl FlowState {
    /// The client's own lookup of `service` answered `addr`, valid until `until`.
    fn answered(&mut self, client: IpAddr, service: &str, addr: IpAddr, until: Instant) {
        let now = Instant::now();
        if self.answered.len() >= MAX_STATE {
            self.answered.retain(|_, v| v.iter().any(|(_, u)| *u > now));
            if self.answered.len() >= MAX_STATE {
                self.answered.clear();
            }
        }
        let v = self
            .answered
            .entry((client, service.to_string()))
            .or_default();
        v.retain(|(a, u)| *u > now && *a != addr);
        if v.len() < MAX_ANSWERED {
            v.push((addr, until));
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.stopped.retain(|_, e| *e > now);
        shrink_sparse(&mut self.stopped);
        self.answered.retain(|_, v| {
            v.retain(|(_, u)| *u > now);
            !v.is_empty()
        });
        shrink_sparse(&mut self.answered);
        self.quota.sweep(now);
    }

    /// What a grant to `client` for `service` opens: the addresses its own lookups of the
    /// service were answered with, still within their TTL.
    fn grant_addresses(&self, client: IpAddr, service: &str) -> Vec<IpAddr> {
        let now = Instant::now();
        self.answered
            .get(&(client, service.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|(_, u)| *u > now)
                    .map(|(a, _)| *a)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a decided DNS query left for its answer (answers come to outputs without a decision).
struct Pending {
    /// None: the decision lets the lookup through (allow, alert).
    act: Option<Verdict>,
    until: Instant,
}

/// The decision-to-action output. Build with [`Enforcer::new`], add with
/// `Pipeline::with_output(Box::new(enforcer))`.
pub struct Enforcer {
    nft: Option<Nft>,
    resetter: Option<Resetter>,
    grants: Arc<Grants>,
    enforcing: Arc<AtomicBool>,
    monitor: bool,
    timeouts: Timeouts,
    metrics: EnforceMetrics,
    quic: Arc<Mutex<QuicState>>,
    flows: Arc<Mutex<FlowState>>,
    queries: HashMap<(IpAddr, String), Pending>,
    /// Sources whose traffic is acted on (`[enforce] lan`; empty: any).
    lan: Vec<IpNet>,
    /// Where `set_full` system events go (the daemon's recorder queue), and the sensor id.
    events: Option<EventTx>,
    sensor: String,
    last_full: Mutex<HashMap<&'static str, Instant>>,
    /// Set to the time a client reached a quota (the daemon's health reads it).
    full_at: Option<Arc<AtomicU64>>,
    /// When ended entries next leave the tables ([`SWEEP_EVERY`]).
    next_sweep: Instant,
}

impl Enforcer {
    /// `nft` and `resetter` may be None in monitor mode (then nothing can act; all is counted).
    /// `enforcing` is the break-glass switch (false: touch nothing). Registers a grant hook on
    /// `grants` that lifts the client's QUIC drops for the service and adds allow entries.
    pub fn new(
        conf: &EnforceConf,
        nft: Option<Nft>,
        resetter: Option<Resetter>,
        grants: Arc<Grants>,
        enforcing: Arc<AtomicBool>,
        registry: &Registry,
    ) -> Result<Enforcer> {
        let metrics = EnforceMetrics::new(registry)?;
        Ok(Enforcer::with_metrics(
            conf, nft, resetter, grants, enforcing, metrics,
        ))
    }

    /// The same with metrics registered once elsewhere (one enforcer per capture thread
    /// sharing them: `EnforceMetrics::new(&registry)?` then a clone for each).
    pub fn with_metrics(
        conf: &EnforceConf,
        nft: Option<Nft>,
        resetter: Option<Resetter>,
        grants: Arc<Grants>,
        enforcing: Arc<AtomicBool>,
        metrics: EnforceMetrics,
    ) -> Enforcer {
        let e = Enforcer {
            monitor: conf.mode == EnforceMode::Monitor,
            timeouts: Timeouts::from_conf(conf),
            metrics,
            nft,
            resetter,
            grants: grants.clone(),
            enforcing,
            quic: Arc::default(),
            flows: Arc::default(),
            queries: HashMap::new(),
            lan: conf.lan.clone(),
            events: None,
            sensor: String::new(),
            last_full: Mutex::default(),
            full_at: None,
            next_sweep: Instant::now() + SWEEP_EVERY,
        };
        if let Some(nft) = e.nft.clone() {
            if let Some(b) = nft.book() {
                e.seed(b.take_seed());
            }
            let quic = e.quic.clone();
            let flows = e.flows.clone();
            grants.on_grant(Box::new(move |g: &Grant| lift(&nft, &quic, &flows, g)));
        }
        e
    }

    /// Hold the stop entries and QUIC drops put back after a restart as this enforcer's own
    /// (already in the table): a repeat is not added again, a grant lifts the drops.
    fn seed(&self, entries: Vec<(Entry, Instant)>) {
        let mut f = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = self.quic.lock().unwrap_or_else(|e| e.into_inner());
        for (e, until) in entries {
            match e {
                Entry::Stop { client, server } => {
                    if f.quota.take(client.ip(), until, STOPS_PER_CLIENT) {
                        f.stopped.insert((client, server), until);
                    }
                }
                Entry::Quic {
                    client,
                    server,
                    service,
                } => {
                    q.put(client, server, &service, until);
                }
                Entry::Allow { .. } | Entry::Grant { .. } => {}
            }
        }
    }

    /// Act only on clients inside these networks (the daemon passes `[enforce] lan`, or the
    /// capture interfaces' connected subnets when it is not set).
    pub fn with_lan(mut self, lan: Vec<IpNet>) -> Enforcer {
        self.lan = lan;
        self
    }

    /// Note in `at` when a client reaches its quota (for the daemon's health).
    pub fn with_full_flag(mut self, at: Arc<AtomicU64>) -> Enforcer {
        self.full_at = Some(at);
        self
    }

    /// Say on `tx` (as sensor `sensor`) when a client reaches its quota (`set_full`).
    pub fn with_events(mut self, tx: EventTx, sensor: &str) -> Enforcer {
        self.events = Some(tx);
        self.sensor = sensor.to_string();
        self
    }

    pub fn metrics(&self) -> &EnforceMetrics {
        &self.metrics
    }

    fn active(&self) -> bool {
        !self.monitor && self.enforcing.load(Ordering::Relaxed)
    }

    /// Act on one observation and its decision; what became of the decision (none for an
    /// observation without one, an allow or alert decision, and a DNS query: its answer acts).
    pub fn act(&mut self, o: &Observation, d: Option<&Decision>) -> Option<Enforced> {
        self.forget_refused();
        self.sweep_if_due(Instant::now());
        let client = o.client.ip;
        let how = match o.kind {
            Kind::DnsQuery if o.flags.contains(&Flag::UnverifiedSource) => {
                // A lookup in another device's name: its answer acts on nothing.
                return None;
            }
            Kind::DnsQuery => {
                if let (Some(d), Some(name)) = (d, o.name.as_ref()) {
                    self.remember_query(client, name, d);
                }
                return None;
            }
            Kind::DnsAnswer => How::QuicDropAnswered,
            Kind::QuicInitial => How::QuicDrop,
            Kind::TlsClientHello | Kind::HttpRequest | Kind::ProxyConnect => How::Reset,
        };
        // The query's decision, for an answer (checked again against grants now).
        let verdict = match d {
            Some(d) => verdict(d, client, &self.grants),
            None if o.kind == Kind::DnsAnswer => match o.name.as_ref() {
                Some(n) => self.answer_of(client, n)?,
                None => return None,
            },
            None => return None,
        };
        // Never on a source that may be forged: a TCP flow whose handshake the sensor did not
        // see (another device can send hellos in anyone's name), a QUIC hello its server never
        // answered, a frame from a MAC the address is not bound to, or an address outside the LAN.
        let forged = o.flags.contains(&Flag::UnverifiedSource)
            || (o.kind == Kind::QuicInitial && o.unanswered)
            || (o.kind == Kind::DnsAnswer && o.flags.contains(&Flag::Unmatched))
            || (!self.lan.is_empty() && !self.lan.iter().any(|n| n.contains(&client)));
        if forged && matches!(verdict, Verdict::Stop(_)) {
            return Some(flow(Outcome::NotActed, None));
        }
        let service = match verdict {
            Verdict::Stop(s) => s,
            Verdict::Granted => return Some(flow(Outcome::Granted, None)),
            Verdict::Exempt => return Some(flow(Outcome::Allowed, None)),
            Verdict::Pass => return None,
        };
        let done = match how {
            How::QuicDropAnswered => self.drop_answered(o, &service),
            How::QuicDrop => self.active().then(|| {
                let ttl = self.timeouts.quic_min;
                self.drop_quic(client, o.server.ip, &service, ttl, "quic");
            }),
            How::Reset if o.transport != Transport::Tcp => {
                return Some(flow(Outcome::NotActed, None))
            }
            How::Reset => self.active().then(|| self.stop_tcp(o)),
        };
        Some(match done {
            Some(()) => flow(Outcome::Stopped, Some(how)),
            None if !self.active() && self.has_target(o, how) => {
                self.metrics.would_stop.inc();
                flow(Outcome::WouldStop, Some(how))
            }
            None => flow(Outcome::NotActed, None),
        })
    }

    /// Is there something to act on (a DNS answer with addresses; any flow)?
    fn has_target(&self, o: &Observation, how: How) -> bool {
        how != How::QuicDropAnswered || !answered_addresses(o).is_empty()
    }

    /// QUIC to the addresses a DNS answer gave, for the client; none when there are none or
    /// enforcement is off.
    fn drop_answered(&mut self, o: &Observation, service: &str) -> Option<()> {
        let answers = answered_addresses(o);
        if answers.is_empty() || !self.active() {
            return None;
        }
        let now = Instant::now();
        let mut f = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        for &(ip, ttl) in &answers {
            f.answered(
                o.client.ip,
                service,
                ip,
                now + Duration::from_secs(ttl as u64),
            );
        }
        drop(f);
        for (ip, ttl) in answers {
            let ttl = self.timeouts.quic(Duration::from_secs(ttl as u64));
            self.drop_quic(o.client.ip, ip, service, ttl, "dns_quic");
        }
        Some(())
    }

    fn remember_query(&mut self, client: IpAddr, name: &str, d: &Decision) {
        let now = Instant::now();
        if self.queries.len() >= MAX_STATE {
            self.queries.retain(|_, p| p.until > now);
            if self.queries.len() >= MAX_STATE {
                self.queries.clear();
            }
        }
        let act = match verdict(d, client, &self.grants) {
            Verdict::Stop(s) => Some(Verdict::Stop(s)),
            Verdict::Granted => Some(Verdict::Granted),
            Verdict::Exempt => Some(Verdict::Exempt),
            Verdict::Pass => None,
        };
        self.queries.insert(
            (client, name.to_string()),
            Pending {
                act,
                until: now + QUERY_WAIT,
            },
        );
    }

    /// The verdict of a decided query for `name` (a stop checked again against grants now);
    /// none when no decided query waits for this answer.
    fn answer_of(&mut self, client: IpAddr, name: &str) -> Option<Verdict> {
        let p = self.queries.remove(&(client, name.to_string()))?;
        if p.until < Instant::now() {
            return None;
        }
        Some(match p.act {
            Some(Verdict::Stop(s)) if self.grants.active(client, &s) => Verdict::Granted,
            Some(v) => v,
            None => Verdict::Pass,
        })
    }

    fn drop_quic(&self, client: IpAddr, addr: IpAddr, service: &str, ttl: Duration, how: &str) {
        let Some(nft) = &self.nft else { return };
        let put = self.quic.lock().unwrap_or_else(|e| e.into_inner()).put(
            client,
            addr,
            service,
            Instant::now() + ttl,
        );
        match put {
            Put::New => {
                nft.drop_quic(client, addr, ttl);
            }
            Put::Refresh => {
                // Remove and add again: the new timeout holds whatever the kernel does with
                // a repeated element.
                nft.remove_quic_for(client, &[addr]);
                nft.drop_quic(client, addr, ttl);
            }
            Put::Known => return,
            Put::Full => {
                self.full("quic", client);
                return;
            }
        }
        if let Some(b) = nft.book() {
            b.put(
                Entry::Quic {
                    client,
                    server: addr,
                    service: service.to_string(),
                },
                ttl,
            );
        }
        self.metrics.stopped.with_label_values(&[how]).inc();
    }

    /// A client at its quota: counted, and a `set_full` system event at most once a minute
    /// per kind (the daemon's recorder queue; the capture thread never waits for the store).
    fn full(&self, what: &'static str, client: IpAddr) {
        self.metrics.quota_full.with_label_values(&[what]).inc();
        if let Some(f) = &self.full_at {
            f.store(crate::time::now_ns(), Ordering::Relaxed);
        }
        let Some(tx) = self.events.as_ref().filter(|_| self.once_a_minute(what)) else {
            return;
        };
        let max = if what == "stop" {
            STOPS_PER_CLIENT
        } else {
            QUIC_PER_CLIENT
        };
        tx.send(crate::record::Event::system(
            crate::record::SystemKind::SetFull,
            crate::time::now_ns(),
            &self.sensor,
            &format!(
                "{client} holds its quota of {max} {what} entries: further ones are not added"
            ),
            serde_json::json!({ "set": what, "client": client.to_string(), "quota": max }),
        ));
    }

    /// Has no `set_full` event of this kind gone out in the last minute? (Notes one now if so.)
    fn once_a_minute(&self, what: &'static str) -> bool {
        let mut last = self.last_full.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last
            .get(what)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
        {
            return false;
        }
        last.insert(what, now);
        true
    }

    /// Every [`SWEEP_EVERY`]: ended stops, QUIC drops, answers, quota entries and unanswered
    /// queries leave their tables (the kernel's sets expire the same entries by their timeout).
    fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sweep(now);
        self.quic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sweep(now);
        self.queries.retain(|_, p| p.until > now);
        shrink_sparse(&mut self.queries);
    }

    /// Entries the kernel refused (after their retries) are not in force: forget them, so the
    /// next flow adds them again, and report them (`set_full`, health, at most once a minute).
    fn forget_refused(&mut self) {
        let Some(nft) = &self.nft else { return };
        let refused = nft.take_refused();
        if refused.is_empty() {
            return;
        }
        {
            let mut f = self.flows.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<_> = f
                .stopped
                .keys()
                .filter(|(c, s)| {
                    flow_key(*c, *s).is_some_and(|(fam, k)| {
                        refused
                            .iter()
                            .any(|r| r.kind == SetKind::Stop && r.fam == fam && r.key == k)
                    })
                })
                .copied()
                .collect();
            for k in gone {
                f.stopped.remove(&k);
            }
        }
        {
            let mut q = self.quic.lock().unwrap_or_else(|e| e.into_inner());
            q.drops.retain(|(c, a), _| {
                !pair_key(*c, *a).is_some_and(|(fam, k)| {
                    refused
                        .iter()
                        .any(|r| r.kind == SetKind::Quic && r.fam == fam && r.key == k)
                })
            });
        }
        self.metrics
            .quota_full
            .with_label_values(&["refused"])
            .inc_by(refused.len() as u64);
        if let Some(f) = &self.full_at {
            f.store(crate::time::now_ns(), Ordering::Relaxed);
        }
        let Some(tx) = self
            .events
            .as_ref()
            .filter(|_| self.once_a_minute("refused"))
        else {
            return;
        };
        let sets: std::collections::BTreeSet<String> = refused
            .iter()
            .map(|r| r.kind.name(r.fam).to_string_lossy().into_owned())
            .collect();
        let why = refused[0].why.clone();
        tx.send(crate::record::Event::system(
            crate::record::SystemKind::SetFull,
            crate::time::now_ns(),
            &self.sensor,
            &format!(
                "nftables refused {} entries after 3 tries ({why}): they are not in force",
                refused.len()
            ),
            serde_json::json!({
                "set": "table",
                "sets": sets,
                "refused": refused.len(),
                "why": why,
            }),
        ));
    }

    /// Resets now (exact numbers), then the flow into the stop set.
    fn stop_tcp(&self, o: &Observation) {
        let client = SocketAddr::new(o.client.ip, o.client.port);
        let server = SocketAddr::new(o.server.ip, o.server.port);
        if let (Some(r), Some(seq)) = (&self.resetter, &o.tcp) {
            match r.reset(client, server, seq) {
                Ok(_) => self.metrics.stopped.with_label_values(&["tcp_reset"]).inc(),
                Err(_) => self.metrics.reset_errors.inc(),
            }
        }
        let Some(nft) = &self.nft else { return };
        let now = Instant::now();
        let mut f = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        if f.stopped.get(&(client, server)).is_some_and(|e| *e > now) {
            return;
        }
        if f.stopped.len() >= MAX_STATE {
            f.stopped.retain(|_, e| *e > now);
            if f.stopped.len() >= MAX_STATE {
                f.stopped.clear();
            }
        }
        let until = now + self.timeouts.flow;
        if !f.quota.take(client.ip(), until, STOPS_PER_CLIENT) {
            drop(f);
            // The resets went out: this flow is stopped; only the table entry is not added.
            self.full("stop", client.ip());
            return;
        }
        f.stopped.insert((client, server), until);
        drop(f);
        nft.stop_flow(client, server, self.timeouts.flow);
        self.metrics.stopped.with_label_values(&["tcp_table"]).inc();
    }
}

/// Break glass (`on` false) or back to enforcing: the switch the enforcer reads flips first (the
/// capture path stops acting at once), then the table is flushed and its rules removed (or put
/// back) in one transaction.
pub fn set_enforcing(enforcing: &AtomicBool, nft: Option<&Nft>, on: bool) -> Result<()> {
    if !on {
        enforcing.store(false, Ordering::SeqCst);
    }
    if let Some(nft) = nft {
        nft.set_enforcing(on)?;
    }
    if on {
        enforcing.store(true, Ordering::SeqCst);
    }
    Ok(())
}

/// Whether a decision stops a client's traffic: the one answer the enforcer, the resolver and
/// the stored event share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stop it; the grant key (the service, or the matched name if uncatalogued).
    Stop(String),
    /// A coach decision, and the client holds a grant for it: let through.
    Granted,
    /// A steer or coach decision on a category the gateway never stops (public DNS resolvers:
    /// only `block` stops them): let through.
    Exempt,
    /// Allow or alert: let through.
    Pass,
}

/// The key a coach grant is held under: the service, or the matched name if uncatalogued.
pub fn grant_key(d: &Decision) -> String {
    d.service.clone().unwrap_or_else(|| d.matched_name.clone())
}

/// Does this decision stop `client`'s traffic? Block always; steer; coach without an active
/// grant; a DNS resolver's category only on block.
pub fn verdict(d: &Decision, client: IpAddr, grants: &Grants) -> Verdict {
    let key = || grant_key(d);
    match d.action {
        Action::Block => Verdict::Stop(key()),
        Action::Steer | Action::Coach if d.category == Some(Category::DnsResolver) => {
            Verdict::Exempt
        }
        Action::Steer => Verdict::Stop(key()),
        Action::Coach => {
            let k = key();
            if grants.active(client, &k) {
                Verdict::Granted
            } else {
                Verdict::Stop(k)
            }
        }
        Action::Allow | Action::Alert => Verdict::Pass,
    }
}

fn flow(outcome: Outcome, how: Option<How>) -> Enforced {
    Enforced::Flow { outcome, how }
}

/// The A and AAAA addresses of a DNS answer, with their TTLs.
fn answered_addresses(o: &Observation) -> Vec<(IpAddr, u32)> {
    o.dns
        .iter()
        .flat_map(|dns| dns.answers.iter())
        .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
        .filter_map(|a| a.data.parse::<IpAddr>().ok().map(|ip| (ip, a.ttl)))
        .collect()
}

/// A new grant: lift the client's QUIC drops for the service (they only ever held that client)
/// and accept the service's own addresses, those its lookups of it were answered with, until the
/// grant ends. Never an address the client chose (the server of a flow or a QUIC Initial).
fn lift(nft: &Nft, quic: &Mutex<QuicState>, flows: &Mutex<FlowState>, g: &Grant) {
    let ttl = g.expires.saturating_duration_since(Instant::now());
    if ttl.is_zero() {
        return;
    }
    let dropped = quic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(g.client, &g.service);
    nft.remove_quic_for(g.client, &dropped);
    let open = flows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .grant_addresses(g.client, &g.service);
    for a in open {
        nft.allow(g.client, a, ttl);
    }
}

impl Output for Enforcer {
    fn send(&mut self, o: &Observation, d: Option<&Decision>) -> Result<Option<Enforced>, String> {
        Ok(self.act(o, d))
    }

    /// The answer never came: nothing was acted on (or the decision let it through).
    fn unanswered(&mut self, q: &Observation, d: &Decision) -> Option<Enforced> {
        if let Some(n) = q.name.as_ref() {
            self.queries.remove(&(q.client.ip, n.clone()));
        }
        match verdict(d, q.client.ip, &self.grants) {
            Verdict::Stop(_) => Some(flow(Outcome::NotActed, None)),
            Verdict::Granted => Some(flow(Outcome::Granted, None)),
            Verdict::Exempt => Some(flow(Outcome::Allowed, None)),
            Verdict::Pass => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::observation::{DnsAnswer, DnsInfo};
    use crate::flow::Evidence;
    use crate::policy::{Severity, Via};

    fn obs(kind: Kind, name: &str, transport: Transport) -> Observation {
        Observation::between(
            1,
            kind,
            Some(name.into()),
            transport,
            "10.20.0.5:50000".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        )
    }

    fn decision(action: Action, service: &str, category: Category) -> Decision {
        Decision {
            service: Some(service.into()),
            service_name: None,
            category: Some(category),
            service_kind: None,
            matched_name: format!("{service}.example"),
            pattern: String::new(),
            via: Via::Tls,
            evidence: Evidence::Wire,
            matched_by: Default::default(),
            rule_id: "r".into(),
            action,
            severity: Severity::Medium,
            steer_to: None,
            groups: Vec::new(),
            shared_tenant: false,
        }
    }

    /// An enforcer in enforce mode with nothing to touch (no table, no raw sockets).
    fn enforcer(on: bool) -> (Enforcer, Arc<Grants>) {
        let conf: EnforceConf = toml::from_str("mode = \"enforce\"").unwrap();
        let grants = Arc::new(Grants::new());
        let metrics = EnforceMetrics::new(&Registry::new()).unwrap();
        let e = Enforcer::with_metrics(
            &conf,
            None,
            None,
            Arc::clone(&grants),
            Arc::new(AtomicBool::new(on)),
            metrics,
        );
        (e, grants)
    }

    fn flow_of(outcome: Outcome, how: Option<How>) -> Option<Enforced> {
        Some(Enforced::Flow { outcome, how })
    }

    /// What the stored event says is what the enforcer did: the one `verdict` decides both.
    #[test]
    fn the_outcome_is_what_the_enforcer_did() {
        let (mut e, grants) = enforcer(true);
        let hello = obs(Kind::TlsClientHello, "claude.example", Transport::Tcp);
        let steer = decision(Action::Steer, "claude", Category::ConsumerAi);
        assert_eq!(
            e.act(&hello, Some(&steer)),
            flow_of(Outcome::Stopped, Some(How::Reset))
        );
        // A public DNS resolver is stopped only by block: steered, it passes (the event said
        // "stopped" here before).
        let doh = decision(Action::Steer, "doh", Category::DnsResolver);
        assert_eq!(e.act(&hello, Some(&doh)), flow_of(Outcome::Allowed, None));
        let block_doh = decision(Action::Block, "doh", Category::DnsResolver);
        assert_eq!(
            e.act(&hello, Some(&block_doh)),
            flow_of(Outcome::Stopped, Some(How::Reset))
        );
        // Coach under a grant: let through; allow and alert: nothing to say.
        let coach = decision(Action::Coach, "claude", Category::ConsumerAi);
        grants.grant(hello.client.ip, "claude", Duration::from_secs(60));
        assert_eq!(e.act(&hello, Some(&coach)), flow_of(Outcome::Granted, None));
        let alert = decision(Action::Alert, "claude", Category::ConsumerAi);
        assert_eq!(e.act(&hello, Some(&alert)), None);
        assert_eq!(e.act(&hello, None), None);

        // A blocked lookup: the query is remembered, its answer's addresses are dropped.
        let block = decision(Action::Block, "gemini", Category::ConsumerAi);
        let q = obs(Kind::DnsQuery, "gemini.example", Transport::Udp);
        assert_eq!(e.act(&q, Some(&block)), None);
        let mut a = obs(Kind::DnsAnswer, "gemini.example", Transport::Udp);
        a.dns = Some(DnsInfo {
            id: 1,
            qtype: "A".into(),
            rcode: Some("NOERROR"),
            answers: vec![DnsAnswer {
                name: "gemini.example".into(),
                rtype: "A".into(),
                ttl: 300,
                data: "192.0.2.7".into(),
            }],
        });
        assert_eq!(
            e.act(&a, None),
            flow_of(Outcome::Stopped, Some(How::QuicDropAnswered))
        );
        // A blocked lookup whose answer never came: nothing was acted on (the event said
        // "stopped" here before).
        assert_eq!(e.act(&q, Some(&block)), None);
        assert_eq!(e.unanswered(&q, &block), flow_of(Outcome::NotActed, None));
        // ... and its late answer is no longer the lookup's.
        assert_eq!(e.act(&a, None), None);
        // An answer without addresses: nothing to drop.
        assert_eq!(e.act(&q, Some(&block)), None);
        let mut empty = a.clone();
        empty.dns.as_mut().unwrap().answers.clear();
        assert_eq!(e.act(&empty, None), flow_of(Outcome::NotActed, None));
    }

    #[test]
    fn break_glass_would_stop() {
        let (mut e, _) = enforcer(false);
        let hello = obs(Kind::TlsClientHello, "claude.example", Transport::Tcp);
        let steer = decision(Action::Steer, "claude", Category::ConsumerAi);
        assert_eq!(
            e.act(&hello, Some(&steer)),
            flow_of(Outcome::WouldStop, Some(How::Reset))
        );
        let quic = obs(Kind::QuicInitial, "claude.example", Transport::Udp);
        assert_eq!(
            e.act(&quic, Some(&steer)),
            flow_of(Outcome::WouldStop, Some(How::QuicDrop))
        );
        assert_eq!(e.metrics().would_stop.get(), 2);
    }

    #[test]
    fn quic_state_is_per_client_and_refreshes_only_when_extended() {
        let mut q = QuicState::default();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let s: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!(q.put(a, s, "claude", now + Duration::from_secs(60)) == Put::New);
        assert!(q.put(a, s, "claude", now + Duration::from_secs(61)) == Put::Known);
        assert!(q.put(a, s, "claude", now + Duration::from_secs(600)) == Put::Refresh);
        assert!(q.put(b, s, "claude", now + Duration::from_secs(60)) == Put::New);
        assert_eq!(q.take(a, "claude"), vec![s]);
        assert!(q.take(a, "claude").is_empty());
        assert_eq!(q.take(b, "chatgpt"), Vec::<IpAddr>::new());
    }

    /// A grant opens only what DNS answered the client for the service, within the TTL: not a
    /// flow's server (the client's choice), not another client's answer, not another service's.
    #[test]
    fn a_grant_opens_only_the_answered_addresses() {
        let (mut e, _) = enforcer(true);
        let block = decision(Action::Coach, "gemini", Category::ConsumerAi);
        let q = obs(Kind::DnsQuery, "gemini.example", Transport::Udp);
        assert_eq!(e.act(&q, Some(&block)), None);
        let mut a = obs(Kind::DnsAnswer, "gemini.example", Transport::Udp);
        let rr = |data: &str, ttl| DnsAnswer {
            name: "gemini.example".into(),
            rtype: "A".into(),
            ttl,
            data: data.into(),
        };
        a.dns = Some(DnsInfo {
            id: 1,
            qtype: "A".into(),
            rcode: Some("NOERROR"),
            answers: vec![rr("192.0.2.7", 300), rr("192.0.2.8", 0)],
        });
        e.act(&a, None);
        // A stopped flow to an address the client chose (a CDN's) opens nothing.
        let mut hello = obs(Kind::TlsClientHello, "gemini.example", Transport::Tcp);
        hello.server.ip = "203.0.113.50".parse().unwrap();
        e.act(&hello, Some(&block));
        let f = e.flows.lock().unwrap();
        let client: IpAddr = "10.20.0.5".parse().unwrap();
        assert_eq!(
            f.grant_addresses(client, "gemini"),
            vec!["192.0.2.7".parse::<IpAddr>().unwrap()],
            "the answered address within its TTL, nothing else"
        );
        assert!(f
            .grant_addresses("10.20.0.6".parse().unwrap(), "gemini")
            .is_empty());
        assert!(f.grant_addresses(client, "claude").is_empty());
    }

    /// Ended entries leave every table on the sweep, and the tables give their room back;
    /// entries still in force stay.
    #[test]
    fn the_sweep_forgets_ended_entries_and_frees_the_room() {
        let now = Instant::now();
        let (ended, live) = (now - Duration::from_secs(1), now + Duration::from_secs(60));
        let mut f = FlowState::default();
        let mut q = QuicState::default();
        for i in 0..20_000u32 {
            let c = IpAddr::from((0x0a00_0000 + i % 200).to_be_bytes());
            let s = SocketAddr::new(IpAddr::from((0xc000_0200 + i).to_be_bytes()), 443);
            let until = if i < 100 { live } else { ended };
            f.stopped
                .insert((SocketAddr::new(c, 40_000 + (i / 200) as u16), s), until);
            f.answered
                .entry((c, format!("svc{i}")))
                .or_default()
                .push((s.ip(), until));
            f.quota.per_client.entry(c).or_default().push(until);
            q.drops.insert((c, s.ip()), ("svc".into(), until));
            q.quota.per_client.entry(c).or_default().push(until);
        }
        let room = f.stopped.capacity();
        f.sweep(now);
        q.sweep(now);
        assert_eq!(f.stopped.len(), 100);
        assert_eq!(f.answered.len(), 100);
        assert_eq!(q.drops.len(), 100);
        assert!(
            f.stopped.capacity() * 8 <= room,
            "{} of {room}",
            f.stopped.capacity()
        );
        // The first 100 entries went to 100 clients: each holds one entry in force.
        assert_eq!(f.quota.per_client.len(), 100);
        assert!(f.quota.per_client.values().all(|v| v.len() == 1));
        assert_eq!(q.quota.per_client.len(), 100);
        // Nothing ended is left to sweep.
        f.sweep(now);
        assert_eq!(f.stopped.len(), 100);
    }

    /// One client cannot fill what every client shares: its entries stop at its quota, another
    /// client's are still added, and expired entries make room again.
    #[test]
    fn quotas_are_per_client() {
        let mut q = QuicState::default();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..QUIC_PER_CLIENT {
            let s = IpAddr::from([192, 0, (i / 256) as u8, (i % 256) as u8]);
            assert_eq!(q.put(a, s, "claude", later), Put::New);
        }
        let s = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(q.put(a, s, "claude", later), Put::Full);
        assert_eq!(q.put(b, s, "claude", later), Put::New);
        let mut quota = Quota::default();
        let past = Instant::now();
        for _ in 0..STOPS_PER_CLIENT {
            assert!(quota.take(a, past, STOPS_PER_CLIENT));
        }
        // All expired: room again.
        std::thread::sleep(Duration::from_millis(2));
        assert!(quota.take(a, later, STOPS_PER_CLIENT));
    }

    /// A hello whose handshake the sensor did not see is never acted on, nor a QUIC hello its
    /// server never answered, nor a client outside the LAN, nor an answer to a query nobody saw
    /// or one sent in another device's name.
    #[test]
    fn forged_sources_are_not_acted_on() {
        let (e, _) = enforcer(true);
        let mut e = e.with_lan(vec!["10.20.0.0/16".parse().unwrap()]);
        let steer = decision(Action::Steer, "claude", Category::ConsumerAi);
        let mut hello = obs(Kind::TlsClientHello, "claude.example", Transport::Tcp);
        hello.flags.push(Flag::UnverifiedSource);
        assert_eq!(
            e.act(&hello, Some(&steer)),
            flow_of(Outcome::NotActed, None)
        );
        let mut outside = obs(Kind::TlsClientHello, "claude.example", Transport::Tcp);
        outside.client.ip = "172.16.0.9".parse().unwrap();
        assert_eq!(
            e.act(&outside, Some(&steer)),
            flow_of(Outcome::NotActed, None)
        );
        let mut answer = obs(Kind::DnsAnswer, "claude.example", Transport::Udp);
        answer.flags.push(Flag::Unmatched);
        assert_eq!(
            e.act(&answer, Some(&steer)),
            flow_of(Outcome::NotActed, None)
        );
        // A QUIC hello its server never answered.
        let mut quic = obs(Kind::QuicInitial, "claude.example", Transport::Udp);
        quic.unanswered = true;
        assert_eq!(e.act(&quic, Some(&steer)), flow_of(Outcome::NotActed, None));
        // A lookup in another device's name: its answer acts on nothing.
        let mut q = obs(Kind::DnsQuery, "claude.example", Transport::Udp);
        q.flags.push(Flag::UnverifiedSource);
        assert_eq!(e.act(&q, Some(&steer)), None);
        let answer = obs(Kind::DnsAnswer, "claude.example", Transport::Udp);
        assert_eq!(e.act(&answer, None), None);
        let inside = obs(Kind::TlsClientHello, "claude.example", Transport::Tcp);
        assert_eq!(
            e.act(&inside, Some(&steer)),
            flow_of(Outcome::Stopped, Some(How::Reset))
        );
    }

    #[test]
    fn timeouts_clamp_the_answer_ttl() {
        let t = Timeouts {
            flow: Duration::from_secs(120),
            quic_min: Duration::from_secs(60),
            quic_max: Duration::from_secs(3600),
        };
        assert_eq!(t.quic(Duration::from_secs(5)), Duration::from_secs(60));
        assert_eq!(t.quic(Duration::from_secs(300)), Duration::from_secs(300));
        assert_eq!(
            t.quic(Duration::from_secs(86400)),
            Duration::from_secs(3600)
        );
    }
}
