//! The daemon's own Prometheus metrics (capture, sensor, decisions, policy, recorder, sinks),
//! the output that counts observations and decisions, and the `/metrics` + `/healthz` server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::health::Health;
use crate::flow::{Observation, Stats};
use crate::pipeline::Output;
use crate::policy::Decision;
use crate::record::queue::QueueStats;
use crate::record::retention::{Condition, Deleted, Observer};
use crate::record::{Store, StoreSize};

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// Every metric the daemon core exports (modules register their own on the same registry).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub frames: IntCounterVec,
    pub bytes: IntCounterVec,
    pub kernel_packets: IntCounterVec,
    pub kernel_drops: IntCounterVec,
    pub malformed: IntCounterVec,
    pub observations: IntCounterVec,
    pub decisions: IntCounterVec,
    pub flows_active: IntGaugeVec,
    pub flows_created: IntCounter,
    pub flow_evictions: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub events_written: IntGauge,
    pub events_dropped: IntGauge,
    pub events_lost_store_full: IntGauge,
    pub events_held: IntGauge,
    pub event_queue_depth: IntGauge,
    pub store_commits: IntGauge,
    pub store_commit_us_sum: IntGauge,
    pub store_commit_last_us: IntGauge,
    pub sink_queue_depth: IntGaugeVec,
    pub capture_up: IntGaugeVec,
    pub enforcing: IntGauge,
    /// 1 while break-glass holds enforcement off in enforce mode (0: enforcing, or monitor mode).
    pub break_glass: IntGauge,
    /// 1 while an upstream resolver answers DNS mode's questions, 0 during an outage.
    pub dns_upstream_up: IntGauge,
    /// 0 ok, 1 degraded (a dependency is down), 2 failing (a part of the daemon is).
    pub health_status: IntGauge,
    /// Observations from a frame whose MAC contradicts the gateway's binding of its address.
    pub spoofed: IntCounter,
    /// The allocator's figures (jemalloc): live bytes, resident bytes, retained address space.
    pub heap: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            frames: counter_vec(
                &r,
                "shadowgate_frames_total",
                "Frames captured",
                &["interface"],
            ),
            bytes: counter_vec(
                &r,
                "shadowgate_bytes_total",
                "Bytes captured",
                &["interface"],
            ),
            kernel_packets: counter_vec(
                &r,
                "shadowgate_kernel_packets_total",
                "Frames the kernel offered the capture sockets (PACKET_STATISTICS)",
                &["interface"],
            ),
            kernel_drops: counter_vec(
                &r,
                "shadowgate_kernel_drops_total",
                "Frames the kernel dropped because a capture ring was full",
                &["interface"],
            ),
            malformed: counter_vec(
                &r,
                "shadowgate_malformed_total",
                "Malformed frames or messages per protocol",
                &["protocol"],
            ),
            observations: counter_vec(
                &r,
                "shadowgate_observations_total",
                "Observations per kind",
                &["kind"],
            ),
            decisions: counter_vec(
                &r,
                "shadowgate_decisions_total",
                "Policy decisions per action and service",
                &["action", "service"],
            ),
            flows_active: gauge_vec(
                &r,
                "shadowgate_flows_active",
                "Flows in the flow table per capture thread",
                &["thread"],
            ),
            flows_created: counter(&r, "shadowgate_flows_created_total", "Flows created"),
            flow_evictions: counter(
                &r,
                "shadowgate_flow_evictions_total",
                "Flows evicted because the flow table was full",
            ),
            policy_reloads: counter_vec(
                &r,
                "shadowgate_policy_reloads_total",
                "Policy reloads by result (ok, failed)",
                &["result"],
            ),
            events_written: gauge(
                &r,
                "shadowgate_events_written_total",
                "Events committed to the store",
            ),
            events_dropped: gauge(
                &r,
                "shadowgate_events_dropped_total",
                "Events dropped because the recorder was behind (stored as capture gaps)",
            ),
            events_lost_store_full: gauge(
                &r,
                "shadowgate_events_lost_store_full_total",
                "Events lost because the store could not be written and the in-memory hold was full (a store_full event says when)",
            ),
            events_held: gauge(
                &r,
                "shadowgate_events_held",
                "Events held in memory while the store cannot be written (disk full), written once it can",
            ),
            event_queue_depth: gauge(
                &r,
                "shadowgate_event_queue_depth",
                "Events waiting for the store",
            ),
            store_commits: gauge(&r, "shadowgate_store_commits_total", "Store transactions"),
            store_commit_us_sum: gauge(
                &r,
                "shadowgate_store_commit_microseconds_total",
                "Time spent in store transactions (divide by commits for the mean latency)",
            ),
            store_commit_last_us: gauge(
                &r,
                "shadowgate_store_commit_last_microseconds",
                "Latency of the latest store transaction",
            ),
            sink_queue_depth: gauge_vec(
                &r,
                "shadowgate_sink_queue_depth",
                "Stored events a SIEM sink has not acknowledged yet",
                &["sink"],
            ),
            capture_up: gauge_vec(
                &r,
                "shadowgate_capture_up",
                "1 while a capture thread is running",
                &["interface", "thread"],
            ),
            enforcing: gauge(
                &r,
                "shadowgate_enforcing",
                "1 when enforcement is on (0: monitor mode or break-glass)",
            ),
            break_glass: gauge(
                &r,
                "shadowgate_break_glass",
                "1 while break-glass holds enforcement off in enforce mode (`shadowgate break-glass off` ends it; 0 in monitor mode)",
            ),
            dns_upstream_up: gauge(
                &r,
                "shadowgate_dns_upstream_up",
                "1 while an upstream resolver answers DNS mode (0: every upstream silent for a minute)",
            ),
            health_status: gauge(
                &r,
                "shadowgate_health_status",
                "0 ok, 1 degraded (a dependency such as upstream DNS is down), 2 failing (a part of the daemon is), 3 starting",
            ),
            spoofed: counter(
                &r,
                "shadowgate_spoofed_total",
                "Observations from a frame whose MAC contradicts the gateway's own binding of its source address (leases file, neighbour table): recorded as unverified, never acted on",
            ),
            heap: gauge_vec(
                &r,
                "shadowgate_heap_bytes",
                "The allocator's figures: kind=allocated (live objects), resident (pages it holds: its part of RSS), retained (returned to the kernel, kept mapped); absent without jemalloc",
                &["kind"],
            ),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Adds the growth of the sensor's counters since the last call to the metrics.
