//! The enforcer: a pipeline output that turns decisions into actions (exact resets and a stopped
//! flow for TCP, QUIC drops per client and address for QUIC and DNS answers), or counts them.
//!
//! State is per flow or per (client, address), always with expiry: a shared address is never
//! blocked for every client because one of them looked up a name. On the capture thread only the
//! reset is sent; every table change is queued to the nftables thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::config::{EnforceConf, EnforceMode};
use super::grants::{Grant, Grants};
use super::nft::Nft;
use super::reset::Resetter;
use crate::flow::observation::Transport;
use crate::flow::{Kind, Observation};
use crate::pipeline::Output;
use crate::policy::config::Category;
use crate::policy::{Action, Decision};

/// Entries of each state table at most (past it, expired ones go, then the oldest).
pub const MAX_STATE: usize = 131_072;
/// How long a decided DNS query waits for its answer.
const QUERY_WAIT: Duration = Duration::from_secs(10);

/// What the enforcer did with one decision (for the event's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Resets sent and/or the table told to stop the flow or drop QUIC.
    Stopped,
    /// Would have stopped it, but monitor mode or break glass is on.
    WouldStop,
    /// A coach decision under an active grant: let through.
    Granted,
    /// Nothing to do (allow, alert, no decision, or nothing to act on).
    None,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::WouldStop => "would_stop",
            Outcome::Granted => "granted",
            Outcome::None => "none",
        }
    }
}

/// `shadowgate_flows_stopped_total{how}` and `shadowgate_would_stop_total`.
#[derive(Clone)]
pub struct EnforceMetrics {
    /// how: `tcp_reset` (resets sent), `tcp_table` (flow added to the stop set), `quic`
    /// (QUIC Initial: the pair dropped), `dns_quic` (a DNS answer: its addresses dropped).
    pub stopped: IntCounterVec,
    pub would_stop: IntCounter,
    /// Resets that could not be sent (routing, permissions).
    pub reset_errors: IntCounter,
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
        reg.register(Box::new(stopped.clone()))?;
        reg.register(Box::new(would_stop.clone()))?;
        reg.register(Box::new(reset_errors.clone()))?;
        Ok(EnforceMetrics {
            stopped,
            would_stop,
            reset_errors,
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
}

#[derive(PartialEq, Eq)]
enum Put {
    New,
    Refresh,
    Known,
}

/// Flows stopped (client, server) -> until, and addresses per (client, service) seen on stopped
/// flows (for allow entries when a grant comes).
#[derive(Default)]
struct FlowState {
    stopped: HashMap<(SocketAddr, SocketAddr), Instant>,
    seen: HashMap<(IpAddr, String), Vec<IpAddr>>,
}

/// What a decided DNS query left for its answer (answers come to outputs without a decision).
struct Pending {
    act: Option<String>,
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
    last: Arc<Mutex<Outcome>>,
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
            last: Arc::new(Mutex::new(Outcome::None)),
        };
        if let Some(nft) = e.nft.clone() {
            let quic = e.quic.clone();
            let flows = e.flows.clone();
            grants.on_grant(Box::new(move |g: &Grant| lift(&nft, &quic, &flows, g)));
        }
        e
    }

    /// The outcome of the last observation `send` was given (the pipeline hands an observation
    /// to outputs before the recorder, so the lead's recorder can read it for the same one).
    pub fn last_outcome(&self) -> Arc<Mutex<Outcome>> {
        self.last.clone()
    }

    pub fn metrics(&self) -> &EnforceMetrics {
        &self.metrics
    }

    fn active(&self) -> bool {
        !self.monitor && self.enforcing.load(Ordering::Relaxed)
    }

    /// Act on one observation and its decision; what happened.
    pub fn act(&mut self, o: &Observation, d: Option<&Decision>) -> Outcome {
        let out = self.act_inner(o, d);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = out;
        out
    }

