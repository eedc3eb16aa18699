//! Helpers shared by the integration tests (each `tests/*.rs` is its own binary and says
//! `mod common;`), one module per job. A binary uses part of them: dead code is allowed here.

#![allow(dead_code)]

/// Every capture file under a folder (`pcaps/`).
pub mod captures;
/// The binary under test and runs of it (`replay`, `run`).
pub mod cli;
/// The daemon under test on the namespace testbed.
pub mod daemon;
/// Reading what a run recorded: the store, JSON lines.
pub mod events;
/// Paths of the checkout, scratch folders, configuration files.
pub mod files;
/// Synthetic frames and captures on top of `benches/synth.rs`.
pub mod frames;
/// A plain HTTP GET.
pub mod http;
/// Local ports and listeners that collect what a sink sends.
pub mod net;
/// The namespace testbed of the daemon tests, and entering a namespace.
pub mod netns;
/// The namespace testbed of the enforcement tests (nftables, capture loop).
pub mod nft_bed;
/// Policy directories: the bundled one, copies, the catalogue with rules of a test.
pub mod policy;
/// In-process sensor and pipeline runs: feeding frames, outputs that keep what they got.
pub mod sensor;
/// TLS and DNS peers on the testbed.
pub mod servers;
/// Other programs the tests run (`ip`, `certutil`, ...).
pub mod tools;
/// Polling until something holds.
pub mod wait;

/// Synthetic traffic (also used by the benchmarks and `examples/gen_capture.rs`).
#[path = "../../benches/synth.rs"]
pub mod synth;

/// Skip the test, saying why, when something it needs is missing here. Without an argument:
/// root and `ip netns` (the namespace testbed); with one, an `Option<String>` naming what is
/// missing (e.g. `common::nft_bed::unavailable()`).
#[macro_export]
macro_rules! need_root {
    () => {
        $crate::need_root!(common::netns::unavailable())
    };
    ($missing:expr) => {
        if let Some(why) = $missing {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
