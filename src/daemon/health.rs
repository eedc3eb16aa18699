//! Two questions with different answers.
//!
//! - **Is the daemon alive?** ([`Health::alive`]) Its own threads: every capture thread's
//!   heartbeat, the main loop, the async runtime answering a probe. Only this feeds systemd's
//!   watchdog: a restart can cure a hung thread, never an outage elsewhere.
//! - **Does it work?** ([`Health::report`], `/healthz`) Liveness plus the dependencies and the
//!   parts that can fail without the process being stuck: upstream DNS, the portal's listeners,
//!   nftables, the store. A dependency that fails makes the daemon *degraded* (HTTP 200, a
//!   metric and a system event pair); a part of the daemon itself that fails makes it *failing*
//!   (HTTP 503).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

/// A capture thread that has not reported for this long is stuck (its poll wakes every 100 ms,
/// it beats every 500 ms).
const STALE_NS: u64 = 5_000_000_000;
/// The main loop beats every 100 ms, the runtime probe answers within milliseconds: this long
/// without either means the thread or the runtime is stuck.
const LOOP_STALE_NS: u64 = 10_000_000_000;

pub type Check = Box<dyn Fn() -> bool + Send + Sync>;

/// The overall state `/healthz` and `systemctl status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not every configured part is up yet (the metrics listener answers first; DNS, the
    /// portal and the capture threads follow): HTTP 503, so a check never passes early.
    Starting,
    /// Everything configured works.
    Ok,
    /// The daemon works, but a dependency does not (upstream DNS, a full store): decisions,
    /// events and enforcement go on; what depends on it waits or fails over.
    Degraded,
    /// A part of the daemon itself does not work (a stalled capture thread or runtime, a
    /// portal listener that ended, nftables refusing operations).
    Failing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failing => "failing",
        }
    }
}

/// One named liveness beat (ns since the epoch of its last sign of life; 0: not started).
#[derive(Default)]
pub struct Beat(AtomicU64);

impl Beat {
    pub fn now(&self) {
        self.0.store(crate::time::now_ns(), Ordering::Relaxed);
    }

    fn fresh(&self, now: u64, stale: u64) -> bool {
        now.saturating_sub(self.0.load(Ordering::Relaxed)) < stale
    }

    pub fn last_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Health {
    /// Last heartbeat of each capture thread (ns since the epoch), by thread index.
    pub capture_beats: Vec<Beat>,
    pub capture_names: Vec<String>,
    /// The main loop (signals, break-glass, watchdog) went round.
    pub main_beat: Beat,
    /// The async runtime (DNS, portal, metrics) ran a probe task. Watched only when `runtime`.
    pub runtime_beat: Beat,
    pub runtime: AtomicBool,
    /// Enforcement is on (enforce mode and no break-glass).
    pub enforcing: AtomicBool,
    /// Enforce mode was configured (so `enforcing == false` means break-glass).
    pub enforce_mode: bool,
    /// nftables failed on its last operation.
    pub nft_error: Mutex<Option<String>>,
    /// The DNS upstreams answer (`None`: no DNS mode).
    pub dns: Mutex<Option<Check>>,
    pub portal: Mutex<Option<Check>>,
    /// The store keeper's warning (`full: ...` over the size cap with only undelivered events
    /// left, `error: ...`), if any.
    pub store_warning: Mutex<Option<String>>,
    /// When a client last reached its quota of stop entries or QUIC drops (ns; 0: never):
    /// degraded for a minute after.
    pub quota_full_ns: Arc<AtomicU64>,
    /// Every configured part started (set once, after the listeners and capture threads).
    pub started: AtomicBool,
    /// DNS mode and the portal are configured (`starting` until their check is set).
    pub dns_configured: bool,
    pub portal_configured: bool,
}

/// A listener's word in `/healthz`.
fn part(check: Option<bool>, configured: bool) -> &'static str {
    match (check, configured) {
        (None, false) => "off",
        (None, true) => "starting",
        (Some(true), _) => "ok",
        (Some(false), _) => "failing",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    pub fn new(capture_names: Vec<String>, enforce_mode: bool) -> Health {
        let h = Health {
            capture_beats: capture_names.iter().map(|_| Beat::default()).collect(),
            capture_names,
            enforcing: AtomicBool::new(enforce_mode),
            enforce_mode,
            ..Default::default()
        };
        // Threads get their grace period from now on (they beat once running).
        let now = crate::time::now_ns();
        for b in &h.capture_beats {
            b.0.store(now, Ordering::Relaxed);
        }
        h.main_beat.0.store(now, Ordering::Relaxed);
        h.runtime_beat.0.store(now, Ordering::Relaxed);
        h
    }

    /// DNS mode and the portal are configured: `/healthz` says `starting` for each until its
    /// listener is up.
    pub fn with_listeners(mut self, dns: bool, portal: bool) -> Health {
        self.dns_configured = dns;
        self.portal_configured = portal;
        self
    }

    /// Every configured part is up: `/healthz` leaves `starting`.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    pub fn beat(&self, thread: usize) {
        if let Some(b) = self.capture_beats.get(thread) {
            b.now();
        }
    }

