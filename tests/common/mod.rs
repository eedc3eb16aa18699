//! Helpers shared by the record, delivery and RELP tests: the binary under test and a capture of
//! AI flows (each a DNS lookup and a ClientHello) built with `benches/synth.rs`.

#![allow(dead_code)]

pub mod daemon;
pub mod netns;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::synth;

/// The `shadowgate` binary of this build.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadowgate"))
}

/// A capture with `flows` flows, each giving a DNS lookup and a ClientHello decision.
pub fn ai_capture(dir: &Path, flows: u32) -> PathBuf {
    let mut frames = Vec::new();
    for i in 0..flows {
        synth::flow(i, 0, &mut frames);
    }
    let p = dir.join("ai.pcap");
    synth::write_pcap(&p, &frames).unwrap();
    p
}
