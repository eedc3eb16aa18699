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
use crate::record::{Enforced, How, Outcome};

/// Entries of each state table at most (past it, expired ones go, then the oldest).
pub const MAX_STATE: usize = 131_072;
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
        };
        if let Some(nft) = e.nft.clone() {
            let quic = e.quic.clone();
            let flows = e.flows.clone();
            grants.on_grant(Box::new(move |g: &Grant| lift(&nft, &quic, &flows, g)));
        }
        e
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
        let client = o.client.ip;
        let how = match o.kind {
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
            How::Reset => self.active().then(|| self.stop_tcp(o, &service)),
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
    use crate::flow::observation::{DnsAnswer, DnsInfo, Endpoint};
    use crate::flow::Evidence;
    use crate::policy::{Severity, Via};

    fn obs(kind: Kind, name: &str, transport: Transport) -> Observation {
        let ep = |ip: &str, port| Endpoint {
            ip: ip.parse().unwrap(),
            port,
            mac: None,
            hostname: None,
        };
        Observation {
            ts: 1,
            kind,
            name: Some(name.into()),
            wire_names: Vec::new(),
            inferred_names: Vec::new(),
            inferred_evidence: Vec::new(),
            transport,
            client: ep("10.20.0.5", 50000),
            server: ep("192.0.2.1", 443),
            flags: Vec::new(),
            dns: None,
            tls: None,
            quic: None,
            http: None,
            proxy: None,
            frame: 0,
            tcp: None,
        }
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
