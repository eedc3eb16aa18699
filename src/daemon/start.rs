//! The steps of [`super::run`], in the order it takes them, and the stop that undoes them in
//! reverse. Each step says what it needs from the steps before it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::health::Health;
use super::metrics::{self, CountOutput, Metrics, Scrape};
use super::{
    capture, config_err, control, enforce_conf, outputs, runtime_err, store_err, validate,
    RunError, Shared, QUEUE_CAPACITY,
};
use crate::capture::live::{LiveCapture, LiveOpts};
use crate::config::{Config, EnforceMode, StoreConf};
use crate::devices::{Devices, Refresher};
use crate::enforce::enforcer::{EnforceMetrics, Enforcer};
use crate::enforce::grants::Grants;
use crate::enforce::nft::{GuardMode, GuardTarget, Nft, TableSpec};
use crate::enforce::reset::Resetter;
use crate::pipeline::Judge;
use crate::pipeline::Pipeline;
use crate::policy::reload::{PolicyHandle, ReloadOutcome};
use crate::policy::Policy;
use crate::portal::PortalHandle;
use crate::record::queue::{self, EventTx, RecorderThread};
use crate::record::system::SystemLog;
use crate::record::Store;
use crate::resolver::config::SourceGuard;
use crate::resolver::DnsHandle;

/// How the daemon started: enforce or monitor mode, and whether the break-glass file existed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mode {
    pub enforce: bool,
    pub break_glass: bool,
}

impl Mode {
    fn name(self) -> &'static str {
        if self.enforce {
            "enforce"
        } else {
            "monitor"
        }
    }
}

/// A listener's handle, shared with the health check (which asks whether it still serves) and
/// taken out at stop.
type Slot<H> = Arc<Mutex<Option<H>>>;

/// The tokio-side listeners: `/metrics`, the portal and the DNS resolver.
pub(super) struct Listeners {
    portal: Option<Slot<PortalHandle>>,
    dns: Option<Slot<DnsHandle>>,
}

/// Everything `run` started, stopped in [`Running::stop`] in the order that loses nothing.
pub(super) struct Running {
    pub shared: Arc<Shared>,
    pub events: EventTx,
    /// The one decision path every source shares (it holds a sender of `events`).
    pub judge: Judge,
    pub recorder: RecorderThread,
    pub rt: tokio::runtime::Runtime,
    pub listeners: Listeners,
    pub captures: Vec<JoinHandle<()>>,
    pub feed: Option<JoinHandle<()>>,
    pub refresher: Refresher,
    pub keeper: JoinHandle<()>,
    pub report: Option<crate::report::schedule::Handle>,
}

/// The validated configuration's store section.
fn store_conf(shared: &Shared) -> &StoreConf {
    shared.config.store.as_ref().expect("validated")
}

/// Everything the daemon creates (store, CA files, reports) is private to its user.
pub(super) fn private_files() {
    // SAFETY: umask has no memory-safety preconditions.
    unsafe {
        libc::umask(0o077);
    }
}

/// Read and validate the configuration: every error here is the operator's to fix.
pub(super) fn load_config(config_path: &Path) -> Result<Config, RunError> {
    let config = Config::load(config_path).map_err(config_err)?;
    validate(&config, config_path).map_err(RunError::Config)?;
    Ok(config)
}

/// Started as root: keep only CAP_NET_RAW (capture, resets), CAP_NET_ADMIN (nftables) and, when
/// DNS, the portal or metrics listen on low ports, CAP_NET_BIND_SERVICE. Capabilities are per
/// thread, so this comes before any thread starts.
pub(super) fn drop_privileges(config: &Config) -> Result<(), RunError> {
    let keep_bind = config
        .dns
        .as_ref()
        .is_some_and(|d| d.listen.iter().any(|a| a.port() < 1024))
        || config.portal.is_some()
        || config
            .metrics
            .as_ref()
            .is_some_and(|m| m.listen.port() < 1024);
    match super::privs::drop_privileges(keep_bind, None) {
        Ok(r) => {
            eprintln!("shadowgate: {r}");
            Ok(())
        }
        Err(e) => Err(RunError::Config(e)),
    }
}

