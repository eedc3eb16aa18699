//! `shadowgate run`: the gateway daemon. Live capture threads each drive a library pipeline;
//! decisions go to the recorder queue and the enforcer; DNS mode, the portal and `/metrics` run
//! on a tokio runtime; signals reload (HUP), stop (TERM, INT); a break-glass file turns
//! enforcement off at once.

pub mod capture;
pub mod config;
mod control;
pub mod health;
pub mod metrics;
pub mod outputs;
pub mod privs;
pub mod sdnotify;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::capture::live::{LiveCapture, LiveOpts};
use crate::config::{Config, EnforceConf, EnforceMode};
use crate::devices::Devices;
use crate::enforce::grants::Grants;
use crate::pipeline::Pipeline;
use crate::policy::reload::PolicyHandle;
use crate::record::queue;
use crate::record::system::SystemLog;
use crate::record::Store;

use health::Health;
use metrics::{CountOutput, Metrics, Scrape};

pub use control::Watchdog;

/// Exit status of a configuration error (sysexits' `EX_CONFIG`). The unit does not restart on
/// it (`RestartPreventExitStatus=78`): a restart cannot fix a broken file or a port another
/// program holds, and restarting every second would only fill the journal.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status of any other failure to start or run: the unit restarts the daemon.
pub const EXIT_FAILURE: u8 = 1;

/// Why the daemon could not start or run.
#[derive(Debug)]
pub enum RunError {
    /// The configuration (file, policy, CA, a port or address) must be fixed: no restart.
    Config(String),
    /// Anything else (the kernel, the disk, a thread): a restart may help.
    Runtime(String),
}

impl RunError {
    pub fn exit_status(&self) -> u8 {
        match self {
            RunError::Config(_) => EXIT_CONFIG,
            RunError::Runtime(_) => EXIT_FAILURE,
        }
    }

    /// The one journal line that says what went wrong and what to do.
    pub fn journal_line(&self) -> String {
        match self {
            RunError::Config(m) => format!(
                "configuration error (exit status {EXIT_CONFIG}, systemd does not restart on it): {}; fix it, then `systemctl restart shadowgate`",
                one_line(m)
            ),
            RunError::Runtime(m) => one_line(m),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.journal_line())
    }
}

