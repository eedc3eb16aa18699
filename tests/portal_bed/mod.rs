//! Helpers shared by the portal tests: commands, a random suffix for namespace names, and the
//! test policy (chatgpt coached, other consumer AI steered, the approved route).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:04x}", (t ^ std::process::id().rotate_left(7)) & 0xffff)
}

pub fn write_policy(dir: &Path) {
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    for e in std::fs::read_dir(root().join("policies/catalog")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, cat.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("policy.toml"),
        r#"
[settings]
default_action = "alert"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant (covered by our BAA): sign in with your clinic account."

[[rule]]
id = "T-100-chatgpt-coach"
services = ["chatgpt"]
action = "coach"
severity = "medium"
steer_to = "approved"

[[rule]]
id = "T-300-consumer-ai"
categories = ["consumer_ai"]
action = "steer"
severity = "medium"
"#,
    )
    .unwrap();
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shadowgate")
}
