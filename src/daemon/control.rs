//! The daemon's main loop once everything runs: signals (TERM/INT stop; HUP and policy edits
//! reload), the break-glass file, systemd status and watchdog, and grant expiry without a portal.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Shared;
use crate::record::queue;

/// Signals and the once-a-second duties, until asked to stop. Returns how it ended.
pub(super) fn main_loop(
    shared: &Arc<Shared>,
    break_glass_file: &Path,
    expiry: Option<queue::EventTx>,
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
    // systemd's watchdog is fed only while capture, DNS and enforcement are healthy.
    let watchdog = crate::act::sdnotify::watchdog_interval().map(|d| d / 2);
    let mut last_watchdog = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if term.load(Ordering::Relaxed) {
            return "signal";
        }
        // Break glass: checked ten times a second, so it takes effect at once.
        let glass = break_glass_file.exists();
        if glass != last_glass {
            last_glass = glass;
            let on = enforce_mode && !glass;
            if let Err(e) =
                crate::act::enforcer::set_enforcing(&shared.enforcing, shared.nft.as_ref(), on)
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
            let (ok, _) = shared.health.report();
            let _ = crate::act::sdnotify::status(if ok { "running" } else { "degraded" });
            if let Some(tx) = &expiry {
                for e in crate::act::portal::expiry_events(
                    &shared.grants,
                    &shared.config.sensor.id,
                    &shared.policy.current(),
                    &shared.devices,
                ) {
                    tx.send(e);
                }
            }
        }
        if let Some(w) = watchdog {
            if last_watchdog.elapsed() >= w && shared.health.report().0 {
                last_watchdog = Instant::now();
                let _ = crate::act::sdnotify::watchdog();
            }
        }
    }
}
