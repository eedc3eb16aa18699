//! The `shadowgate` binary as a user runs it: output formats, exit codes and error messages on
//! corrupt, truncated and foreign files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadowgate"))
}

fn pcap(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps/public")
        .join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run shadowgate")
}

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
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let mut stack = vec![root];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                let out = run(&["replay", "-q", "--stats", p.to_str().unwrap()]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains("panicked"), "{}: {err}", p.display());
                assert!(
                    out.status.code().is_some(),
                    "{} killed by a signal",
                    p.display()
                );
                n += 1;
            }
        }
    }
    assert!(n >= 82);
}