    fn act_inner(&mut self, o: &Observation, d: Option<&Decision>) -> Outcome {
        let client = o.client.ip;
        match o.kind {
            Kind::DnsQuery => {
                if let (Some(d), Some(name)) = (d, o.name.as_ref()) {
                    self.remember_query(client, name, d);
                }
                Outcome::None
            }
            Kind::DnsAnswer => {
                let service = match d {
                    Some(d) => match self.stops(client, d) {
                        Verdict::Stop(s) => Some(s),
                        Verdict::Granted => return Outcome::Granted,
                        Verdict::Pass => None,
                    },
                    None => o.name.as_ref().and_then(|n| self.answer_of(client, n)),
                };
                let Some(service) = service else {
                    return Outcome::None;
                };
                let answers: Vec<(IpAddr, u32)> = o
                    .dns
                    .iter()
                    .flat_map(|dns| dns.answers.iter())
                    .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
                    .filter_map(|a| a.data.parse::<IpAddr>().ok().map(|ip| (ip, a.ttl)))
                    .collect();
                if answers.is_empty() {
                    return Outcome::None;
                }
                if !self.active() {
                    self.metrics.would_stop.inc();
                    return Outcome::WouldStop;
                }
                for (ip, ttl) in answers {
                    let ttl = self.timeouts.quic(Duration::from_secs(ttl as u64));
                    self.drop_quic(client, ip, &service, ttl, "dns_quic");
                }
                Outcome::Stopped
            }
            Kind::QuicInitial => {
                let Some(d) = d else {
                    return Outcome::None;
                };
                let service = match self.stops(client, d) {
                    Verdict::Stop(s) => s,
                    Verdict::Granted => return Outcome::Granted,
                    Verdict::Pass => return Outcome::None,
                };
                if !self.active() {
                    self.metrics.would_stop.inc();
                    return Outcome::WouldStop;
                }
                let ttl = self.timeouts.quic_min;
                self.drop_quic(client, o.server.ip, &service, ttl, "quic");
                Outcome::Stopped
            }
            Kind::TlsClientHello | Kind::HttpRequest | Kind::ProxyConnect => {
                let Some(d) = d else {
                    return Outcome::None;
                };
                if o.transport != Transport::Tcp {
                    return Outcome::None;
                }
                let service = match self.stops(client, d) {
                    Verdict::Stop(s) => s,
                    Verdict::Granted => return Outcome::Granted,
                    Verdict::Pass => return Outcome::None,
                };
                if !self.active() {
                    self.metrics.would_stop.inc();
                    return Outcome::WouldStop;
                }
                self.stop_tcp(o, &service);
                Outcome::Stopped
            }
        }
    }

    /// Does this decision stop the client's traffic? (block, steer, or coach without a grant;
    /// a DNS resolver only on block).
    fn stops(&self, client: IpAddr, d: &Decision) -> Verdict {
        let service = d.service.clone().unwrap_or_else(|| d.matched_name.clone());
        match d.action {
            Action::Block => Verdict::Stop(service),
            _ if d.category == Some(Category::DnsResolver) => Verdict::Pass,
            Action::Steer => Verdict::Stop(service),
            Action::Coach if self.grants.active(client, &service) => Verdict::Granted,
            Action::Coach => Verdict::Stop(service),
            Action::Allow | Action::Alert => Verdict::Pass,
        }
    }

    fn remember_query(&mut self, client: IpAddr, name: &str, d: &Decision) {
        let now = Instant::now();
        if self.queries.len() >= MAX_STATE {
            self.queries.retain(|_, p| p.until > now);
            if self.queries.len() >= MAX_STATE {
                self.queries.clear();
            }
        }
        let act = match self.stops(client, d) {
            Verdict::Stop(s) => Some(s),
            _ => None,
        };
        self.queries.insert(
            (client, name.to_string()),
            Pending {
                act,
                until: now + QUERY_WAIT,
            },
        );
    }

    /// The service a decided query for `name` stops (checked again against grants now).
    fn answer_of(&mut self, client: IpAddr, name: &str) -> Option<String> {
        let p = self.queries.remove(&(client, name.to_string()))?;
        if p.until < Instant::now() {
            return None;
        }
        let s = p.act?;
        if self.grants.active(client, &s) {
            return None;
        }
        Some(s)
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
        }
        self.metrics.stopped.with_label_values(&[how]).inc();
    }

    /// Resets now (exact numbers), then the flow into the stop set.
    fn stop_tcp(&self, o: &Observation, service: &str) {
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
        f.stopped.insert((client, server), now + self.timeouts.flow);
        if f.seen.len() >= MAX_STATE {
            f.seen.clear();
        }
        let seen = f
            .seen
            .entry((o.client.ip, service.to_string()))
            .or_default();
        if !seen.contains(&o.server.ip) && seen.len() < 64 {
            seen.push(o.server.ip);
        }
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

enum Verdict {
    Stop(String),
    Granted,
    Pass,
}

/// A new grant: lift the client's QUIC drops for the service and accept its addresses (the
/// dropped ones and those of its stopped flows) until the grant ends.
fn lift(nft: &Nft, quic: &Mutex<QuicState>, flows: &Mutex<FlowState>, g: &Grant) {
    let ttl = g.expires.saturating_duration_since(Instant::now());
    if ttl.is_zero() {
        return;
    }
    let mut addrs = quic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(g.client, &g.service);
    nft.remove_quic_for(g.client, &addrs);
    let f = flows.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(seen) = f.seen.get(&(g.client, g.service.clone())) {
        for a in seen {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
    }
    drop(f);
    for a in addrs {
        nft.allow(g.client, a, ttl);
    }
}

impl Output for Enforcer {
    fn send(&mut self, o: &Observation, d: Option<&Decision>) -> Result<(), String> {
        self.act(o, d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
