//! The system's own events (start and stop, policy reloads, capture gaps, kernel drops, sink
//! outages, retention), written at once through their own store connection from any thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::event::{Event, SystemKind};
use super::store::{Store, StoreError};

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
        assert_eq!(evs[0].kind, "sink_down");
        assert_eq!(evs[0].severity, "high");
        assert!(evs[0].detail.as_deref().unwrap().contains("refused"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
