//! Keeping the store within bounds while the daemon runs: retention by age (`[store]
//! retention_days`) at start and then daily, and the size cap (`[store] max_mb`) checked every
//! minute, on their own thread with their own store connection. Neither ever deletes an event
//! that a configured sink has not delivered yet: when only such events are left over the cap,
//! the store is *full*, and that is said (observer: metric and health warning; one `store_full`
//! system event when it starts, one `store_ok` when it ends), not solved by losing events.
//!
//! What the cap measures: the database pages in use, `(page_count - freelist_count) *
//! page_size`. SQLite does not shrink the file on DELETE; it reuses the freed pages for new
//! events, so the file stays near its largest size and measuring it would make the cap delete
//! on and on without effect. Incremental vacuum would shrink it, but turning it on for an
//! existing store needs a full `VACUUM` (a rewrite of the whole file, holding the write lock).
//! The WAL is not counted: SQLite checkpoints it every ~1,000 pages (about 4 MB) and the store
//! cuts it back to 16 MiB after a larger transaction, while deleting (which writes to it) could
//! never make it smaller. Both sizes are reported.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use super::config::{SinkConf, StoreConf};
use super::event::SystemKind;
use super::store::{Retained, Store, StoreError, StoreSize, RETENTION_BATCH};
use super::system::SystemLog;

/// Retention by age runs at start and then this often.
pub const RETENTION_EVERY: Duration = Duration::from_secs(86_400);
/// The size is checked at start and then this often (a few pragmas and a `stat`).
pub const SIZE_EVERY: Duration = Duration::from_secs(60);
/// Over the cap, delete down to this share of it, so that the next check does not have to
/// delete again at once (and the record holds one deletion event per pass, not one a minute).
const TARGET_PERCENT: u64 = 90;
/// Pause between two delete batches: the recorder and the sinks take the write lock meanwhile.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// What the keeper keeps the store within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub retention_days: u32,
    /// Database bytes in use at most (see the module documentation); `None`: no cap.
    pub max_bytes: Option<u64>,
    /// The sinks configured now: their cursors say what is delivered. A cursor left in the
    /// store by a sink no longer configured does not count (see [`Store::delivered_upto`]).
    pub sinks: Vec<String>,
}

impl Limits {
    pub fn from_config(store: &StoreConf, sinks: &[SinkConf]) -> Limits {
        Limits {
            retention_days: store.retention_days,
            max_bytes: store.max_mb.map(|m| m.get().saturating_mul(1 << 20)),
            sinks: sinks.iter().map(|s| s.name.clone()).collect(),
        }
    }
}

/// Why events were deleted (the `reason` label of the deletion metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Older than `retention_days`.
    Age,
    /// The oldest delivered events, for the size cap.
    Size,
}

impl Deleted {
    pub fn as_str(self) -> &'static str {
        match self {
            Deleted::Age => "retention",
            Deleted::Size => "size",
        }
    }
}

/// Who hears what the keeper measured and did (the daemon: metrics and `/healthz`).
pub trait Observer: Send {
    /// The store's size after a check (and the cap, if any).
    fn size(&self, size: &StoreSize, max_bytes: Option<u64>);
    /// `n` events were deleted.
    fn deleted(&self, why: Deleted, n: u64);
    /// The store's condition after each check (and after a failure).
    fn condition(&self, c: &Condition);
}

/// How the store is, as the keeper last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Ok,
    /// Over the size cap with only undelivered events left (what is wrong and what to do).
    Full(String),
    /// Retention or the size check failed (the store's error).
    Failing(String),
}

impl Condition {
    /// One line for `/healthz`: `ok`, `full: ...`, `error: ...`.
    pub fn describe(&self) -> String {
        match self {
            Condition::Ok => "ok".into(),
            Condition::Full(w) => format!("full: {w}"),
            Condition::Failing(e) => format!("error: {e}"),
        }
    }
}

/// An observer that hears nothing.
pub struct Silent;

impl Observer for Silent {
    fn size(&self, _: &StoreSize, _: Option<u64>) {}
    fn deleted(&self, _: Deleted, _: u64) {}
    fn condition(&self, _: &Condition) {}
}

/// What one size check found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeCheck {
    /// The size after any deletion.
    pub size: StoreSize,
    pub deleted: u64,
    /// Over the cap with nothing left that may be deleted.
    pub full: bool,
}

