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
mod start;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, EnforceConf};
use crate::devices::Devices;
use crate::enforce::grants::Grants;
use crate::policy::reload::PolicyHandle;
use crate::record::system::SystemLog;

use health::Health;
use metrics::Metrics;

pub use control::Watchdog;
pub use start::PLAIN_DELETES_ENV;

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
///
/// The body is the start order, and the order is the design: each step needs what the steps
/// before it made, and anything that can only fail because of the configuration fails before
/// a thread starts (exit status 78, no restart).
pub fn run(config_path: &Path) -> Result<(), RunError> {
    // Store, reports and logs name staff devices: nothing created from here on is
    // world-readable.
    start::private_files();
    let config = start::load_config(config_path)?;
    // Capabilities are per thread: keep only what the daemon needs before any thread starts.
    start::drop_privileges(&config)?;
    // The allocator's purging thread, the first thread, started without the dropped privileges.
    if let Err(e) = crate::mem::start_background_purge() {
        eprintln!("shadowgate: {e}");
    }
    // A policy that does not load or a store that cannot open makes starting pointless.
    let (policy, system) = start::open_policy_and_store(&config)?;
    // Metrics, health, the enforcing flag and (enforce mode) the nftables table: the state
    // every later part shares.
    let (shared, mode) = start::shared_state(config, policy, system)?;
    // Stopped flows and grants of the last run, with the time they have left.
    start::restore_state(&shared)?;
    // The recorder before anything that decides: every later step may record an event.
    let (events, recorder) = start::recorder(&shared)?;
    // One decision path for capture, the resolver and the portal.
    let judge = start::judge(&shared, &events);
    // Capture sockets need CAP_NET_RAW, and a wrong interface name is the configuration's
    // fault: open them before the runtime and the listeners.
    let sockets = start::open_captures(&shared, config_path)?;
    let rt = start::runtime()?;
    // Listeners bind now: a port another program holds is a configuration error.
    let listeners = start::listeners(&rt, &shared, &events, &judge)?;
    // Capture threads only after the listeners, so what they claimed is known from the first
    // frame on.
    let captures = start::spawn_captures(sockets, &shared, &judge, mode)?;
    let feed = start::spawn_feed(&shared)?;
    let refresher = start::spawn_device_refresh(&shared);
    // `sensor_start`, then the catalogue in force: the record reads in start order.
    start::announce(&shared, &listeners, mode);
    // After `sensor_start`, so the keeper's own events follow it.
    let keeper = start::spawn_keeper(&shared)?;
    start::log_running(&shared, mode);
    let report = start::spawn_report(&shared)?;
    let running = start::Running {
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
    };
    let how = running.serve();
    running.stop(how);
    Ok(())
}
