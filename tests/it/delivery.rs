//! Delivery and the system's own events: a SIEM that accepts and never reads does not delay the
//! other sinks; policy reloads (rejected and accepted), sink outages and recoveries, start, stop
//! and retention are system events in the store, in `shadowgate events` and in the ECS feed.

use crate::common::cli::{bin, replay_with};
use crate::common::events::{json_lines, read_jsonl};
use crate::common::files::{policies, store_config, tmpdir};
use crate::common::frames::ai_capture;
use crate::common::net::{free_port, tcp_collector, Collect};
use crate::common::policy::copy_bundled;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shadowgate::policy::reload::PolicyHandle;
use shadowgate::record::system::SystemLog;
use shadowgate::record::{Query, Store};

#[test]
fn a_siem_that_never_reads_does_not_delay_the_others() {
    let d = tmpdir("delivery", "stuck");
    // The stuck SIEM: accepts connections and never reads (its socket buffers fill up).
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in stuck.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_port = live.local_addr().unwrap().port();
    let got = tcp_collector(live, Collect::AsItArrives);
    let file = d.join("siem.jsonl");
    // The stuck sink comes first: before each sink had its own thread it starved the others.
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &policies(),
        &format!(
            "[[sink]]\nname = \"stuck\"\ntype = \"jsonl\"\naddress = \"127.0.0.1:{stuck_port}\"\nbatch = 5000\n\
             [[sink]]\nname = \"live\"\ntype = \"jsonl\"\naddress = \"127.0.0.1:{live_port}\"\n\
             [[sink]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n",
            file.display()
        ),
    );
    let pcap = ai_capture(&d, 8000);
    let t0 = Instant::now();
    let out = replay_with(&cfg, &pcap, 6);
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let st = Store::open(&d.join("events.db")).unwrap();
    let total = st.last_seq().unwrap();
    assert!(total > 5_000, "{total}");
    // The two healthy sinks have everything, in order; the stuck one is reported behind.
    let lines = read_jsonl(&file);
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l["event"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(st.cursor("file").unwrap(), st.cursor("live").unwrap());
    assert!(
        st.cursor("file").unwrap() >= total - 1,
        "file sink at {} of {total}; {err}",
        st.cursor("file").unwrap()
    );
    let live_n = String::from_utf8(got.lock().unwrap().clone())
        .unwrap()
        .lines()
        .count() as i64;
    assert!(live_n >= total - 1, "live sink got {live_n} of {total}");
    assert!(st.cursor("stuck").unwrap() < total, "{err}");
    assert!(
        err.contains("sink stuck") && err.contains("wait in the store"),
        "{err}"
    );
    // Bounded by the drain timeout, not by the stuck sink's write timeouts one after another.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The stuck sink's outage is itself on record (and was delivered by the healthy sinks if it
    // came before they finished).
    let down = st
        .query(&Query::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.as_str() == "sink_down")
        .count();
    assert_eq!(down, 1, "one sink_down event for the stuck sink");
    drop(held);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn policy_reloads_and_sink_outages_are_system_events_in_the_store_and_the_ecs_feed() {
    let d = tmpdir("delivery", "reload");
    // A private copy of the policy to break and fix.
    let pol = copy_bundled(&d);
    let file = d.join("ecs.jsonl");
    let port = free_port(); // nothing listens: this SIEM is down
    let cfg = store_config(
        &d,
        "shadowgate.toml",
        &pol,
        &format!(
            "[[sink]]\nname = \"ecs\"\ntype = \"jsonl\"\npath = \"{}\"\n\
             [[sink]]\nname = \"down\"\ntype = \"jsonl\"\naddress = \"127.0.0.1:{port}\"\n",
            file.display()
        ),
    );
    let store = d.join("events.db");
    let handle = PolicyHandle::load(&pol).unwrap();
    let log = SystemLog::open(&store, "test-gw").unwrap();
    log.watch_policy(&handle);
    let first = handle.digest();

    // A broken policy is rejected; the old one stays in force.
    let policy_toml = pol.join("policy.toml");
    let good = std::fs::read_to_string(&policy_toml).unwrap();
    std::fs::write(
        &policy_toml,
        good.replacen("action = \"steer\"", "action = \"stear\"", 1),
    )
    .unwrap();
    assert!(handle.reload().is_err());
    assert_eq!(handle.digest(), first);
    // A good change is accepted: one rule's action changed.
    std::fs::write(
        &policy_toml,
        good.replacen("action = \"steer\"", "action = \"block\"", 1),
    )
    .unwrap();
    assert!(handle.reload().is_ok());
    assert_ne!(handle.digest(), first);

    // `shadowgate events` shows both.
    let out = bin()
        .args(["events", "--format", "json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = json_lines(&String::from_utf8(out.stdout).unwrap());
    let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["policy_rejected", "policy_reload"]);
    let rejected: serde_json::Value =
        serde_json::from_str(evs[0]["detail"].as_str().unwrap()).unwrap();
    assert!(
        rejected["errors"][0].as_str().unwrap().contains("stear"),
        "{rejected}"
    );
    assert_eq!(rejected["digest_in_force"], first.as_str());
    let accepted: serde_json::Value =
        serde_json::from_str(evs[1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(accepted["old_digest"], first.as_str());
    assert_eq!(
        accepted["changes"]["rules_changed"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(evs[1]["name"].as_str().unwrap().contains("rules +0 -0 ~1"));

    // The ECS feed carries them as system events; the dead SIEM's outage is recorded once.
    let out = bin()
        .args(["deliver", "--timeout", "2", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the down sink cannot catch up");
    let docs = read_jsonl(&file);
    assert!(docs.len() >= 2, "{docs:?}");
    assert_eq!(docs[0]["event"]["action"], "policy_rejected");
    assert_eq!(docs[1]["event"]["action"], "policy_reload");
    assert_eq!(docs[0]["event"]["category"][0], "configuration");
    assert_eq!(docs[0]["event"]["outcome"], "failure");
    assert_eq!(docs[1]["event"]["type"][0], "change");

    // The SIEM comes back: a later run records the recovery once.
    let got = tcp_collector(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Collect::AsItArrives,
    );
    let out = bin()
        .args(["deliver", "--timeout", "10", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let st = Store::open(&store).unwrap();
    let kinds: Vec<&str> = st
        .query(&Query::default())
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["policy_rejected", "policy_reload", "sink_down", "sink_up"]
    );
    let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    // One more run (all healthy) and the ECS file has every system event once, in order.
    let out = bin()
        .args(["deliver", "--timeout", "10", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = read_jsonl(&file);
    let actions: Vec<&str> = docs
        .iter()
        .map(|d| d["event"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["policy_rejected", "policy_reload", "sink_down", "sink_up"]
    );
    for doc in &docs {
        assert_eq!(doc["event"]["dataset"], "shadowgate.system");
        assert_eq!(doc["observer"]["name"], "test-gw");
    }
    assert!(docs[2]["message"]
        .as_str()
        .unwrap()
        .contains("sink down is failing"));
    assert_eq!(docs[3]["event"]["outcome"], "success");
    let _ = std::fs::remove_dir_all(&d);
}
