//! The one decision path (issue 20): what the store says enforcement did is what the enforcer
//! did. A bundled capture goes through the daemon's chain (the judge recording to the store, the
//! enforcer as the pipeline's output, nothing to touch: no table, no raw sockets) and each
//! stored event's `enforcement` is checked against the enforcer's answer for it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::common::events::{words, Event};
use crate::common::files::{policies, tmpdir};
use shadowgate::capture::CaptureFile;
use shadowgate::enforce::config::EnforceConf;
use shadowgate::enforce::enforcer::{EnforceMetrics, Enforcer};
use shadowgate::enforce::grants::Grants;
use shadowgate::pipeline::{Judge, Pipeline};
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::record::queue::start;
use shadowgate::record::{Query, Store};

/// Replay `capture` (without the frames `skip` says to leave out) through the daemon's chain in
/// enforce mode (`enforcing`: break glass off); the stored events, in their written words.
fn record(name: &str, capture: &str, enforcing: bool, skip: impl Fn(usize) -> bool) -> Vec<Event> {
    let dir = tmpdir("decision_path", name);
    let db = dir.join("events.db");
    let (tx, rec) = start(Store::open(&db).unwrap(), 1024, 64, None);
    let judge = Judge::new(PolicyHandle::load(&policies()).unwrap(), "gw-test").recording(tx);
    let conf: EnforceConf = toml::from_str("mode = \"enforce\"").unwrap();
    let enforcer = Enforcer::with_metrics(
        &conf,
        None,
        None,
        Arc::new(Grants::new()),
        Arc::new(AtomicBool::new(enforcing)),
        EnforceMetrics::new(&prometheus::Registry::new()).unwrap(),
    );
    let mut p = Pipeline::new(shadowgate::flow::Config::default())
        .with_judge(judge)
        .with_output(Box::new(enforcer));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(capture);
    let file = CaptureFile::open(&path).unwrap();
    for (i, f) in file.frames().unwrap().enumerate() {
        if !skip(i) {
            p.feed(&f.unwrap());
        }
    }
    p.finish();
    drop(p);
    rec.stop();
    let ev = Store::open(&db)
        .unwrap()
        .query(&Query::default())
        .unwrap()
        .iter()
        .map(words)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    ev
}

fn detail(ev: &[Event], kind: &str, name: &str) -> Option<serde_json::Value> {
    let e = ev
        .iter()
        .find(|e| e.kind == kind && e.name == name)
        .unwrap_or_else(|| panic!("no {kind} event for {name}: {ev:#?}"));
    e.detail
        .as_deref()
        .map(|d| serde_json::from_str(d).unwrap())
}

#[test]
fn stored_enforcement_is_what_the_enforcer_did() {
    let ev = record("all", "pcaps/generated/curl-dig.pcap", true, |_| false);
    // A steered lookup whose answer had addresses (its event is the answer's): QUIC to them
    // dropped for the client.
    assert_eq!(
        detail(&ev, "dns_answer", "claude.ai"),
        Some(serde_json::json!({"enforcement": "stopped", "how": "quic_drop_answered"}))
    );
    // A steered hello and an HTTP request on TCP: reset.
    assert_eq!(
        detail(&ev, "tls_client_hello", "copilot.microsoft.com"),
        Some(serde_json::json!({"enforcement": "stopped", "how": "reset"}))
    );
    assert_eq!(
        detail(&ev, "http_request", "chatgpt.com"),
        Some(serde_json::json!({"enforcement": "stopped", "how": "reset"}))
    );
    // An alert: nothing to stop, nothing said.
    assert_eq!(detail(&ev, "tls_client_hello", "api.anthropic.com"), None);
}

/// The label the merged `stops` changed: a steered lookup whose answer was never seen. The
/// event used to say `stopped` (`quic_drop_answered`); nothing was dropped, and now it says so.
#[test]
fn an_unanswered_steered_lookup_says_nothing_was_stopped() {
    // Frame 1 is the answer to claude.ai (frame 0 its query).
    let ev = record("unanswered", "pcaps/generated/curl-dig.pcap", true, |i| {
        i == 1
    });
    assert_eq!(
        detail(&ev, "dns_query", "claude.ai"),
        Some(serde_json::json!({"enforcement": "none"}))
    );
    // Break glass: the same traffic would have been stopped, and the store says that.
    let ev = record("glass", "pcaps/generated/curl-dig.pcap", false, |_| false);
    assert_eq!(
        detail(&ev, "tls_client_hello", "copilot.microsoft.com"),
        Some(serde_json::json!({"enforcement": "would_stop", "how": "reset"}))
    );
    assert_eq!(
        detail(&ev, "dns_answer", "claude.ai"),
        Some(serde_json::json!({"enforcement": "would_stop", "how": "quic_drop_answered"}))
    );
}
