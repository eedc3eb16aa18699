//! The `shadowgate` binary of this build and the runs of it the tests share.

use std::path::Path;
use std::process::{Command, Output};

/// The path of the `shadowgate` binary of this build.
pub const EXE: &str = env!("CARGO_BIN_EXE_shadowgate");

/// A command for the `shadowgate` binary of this build.
pub fn bin() -> Command {
    Command::new(EXE)
}

/// `shadowgate ARGS`, run to its end.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run shadowgate")
}

/// `shadowgate replay` of `pcap` with the configuration, deciding and recording; sinks are drained
/// for up to `drain_s` seconds.
pub fn replay_with(cfg: &Path, pcap: &Path, drain_s: u32) -> Output {
    bin()
        .args([
            "replay",
            "-q",
            "--emit",
            "decisions",
            "--drain-timeout",
            &drain_s.to_string(),
            "--config",
        ])
        .arg(cfg)
        .arg(pcap)
        .output()
        .unwrap()
}
