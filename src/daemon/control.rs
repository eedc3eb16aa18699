//! The daemon's main loop once everything runs: signals (TERM/INT stop; HUP and policy edits
//! reload), the break-glass file, systemd status and watchdog (fed on the daemon's own liveness,
//! never on a dependency's), the upstream resolvers' down/up events, and grant expiry without a
//! portal.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::health::{Edge, Status};
use super::Shared;
use crate::record::SystemKind;

/// Signals and the once-a-second duties, until asked to stop. Returns how it ended.
pub(super) fn main_loop(
    shared: &Arc<Shared>,
    break_glass_file: &Path,
    expiry: Option<crate::pipeline::Judge>,
    runtime: Option<tokio::runtime::Handle>,
) -> &'static str {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let term = Arc::new(AtomicBool::new(false));
    for s in [SIGTERM, SIGINT] {
        let _ = signal_hook::flag::register(s, Arc::clone(&term));
    }
    // SIGHUP and edits of the policy directory reload it (a bad policy is rejected and the
    // old one keeps deciding; both are on record).
    let _watch = match shared.policy.watch() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("shadowgate: cannot watch the policy for reloads: {e}");
            None
        }
    };
    let enforce_mode = shared.health.enforce_mode;
    let mut last_glass = break_glass_file.exists();
    let mut last_second = Instant::now();
    let mut duties = Duties::new(shared, runtime);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        shared.health.main_beat.now();
        if term.load(Ordering::Relaxed) {
            return "signal";
        }
        // Break glass: checked ten times a second, so it takes effect at once.
        let glass = break_glass_file.exists();
        if glass != last_glass {
            last_glass = glass;
            let on = enforce_mode && !glass;
            if let Err(e) =
                crate::enforce::enforcer::set_enforcing(&shared.enforcing, shared.nft.as_ref(), on)
            {
                eprintln!("shadowgate: nftables: {e:#}");
                *shared
                    .health
                    .nft_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
                // Whatever the table says, decisions stop acting.
                if !on {
                    shared.enforcing.store(false, Ordering::SeqCst);
                }
            }
            shared.health.enforcing.store(on, Ordering::SeqCst);
            eprintln!(
                "shadowgate: break-glass {}: enforcement {}",
                if glass { "on" } else { "off" },
                if on { "on" } else { "off" }
            );
            if let Some(s) = &shared.system {
                let _ = s.record(
                    crate::record::SystemKind::BreakGlass,
                    &format!(
                        "break-glass {}",
                        if glass {
                            "on: enforcement off"
                        } else {
                            "off: enforcement on"
                        }
                    ),
                    json!({"break_glass": glass, "enforcing": on}),
                );
            }
        }
        if last_second.elapsed() >= Duration::from_secs(1) {
            last_second = Instant::now();
            duties.each_second(shared);
            if let Some(judge) = &expiry {
                for e in
                    crate::portal::expiry_events(&shared.grants, judge, &shared.policy.current())
                {
                    judge.record_event(e);
                }
            }
        }
        duties.watchdog.tick(&shared.health);
    }
}

/// What the main loop does once a second besides signals and break-glass: probe the runtime,
/// follow the upstream resolvers' state, tell systemd the status.
struct Duties {
    runtime: Option<tokio::runtime::Handle>,
    upstream: Edge,
    status: Option<Status>,
    watchdog: Watchdog,
}

impl Duties {
    fn new(shared: &Shared, runtime: Option<tokio::runtime::Handle>) -> Duties {
        shared
            .health
            .runtime
            .store(runtime.is_some(), Ordering::Relaxed);
        Duties {
            runtime,
            upstream: Edge::default(),
            status: None,
            watchdog: Watchdog::from_env(),
        }
    }

    fn each_second(&mut self, shared: &Shared) {
        // The runtime proves it runs tasks: a stuck runtime stops beating, and the watchdog
        // stops with it.
        if let Some(rt) = &self.runtime {
            let h = Arc::clone(&shared.health);
            drop(rt.spawn(async move { h.runtime_beat.now() }));
        }
        if let Some(up) = shared.health.dns_upstream_ok() {
            shared.metrics.dns_upstream_up.set(up as i64);
            if let Some(up) = self.upstream.update(up) {
                upstream_edge(shared, up);
            }
        }
        let report = shared.health.report();
        let status = report.status;
        shared.metrics.health_status.set(match status {
            Status::Starting => 3,
            Status::Ok => 0,
            Status::Degraded => 1,
            Status::Failing => 2,
        });
        if self.status != Some(status) {
            self.status = Some(status);
            let text = match status {
                Status::Ok => "running".to_string(),
                _ => format!("{}: {}", status.as_str(), report.reasons()),
            };
            let _ = crate::daemon::sdnotify::status(&text);
        }
    }
}

/// The upstream resolvers went down or came back: a journal line and a system event.
fn upstream_edge(shared: &Shared, up: bool) {
    let upstreams: Vec<String> = shared
        .config
        .dns
        .as_ref()
        .map(|d| d.upstreams.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    let (kind, summary) = if up {
        (
            SystemKind::DnsUpstreamUp,
            format!("DNS upstream answers again ({})", upstreams.join(", ")),
        )
    } else {
        (
            SystemKind::DnsUpstreamDown,
            format!(
                "no DNS upstream answers ({}): LAN lookups fail until one does; the daemon runs on",
                upstreams.join(", ")
            ),
        )
    };
    eprintln!("shadowgate: {summary}");
    if let Some(s) = &shared.system {
        let _ = s.record(kind, &summary, json!({"upstreams": upstreams, "up": up}));
    }
}

/// Feeds systemd's watchdog while the daemon's own threads are alive ([`Health::alive`]), and
/// only then: an outage of a dependency (upstream DNS, a SIEM, a full store) must never turn
/// into a restart loop, while a hung capture thread or runtime should end in a restart.
pub struct Watchdog {
    interval: Option<Duration>,
    socket: Option<std::ffi::OsString>,
    last: Option<Instant>,
    stuck: bool,
}

impl Watchdog {
    /// As systemd set it up: `$WATCHDOG_USEC` (for this pid) and `$NOTIFY_SOCKET`.
    pub fn from_env() -> Watchdog {
        Watchdog::new(
            crate::daemon::sdnotify::watchdog_interval(),
            std::env::var_os("NOTIFY_SOCKET"),
        )
    }

    pub fn new(interval: Option<Duration>, socket: Option<std::ffi::OsString>) -> Watchdog {
        Watchdog {
            interval,
            socket,
            last: None,
            stuck: false,
        }
    }

    /// Send `WATCHDOG=1` if half the interval passed and the daemon is alive. Returns whether
    /// it sent one.
    pub fn tick(&mut self, health: &super::health::Health) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if self.last.is_some_and(|l| l.elapsed() < interval / 2) {
            return false;
        }
        match health.alive() {
            Ok(()) => {
                if self.stuck {
                    self.stuck = false;
                    eprintln!("shadowgate: alive again: feeding the watchdog");
                }
                self.last = Some(Instant::now());
                crate::daemon::sdnotify::notify_to(self.socket.as_deref(), "WATCHDOG=1")
                    .unwrap_or(false)
            }
            Err(why) => {
                if !self.stuck {
                    self.stuck = true;
                    eprintln!(
                        "shadowgate: {why}: no longer feeding the watchdog (systemd restarts the daemon after WatchdogSec)"
                    );
                }
                false
            }
        }
    }
}