/// Load the policy, then open (and migrate) the store and the system log: a policy that does not
/// load, or a store that cannot open, stops the start. The system log records policy reloads
/// from here on.
pub(super) fn open_policy_and_store(
    config: &Config,
) -> Result<(Arc<PolicyHandle>, Option<Arc<SystemLog>>), RunError> {
    let policy_dir = &config.policy.as_ref().expect("validated").dir;
    let policy =
        PolicyHandle::load_with(policy_dir, &config.clinic_resolvers()).map_err(config_err)?;
    let store = config.store.as_ref().expect("validated");
    Store::open(&store.path).map_err(store_err)?;
    let system = Some(SystemLog::open(&store.path, &config.sensor.id).map_err(store_err)?);
    if let Some(s) = &system {
        s.watch_policy(&policy);
    }
    Ok((policy, system))
}

/// The state every part shares: health (one beat per capture thread), metrics (with a policy
/// reload counter), the enforcing flag (enforce mode and no break-glass file), and in enforce
/// mode the daemon's own nftables table.
pub(super) fn shared_state(
    config: Config,
    policy: Arc<PolicyHandle>,
    system: Option<Arc<SystemLog>>,
) -> Result<(Arc<Shared>, Mode), RunError> {
    let econf = enforce_conf(&config);
    let mode = Mode {
        enforce: econf.mode == EnforceMode::Enforce,
        break_glass: econf.break_glass_file.exists(),
    };
    let enforcing = Arc::new(AtomicBool::new(mode.enforce && !mode.break_glass));
    let health = Arc::new(
        Health::new(capture_thread_names(&config), mode.enforce)
            .with_listeners(config.dns.is_some(), config.portal.is_some()),
    );
    health
        .enforcing
        .store(enforcing.load(Ordering::Relaxed), Ordering::Relaxed);
    let metrics = Metrics::new();
    count_reloads(&policy, &metrics);
    let nft = if mode.enforce {
        Some(nft_table(&config, &metrics, mode)?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        nft,
        policy,
        grants: Arc::new(Grants::new()),
        devices: Arc::new(Devices::new()),
        metrics,
        health,
        system,
        enforcing,
        stop: Arc::new(AtomicBool::new(false)),
        config,
    });
    Ok((shared, mode))
}

/// `iface/thread` for every capture thread the configuration asks for (the health beats).
fn capture_thread_names(config: &Config) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(cap) = &config.capture {
        for i in &cap.interfaces {
            for t in 0..cap.threads.max(1) {
                names.push(format!("{i}/{t}"));
            }
        }
    }
    names
}

/// `shadowgate_policy_reloads_total{result}` follows every reload.
fn count_reloads(policy: &PolicyHandle, metrics: &Metrics) {
    let reloads = metrics.policy_reloads.clone();
    policy.on_reload(Box::new(move |o| {
        let r = match o {
            ReloadOutcome::Accepted { .. } => "ok",
            _ => "failed",
        };
        reloads.with_label_values(&[r]).inc();
    }));
}

/// Enforce mode: the daemon's own nftables table (owned by its netlink socket, so it goes with
/// the process however it ends), switched off at once if break-glass is on.
fn nft_table(config: &Config, metrics: &Metrics, mode: Mode) -> Result<Nft, RunError> {
    let mut spec = table_spec(config);
    spec.plain_deletes = plain_deletes_forced();
    let n =
        Nft::open(&spec, &metrics.registry).map_err(|e| runtime_err(format!("nftables: {e:#}")))?;
    said_element_destroy(&n, &metrics.registry, spec.plain_deletes);
    if mode.break_glass {
        n.set_enforcing(false)
            .map_err(|e| runtime_err(format!("nftables (break-glass at start): {e:#}")))?;
    }
    Ok(n)
}