#[derive(Default)]
pub struct StatsDelta {
    last: Option<Stats>,
}

fn add(c: &IntCounter, now: u64, before: u64) {
    if now > before {
        c.inc_by(now - before);
    }
}

impl StatsDelta {
    pub fn apply(&mut self, m: &Metrics, iface: &str, thread: &str, s: Stats) {
        let z = Stats::default();
        let b = self.last.as_ref().unwrap_or(&z);
        add(&m.frames.with_label_values(&[iface]), s.frames, b.frames);
        add(&m.bytes.with_label_values(&[iface]), s.bytes, b.bytes);
        let (mn, mb) = (&s.malformed, &b.malformed);
        for (p, now, before) in [
            ("link", mn.link, mb.link),
            ("ip", mn.ip, mb.ip),
            ("tcp", mn.tcp, mb.tcp),
            ("udp", mn.udp, mb.udp),
            ("dns", mn.dns, mb.dns),
            ("tls", mn.tls, mb.tls),
            ("quic", mn.quic, mb.quic),
            ("http", mn.http, mb.http),
            ("too_deep", mn.too_deep, mb.too_deep),
        ] {
            add(&m.malformed.with_label_values(&[p]), now, before);
        }
        add(&m.flows_created, s.flows.created, b.flows.created);
        add(&m.flow_evictions, s.flows.evicted, b.flows.evicted);
        m.flows_active
            .with_label_values(&[thread])
            .set(s.flows.active as i64);
        self.last = Some(s);
    }
}

/// Counts observations per kind and decisions per action and service.
pub struct CountOutput(pub Metrics);

impl Output for CountOutput {
    fn send(
        &mut self,
        o: &Observation,
        d: Option<&Decision>,
    ) -> Result<Option<crate::record::Enforced>, String> {
        self.0
            .observations
            .with_label_values(&[o.kind.as_str()])
            .inc();
        if let Some(d) = d {
            self.0
                .decisions
                .with_label_values(&[d.action.as_str(), d.service.as_deref().unwrap_or("")])
                .inc();
        }
        Ok(None)
    }
}

/// The store keeper's reports (`record::retention`) as metrics and the `/healthz` warning.
pub struct StoreMetrics {
    used: IntGauge,
    file: IntGauge,
    max: IntGauge,
    deleted: IntCounterVec,
    full: IntGauge,
    health: Arc<Health>,
}

