//! The system's own events (start and stop, policy reloads, capture gaps, kernel drops, sink
//! outages, retention), written at once through their own store connection from any thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::event::{Event, SystemKind};
use super::store::{Store, StoreError};
use crate::policy::reload::{PolicyHandle, ReloadOutcome};
use crate::policy::{Category, Policy};

/// A shared writer of system events. Each event is its own committed transaction: they are
/// rare, and each one matters (an outage must be on record even if the process dies next).
pub struct SystemLog {
    store: Mutex<Store>,
    sensor: String,
}

impl SystemLog {
    /// Open a connection to the event store at `path` for system events of `sensor`.
    pub fn open(path: &Path, sensor: &str) -> Result<Arc<SystemLog>, StoreError> {
        Ok(Arc::new(SystemLog {
            store: Mutex::new(Store::open(path)?),
            sensor: sensor.to_string(),
        }))
    }

    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// `sensor_start`: version, mode, policy directory and digest, and what else `extra` says.
    pub fn sensor_start(&self, mode: &str, policy: Option<&PolicyHandle>, extra: Value) {
        let digest = policy.map(|p| p.digest());
        let mut detail = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": mode,
            "policy_dir": policy.map(|p| p.dir().display().to_string()),
            "policy_digest": digest,
        });
        merge(&mut detail, extra);
        let summary = format!(
            "shadowgate {} started ({mode}){}",
            env!("CARGO_PKG_VERSION"),
            digest
                .map(|d| format!(", policy {}", &d[..d.len().min(12)]))
                .unwrap_or_default()
        );
        let _ = self.record(SystemKind::SensorStart, &summary, detail);
    }

    /// `sensor_stop`: how it ended and the run's counters in `detail`.
    pub fn sensor_stop(&self, how: &str, detail: Value) {
        let mut d = json!({ "version": env!("CARGO_PKG_VERSION"), "how": how });
        merge(&mut d, detail);
        let _ = self.record(
            SystemKind::SensorStop,
            &format!("shadowgate stopped ({how})"),
            d,
        );
    }

    /// `catalog_loaded`: the catalogue of `policy` in force: each vendor file's version and date,
    /// services, patterns per category, the clinic's overrides, and (with a portal CA) the
    /// steered or coached names the CA cannot certify.
    pub fn catalog_loaded(&self, policy: &Policy, uncertifiable: Option<&[String]>) {
        let _ = self.record(
            SystemKind::CatalogLoaded,
            &catalog_summary(policy, uncertifiable),
            catalog_detail(policy, uncertifiable),
        );
    }

    /// Record every reload attempt of `policy` from now on: accepted (old and new digest, what
    /// changed) or rejected (the errors; the previous policy stays in force).
    pub fn watch_policy(self: &Arc<Self>, policy: &PolicyHandle) {
        let me = Arc::clone(self);
        policy.on_reload(Box::new(move |o: &ReloadOutcome| match o {
            ReloadOutcome::Accepted {
                old_digest,
                new_digest,
                changes,
            } => {
                let _ = me.record(
                    SystemKind::PolicyReload,
                    &format!("policy reloaded: {}", changes.summary()),
                    json!({ "old_digest": old_digest, "new_digest": new_digest, "changes": changes }),
                );
            }
            ReloadOutcome::Rejected {
                digest_in_force,
                errors,
            } => {
                let _ = me.record(
                    SystemKind::PolicyRejected,
                    &format!(
                        "policy reload rejected ({} error{}); the previous policy stays in force",
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" }
                    ),
                    json!({ "errors": errors, "digest_in_force": digest_in_force }),
                );
            }
        }));
    }

    /// Record a system event now. A failure is returned and also said on stderr: the caller
    /// usually cannot do more about it than go on.
    pub fn record(&self, kind: SystemKind, summary: &str, detail: Value) -> Result<i64, String> {
        self.record_at(crate::time::now_ns(), kind, summary, detail)
    }

    /// Record a system event with an explicit time (ns since the epoch).
    pub fn record_at(
        &self,
        ts_ns: u64,
        kind: SystemKind,
        summary: &str,
        detail: Value,
    ) -> Result<i64, String> {
        let mut ev = [Event::system(kind, ts_ns, &self.sensor, summary, detail)];
        let r = match self.store.lock() {
            Ok(mut st) => st.append(&mut ev).map_err(|e: StoreError| e.to_string()),
            Err(_) => Err("system log lock poisoned".to_string()),
        };
        if let Err(e) = &r {
            eprintln!(
                "shadowgate: warning: system event {} not recorded: {e}",
                kind.as_str()
            );
        }
        r
    }
}