/// For tests only: `SHADOWGATE_NFT_PLAIN_DELETES=1` makes the table remove elements one at a
/// time with plain deletes, as on Linux < 6.3 (Debian 12's 6.1), on a kernel that has
/// DESTROYSETELEM.
pub const PLAIN_DELETES_ENV: &str = "SHADOWGATE_NFT_PLAIN_DELETES";

fn plain_deletes_forced() -> bool {
    std::env::var(PLAIN_DELETES_ENV).is_ok_and(|v| v == "1")
}

/// Say how the table removes elements: a journal line when it falls back to plain deletes, and
/// the gauge `shadowgate_nft_element_destroy` (1: DESTROYSETELEM, 0: one plain delete at a time).
fn said_element_destroy(n: &Nft, registry: &prometheus::Registry, forced: bool) {
    let destroy = n.element_destroy();
    if !destroy {
        eprintln!(
            "shadowgate: nftables: {}: element removals fall back to one plain delete at a time (slower on bursts of grants, same result); Linux >= 6.3 removes them in one batch",
            if forced {
                format!("plain deletes forced by {PLAIN_DELETES_ENV}=1 (for tests)")
            } else {
                "this kernel has no DESTROYSETELEM (Linux < 6.3)".to_string()
            }
        );
    }
    if let Ok(g) = prometheus::IntGauge::new(
        "shadowgate_nft_element_destroy",
        "1 when nftables element removals use DESTROYSETELEM (Linux >= 6.3), 0 when they fall back to one plain delete at a time",
    ) {
        g.set(i64::from(destroy));
        let _ = registry.register(Box::new(g));
    }
}

/// The daemon's table from its configuration: `[capture] interfaces`, `[enforce] lan`,
/// `block_all_quic`, `set_size`, and `[dns] listen` as the intercept target when
/// `[enforce] intercept_dns` is on (a wildcard listen address cannot be a DNAT target and is
/// left out).
fn table_spec(c: &Config) -> TableSpec {
    let e = c.enforce.as_ref();
    TableSpec {
        lan_interfaces: c
            .capture
            .as_ref()
            .map(|c| c.interfaces.clone())
            .unwrap_or_default(),
        lan_nets: e.map(|e| e.lan.clone()).unwrap_or_default(),
        block_all_quic: e.is_some_and(|e| e.block_all_quic),
        intercept: match (e.is_some_and(|e| e.intercept_dns), c.dns.as_ref()) {
            (true, Some(d)) => d
                .listen
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .copied()
                .collect(),
            _ => Vec::new(),
        },
        max_elements: e.map(|e| e.set_size).unwrap_or(0),
        guard: match c.dns.as_ref().map(|d| d.source_guard) {
            Some(SourceGuard::Log) => GuardMode::Log,
            Some(SourceGuard::Drop) => GuardMode::Drop,
            Some(SourceGuard::Off) | None => GuardMode::Off,
        },
        guard_targets: Vec::new(),
        plain_deletes: false,
    }
}

