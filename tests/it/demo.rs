//! deploy/demo.sh, once, as an evaluator runs it: it exits 0, the browser's screenshot of the
//! steering page and the recorded steer event exist, and it leaves no namespace behind.
//!
//! Needs root, `ip netns`, /usr/bin/chromium, certutil, openssl, python3 and curl; skips saying
//! which is missing otherwise.

use crate::common;
use crate::common::cli::EXE;
use crate::common::files::{root, tmpdir};
use crate::common::tools::have;

use std::process::Command;
use std::time::Instant;

#[test]
fn demo_script_steers_the_browser_and_cleans_up() {
    if !common::netns::can_run() {
        eprintln!("skipping: needs root and `ip netns` (network namespaces)");
        return;
    }
    for t in ["chromium", "certutil", "openssl", "python3", "curl"] {
        if !have(t) {
            eprintln!("skipping: {t} is not installed");
            return;
        }
    }
    let out = tmpdir("demo", "run");
    let tag = format!("sgdm{}", std::process::id());
    let t = Instant::now();
    let o = Command::new(root().join("deploy/demo.sh"))
        .env("SHADOWGATE_BIN", EXE)
        .env("SHADOWGATE_DEMO_DIR", &out)
        .env("SHADOWGATE_DEMO_TAG", &tag)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    eprintln!("demo.sh took {:?}", t.elapsed());
    let namespaces = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    // Whatever happened: nothing of the demo is left running.
    assert!(
        !namespaces.contains(&tag),
        "demo.sh left namespaces behind: {namespaces}"
    );
    assert!(
        o.status.success(),
        "demo.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The screenshots are PNG images of a rendered page.
    for shot in ["steer.png", "approved.png"] {
        let png = std::fs::read(out.join(shot)).unwrap_or_else(|e| panic!("{shot}: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{shot} is no PNG");
        assert!(png.len() > 5_000, "{shot}: {} bytes", png.len());
    }
    // The steer decision is on record, for the client, pointing to the approved route, and the
    // browser's page view of the portal with it.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(out.join("events.json"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["kind"] == "dns_query"
            && e["action"] == "steer"
            && e["client_ip"] == "10.66.1.2"
            && e["steer_url"] == "https://ai.clinic.example/"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "portal_view" && e["action"] == "steer"),
        "{events:#?}"
    );
    // A connection straight to the site's address was stopped on the wire.
    assert!(
        events.iter().any(|e| e["kind"] == "tls_client_hello"
            && e["server_ip"] == "10.66.2.10"
            && e["detail"].as_str().unwrap_or("").contains("\"stopped\"")),
        "{events:#?}"
    );
    // The narration names what happened.
    for said in [
        "ChatGPT is not available on this network",
        "stopped by the gateway (TCP reset)",
        "\"action\": \"steer\"",
    ] {
        assert!(
            stdout.contains(said),
            "the narration lacks {said:?}:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