/// The versions of the vendor catalogue files, distinct, in file order (`2026.12.1`).
fn versions(policy: &Policy) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in policy.catalog_versions() {
        if !v.contains(&c.version) {
            v.push(c.version.clone());
        }
    }
    v
}

/// One line: `catalogue 2026.12.1: 213 services, 540 patterns, 1 override; the portal CA cannot
/// certify 3 steered names`.
pub fn catalog_summary(policy: &Policy, uncertifiable: Option<&[String]>) -> String {
    let v = versions(policy);
    let o = policy.catalog_overrides().len();
    let mut s = format!(
        "catalogue {}: {} services, {} patterns, {o} clinic override{}",
        if v.is_empty() {
            "(no version)".to_string()
        } else {
            v.join(", ")
        },
        policy.services().len(),
        policy.pattern_count(),
        if o == 1 { "" } else { "s" }
    );
    if let Some(u) = uncertifiable.filter(|u| !u.is_empty()) {
        s.push_str(&format!(
            "; the portal CA cannot certify {} steered or coached name{} (browsers get a certificate error; make a new CA)",
            u.len(),
            if u.len() == 1 { "" } else { "s" }
        ));
    }
    s
}

/// The detail object of `catalog_loaded`.
pub fn catalog_detail(policy: &Policy, uncertifiable: Option<&[String]>) -> Value {
    let mut per_cat = serde_json::Map::new();
    let mut svc_cat = serde_json::Map::new();
    for c in Category::ALL {
        let pats = policy
            .catalog_patterns()
            .iter()
            .filter(|(_, s)| s.category == c)
            .count();
        let svcs = policy.services().iter().filter(|s| s.category == c).count();
        if pats > 0 || svcs > 0 {
            per_cat.insert(c.as_str().into(), json!(pats));
            svc_cat.insert(c.as_str().into(), json!(svcs));
        }
    }
    json!({
        "versions": policy.catalog_versions().iter().map(|c| json!({
            "file": c.file.display().to_string(),
            "version": c.version,
            "date": c.date,
        })).collect::<Vec<_>>(),
        "version": versions(policy).join(", "),
        "services": policy.services().len(),
        "patterns": policy.pattern_count(),
        "services_per_category": svc_cat,
        "patterns_per_category": per_cat,
        "overrides": policy.catalog_overrides().len(),
        "override_list": policy.catalog_overrides().iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        "portal_uncertifiable": uncertifiable.map(|u| u.len()),
        "portal_uncertifiable_names": uncertifiable,
    })
}

/// Add the fields of `extra` (an object) to `into` (an object).
fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_events_are_committed_and_read_back() {
        let dir = std::env::temp_dir().join(format!("sg-system-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.db");
        let log = SystemLog::open(&path, "gw1").unwrap();
        let seq = log
            .record(
                SystemKind::SinkDown,
                "sink siem: connection refused",
                serde_json::json!({"sink": "siem", "error": "connection refused"}),
            )
            .unwrap();
        assert_eq!(seq, 1);
        let st = Store::open(&path).unwrap();
        let evs = st.after(0, 10).unwrap();
        assert_eq!(evs.len(), 1);
        assert!(evs[0].is_system());
        assert_eq!(evs[0].kind, SystemKind::SinkDown.into());
        assert_eq!(evs[0].severity, crate::policy::Severity::High);
        assert!(evs[0].detail.as_deref().unwrap().contains("refused"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
