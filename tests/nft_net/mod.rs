//! Kept only for `examples/reset_latency.rs`, which includes this file by path: the enforcement
//! test bed itself is `tests/common/nft_bed.rs` (with `common::netns::in_ns` and the
//! `common::tools` it uses). Point that include at `tests/common/` and this folder can go.

#![allow(dead_code)]

#[path = "../common/netns.rs"]
mod netns;
#[path = "../common/nft_bed.rs"]
mod nft_bed;
#[path = "../common/tools.rs"]
mod tools;

pub use netns::in_ns;
pub use nft_bed::*;
