//! Reading what a run recorded: the events of a store, JSON lines printed or written by a sink.

use std::path::Path;

use shadowgate::record::{Event, Query, Store};

/// Every event in the store `dir/events.db`, oldest first.
pub fn events(dir: &Path) -> Vec<Event> {
    Store::open(&dir.join("events.db"))
        .unwrap()
        .query(&Query::default())
        .unwrap()
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
