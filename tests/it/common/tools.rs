//! Other programs the tests run: `ip`, `nft`, `certutil`, ...

use std::process::{Command, Output, Stdio};

/// Run `args[0]` with the rest as its arguments, to its end (a program that cannot start fails
/// the test; its exit status is the caller's to judge).
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Run `args` (see [`run`]) and fail the test with its stderr unless it succeeds.
pub fn must(args: &[&str]) {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let mut a = vec!["ip"];
    a.extend_from_slice(args);
    must(&a);
}

/// Is `cmd` installed (on the PATH)?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
