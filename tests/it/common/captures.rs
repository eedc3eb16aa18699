//! Every capture file (`.pcap`, `.pcapng`) under a folder, in path order: shared by the tests
//! that replay all bundled captures (also by a unit test in `src/`, through
//! `#[path]` in `src/pipeline/json/tests.rs`).

use std::path::{Path, PathBuf};

/// Append the capture files under `dir` (recursively, sorted by path) to `out`.
pub fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            captures(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("pcap" | "pcapng")
        ) {
            out.push(p);
        }
    }
}