/// Put back the stop entries and grants the last run left in the state file (next to the store),
/// with the time each has left, and keep them from now on (a writer thread, every half second
/// while they change). Before the listeners and capture: the first answer and the first frame
/// already see them.
pub(super) fn restore_state(shared: &Shared) -> Result<(), RunError> {
    use crate::enforce::persist::{self, Book};
    let path = Book::path_for_store(&store_conf(shared).path);
    let loaded = Book::load(&path).map_err(|e| {
        runtime_err(format!(
            "{}: cannot read the enforcement state ({e}); move it aside to start without it",
            path.display()
        ))
    })?;
    let book = Arc::new(Book::new(&path));
    let r = persist::restore(&loaded, &book, shared.nft.as_ref(), &shared.grants);
    if let Ok(c) = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "shadowgate_restored_total",
            "Entries put back from the state file at start, by kind (stop, quic, allow, grant)",
        ),
        &["kind"],
    ) {
        for (k, n) in [
            ("stop", r.stop),
            ("quic", r.quic),
            ("allow", r.allow),
            ("grant", r.grant),
        ] {
            c.with_label_values(&[k]).inc_by(n as u64);
        }
        let _ = shared.metrics.registry.register(Box::new(c));
    }
    if !loaded.entries.is_empty() || loaded.ended + loaded.unreadable > 0 {
        eprintln!(
            "shadowgate: restored from {}: {} stopped flows, {} QUIC drops, {} allow entries, {} grants ({} had ended, {} unreadable)",
            path.display(),
            r.stop,
            r.quic,
            r.allow,
            r.grant,
            loaded.ended,
            loaded.unreadable
        );
    }
    if let Some(n) = &shared.nft {
        n.keep_in(Arc::clone(&book));
    }
    shared.grants.keep_in(Arc::clone(&book));
    book.spawn_writer(Arc::clone(&shared.stop))
        .map_err(|e| runtime_err(format!("state writer thread: {e}")))?;
    Ok(())
}

/// The recorder: a bounded queue in front of the store.
pub(super) fn recorder(shared: &Shared) -> Result<(EventTx, RecorderThread), RunError> {
    let sc = store_conf(shared);
    let store = Store::open(&sc.path).map_err(store_err)?;
    Ok(queue::start(
        store,
        QUEUE_CAPACITY,
        sc.batch,
        shared.system.clone(),
    ))
}

/// Open every capture socket (threads per interface share its ring budget and a fanout group).
/// An interface that does not exist is a configuration error (a typo, a renamed NIC): the unit
/// starts after network-online.target, so a restart would not find it either.
pub(super) fn open_captures(
    shared: &Shared,
    config_path: &Path,
) -> Result<Vec<LiveCapture>, RunError> {
    let mut sockets = Vec::new();
    let Some(cap) = &shared.config.capture else {
        return Ok(sockets);
    };
    for iface in &cap.interfaces {
        if crate::capture::live::ifindex(iface).is_err() {
            return Err(RunError::Config(format!(
                "{}: [capture] interfaces names {iface:?}, which is not an interface of this machine; `ip link` lists them",
                config_path.display()
            )));
        }
    }
    for (n, iface) in cap.interfaces.iter().enumerate() {
        let threads = cap.threads.max(1);
        for _ in 0..threads {
            let opts = LiveOpts {
                // The ring budget is per interface, shared by its threads.
                ring_mib: (cap.ring_mib / threads).max(2),
                fanout_group: (threads > 1)
                    .then(|| (std::process::id() as u16) ^ (n as u16).wrapping_mul(977)),
                fanout: cap.fanout,
                promiscuous: cap.promiscuous,
                ..LiveOpts::default()
            };
            sockets.push(LiveCapture::open(iface, &opts).map_err(runtime_err)?);
        }
    }
    Ok(sockets)
}

/// The runtime the listeners run on (two workers: they are light).
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sg-async")
        .enable_all()
        .build()
        .map_err(|e| runtime_err(format!("cannot start the async runtime: {e}")))
}

/// Bind `/metrics`, the portal and the DNS resolver. Their errors are the configuration's: a
/// port another program holds, an address on no interface, a CA to remake.
pub(super) fn listeners(
    rt: &tokio::runtime::Runtime,
    shared: &Shared,
    events: &EventTx,
    judge: &Judge,
) -> Result<Listeners, RunError> {
    if let Some(m) = &shared.config.metrics {
        let scrape = Arc::new(Scrape {
            metrics: shared.metrics.clone(),
            queue: Arc::clone(events.stats()),
            store: Some(store_conf(shared).path.clone()),
            sinks: shared.config.sink.iter().map(|s| s.name.clone()).collect(),
            health: Arc::clone(&shared.health),
        });
        rt.block_on(metrics::serve(m.listen, scrape))
            .map_err(RunError::Config)?;
    }
    Ok(Listeners {
        portal: portal(rt, shared, judge)?,
        dns: resolver(rt, shared, judge)?,
    })
}