impl StoreMetrics {
    pub fn register(r: &Registry, health: Arc<Health>) -> StoreMetrics {
        let m = StoreMetrics {
            used: gauge(
                r,
                "shadowgate_store_bytes",
                "Event store bytes in use (database pages holding data: what [store] max_mb caps)",
            ),
            file: gauge(
                r,
                "shadowgate_store_file_bytes",
                "Event store bytes on disk (database file, free pages included, and its WAL)",
            ),
            max: gauge(
                r,
                "shadowgate_store_max_bytes",
                "The store's size cap ([store] max_mb; 0: none)",
            ),
            deleted: counter_vec(
                r,
                "shadowgate_store_deleted_total",
                "Events deleted from the store by retention (age) or the size cap (size)",
                &["reason"],
            ),
            full: gauge(
                r,
                "shadowgate_store_full",
                "1 while the store is over its size cap and every event left is undelivered",
            ),
            health,
        };
        for why in [Deleted::Age, Deleted::Size] {
            m.deleted.with_label_values(&[why.as_str()]);
        }
        m
    }
}

impl Observer for StoreMetrics {
    fn size(&self, size: &StoreSize, max_bytes: Option<u64>) {
        self.used.set(size.used_bytes() as i64);
        self.file.set(size.file_bytes() as i64);
        self.max.set(max_bytes.unwrap_or(0) as i64);
    }

    fn deleted(&self, why: Deleted, n: u64) {
        self.deleted.with_label_values(&[why.as_str()]).inc_by(n);
    }

    fn condition(&self, c: &Condition) {
        self.full.set(matches!(c, Condition::Full(_)) as i64);
        *self
            .health
            .store_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (*c != Condition::Ok).then(|| c.describe());
    }
}

/// What the scrape reads besides the registry: the recorder queue and the sinks' backlog.
pub struct Scrape {
    pub metrics: Metrics,
    pub queue: Arc<QueueStats>,
    pub store: Option<PathBuf>,
    pub sinks: Vec<String>,
    pub health: Arc<Health>,
}

impl Scrape {
    fn refresh(&self) {
        let m = &self.metrics;
        let q = &self.queue;
        m.events_written
            .set(q.written.load(Ordering::Relaxed) as i64);
        m.events_dropped
            .set(q.dropped.load(Ordering::Relaxed) as i64);
        m.event_queue_depth
            .set(q.depth.load(Ordering::Relaxed) as i64);
        m.events_lost_store_full
            .set(q.lost_full.load(Ordering::Relaxed) as i64);
        m.events_held.set(q.held.load(Ordering::Relaxed) as i64);
        m.store_commits
            .set(q.commits.load(Ordering::Relaxed) as i64);
        m.store_commit_us_sum
            .set(q.commit_us_sum.load(Ordering::Relaxed) as i64);
        m.store_commit_last_us
            .set(q.last_commit_us.load(Ordering::Relaxed) as i64);
        if let Some(p) = &self.store {
            if let Ok(st) = Store::open(p) {
                let last = st.last_seq().unwrap_or(0);
                for s in &self.sinks {
                    let c = st.cursor(s).unwrap_or(0);
                    m.sink_queue_depth
                        .with_label_values(&[s])
                        .set((last - c).max(0));
                }
            }
        }
        if let Some(h) = crate::mem::heap() {
            for (kind, v) in [
                ("allocated", h.allocated),
                ("resident", h.resident),
                ("retained", h.retained),
            ] {
                m.heap.with_label_values(&[kind]).set(v as i64);
            }
        }
        let enforcing = self.health.enforcing.load(Ordering::Relaxed);
        m.enforcing.set(enforcing as i64);
        m.break_glass
            .set((self.health.enforce_mode && !enforcing) as i64);
    }

    pub fn render(&self) -> String {
        self.refresh();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.metrics.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    scrape: Arc<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => {
            let s = Arc::clone(&scrape);
            let text = tokio::task::spawn_blocking(move || s.render())
                .await
                .unwrap_or_default();
            (StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        "/healthz" => {
            let report = scrape.health.report();
            let (status, text) = (report.status, report.body);
            // Degraded still answers 200: the daemon works, a dependency does not (the body and
            // `shadowgate_health_status` say which); 503 only when a part of it fails.
            let st = if matches!(
                status,
                super::health::Status::Failing | super::health::Status::Starting
            ) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (st, "application/json", text)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response"))
}

/// Serve `/metrics` and `/healthz` on `listen` (binds now; serves on the runtime).
pub async fn serve(listen: SocketAddr, scrape: Arc<Scrape>) -> Result<(), String> {
    let l = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("[metrics] listen {listen}: {e} (is another process on that port? change [metrics] listen)")
    })?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let s = Arc::clone(&scrape);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |r| handle(r, Arc::clone(&s)));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(5))
                    .serve_connection(io, svc);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
            });
        }
    });
    Ok(())
}