/// A multi-line message (policy errors with hints) as one journal line.
fn one_line(m: &str) -> String {
    m.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn config_err(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

fn runtime_err(e: impl std::fmt::Display) -> RunError {
    RunError::Runtime(e.to_string())
}

/// A store that cannot open: a newer schema (an older binary) is the operator's to fix; a disk
/// or file error may pass.
fn store_err(e: crate::record::StoreError) -> RunError {
    match e {
        crate::record::StoreError::TooNew(..) => config_err(e),
        _ => runtime_err(e),
    }
}

/// Events waiting for the store at most (about 30 MB at worst): past it, drops are counted.
const QUEUE_CAPACITY: usize = 65_536;

/// The shared state every part of the daemon sees.
pub struct Shared {
    pub config: Config,
    pub policy: Arc<PolicyHandle>,
    pub grants: Arc<Grants>,
    pub devices: Arc<Devices>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub system: Option<Arc<SystemLog>>,
    /// Enforcement on (enforce mode and no break-glass): DNS, portal and enforcer read it.
    pub enforcing: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    /// The `inet shadowgate` table (enforce mode only).
    pub nft: Option<crate::enforce::nft::Nft>,
}

fn enforce_conf(c: &Config) -> EnforceConf {
    c.enforce
        .clone()
        .unwrap_or_else(|| toml::from_str("").expect("every [enforce] key has a default"))
}

/// Check the configuration for the daemon and say what is missing.
fn validate(c: &Config, path: &Path) -> Result<(), String> {
    let p = path.display();
    if c.policy.is_none() {
        return Err(format!(
            "{p}: the daemon needs [policy] dir = \"...\" (see deploy/shadowgate.toml)"
        ));
    }
    if c.store.is_none() {
        return Err(format!(
            "{p}: the daemon needs [store] path = \"...\" (every decision is recorded there)"
        ));
    }
    if c.capture.is_none() && c.dns.is_none() {
        return Err(format!(
            "{p}: nothing to run: add [capture] interfaces = [\"lan0\"] and/or a [dns] section"
        ));
    }
    if let Some(cap) = &c.capture {
        if cap.interfaces.is_empty() {
            return Err(format!(
                "{p}: [capture] interfaces is empty: name the clinic-side interfaces"
            ));
        }
    }
    let e = enforce_conf(c);
    if e.intercept_dns && c.dns.is_none() {
        return Err(format!(
            "{p}: [enforce] intercept_dns needs a [dns] section to redirect to"
        ));
    }
    Ok(())
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> Result<(), RunError> {
    // Store, reports and logs name staff devices: nothing we create is world-readable.
    // SAFETY: umask has no memory-safety preconditions.
    unsafe {
        libc::umask(0o077);
    }
    let config = Config::load(config_path).map_err(config_err)?;
    validate(&config, config_path).map_err(RunError::Config)?;
    // Started as root: keep only CAP_NET_RAW (capture, resets), CAP_NET_ADMIN (nftables) and,
    // when DNS or the portal listen on low ports, CAP_NET_BIND_SERVICE. Capabilities are per
    // thread, so this comes before any thread starts.
    let keep_bind = config
        .dns
        .as_ref()
        .is_some_and(|d| d.listen.iter().any(|a| a.port() < 1024))
        || config.portal.is_some()
        || config
            .metrics
            .as_ref()
            .is_some_and(|m| m.listen.port() < 1024);
    match crate::daemon::privs::drop_privileges(keep_bind, None) {
        Ok(r) => eprintln!("shadowgate: {r}"),
        Err(e) => return Err(RunError::Config(e)),
    }
    let policy_dir = config.policy.as_ref().expect("validated").dir.clone();
    let policy = PolicyHandle::load(&policy_dir).map_err(config_err)?;
    let store_conf = config.store.clone().expect("validated");
    // Open (and migrate) the store now: a store that cannot be opened stops the start.
    Store::open(&store_conf.path).map_err(store_err)?;
    let sensor_id = config.sensor.id.clone();
    let system = Some(SystemLog::open(&store_conf.path, &sensor_id).map_err(store_err)?);
    if let Some(s) = &system {
        s.watch_policy(&policy);
    }
    let econf = enforce_conf(&config);
    let enforce_mode = econf.mode == EnforceMode::Enforce;
    let break_glass = econf.break_glass_file.exists();
    let enforcing = Arc::new(AtomicBool::new(enforce_mode && !break_glass));

    let mut thread_names = Vec::new();
    if let Some(cap) = &config.capture {
        for i in &cap.interfaces {
            for t in 0..cap.threads.max(1) {
                thread_names.push(format!("{i}/{t}"));
            }
        }
    }
    let health = Arc::new(Health::new(thread_names, enforce_mode));
    health
        .enforcing
        .store(enforcing.load(Ordering::Relaxed), Ordering::Relaxed);
    let metrics = Metrics::new();
    let reload_metrics = metrics.policy_reloads.clone();
    policy.on_reload(Box::new(move |o| {
        let r = match o {
            crate::policy::reload::ReloadOutcome::Accepted { .. } => "ok",
            _ => "failed",
        };
        reload_metrics.with_label_values(&[r]).inc();
    }));

    // Enforce mode: the daemon's own nftables table (owned by its netlink socket, so it goes
    // with the process however it ends).
    let nft = if enforce_mode {
        let n = crate::enforce::nft::Nft::open(
            &crate::enforce::nft::TableSpec::from_config(&config),
            &metrics.registry,
        )
        .map_err(|e| runtime_err(format!("nftables: {e:#}")))?;
        if break_glass {
            n.set_enforcing(false)
                .map_err(|e| runtime_err(format!("nftables (break-glass at start): {e:#}")))?;
        }
        Some(n)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        nft,
        policy: Arc::clone(&policy),
        grants: Arc::new(Grants::new()),
        devices: Arc::new(Devices::new()),
        metrics: metrics.clone(),
        health: Arc::clone(&health),
        system: system.clone(),
        enforcing: Arc::clone(&enforcing),
        stop: Arc::new(AtomicBool::new(false)),
        config,
    });

    // The recorder: a bounded queue in front of the store.
    let store = Store::open(&store_conf.path).map_err(store_err)?;
    let (events, recorder) = queue::start(store, QUEUE_CAPACITY, store_conf.batch, system.clone());

    // Open every capture socket first (needs CAP_NET_RAW), then build their pipelines.
    let mut sockets = Vec::new();
    if let Some(cap) = &shared.config.capture {
        // An interface that does not exist is a configuration error (a typo, a renamed NIC):
        // the unit starts after network-online.target, so a restart would not find it either.
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
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sg-async")
        .enable_all()
        .build()
        .map_err(|e| runtime_err(format!("cannot start the async runtime: {e}")))?;

    // The metrics endpoint.
    if let Some(m) = &shared.config.metrics {
        let scrape = Arc::new(Scrape {
            metrics: metrics.clone(),
            queue: Arc::clone(events.stats()),
            store: Some(store_conf.path.clone()),
            sinks: shared.config.sink.iter().map(|s| s.name.clone()).collect(),
            health: Arc::clone(&health),
        });
        let listen = m.listen;
        // Listeners (metrics, portal, DNS): their errors are the configuration's: a port
        // another program holds, an address on no interface, a CA to remake.
        rt.block_on(metrics::serve(listen, scrape))
            .map_err(RunError::Config)?;
    }

    // The steering portal (binds its ports now; CAP_NET_BIND_SERVICE was kept for it).
    let portal = match &shared.config.portal {
        Some(pc) => {
            let h = rt
                .block_on(crate::portal::serve(
                    pc.clone(),
                    crate::portal::PortalCtx {
                        policy: Arc::clone(&policy),
                        grants: Arc::clone(&shared.grants),
                        devices: Arc::clone(&shared.devices),
                        events: Some(events.clone()),
                        sensor: sensor_id.clone(),
                        registry: metrics.registry.clone(),
                    },
                ))
                .map_err(RunError::Config)?;
            let h = Arc::new(std::sync::Mutex::new(Some(h)));
            let h2 = Arc::clone(&h);
            *health.portal.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move || {
                h2.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|h| h.healthy())
            }));
            Some(h)
        }
        None => None,
    };

    // DNS mode: the LAN resolver (answers per policy; one event per lookup).
    let dns = match &shared.config.dns {
        Some(dc) => {
            let h = rt
                .block_on(crate::resolver::serve(
                    dc.clone(),
                    shared.config.portal.clone(),
                    crate::resolver::DnsCtx {
                        policy: Arc::clone(&policy),
                        grants: Arc::clone(&shared.grants),
                        devices: Arc::clone(&shared.devices),
                        events: Some(events.clone()),
                        sensor: sensor_id.clone(),
                        enforcing: Arc::clone(&enforcing),
                        registry: metrics.registry.clone(),
                    },
                ))
                .map_err(RunError::Config)?;
            let h = Arc::new(std::sync::Mutex::new(Some(h)));
            let h2 = Arc::clone(&h);
            *health.dns.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move || {
                h2.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|h| h.healthy())
            }));
            Some(h)
        }
        None => None,
    };

    let own_resolvers: Vec<_> = shared
        .config
        .dns
        .as_ref()
        .map(|d| d.listen.clone())
        .unwrap_or_default();

    // The portal's addresses: the steered client's connections to it are not the service.
    let own_addresses: Vec<std::net::IpAddr> = shared
        .config
        .portal
        .as_ref()
        .map(|p| {
            let mut v = vec![p.address];
            v.extend(p.address6);
            v.extend(p.http.map(|a| a.ip()));
            v.extend(p.https.map(|a| a.ip()));
            v.retain(|a| !a.is_unspecified());
            v
        })
        .unwrap_or_default();

    // Capture threads.
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
    let enforce_metrics = crate::enforce::enforcer::EnforceMetrics::new(&metrics.registry)
        .map_err(|e| runtime_err(format!("metrics: {e}")))?;
    let mut threads = Vec::new();
    for (i, cap) in sockets.into_iter().enumerate() {
        let resetter = if enforce_mode {
            Some(crate::enforce::reset::Resetter::new().map_err(|e| {
                runtime_err(format!(
                    "cannot open raw sockets for resets: {e} (needs CAP_NET_RAW)"
                ))
            })?)
        } else {
            None
        };
        let enforcer = crate::enforce::enforcer::Enforcer::with_metrics(
            &econf,
            shared.nft.clone(),
            resetter,
            Arc::clone(&shared.grants),
            Arc::clone(&enforcing),
            enforce_metrics.clone(),
        );
        let p = Pipeline::new(flow_cfg.clone())
            .with_policy(Arc::clone(&policy))
            .with_events(
                events.clone(),
                &sensor_id,
                Some(outputs::annotator(
                    Arc::clone(&shared.grants),
                    Arc::clone(&enforcing),
                )),
            )
            .with_own_resolvers(own_resolvers.clone())
            .with_own_addresses(own_addresses.clone())
            .with_enrich(outputs::enricher(Arc::clone(&shared.devices)))
            .with_output(Box::new(enforcer))
            .with_output(Box::new(CountOutput(metrics.clone())));
        let ctx = capture::CaptureCtx {
            index: i,
            stop: Arc::clone(&shared.stop),
            health: Arc::clone(&health),
            metrics: metrics.clone(),
            system: system.clone(),
            stats_interval,
        };
        threads.push(
            capture::spawn(cap, p, ctx).map_err(|e| runtime_err(format!("capture thread: {e}")))?,
        );
    }

    // SIEM delivery from the store, each sink on its own thread.
    let feed = if shared.config.sink.is_empty() {
        None
    } else {
        let (path, sinks, stop, id) = (
            store_conf.path.clone(),
            shared.config.sink.clone(),
            Arc::clone(&shared.stop),
            sensor_id.clone(),
        );
        Some(
            std::thread::Builder::new()
                .name("sg-feed".into())
                .spawn(move || {
                    if let Err(e) = crate::record::feed::follow(&path, &sinks, &stop, &id) {
                        eprintln!("shadowgate: SIEM delivery stopped: {e}");
                    }
                })
                .map_err(|e| runtime_err(format!("feed thread: {e}")))?,
        )
    };

    // Device attribution: neighbour table and leases file, refreshed on their own thread.
    let refresher = crate::devices::spawn_refresh_metered(
        shared.config.devices.clone().unwrap_or_default(),
        Arc::clone(&shared.devices),
        crate::devices::DeviceMetrics::register(&metrics.registry).ok(),
    );

    if let Some(s) = &system {
        s.sensor_start(
            "daemon",
            Some(&policy),
            json!({
                "interfaces": shared.config.capture.as_ref().map(|c| c.interfaces.clone()),
                "enforce": if enforce_mode { "enforce" } else { "monitor" },
                "break_glass": break_glass,
                "dns": shared.config.dns.as_ref().map(|d| d.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
            }),
        );
    }
    // The catalogue in force, now and after each accepted reload (after `policy_reload`), with
    // the steered names the portal CA cannot certify.
    let ca_constraints = portal.as_ref().and_then(|h| {
        h.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|h| h.ca_constraints.clone())
    });
    let uncertifiable = move |p: &crate::policy::Policy| {
        ca_constraints
            .as_ref()
            .map(|(perm, excl)| p.uncertifiable(&p.portal_scope(), perm, excl))
    };
    if let Some(s) = &system {
        let current = policy.current();
        s.catalog_loaded(&current, uncertifiable(&current).as_deref());
        let (me, handle) = (Arc::clone(s), Arc::downgrade(&policy));
        policy.on_reload(Box::new(move |o| {
            if let (crate::policy::reload::ReloadOutcome::Accepted { .. }, Some(h)) =
                (o, handle.upgrade())
            {
                let current = h.current();
                me.catalog_loaded(&current, uncertifiable(&current).as_deref());
            }
        }));
    }
    // Retention (at start, then daily) and the size cap (every minute), on their own thread
    // (after `sensor_start`, so the record reads in order).
    let keeper = crate::record::retention::spawn(
        &store_conf.path,
        crate::record::retention::Limits::from_config(&store_conf, &shared.config.sink),
        system.clone(),
        Box::new(metrics::StoreMetrics::register(
            &metrics.registry,
            Arc::clone(&health),
        )),
        Arc::clone(&shared.stop),
    )
    .map_err(runtime_err)?;
    eprintln!(
        "shadowgate: running ({}{}), policy {}",
        if enforce_mode { "enforce" } else { "monitor" },
        if break_glass { ", break-glass on" } else { "" },
        &policy.digest()[..12]
    );

    // The weekly report, on its schedule.
    let report = match &shared.config.report {
        Some(r) if r.schedule.is_some() => Some(
            crate::report::schedule::spawn(
                r.clone(),
                store_conf.path.clone(),
                Some(policy_dir.clone()),
            )
            .map_err(RunError::Config)?,
        ),
        _ => None,
    };

    let _ = crate::daemon::sdnotify::ready();
    // Without a portal, grants (if any) still expire on record here.
    let expiry = portal.is_none().then(|| events.clone());
    let how = control::main_loop(
        &shared,
        &econf.break_glass_file,
        expiry,
        Some(rt.handle().clone()),
    );
    let _ = crate::daemon::sdnotify::stopping();
    refresher.stop();

    // Stop: capture first (no new decisions), then the rest.
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    // The keeper ends between two delete batches (its own events before `sensor_stop`).
    let _ = keeper.join();
    if let Some(h) = portal.and_then(|h| h.lock().unwrap_or_else(|e| e.into_inner()).take()) {
        rt.block_on(h.shutdown());
    }
    if let Some(h) = dns.and_then(|h| h.lock().unwrap_or_else(|e| e.into_inner()).take()) {
        rt.block_on(h.shutdown());
    }
    if let Some(r) = report {
        r.stop();
    }
    // Remove the table (closing its socket would too).
    if let Some(n) = &shared.nft {
        if let Err(e) = n.close() {
            eprintln!("shadowgate: nftables: {e:#}");
        }
    }
    drop(rt);
    if let Some(s) = &system {
        s.sensor_stop(
            how,
            json!({
                "events_written": events.stats().written.load(Ordering::Relaxed),
                "events_dropped": events.stats().dropped.load(Ordering::Relaxed),
            }),
        );
    }
    drop(events);
    recorder.stop();
    if let Some(f) = feed {
        let _ = f.join();
    }
    eprintln!("shadowgate: stopped ({how})");
    Ok(())
}
