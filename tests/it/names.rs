//! The names the tests give what they create outside the process, unique across the crate: all
//! modules are one test binary, so their tests run at once in one process (one pid), and two
//! tests that chose the same testbed tag or scratch folder would destroy each other's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::files::root;

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The leading string-literal arguments of each call `call(` in `src`, up to the first
/// placeholder of a `format!` (`Testbed::new(&format!("sgpo-{}", ..))` gives `["sgpo-"]`).
fn literal_args(src: &str, call: &str) -> Vec<Vec<String>> {
    let mut calls = Vec::new();
    for (at, _) in src.match_indices(call) {
        let mut rest = &src[at + call.len()..];
        let mut args = Vec::new();
        loop {
            rest = rest.trim_start();
            rest = rest.strip_prefix('&').unwrap_or(rest);
            rest = rest.strip_prefix("format!(").unwrap_or(rest);
            let Some(lit) = rest.strip_prefix('"') else {
                break;
            };
            let end = lit.find('"').unwrap();
            let text = &lit[..end];
            let placeholder = text.find('{');
            args.push(text[..placeholder.unwrap_or(text.len())].to_string());
            rest = &lit[end + 1..];
            match rest.trim_start().strip_prefix(',') {
                Some(r) if placeholder.is_none() => rest = r,
                _ => break,
            }
        }
        if !args.is_empty() {
            calls.push(args);
        }
    }
    calls
}

/// Namespace tags of [`Testbed::new`](crate::common::netns::Testbed::new) and scratch folders
/// (`tmpdir`, `TempDir::new`, `scratch`, `temp_dir().join(format!(..))`) chosen with literals in
/// the test modules: none twice.
#[test]
fn testbed_tags_and_scratch_folders_are_unique_across_modules() {
    let dir = root().join("tests/it");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut dups = Vec::new();
    let mut n = 0;
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        // The helpers' own definitions, and this file's examples.
        if rel.starts_with("common") || rel == "names.rs" {
            continue;
        }
        let src = std::fs::read_to_string(f).unwrap();
        // What each call names: `tmpdir(SUITE, TAG)` and `TempDir::new` the folder
        // `sg-SUITE-TAG-<pid>`, `scratch(NAME)` and the others `NAME-<pid>`.
        for (call, kind, prefix) in [
            ("Testbed::new(", "namespaces", ""),
            ("tmpdir(", "folder", "sg-"),
            ("TempDir::new(", "folder", "sg-"),
            ("scratch(", "folder", ""),
            ("temp_dir().join(", "folder", ""),
        ] {
            for args in literal_args(&src, call) {
                let key = format!("{kind} {prefix}{}", args.join("-"));
                n += 1;
                if let Some(first) = seen.insert(key.clone(), rel.clone()) {
                    dups.push(format!("{key} in {first} and {rel}"));
                }
            }
        }
    }
    assert!(n > 40, "only {n} names found: has a helper been renamed?");
    assert!(dups.is_empty(), "chosen twice: {dups:#?}");
}
