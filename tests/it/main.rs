//! The integration tests: one test binary (`cargo test --test it`), one module per subject.
//! Cargo builds and links one binary instead of one per file, and the harness runs every test
//! of every module side by side (a long test no longer runs alone at the end of its own binary).
//!
//! Tests of different modules run at once in one process: whatever they create outside it
//! (namespaces, scratch folders, ports, nftables tables) must be unique across the crate, and a
//! lock that keeps tests apart must cover every module that shares the resource (see
//! `common::netns::reset_timing_lock`). `names` checks the names the tests choose.
//!
//! Run one module: `cargo test --profile ci --test it daemon::` (a test: its full name,
//! `daemon::kernel_drops_are_counted_and_recorded`).

#[macro_use]
mod common;

mod adversarial;
mod blind_spots;
mod check;
mod cli;
mod cli_docs;
mod daemon;
mod daemon_enforce;
mod decision_path;
mod delivery;
mod demo;
mod deploy;
mod desync;
mod devices;
mod dns;
mod docs;
mod encrypted_dns;
mod enforce;
mod evidence;
mod evidence_policy;
mod hardening;
mod names;
mod notify;
mod policy;
mod portal;
mod portal_rules;
mod prometheus;
mod record;
mod relp;
mod replay_truth;
mod report;
mod restart;
mod sensor;
mod sharded;