    /// Are all capture threads alive?
    pub fn capture_ok(&self) -> bool {
        let now = crate::time::now_ns();
        self.capture_beats.iter().all(|b| b.fresh(now, STALE_NS))
    }

    /// The daemon's own threads are alive: `Err` names what is stuck. This, and nothing a
    /// dependency can break, decides whether systemd's watchdog is fed.
    pub fn alive(&self) -> Result<(), String> {
        let now = crate::time::now_ns();
        let stuck: Vec<String> = self
            .capture_names
            .iter()
            .zip(&self.capture_beats)
            .filter(|(_, b)| !b.fresh(now, STALE_NS))
            .map(|(n, b)| {
                format!(
                    "capture thread {n} silent for {} s",
                    now.saturating_sub(b.last_ns()) / 1_000_000_000
                )
            })
            .chain(
                (!self.main_beat.fresh(now, LOOP_STALE_NS))
                    .then(|| "main loop stalled".to_string()),
            )
            .chain(
                (self.runtime.load(Ordering::Relaxed)
                    && !self.runtime_beat.fresh(now, LOOP_STALE_NS))
                .then(|| "async runtime (DNS, portal, metrics) not answering".to_string()),
            )
            .collect();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck.join("; "))
        }
    }

    fn check(c: &Mutex<Option<Check>>) -> Option<bool> {
        lock(c).as_ref().map(|f| f())
    }

    /// Do the DNS upstreams answer? `None` without DNS mode.
    pub fn dns_upstream_ok(&self) -> Option<bool> {
        Self::check(&self.dns)
    }

    /// The state, its reasons and the `/healthz` JSON body.
    pub fn report(&self) -> Report {
        let alive = self.alive();
        let capture = self.capture_ok();
        let dns = Self::check(&self.dns);
        let portal = Self::check(&self.portal);
        let nft_error = lock(&self.nft_error).clone();
        let store_warning = lock(&self.store_warning).clone();
        let enforcing = self.enforcing.load(Ordering::Relaxed);
        let enforcement = match (self.enforce_mode, enforcing, &nft_error) {
            (false, _, _) => "monitor",
            (true, false, _) => "break_glass",
            (true, true, Some(_)) => "failing",
            (true, true, None) => "enforcing",
        };
        let mut failing = Vec::new();
        if let Err(e) = &alive {
            failing.push(e.clone());
        }
        if portal == Some(false) {
            failing.push("portal: a listener ended".to_string());
        }
        if enforcement == "failing" {
            failing.push("enforcement: nftables refuses operations".to_string());
        }
        let mut degraded = Vec::new();
        if dns == Some(false) {
            degraded.push("dns: no upstream resolver answers".to_string());
        }
        if let Some(w) = &store_warning {
            degraded.push(format!("store {w}"));
        }
        let full = self.quota_full_ns.load(Ordering::Relaxed);
        let quota_full = full != 0 && crate::time::now_ns().saturating_sub(full) < 60_000_000_000;
        if quota_full {
            degraded.push(
                "enforcement: a client reached its quota of stop entries or QUIC drops, or nftables refused an entry (set_full)"
                    .to_string(),
            );
        }
        let started = self.started.load(Ordering::Relaxed);
        let status = if !started {
            Status::Starting
        } else if !failing.is_empty() {
            Status::Failing
        } else if !degraded.is_empty() {
            Status::Degraded
        } else {
            Status::Ok
        };
        let threads: Vec<_> = self
            .capture_names
            .iter()
            .zip(&self.capture_beats)
            .map(|(n, b)| json!({"thread": n, "last_beat_ns": b.last_ns()}))
            .collect();
        let body = json!({
            "ok": matches!(status, Status::Ok | Status::Degraded),
            "status": status.as_str(),
            "failing": failing,
            "degraded": degraded,
            "capture": if self.capture_names.is_empty() { "off" } else if capture { "ok" } else { "stalled" },
            "capture_threads": threads,
            "dns": part(dns, self.dns_configured),
            "portal": part(portal, self.portal_configured),
            "enforcement": enforcement,
            "nft_error": nft_error,
            "store": store_warning.as_deref().unwrap_or("ok"),
            "quota": if quota_full { "full" } else { "ok" },
        });
        Report {
            status,
            body: format!("{body}\n"),
            failing,
            degraded,
        }
    }
}

