//! What a policy reload changed: a digest of the policy directory's files (which policy was in
//! force, for the record) and a short summary of rules and services added, removed or changed.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::Policy;

/// SHA-256 over the policy directory's `.toml` files (relative path and contents, in path
/// order), as hex. Two directories with the same files have the same digest.
pub fn digest(dir: &Path) -> String {
    let mut files = Vec::new();
    collect(dir, dir, &mut files, 0);
    files.sort();
    let mut h = Sha256::new();
    for (rel, path) in files {
        h.update(rel.as_bytes());
        h.update([0]);
        if let Ok(b) = std::fs::read(&path) {
            h.update((b.len() as u64).to_be_bytes());
            h.update(&b);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>, depth: u8) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && depth < 4 {
            collect(root, &p, out, depth + 1);
        } else if p.extension().is_some_and(|x| x == "toml") {
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            out.push((rel, p));
        }
    }
}

/// What changed between two policies, for a reload's system event.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub rules_added: Vec<String>,
    pub rules_removed: Vec<String>,
    pub rules_changed: Vec<String>,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// The rule order changed (first match wins, so order matters).
    pub rules_reordered: bool,
}

impl Changes {
    pub fn between(old: &Policy, new: &Policy) -> Changes {
        let (ro, rn) = (old.rule_fingerprints(), new.rule_fingerprints());
        let find = |v: &[(String, String)], id: &str| v.iter().position(|(i, _)| i == id);
        let mut c = Changes::default();
        for (id, fp) in &rn {
            match find(&ro, id) {
                None => c.rules_added.push(id.clone()),
                Some(i) if ro[i].1 != *fp => c.rules_changed.push(id.clone()),
                Some(_) => {}
            }
        }
        for (id, _) in &ro {
            if find(&rn, id).is_none() {
                c.rules_removed.push(id.clone());
            }
        }
        let common = |a: &[(String, String)], b: &[(String, String)]| -> Vec<String> {
            a.iter()
                .filter(|(i, _)| find(b, i).is_some())
                .map(|(i, _)| i.clone())
                .collect()
        };
        c.rules_reordered = common(&ro, &rn) != common(&rn, &ro);
        let ids =
            |p: &Policy| -> Vec<String> { p.services().iter().map(|s| s.id.clone()).collect() };
        let (so, sn) = (ids(old), ids(new));
        c.services_added = sn.iter().filter(|s| !so.contains(s)).cloned().collect();
        c.services_removed = so.iter().filter(|s| !sn.contains(s)).cloned().collect();
        c
    }

    /// One line for people: `rules +1 -0 ~2, services +0 -1` or `no rule or service changed`.
    pub fn summary(&self) -> String {
        if *self == Changes::default() {
            return "no rule or service changed".into();
        }
        let mut s = format!(
            "rules +{} -{} ~{}, services +{} -{}",
            self.rules_added.len(),
            self.rules_removed.len(),
            self.rules_changed.len(),
            self.services_added.len(),
            self.services_removed.len()
        );
        if self.rules_reordered {
            s.push_str(", rules reordered");
        }
        s
    }
}
