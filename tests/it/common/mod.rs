//! Helpers shared by the integration tests (the modules of the one test binary `tests/it/`,
//! each says `use crate::common::...`), one module per job. All of them are in one crate now,
//! so a helper no test uses is dead code (a warning); `netns`, `nft_bed`, `daemon` and `servers`
//! still allow it (`netns` and `nft_bed` are also compiled into `examples/reset_latency.rs`).

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
#[path = "../../../benches/synth.rs"]
pub mod synth;

/// Skip the test, saying why, when something it needs is missing here. Without an argument:
/// root and `ip netns` (the namespace testbed); with one, an `Option<String>` naming what is
/// missing (e.g. `common::nft_bed::unavailable()`).
#[macro_export]
macro_rules! need_root {
    () => {
        $crate::need_root!($crate::common::netns::unavailable())
    };
    ($missing:expr) => {
        if let Some(why) = $missing {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