/// What [`Health::report`] found.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: Status,
    /// Why it is failing, and why degraded (empty when `ok`).
    pub failing: Vec<String>,
    pub degraded: Vec<String>,
    /// The `/healthz` JSON body.
    pub body: String,
}

impl Report {
    /// The reasons on one line (for `systemctl status`).
    pub fn reasons(&self) -> String {
        self.failing
            .iter()
            .chain(&self.degraded)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A part's up/down state, turned into edges: `Some(up)` when it changed since the last call.
/// The first observation is an edge only when it is down (a daemon that starts healthy says
/// nothing; one that starts with its upstream down says so).
#[derive(Debug, Default)]
pub struct Edge(Option<bool>);

impl Edge {
    pub fn update(&mut self, up: bool) -> Option<bool> {
        let changed = match self.0 {
            None => !up,
            Some(prev) => prev != up,
        };
        self.0 = Some(up);
        changed.then_some(up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_degrades_a_stuck_thread_fails() {
        let h = Health::new(vec!["lan0/0".into()], false);
        h.mark_started();
        assert_eq!(h.report().status, Status::Ok);
        assert!(h.alive().is_ok());
        *lock(&h.dns) = Some(Box::new(|| false));
        let r = h.report();
        let (st, body) = (r.status, r.body.clone());
        assert_eq!(st, Status::Degraded);
        assert_eq!(r.reasons(), "dns: no upstream resolver answers");
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert!(body.contains("\"ok\":true"), "{body}");
        // Upstream DNS down never touches liveness.
        assert!(h.alive().is_ok());
        // A capture thread that stopped beating: not alive, failing.
        h.capture_beats[0].0.store(1, Ordering::Relaxed);
        let e = h.alive().unwrap_err();
        assert!(e.contains("capture thread lan0/0"), "{e}");
        assert_eq!(h.report().status, Status::Failing);
    }

    #[test]
    fn nothing_is_ok_until_every_configured_part_started() {
        let h = Health::new(vec!["lan0/0".into()], false).with_listeners(true, true);
        let r = h.report();
        assert_eq!(r.status, Status::Starting);
        assert!(r.body.contains("\"ok\":false"), "{}", r.body);
        assert!(r.body.contains("\"portal\":\"starting\""), "{}", r.body);
        assert!(r.body.contains("\"dns\":\"starting\""), "{}", r.body);
        *lock(&h.portal) = Some(Box::new(|| true));
        *lock(&h.dns) = Some(Box::new(|| true));
        assert_eq!(h.report().status, Status::Starting);
        h.mark_started();
        let r = h.report();
        assert_eq!(r.status, Status::Ok);
        assert!(r.body.contains("\"portal\":\"ok\""), "{}", r.body);
        // Not configured: off, from the start.
        let h = Health::new(vec![], false);
        assert!(h.report().body.contains("\"portal\":\"off\""));
    }

    #[test]
    fn runtime_and_main_loop_are_watched() {
        let h = Health::new(vec![], false);
        h.runtime.store(true, Ordering::Relaxed);
        assert!(h.alive().is_ok());
        h.runtime_beat.0.store(1, Ordering::Relaxed);
        assert!(h.alive().unwrap_err().contains("runtime"));
        h.runtime_beat.now();
        h.main_beat.0.store(1, Ordering::Relaxed);
        assert!(h.alive().unwrap_err().contains("main loop"));
    }

    #[test]
    fn store_warning_degrades() {
        let h = Health::new(vec![], false);
        h.mark_started();
        *lock(&h.store_warning) = Some("full: at max_mb".into());
        let r = h.report();
        assert_eq!(r.status, Status::Degraded);
        assert!(r.body.contains("full: at max_mb"), "{}", r.body);
    }

    #[test]
    fn a_reached_quota_degrades_for_a_minute() {
        let h = Health::new(vec![], false);
        h.mark_started();
        assert_eq!(h.report().status, Status::Ok);
        h.quota_full_ns
            .store(crate::time::now_ns(), Ordering::Relaxed);
        let r = h.report();
        assert_eq!(r.status, Status::Degraded);
        assert!(r.body.contains("\"quota\":\"full\""), "{}", r.body);
        h.quota_full_ns
            .store(crate::time::now_ns() - 61_000_000_000, Ordering::Relaxed);
        assert_eq!(h.report().status, Status::Ok);
    }

    #[test]
    fn edges() {
        let mut e = Edge::default();
        assert_eq!(e.update(true), None);
        assert_eq!(e.update(true), None);
        assert_eq!(e.update(false), Some(false));
        assert_eq!(e.update(false), None);
        assert_eq!(e.update(true), Some(true));
        let mut d = Edge::default();
        assert_eq!(d.update(false), Some(false));
    }
}