/// Record a `retention` system event for a run by age (also what `replay` records).
pub fn record_retention(log: &SystemLog, days: u32, r: &Retained) {
    let kept = if r.kept_undelivered > 0 {
        format!(
            "; {} older events kept because a sink has not delivered them",
            r.kept_undelivered
        )
    } else {
        String::new()
    };
    let _ = log.record(
        SystemKind::Retention,
        &format!(
            "retention ({days} day{}) deleted {} events{kept}{}",
            if days == 1 { "" } else { "s" },
            r.deleted,
            if r.complete {
                ""
            } else {
                " (stopped before the end; the rest goes next run)"
            }
        ),
        json!({
            "reason": Deleted::Age.as_str(),
            "days": days,
            "deleted": r.deleted,
            "kept_undelivered": r.kept_undelivered,
            "cutoff": crate::time::rfc3339_micros(r.cutoff_ns.max(0) as u64),
            "complete": r.complete,
        }),
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The store keeper: one store connection, the limits, and whether the store is full now.
pub struct Keeper {
    store: Store,
    limits: Limits,
    system: Option<Arc<SystemLog>>,
    observer: Box<dyn Observer>,
    /// Since when (ns) the store has been full, if it is.
    full_since: Option<u64>,
    batch: usize,
    pause: Duration,
}

impl Keeper {
    pub fn new(
        store: Store,
        limits: Limits,
        system: Option<Arc<SystemLog>>,
        observer: Box<dyn Observer>,
    ) -> Keeper {
        Keeper {
            store,
            limits,
            system,
            observer,
            full_since: None,
            batch: RETENTION_BATCH,
            pause: BATCH_PAUSE,
        }
    }

    /// Delete in batches of `batch` events (tests use small ones).
    pub fn with_batch(mut self, batch: usize) -> Keeper {
        self.batch = batch.max(1);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Retention by age at `now_ns`: delete what is older than `retention_days` and delivered,
    /// and record a `retention` event with how many were deleted and how many old ones were
    /// kept because undelivered. Old undelivered events are kept (never deleted silently):
    /// the sink that lags is on record as down, and its events reach the SIEM when it is back.
    pub fn retention(&mut self, now_ns: u64, stop: &AtomicBool) -> Result<Retained, StoreError> {
        let pause = self.pause;
        let r = self.store.retention_batched(
            &self.limits.sinks,
            self.limits.retention_days,
            now_ns,
            self.batch,
            || {
                std::thread::sleep(pause);
                !stop.load(Ordering::Relaxed)
            },
        )?;
        self.observer.deleted(Deleted::Age, r.deleted);
        if let Some(log) = &self.system {
            record_retention(log, self.limits.retention_days, &r);
        }
        Ok(r)
    }

    /// Measure the store and, over the cap, delete the oldest delivered events down to 90 % of
    /// it (recorded as a `retention` event with reason `size`). When nothing more may be
    /// deleted and the store is still over the cap, it is full: the observer hears a warning on
    /// every check, the record gets one `store_full` event when it starts and one `store_ok`
    /// when it ends.
    pub fn check_size(&mut self, stop: &AtomicBool) -> Result<SizeCheck, StoreError> {
        let mut size = self.store.size()?;
        let Some(max) = self.limits.max_bytes else {
            self.observer.size(&size, None);
            self.observer.condition(&Condition::Ok);
            return Ok(SizeCheck {
                size,
                deleted: 0,
                full: false,
            });
        };
        let mut deleted = 0u64;
        // Nothing delivered is left to delete.
        let mut exhausted = false;
        if size.used_bytes() > max {
            let target = max / 100 * TARGET_PERCENT;
            let upto = self.store.delivered_upto(&self.limits.sinks)?;
            while size.used_bytes() > target {
                let n = self.store.delete_oldest(upto, self.batch)?;
                deleted += n as u64;
                size = self.store.size()?;
                if n < self.batch {
                    exhausted = true;
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(self.pause);
            }
            if deleted > 0 {
                self.observer.deleted(Deleted::Size, deleted);
                if let Some(log) = &self.system {
                    let _ = log.record(
                        SystemKind::Retention,
                        &format!(
                            "size cap ({}): deleted the {deleted} oldest delivered events, {} in use now",
                            mib(max),
                            mib(size.used_bytes())
                        ),
                        json!({
                            "reason": Deleted::Size.as_str(),
                            "deleted": deleted,
                            "max_bytes": max,
                            "used_bytes": size.used_bytes(),
                        }),
                    );
                }
            }
        }
        self.observer.size(&size, Some(max));
        let full = exhausted && size.used_bytes() > max;
        if full {
            let warning = self.full_warning(&size, max)?;
            if self.full_since.is_none() {
                let now = crate::time::now_ns();
                self.full_since = Some(now);
                eprintln!("shadowgate: warning: event store full: {warning}");
                if let Some(log) = &self.system {
                    let _ = log.record(
                        SystemKind::StoreFull,
                        &format!("event store full: {warning}"),
                        json!({
                            "max_bytes": max,
                            "used_bytes": size.used_bytes(),
                            "file_bytes": size.file_bytes(),
                            "undelivered": self.store.undelivered(&self.limits.sinks)?,
                            "sinks_behind": self.behind()?,
                        }),
                    );
                }
            }
            self.observer.condition(&Condition::Full(warning));
        } else {
            if let Some(since) = self.full_since.take() {
                let secs = crate::time::now_ns().saturating_sub(since) / crate::time::SEC;
                eprintln!("shadowgate: event store back under its size cap after {secs} s");
                if let Some(log) = &self.system {
                    let _ = log.record(
                        SystemKind::StoreOk,
                        &format!(
                            "event store back under its size cap ({} of {}) after {secs} s",
                            mib(size.used_bytes()),
                            mib(max)
                        ),
                        json!({
                            "max_bytes": max,
                            "used_bytes": size.used_bytes(),
                            "full_seconds": secs,
                        }),
                    );
                }
            }
            self.observer.condition(&Condition::Ok);
        }
        Ok(SizeCheck {
            size,
            deleted,
            full,
        })
    }

    /// The sinks holding events back: those whose cursor is the lowest, with what waits.
    fn behind(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let upto = self.store.delivered_upto(&self.limits.sinks)?;
        let last = self.store.last_seq()?;
        let mut out = Vec::new();
        for s in &self.limits.sinks {
            let c = self.store.cursor(s)?;
            if c == upto {
                out.push(json!({ "sink": s, "cursor": c, "waiting": (last - c).max(0) }));
            }
        }
        Ok(out)
    }

    fn full_warning(&self, size: &StoreSize, max: u64) -> Result<String, StoreError> {
        let waiting = self.store.undelivered(&self.limits.sinks)?;
        let names: Vec<String> = self
            .behind()?
            .iter()
            .filter_map(|b| b["sink"].as_str().map(str::to_string))
            .collect();
        Ok(format!(
            "{} in use, over the {} cap ([store] max_mb); the {waiting} events left are not \
             delivered yet (sink {}) and are kept: bring the SIEM back, or raise max_mb",
            mib(size.used_bytes()),
            mib(max),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    }
}

/// Start the keeper on its own thread: retention at once and then every day, the size check at
/// once and then every minute, until `stop`. The store is opened here, so a store that cannot
/// be opened is an error before the thread starts.
pub fn spawn(
    path: &Path,
    limits: Limits,
    system: Option<Arc<SystemLog>>,
    observer: Box<dyn Observer>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let store = Store::open(path).map_err(|e| e.to_string())?;
    let keeper = Keeper::new(store, limits, system, observer);
    std::thread::Builder::new()
        .name("sg-retention".into())
        .spawn(move || run(keeper, &stop))
        .map_err(|e| format!("cannot start the retention thread: {e}"))
}

fn run(mut k: Keeper, stop: &AtomicBool) {
    let mut next_age = Instant::now();
    let mut next_size = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_age {
            if let Err(e) = k.retention(crate::time::now_ns(), stop) {
                eprintln!("shadowgate: warning: retention not applied: {e}; next try in a minute");
                k.observer
                    .condition(&Condition::Failing(format!("retention: {e}")));
                next_age = Instant::now() + SIZE_EVERY;
            } else {
                next_age = Instant::now() + RETENTION_EVERY;
            }
        }
        if Instant::now() >= next_size {
            if let Err(e) = k.check_size(stop) {
                eprintln!("shadowgate: warning: store size check failed: {e}");
                k.observer
                    .condition(&Condition::Failing(format!("size check: {e}")));
            }
            next_size = Instant::now() + SIZE_EVERY;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Event;
    use std::sync::Mutex;

    const DAY: u64 = 86_400 * crate::time::SEC;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sg-retention-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `n` decision events at `ts`, each about 400 bytes in the store.
    fn fill(st: &mut Store, n: usize, ts: u64) {
        let mut evs: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = Event::system(SystemKind::SensorStart, ts, "gw", "x", json!({}));
                e.kind = crate::flow::Kind::TlsClientHello.into();
                e.seen_via = "tls".into();
                e.client_ip = format!("10.0.{}.{}", i / 250, i % 250);
                e.name = format!("host{i}.claude.ai");
                e.detail = Some("y".repeat(200));
                e
            })
            .collect();
        st.append(&mut evs).unwrap();
    }

    #[derive(Default, Clone)]
    struct Heard(Arc<Mutex<Vec<String>>>);

    impl Observer for Heard {
        fn size(&self, s: &StoreSize, _: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("size {}", s.used_bytes()));
        }
        fn deleted(&self, why: Deleted, n: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("deleted {} {n}", why.as_str()));
        }
        fn condition(&self, c: &Condition) {
            self.0
                .lock()
                .unwrap()
                .push(format!("warning {}", c.describe()));
        }
    }

    impl Heard {
        fn last_warning(&self) -> String {
            self.0
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|l| l.starts_with("warning "))
                .cloned()
                .unwrap_or_default()
        }
    }

    fn system_events(st: &Store, kind: &str) -> Vec<Event> {
        st.after(0, 1_000_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind.as_str() == kind)
            .collect()
    }

    #[test]
    fn retention_keeps_what_a_configured_sink_has_not_delivered_and_ignores_stale_cursors() {
        let d = dir("age");
        let path = d.join("events.db");
        let now = 100 * DAY;
        let mut st = Store::open(&path).unwrap();
        fill(&mut st, 100, now - 10 * DAY); // seq 1..=100, old
        fill(&mut st, 10, now - 3600 * crate::time::SEC); // seq 101..=110, recent
        st.set_cursor("siem", 60).unwrap();
        // A sink removed from the configuration long ago: its cursor must not hold anything.
        st.set_cursor("old-siem", 5).unwrap();
        let log = SystemLog::open(&path, "gw").unwrap();
        let limits = Limits {
            retention_days: 1,
            max_bytes: None,
            sinks: vec!["siem".into()],
        };
        let heard = Heard::default();
        let mut k = Keeper::new(st, limits, Some(log), Box::new(heard.clone())).with_batch(7);
        let r = k.retention(now, &AtomicBool::new(false)).unwrap();
        assert_eq!(r.deleted, 60, "{r:?}");
        assert_eq!(r.kept_undelivered, 40, "{r:?}");
        assert!(r.complete);
        let st = k.store();
        let left = st.after(0, 1000).unwrap();
        assert!(left.iter().all(|e| e.seq > 60), "{left:?}");
        assert_eq!(left.iter().filter(|e| !e.is_system()).count(), 50);
        let ev = &system_events(st, "retention")[0];
        let detail: serde_json::Value =
            serde_json::from_str(ev.detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["deleted"], 60);
        assert_eq!(detail["kept_undelivered"], 40);
        assert_eq!(detail["reason"], "retention");
        assert!(ev.name.contains("40 older events kept"), "{}", ev.name);
        assert!(heard
            .0
            .lock()
            .unwrap()
            .contains(&"deleted retention 60".to_string()));

        // No sinks: every event is only in the store and counts as delivered.
        let mut k2 = Keeper::new(
            Store::open(&path).unwrap(),
            Limits {
                retention_days: 1,
                max_bytes: None,
                sinks: vec![],
            },
            None,
            Box::new(Silent),
        );
        let r = k2.retention(now, &AtomicBool::new(false)).unwrap();
        assert_eq!((r.deleted, r.kept_undelivered), (40, 0));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stop_between_batches_ends_the_run_early() {
        let d = dir("stop");
        let path = d.join("events.db");
        let mut st = Store::open(&path).unwrap();
        fill(&mut st, 50, DAY);
        let mut k = Keeper::new(
            st,
            Limits {
                retention_days: 1,
                max_bytes: None,
                sinks: vec![],
            },
            None,
            Box::new(Silent),
        )
        .with_batch(10);
        let r = k.retention(100 * DAY, &AtomicBool::new(true)).unwrap();
        assert_eq!(r.deleted, 10);
        assert!(!r.complete);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_size_cap_deletes_delivered_events_then_says_full_once_and_ok_once() {
        let d = dir("size");
        let path = d.join("events.db");
        let now = crate::time::now_ns();
        let mut st = Store::open(&path).unwrap();
        fill(&mut st, 4000, now); // a few MiB, all recent
        st.set_cursor("siem", 2000).unwrap();
        st.set_cursor("gone", 1).unwrap();
        let used = st.size().unwrap().used_bytes();
        assert!(used > 1 << 20, "{used}");
        // A cap at a third of it: the delivered half goes, the undelivered half stays over it.
        let max = used / 3;
        let log = SystemLog::open(&path, "gw").unwrap();
        let heard = Heard::default();
        let limits = Limits {
            retention_days: 400,
            max_bytes: Some(max),
            sinks: vec!["siem".into()],
        };
        let mut k = Keeper::new(st, limits, Some(log), Box::new(heard.clone())).with_batch(500);
        let stop = AtomicBool::new(false);
        let c = k.check_size(&stop).unwrap();
        assert_eq!(c.deleted, 2000, "{c:?}");
        assert!(c.full, "{c:?}");
        assert!(c.size.used_bytes() > max);
        assert!(c.size.used_bytes() < used, "{c:?}");
        let st = k.store();
        let left: Vec<_> = st
            .after(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| !e.is_system())
            .collect();
        assert_eq!(left.len(), 2000);
        assert!(left.iter().all(|e| e.seq > 2000));
        assert_eq!(system_events(st, "store_full").len(), 1);
        let w = heard.last_warning();
        assert!(w.starts_with("warning full:"), "{w}");
        // The 2000 undelivered decisions and the size cap's own `retention` event.
        assert!(w.contains("2001 events") && w.contains("sink siem"), "{w}");
        let full = &system_events(st, "store_full")[0];
        assert_eq!(full.severity, crate::policy::Severity::High);
        assert!(full
            .detail
            .as_deref()
            .unwrap()
            .contains("\"undelivered\":2001"));
        let size_ev = &system_events(st, "retention")[0];
        assert!(size_ev
            .detail
            .as_deref()
            .unwrap()
            .contains("\"reason\":\"size\""));

        // Still full a minute later: no second event, the warning stays.
        let c = k.check_size(&stop).unwrap();
        assert!(c.full && c.deleted == 0, "{c:?}");
        assert_eq!(system_events(k.store(), "store_full").len(), 1);
        assert!(heard.last_warning().starts_with("warning full:"));

        // The SIEM is back and delivers everything: the cap deletes, the store is fine again.
        let last = k.store().last_seq().unwrap();
        k.store().set_cursor("siem", last).unwrap();
        let c = k.check_size(&stop).unwrap();
        assert!(!c.full && c.deleted > 0, "{c:?}");
        assert!(c.size.used_bytes() <= max / 100 * TARGET_PERCENT, "{c:?}");
        assert_eq!(system_events(k.store(), "store_ok").len(), 1);
        assert_eq!(heard.last_warning(), "warning ok");
        let c = k.check_size(&stop).unwrap();
        assert!(!c.full && c.deleted == 0, "{c:?}");
        assert_eq!(system_events(k.store(), "store_ok").len(), 1);
        assert_eq!(system_events(k.store(), "store_full").len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn without_sinks_the_cap_deletes_the_oldest_and_is_never_full() {
        let d = dir("nosink");
        let path = d.join("events.db");
        let mut st = Store::open(&path).unwrap();
        fill(&mut st, 3000, crate::time::now_ns());
        let used = st.size().unwrap().used_bytes();
        let max = used / 2;
        let mut k = Keeper::new(
            st,
            Limits {
                retention_days: 400,
                max_bytes: Some(max),
                sinks: vec![],
            },
            None,
            Box::new(Silent),
        );
        let c = k.check_size(&AtomicBool::new(false)).unwrap();
        assert!(!c.full, "{c:?}");
        assert!(c.size.used_bytes() <= max / 100 * TARGET_PERCENT, "{c:?}");
        // The newest are kept.
        let left = k.store().after(0, 10_000).unwrap();
        assert!(!left.is_empty() && left.last().unwrap().seq == 3000);
        assert_eq!(left.len() as u64, 3000 - c.deleted);
        let _ = std::fs::remove_dir_all(&d);
    }
}
