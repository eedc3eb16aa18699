//! What `/healthz` and the systemd watchdog ask: is capture reading, is DNS answering, is
//! enforcement in force (or deliberately off)?

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::json;

/// A capture thread that has not reported for this long is stuck (its poll wakes every 100 ms).
const STALE_NS: u64 = 5_000_000_000;

pub type Check = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
pub struct Health {
    /// Last heartbeat of each capture thread (ns since the epoch), by thread index.
    pub capture_beats: Vec<AtomicU64>,
    pub capture_names: Vec<String>,
    /// Enforcement is on (enforce mode and no break-glass).
    pub enforcing: AtomicBool,
    /// Enforce mode was configured (so `enforcing == false` means break-glass).
    pub enforce_mode: bool,
    /// nftables failed on its last operation.
    pub nft_error: Mutex<Option<String>>,
    pub dns: Mutex<Option<Check>>,
    pub portal: Mutex<Option<Check>>,
    /// The store keeper's warning (`full: ...` over the size cap with only undelivered events
    /// left, `error: ...`), if any.
    pub store_warning: Mutex<Option<String>>,
}

impl Health {
    pub fn new(capture_names: Vec<String>, enforce_mode: bool) -> Health {
        Health {
            capture_beats: capture_names.iter().map(|_| AtomicU64::new(0)).collect(),
            capture_names,
            enforcing: AtomicBool::new(enforce_mode),
            enforce_mode,
            ..Default::default()
        }
    }

    pub fn beat(&self, thread: usize) {
        if let Some(b) = self.capture_beats.get(thread) {
            b.store(crate::time::now_ns(), Ordering::Relaxed);
        }
    }

    /// Are all capture threads alive?
    pub fn capture_ok(&self) -> bool {
        let now = crate::time::now_ns();
        self.capture_beats
            .iter()
            .all(|b| now.saturating_sub(b.load(Ordering::Relaxed)) < STALE_NS)
    }

    fn check(c: &Mutex<Option<Check>>) -> Option<bool> {
        c.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f())
    }

    /// (healthy, JSON body).
    pub fn report(&self) -> (bool, String) {
        let capture = self.capture_ok();
        let dns = Self::check(&self.dns);
        let portal = Self::check(&self.portal);
        let nft_error = self
            .nft_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let store_warning = self
            .store_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let enforcing = self.enforcing.load(Ordering::Relaxed);
        let enforcement = match (self.enforce_mode, enforcing, &nft_error) {
            (false, _, _) => "monitor",
            (true, false, _) => "break_glass",
            (true, true, Some(_)) => "failing",
            (true, true, None) => "enforcing",
        };
        let ok = capture && dns != Some(false) && portal != Some(false) && enforcement != "failing";
        let threads: Vec<_> = self
            .capture_names
            .iter()
            .zip(&self.capture_beats)
            .map(|(n, b)| json!({"thread": n, "last_beat_ns": b.load(Ordering::Relaxed)}))
            .collect();
        let body = json!({
            "ok": ok,
            "capture": if self.capture_names.is_empty() { "off" } else if capture { "ok" } else { "stalled" },
            "capture_threads": threads,
            "dns": match dns { None => "off", Some(true) => "ok", Some(false) => "failing" },
            "portal": match portal { None => "off", Some(true) => "ok", Some(false) => "failing" },
            "enforcement": enforcement,
            "nft_error": nft_error,
            "store": store_warning.as_deref().unwrap_or("ok"),
        });
        (ok, format!("{body}\n"))
    }
}
