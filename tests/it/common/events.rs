//! Reading what a run recorded: the events of a store, JSON lines printed or written by a sink.

use std::path::Path;

use shadowgate::record::{Query, Store};

/// An event as the SIEM reads it: every field as the words its JSON form writes (`kind`,
/// `action`, `severity`, `evidence`, `category`, `transport` are enums in the library).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Event {
    pub id: String,
    pub seq: i64,
    pub ts: u64,
    pub sensor: String,
    pub client_ip: String,
    pub client_port: u16,
    pub client_mac: Option<String>,
    pub client_hostname: Option<String>,
    pub client_groups: String,
    pub server_ip: String,
    pub server_port: u16,
    pub transport: String,
    pub kind: String,
    pub name: String,
    pub seen_via: String,
    pub evidence: Option<String>,
    pub service: Option<String>,
    pub service_name: Option<String>,
    pub category: Option<String>,
    pub action: String,
    pub severity: String,
    pub rule_id: String,
    pub steer_url: Option<String>,
    pub shared_tenant: bool,
    pub repeat_count: u32,
    #[serde(default)]
    pub detail: Option<String>,
}

impl Event {
    /// One of the system's own events (written with `seen_via` = `system`)?
    pub fn is_system(&self) -> bool {
        self.seen_via == "system"
    }
}

/// A library event in its written words.
pub fn words(e: &shadowgate::record::Event) -> Event {
    serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap()
}

/// Every event in the store `dir/events.db`, oldest first, in its written words.
pub fn events(dir: &Path) -> Vec<Event> {
    Store::open(&dir.join("events.db"))
        .unwrap()
        .query(&Query::default())
        .unwrap()
        .iter()
        .map(words)
        .collect()
}

/// The events of kind `k` among `ev`.
pub fn of_kind<'a>(ev: &'a [Event], k: &str) -> Vec<&'a Event> {
    ev.iter().filter(|e| e.kind == k).collect()
}

/// Each line of `text` as JSON (a line that is not JSON fails the test).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The JSON lines of the file `p`; none if it does not exist (yet).
pub fn read_jsonl(p: &Path) -> Vec<serde_json::Value> {
    json_lines(&std::fs::read_to_string(p).unwrap_or_default())
}
