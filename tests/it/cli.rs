//! The `shadowgate` binary as a user runs it: output formats, exit codes and error messages on
//! corrupt, truncated and foreign files.

use crate::common::captures::captures;
use crate::common::cli::{bin, run};
use crate::common::events::json_lines;
use crate::common::files::{policies, root, scratch};
use crate::common::frames::ai_capture;
use crate::common::policy::copy_tree;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use shadowgate::record::Store;

/// A capture of the public corpus, `pcaps/public/REL`.
fn pcap(rel: &str) -> PathBuf {
    root().join("pcaps/public").join(rel)
}

/// The file `name` with `bytes` in this module's folder `<tmp>/shadowgate-cli-<pid>` (kept between
/// calls).
fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shadowgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn json_lines_have_the_stable_fields() {
    let f = pcap("ndpi/quic-29.pcap");
    let out = run(&["replay", "-q", f.to_str().unwrap()]);
    assert!(out.status.success());
    let lines = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert!(!lines.is_empty());
    for l in &lines {
        let kind = l["kind"].as_str().unwrap();
        assert!([
            "dns_query",
            "dns_answer",
            "tls_client_hello",
            "quic_initial",
            "http_request"
        ]
        .contains(&kind));
        assert!(l.get("name").is_some());
        assert!(l["ts"].as_str().unwrap().ends_with('Z'));
        assert!(l["client"]["ip"].is_string() && l["server"]["port"].is_u64());
    }
    assert_eq!(lines[0]["kind"], "quic_initial");
    assert_eq!(lines[0]["quic"]["version"], "draft-29");
}

