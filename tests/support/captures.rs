//! Kept only for `src/pipeline/json/tests.rs`, which includes this file by path: the capture
//! walk itself is `tests/common/captures.rs`, shared by the integration tests. (Point that
//! include at `tests/common/captures.rs` and this folder can go.)

#[path = "../common/captures.rs"]
mod shared;

pub use shared::captures;
