//! Kept only for `examples/reset_latency.rs`, which includes this file by path: the enforcement
//! test bed itself is `tests/it/common/nft_bed.rs` (with `common::netns::in_ns` and the
//! `common::tools` it uses). Point that include at `tests/it/common/` and this folder can go.
//! (It is no test target: Cargo builds `tests/*.rs` and `tests/*/main.rs`, not a `mod.rs`.)

#![allow(dead_code)]

#[path = "../it/common/netns.rs"]
mod netns;
#[path = "../it/common/nft_bed.rs"]
mod nft_bed;
#[path = "../it/common/tools.rs"]
mod tools;

pub use netns::in_ns;
pub use nft_bed::*;