#[test]
fn table_format() {
    let f = pcap("zeek/http-vlan-qinqinq.pcap");
    let out = run(&["replay", "-q", "--format", "table", f.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TIME"), "{text}");
    assert!(text.contains("http_request"), "{text}");
}

#[test]
fn corrupt_file_names_file_and_offset_and_fails() {
    let f = pcap("suricata-verify/tls-DER-incomplete-header.pcap");
    let out = run(&["replay", "-q", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls-DER-incomplete-header.pcap") && err.contains("byte offset 5035"),
        "{err}"
    );
    // The frames before the damage were still reported.
    assert!(!out.stdout.is_empty());
}

#[test]
fn keep_going_counts_what_was_skipped() {
    let bad = pcap("suricata-verify/tls-DER-incomplete-header.pcap");
    let good = pcap("ndpi/quic-29.pcap");
    let out = run(&[
        "replay",
        "--keep-going",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("skipped 661 bytes in 1 damaged file"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("quic_initial"));
}

#[test]
fn truncated_and_foreign_files() {
    let full = std::fs::read(pcap("ndpi/quic-29.pcap")).unwrap();
    let cut = tmp("cut.pcap", &full[..full.len() - 10]);
    let out = run(&["replay", "-q", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated capture") && err.contains("needs 10 more bytes"),
        "{err}"
    );

    let text = tmp("notes.txt", b"patient notes, not a capture");
    let out = run(&["replay", text.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    let empty = tmp("empty.pcap", b"");
    let out = run(&["replay", empty.to_str().unwrap()]);
    assert!(!out.status.success());

    let out = run(&["replay", "/nonexistent/x.pcap"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
}

#[test]
fn every_bundled_capture_replays_without_panic() {
    let mut files = Vec::new();
    captures(&root().join("pcaps"), &mut files);
    for p in &files {
        let out = run(&["replay", "-q", "--stats", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{}: {err}", p.display());
        assert!(
            out.status.code().is_some(),
            "{} killed by a signal",
            p.display()
        );
    }
    assert!(files.len() >= 82);
}

/// Has a run ended as a command-line tool should when its reader has gone: exit 0, no panic,
/// no backtrace?
fn assert_quiet_end(what: &str, status: std::process::ExitStatus, stderr: &[u8]) {
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(stderr);
    assert!(
        !err.contains("panicked") && !err.contains("backtrace") && !err.contains("Broken pipe"),
        "{what}: {err}"
    );
    assert!(
        status.success(),
        "{what}: {status:?} (signal {:?}): {err}",
        status.signal()
    );
}

/// Issue 18: every subcommand that prints, with its stdout a pipe whose reader has gone (closed
/// before the command starts, or after reading the first line as `| head -1` does), stops
/// writing and exits 0, without a panic or a backtrace. replay and events print megabytes, more
/// than a pipe holds, so their writes really fail; a replay that records events still records
/// every file.
#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let dir = scratch("shadowgate-cli-pipe");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let policies = s(&policies());

    // A capture of 3000 AI flows: 6000 observations, about 2 MB of JSON lines.
    let pcap = s(&ai_capture(&dir, 3000));
    let db = dir.join("events.db");
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nid = \"gw-pipe\"\n[policy]\ndir = \"{policies}\"\n[store]\npath = \"{}\"\n[enforce]\nbreak_glass_file = \"{}\"\n",
            db.display(),
            dir.join("break-glass").display()
        ),
    )
    .unwrap();
    let (db, cfg) = (s(&db), s(&cfg));
    // The store the events and report commands read (system and decision events).
    let o = run(&["replay", "-q", "--config", &cfg, &pcap]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.len() > 1 << 20, "{} bytes", o.stdout.len());
    let recorded = Store::open(Path::new(&db)).unwrap().count().unwrap();
    let ca_dir = s(&dir.join("ca"));
    let o = run(&["portal", "ca", "--out", &ca_dir, "--policy", &policies]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ca = s(&dir.join("ca/portal-ca.pem"));
    let ca_again = s(&dir.join("ca-again"));
    let out = s(&dir.join("report"));

    let commands: Vec<Vec<&str>> = vec![
        vec!["replay", &pcap],
        vec!["replay", "--format", "table", &pcap],
        vec!["replay", "--threads", "2", &pcap],
        vec!["replay", "--policy", &policies, &pcap],
        vec!["events", "--store", &db],
        vec!["catalog", "list", &policies],
        vec!["catalog", "list", "--format", "json", &policies],
        vec!["events", "--format", "json", "--store", &db],
        vec!["events", "--format", "csv", "--store", &db],
        vec![
            "report",
            "--week",
            "2023-W46",
            "--timezone",
            "UTC",
            "--config",
            &cfg,
            "--out",
            &out,
        ],
        vec!["policy", "check", &policies],
        vec![
            "policy",
            "explain",
            "claude.ai",
            "--client",
            "10.20.9.9",
            "--dir",
            &policies,
        ],
        vec!["portal", "constraints", &ca],
        vec![
            "portal", "ca", "--force", "--out", &ca_again, "--policy", &policies,
        ],
        vec!["break-glass", "status", "--config", &cfg],
        vec!["deliver", "--config", &cfg, "--timeout", "5"],
        vec!["--help"],
        vec!["--version"],
        vec!["policy", "--help"],
        vec!["events", "--help"],
    ];
    for args in &commands {
        let what = args.join(" ");
        // The reader closed before the command writes anything: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = bin()
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_quiet_end(
            &format!("{what} (reader closed first)"),
            o.status,
            &o.stderr,
        );

        // `| head -1`: the reader takes one line and goes.
        let mut child = bin()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            !first.is_empty() || args[0] == "deliver",
            "{what}: no output"
        );
        let o = child.wait_with_output().unwrap();
        assert_quiet_end(&format!("{what} (head -1)"), o.status, &o.stderr);
    }

    // A replay that records: the reader going stops the printing, not the recording. Two files
    // into a store with stdout closed hold what they hold with stdout read to the end.
    let decisions = |db: &str| {
        let st = Store::open(Path::new(db)).unwrap();
        let ev = st.query(&Default::default()).unwrap();
        let stops = ev
            .iter()
            .filter(|e| e.kind.as_str() == "sensor_stop")
            .count();
        (ev.iter().filter(|e| !e.is_system()).count(), stops)
    };
    let (db_read, db_closed) = (s(&dir.join("read.db")), s(&dir.join("closed.db")));
    let replay = |db: &str| {
        let mut c = bin();
        c.args([
            "replay", "-q", "--policy", &policies, "--store", db, &pcap, &pcap,
        ]);
        c
    };
    let o = replay(&db_read).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = replay(&db_closed).stdout(writer).output().unwrap();
    assert_quiet_end("replay --store (reader closed first)", o.status, &o.stderr);
    let (all, stops) = decisions(&db_read);
    assert!(
        all > 3000,
        "{all} decisions (of {recorded} events in one replay)"
    );
    assert_eq!(stops, 1);
    assert_eq!(
        decisions(&db_closed),
        (all, 1),
        "every decision and the end of the replay are recorded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `shadowgate catalog list` (table, JSON, by category) and `catalog diff A B` between the
/// bundled policy and a grown copy of its catalogue (issue 21 part 4).
#[test]
fn catalog_list_and_diff() {
    let root = root();
    let o = bin()
        .current_dir(root)
        .args(["catalog", "list", "--category", "ai_clinical"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8_lossy(&o.stdout);
    let header = t.lines().next().unwrap();
    for col in ["ID", "CATEGORY", "VENDOR", "DOMAINS", "BAA"] {
        assert!(header.contains(col), "{t}");
    }
    assert!(
        t.lines()
            .any(|l| l.starts_with("abridge ") && l.contains("ai_clinical")),
        "{t}"
    );
    assert!(!t.contains("consumer_ai"), "{t}");
    assert!(t.contains("catalogue 2026.12.1 (2026-12-01)"), "{t}");

    let o = bin()
        .args(["catalog", "list", "--format", "json"])
        .arg(root.join("policies"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let services = v["services"].as_array().unwrap();
    assert!(services.len() >= 200, "{}", services.len());
    let claude = services.iter().find(|s| s["id"] == "claude").unwrap();
    assert_eq!(claude["category"], "consumer_ai");
    assert_eq!(claude["vendor"], "Anthropic");
    assert!(claude["domains"].as_u64().unwrap() >= 10, "{claude}");
    assert!(
        claude["baa_summary"].as_str().unwrap().contains("no BAA"),
        "{claude}"
    );
    assert_eq!(v["versions"][0]["version"], "2026.12.1");

    // A grown catalogue: one service added, one removed, one moved to another category with a
    // new domain.
    let d = scratch("sg-catdiff");
    copy_tree(&root.join("policies/catalog"), &d.join("catalog"));
    let f = d.join("catalog/consumer-ai.toml");
    let text = std::fs::read_to_string(&f).unwrap();
    let start = text.find("[[service]]\nid = \"perplexity\"").unwrap();
    let end = start + 1 + text[start + 1..].find("[[service]]").unwrap();
    let text = format!("{}{}", &text[..start], &text[end..]).replacen(
        "id = \"chatgpt\"\nname = \"ChatGPT\"\nvendor = \"OpenAI\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"chatgpt.com\",",
        "id = \"chatgpt\"\nname = \"ChatGPT\"\nvendor = \"OpenAI\"\ncategory = \"ai_media\"\nkind = \"chat\"\ndomains = [\"sora.chatgpt.com\", \"chatgpt.com\",",
        1,
    );
    std::fs::write(&f, text).unwrap();
    std::fs::write(
        d.join("catalog/zz-new.toml"),
        "[catalog]\nversion = \"2027.01.1\"\ndate = \"2027-01-05\"\n\n[[service]]\nid = \"newai\"\nname = \"NewAI\"\nvendor = \"NewAI Inc\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"newai.example\"]\nbaa = \"No BAA.\"\nbaa_source = \"test\"\nsource_date = \"2027-01\"\n",
    )
    .unwrap();
    let o = bin()
        .arg("catalog")
        .arg("diff")
        .arg(root.join("policies"))
        .arg(d.join("catalog"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("+ newai (consumer_ai, 1 domains: newai.example)"),
        "{t}"
    );
    assert!(t.contains("- perplexity (consumer_ai)"), "{t}");
    assert!(
        t.contains("~ chatgpt: category consumer_ai -> ai_media; domains added: sora.chatgpt.com"),
        "{t}"
    );
    assert!(t.contains("1 added, 1 removed, 1 changed"), "{t}");
    assert!(t.contains("2027.01.1 (2027-01-05)"), "{t}");
    let o = bin()
        .args(["catalog", "diff", "--format", "json"])
        .arg(d.join("catalog"))
        .arg(root.join("policies"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["added"][0]["id"], "perplexity");
    assert_eq!(v["removed"][0]["id"], "newai");
    assert_eq!(v["changed"][0]["category"]["to"], "consumer_ai");
    assert_eq!(v["changed"][0]["domains_removed"][0], "sora.chatgpt.com");

    // A broken catalogue is said, with a non-zero exit.
    std::fs::write(d.join("catalog/zz-new.toml"), "[[service]]\nid = 3\n").unwrap();
    let o = bin().args(["catalog", "list"]).arg(&d).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("zz-new.toml"));
    let _ = std::fs::remove_dir_all(&d);
}