/// Hand a listener's health to the health check; keep the handle for the stop.
fn watched<H: Send + 'static>(
    handle: H,
    healthy: fn(&H) -> bool,
    check: &Mutex<Option<Box<dyn Fn() -> bool + Send + Sync>>>,
) -> Slot<H> {
    let slot = Arc::new(Mutex::new(Some(handle)));
    let s2 = Arc::clone(&slot);
    *check.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move || {
        s2.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(healthy)
    }));
    slot
}

/// The steering portal (binds its ports now; CAP_NET_BIND_SERVICE was kept for it).
fn portal(
    rt: &tokio::runtime::Runtime,
    shared: &Shared,
    judge: &Judge,
) -> Result<Option<Slot<PortalHandle>>, RunError> {
    let Some(pc) = &shared.config.portal else {
        return Ok(None);
    };
    let ctx = crate::portal::PortalCtx {
        judge: judge.clone(),
        grants: Arc::clone(&shared.grants),
        registry: shared.metrics.registry.clone(),
    };
    let h = rt
        .block_on(crate::portal::serve(pc.clone(), ctx))
        .map_err(RunError::Config)?;
    Ok(Some(watched(
        h,
        PortalHandle::healthy,
        &shared.health.portal,
    )))
}

/// DNS mode: the LAN resolver (answers per policy; one event per lookup).
fn resolver(
    rt: &tokio::runtime::Runtime,
    shared: &Shared,
    judge: &Judge,
) -> Result<Option<Slot<DnsHandle>>, RunError> {
    let Some(dc) = &shared.config.dns else {
        return Ok(None);
    };
    let ctx = crate::resolver::DnsCtx {
        judge: judge.clone(),
        grants: Arc::clone(&shared.grants),
        enforcing: Arc::clone(&shared.enforcing),
        registry: shared.metrics.registry.clone(),
    };
    // The guard needs the daemon's table (enforce mode); in monitor mode only the capture
    // reports spoofed queries, and no guard socket is bound.
    let mut dc = dc.clone();
    if shared.nft.is_none() {
        dc.source_guard = SourceGuard::Off;
    }
    let h = rt
        .block_on(crate::resolver::serve(
            dc,
            shared.config.portal.clone(),
            ctx,
        ))
        .map_err(RunError::Config)?;
    // The source guard's rules point at the guard sockets the resolver just bound.
    if let (Some(nft), false) = (&shared.nft, h.guards().is_empty()) {
        let targets = h
            .guards()
            .iter()
            .map(|&(listen, guard)| GuardTarget { listen, guard })
            .collect();
        nft.set_guard_targets(targets)
            .map_err(|e| runtime_err(format!("nftables (DNS source guard): {e:#}")))?;
    }
    Ok(Some(watched(h, DnsHandle::healthy, &shared.health.dns)))
}

/// One thread per capture socket, each driving its own pipeline: sensor -> device enrichment
/// -> the judge (policy, events with what the enforcer did) -> the enforcer and the counters.
pub(super) fn spawn_captures(
    sockets: Vec<LiveCapture>,
    shared: &Shared,
    judge: &Judge,
    mode: Mode,
) -> Result<Vec<JoinHandle<()>>, RunError> {
    let mut flow_cfg = crate::flow::Config::default();
    shared.config.sensor.apply(&mut flow_cfg);
    let stats_interval = Duration::from_secs(
        shared
            .config
            .capture
            .as_ref()
            .map(|c| c.stats_interval_s.max(1))
            .unwrap_or(10),
    );
    let enforce_metrics = EnforceMetrics::new(&shared.metrics.registry)
        .map_err(|e| runtime_err(format!("metrics: {e}")))?;
    let spoofs = Arc::new(outputs::Spoofs::new(
        judge.clone(),
        shared.metrics.spoofed.clone(),
    ));
    let mut threads = Vec::new();
    for (i, cap) in sockets.into_iter().enumerate() {
        let enforcer = enforcer(shared, judge, mode, enforce_metrics.clone())?;
        let p = pipeline(shared, judge, &spoofs, flow_cfg.clone()).with_output(Box::new(enforcer));
        let p = p.with_output(Box::new(CountOutput(shared.metrics.clone())));
        let ctx = capture::CaptureCtx {
            index: i,
            stop: Arc::clone(&shared.stop),
            health: Arc::clone(&shared.health),
            metrics: shared.metrics.clone(),
            system: shared.system.clone(),
            stats_interval,
        };
        threads.push(
            capture::spawn(cap, p, ctx).map_err(|e| runtime_err(format!("capture thread: {e}")))?,
        );
    }
    Ok(threads)
}

/// A capture thread's enforcer (with its own raw sockets for resets in enforce mode).
fn enforcer(
    shared: &Shared,
    judge: &Judge,
    mode: Mode,
    metrics: EnforceMetrics,
) -> Result<Enforcer, RunError> {
    let resetter = if mode.enforce {
        Some(Resetter::new().map_err(|e| {
            runtime_err(format!(
                "cannot open raw sockets for resets: {e} (needs CAP_NET_RAW)"
            ))
        })?)
    } else {
        None
    };
    let mut e = Enforcer::with_metrics(
        &enforce_conf(&shared.config),
        shared.nft.clone(),
        resetter,
        Arc::clone(&shared.grants),
        Arc::clone(&shared.enforcing),
        metrics,
    )
    .with_lan(lan(shared))
    .with_full_flag(Arc::clone(&shared.health.quota_full_ns));
    if let Some(tx) = judge.events() {
        e = e.with_events(tx.clone(), &shared.config.sensor.id);
    }
    Ok(e)
}

/// The sources the enforcer acts on: `[enforce] lan`, else the capture interfaces' connected
/// subnets. Traffic from anywhere else (a forged source) is decided and recorded only.
fn lan(shared: &Shared) -> Vec<ipnet::IpNet> {
    let conf = enforce_conf(&shared.config);
    if !conf.lan.is_empty() {
        return conf.lan;
    }
    let ifaces = shared
        .config
        .capture
        .as_ref()
        .map(|c| c.interfaces.clone())
        .unwrap_or_default();
    match crate::capture::live::interface_networks(&ifaces) {
        Ok(n) if !n.is_empty() => n,
        Ok(_) => {
            eprintln!(
                "shadowgate: warning: [enforce] lan is not set and the capture interfaces ({}) have no address: the enforcer acts on any source address; set [enforce] lan to the clinic's networks",
                ifaces.join(", ")
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("shadowgate: warning: cannot read the capture interfaces' addresses ({e}): the enforcer acts on any source address; set [enforce] lan");
            Vec::new()
        }
    }
}

/// The one decision path: the policy in force, the device table, the recorder queue. The
/// resolver and the portal claim their traffic on it when they bind.
pub(super) fn judge(shared: &Shared, events: &EventTx) -> Judge {
    Judge::new(Arc::clone(&shared.policy), &shared.config.sensor.id)
        .recording(events.clone())
        .with_devices(Arc::clone(&shared.devices))
}

/// A capture thread's pipeline up to its actions: it learns devices from frames, decides through
/// the judge, and leaves traffic the resolver and the portal claimed to them.
fn pipeline(
    shared: &Shared,
    judge: &Judge,
    spoofs: &Arc<outputs::Spoofs>,
    flow_cfg: crate::flow::Config,
) -> Pipeline {
    Pipeline::new(flow_cfg)
        .with_judge(judge.clone())
        .with_enrich(outputs::enricher(
            Arc::clone(&shared.devices),
            Some(Arc::clone(spoofs)),
        ))
}

/// SIEM delivery from the store, each sink on its own thread (none without sinks).
pub(super) fn spawn_feed(shared: &Shared) -> Result<Option<JoinHandle<()>>, RunError> {
    if shared.config.sink.is_empty() {
        return Ok(None);
    }
    let (path, sinks, stop, id) = (
        store_conf(shared).path.clone(),
        shared.config.sink.clone(),
        Arc::clone(&shared.stop),
        shared.config.sensor.id.clone(),
    );
    std::thread::Builder::new()
        .name("sg-feed".into())
        .spawn(move || {
            // A store error (a full disk) stops delivery for a while, never for good: the
            // cursors say where each sink resumes.
            while let Err(e) = crate::record::feed::follow(&path, &sinks, &stop, &id) {
                eprintln!("shadowgate: SIEM delivery stopped: {e}; resuming in 5 s");
                for _ in 0..50 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        })
        .map(Some)
        .map_err(|e| runtime_err(format!("feed thread: {e}")))
}

/// Device attribution: neighbour table and leases file, refreshed on their own thread.
pub(super) fn spawn_device_refresh(shared: &Shared) -> Refresher {
    // The DNS source guard's table follows the gateway's own bindings (only when they change).
    let guard = shared
        .config
        .dns
        .as_ref()
        .is_some_and(|d| d.source_guard != SourceGuard::Off);
    let after = match (&shared.nft, guard) {
        (Some(nft), true) => {
            let nft = nft.clone();
            let mut last: Vec<(std::net::IpAddr, [u8; 6])> = Vec::new();
            Some(Box::new(move |d: &Devices| {
                let mut now = d.bindings();
                now.sort_unstable();
                if now != last && nft.set_bindings(now.clone()) {
                    last = now;
                }
            }) as crate::devices::AfterRefresh)
        }
        _ => None,
    };
    crate::devices::spawn_refresh_then(
        shared.config.devices.clone().unwrap_or_default(),
        Arc::clone(&shared.devices),
        crate::devices::DeviceMetrics::register(&shared.metrics.registry).ok(),
        after,
    )
}

/// Record `sensor_start`, then the catalogue in force now and after each accepted reload (after
/// its `policy_reload`), with the steered names the portal CA cannot certify.
pub(super) fn announce(shared: &Shared, listeners: &Listeners, mode: Mode) {
    let Some(s) = &shared.system else {
        return;
    };
    let c = &shared.config;
    s.sensor_start(
        "daemon",
        Some(&shared.policy),
        json!({
            "interfaces": c.capture.as_ref().map(|c| c.interfaces.clone()),
            "enforce": mode.name(),
            "break_glass": mode.break_glass,
            "dns": c.dns.as_ref().map(|d| d.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
        }),
    );
    let ca_constraints = listeners.portal.as_ref().and_then(|h| {
        h.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|h| h.ca_constraints.clone())
    });
    let uncertifiable = move |p: &Policy| {
        ca_constraints
            .as_ref()
            .map(|(perm, excl)| p.uncertifiable(&p.portal_scope(), perm, excl))
    };
    let current = shared.policy.current();
    s.catalog_loaded(&current, uncertifiable(&current).as_deref());
    let (me, handle) = (Arc::clone(s), Arc::downgrade(&shared.policy));
    shared.policy.on_reload(Box::new(move |o| {
        if let (ReloadOutcome::Accepted { .. }, Some(h)) = (o, handle.upgrade()) {
            let current = h.current();
            me.catalog_loaded(&current, uncertifiable(&current).as_deref());
        }
    }));
}

/// Retention (at start, then daily) and the size cap (every minute), on their own thread.
pub(super) fn spawn_keeper(shared: &Shared) -> Result<JoinHandle<()>, RunError> {
    let sc = store_conf(shared);
    crate::record::retention::spawn(
        &sc.path,
        crate::record::retention::Limits::from_config(sc, &shared.config.sink),
        shared.system.clone(),
        Box::new(metrics::StoreMetrics::register(
            &shared.metrics.registry,
            Arc::clone(&shared.health),
        )),
        Arc::clone(&shared.stop),
    )
    .map_err(runtime_err)
}

/// The journal's "running" line: mode, break-glass, the policy's digest.
pub(super) fn log_running(shared: &Shared, mode: Mode) {
    eprintln!(
        "shadowgate: running ({}{}), policy {}",
        mode.name(),
        if mode.break_glass {
            ", break-glass on"
        } else {
            ""
        },
        &shared.policy.digest()[..12]
    );
}

/// The weekly report, on its schedule (none without `[report] schedule`).
pub(super) fn spawn_report(
    shared: &Shared,
) -> Result<Option<crate::report::schedule::Handle>, RunError> {
    match &shared.config.report {
        Some(r) if r.schedule.is_some() => crate::report::schedule::spawn(
            r.clone(),
            store_conf(shared).path.clone(),
            Some(
                shared
                    .config
                    .policy
                    .as_ref()
                    .expect("validated")
                    .dir
                    .clone(),
            ),
        )
        .map(Some)
        .map_err(RunError::Config),
        _ => Ok(None),
    }
}

impl Running {
    /// Tell systemd the daemon is ready, run the main loop until a stop signal, and say it is
    /// stopping. Returns how the loop ended.
    pub(super) fn serve(&self) -> &'static str {
        // Everything configured is up: `/healthz` leaves `starting` as systemd hears READY.
        self.shared.health.mark_started();
        let _ = super::sdnotify::ready();
        // Without a portal, grants (if any) still expire on record here.
        let expiry = self.listeners.portal.is_none().then(|| self.judge.clone());
        let break_glass = enforce_conf(&self.shared.config).break_glass_file;
        let how = control::main_loop(
            &self.shared,
            &break_glass,
            expiry,
            Some(self.rt.handle().clone()),
        );
        let _ = super::sdnotify::stopping();
        how
    }

    /// Stop in the order that loses nothing: capture first (no new decisions), the keeper, the
    /// listeners, the report, the nftables table, then `sensor_stop`, the recorder (which writes
    /// what is queued) and last the SIEM feed.
    pub(super) fn stop(self, how: &'static str) {
        let Running {
            shared,
            events,
            judge,
            recorder,
            rt,
            listeners,
            captures,
            feed,
            refresher,
            keeper,
            report,
        } = self;
        refresher.stop();
        shared.stop.store(true, Ordering::SeqCst);
        for t in captures {
            let _ = t.join();
        }
        // The keeper ends between two delete batches (its own events before `sensor_stop`).
        let _ = keeper.join();
        if let Some(h) = take(listeners.portal) {
            rt.block_on(h.shutdown());
        }
        if let Some(h) = take(listeners.dns) {
            rt.block_on(h.shutdown());
        }
        if let Some(r) = report {
            r.stop();
        }
        // The last state (stopped flows, grants) for the next start.
        if let Some(b) = shared.grants.book() {
            if let Err(e) = b.write_now() {
                eprintln!("shadowgate: {}: {e}", b.path().display());
            }
        }
        // Remove the table (closing its socket would too).
        if let Some(n) = &shared.nft {
            if let Err(e) = n.close() {
                eprintln!("shadowgate: nftables: {e:#}");
            }
        }
        drop(rt);
        if let Some(s) = &shared.system {
            s.sensor_stop(
                how,
                json!({
                    "events_written": events.stats().written.load(Ordering::Relaxed),
                    "events_dropped": events.stats().dropped.load(Ordering::Relaxed),
                }),
            );
        }
        drop(judge);
        drop(events);
        recorder.stop();
        if let Some(f) = feed {
            let _ = f.join();
        }
        eprintln!("shadowgate: stopped ({how})");
    }
}

/// The handle out of a listener's slot (the health check keeps only the slot).
fn take<H>(slot: Option<Slot<H>>) -> Option<H> {
    slot.and_then(|h| h.lock().unwrap_or_else(|e| e.into_inner()).take())
}
