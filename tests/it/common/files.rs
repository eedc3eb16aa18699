//! Paths of the checkout, fresh scratch folders under the system's temporary directory, and the
//! configuration files the tests write.

use std::path::{Path, PathBuf};

/// The checkout (`CARGO_MANIFEST_DIR`): `pcaps/`, `policies/`, `deploy/` are under it.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled policy directory (`policies/`).
pub fn policies() -> PathBuf {
    root().join("policies")
}

/// A fresh, empty folder `<tmp>/<name>-<pid>` (whatever an earlier run left there is removed):
/// the pid keeps runs of the tests that go at once apart. All tests of the binary share the pid,
/// so `name` must be unique across its modules (the `names` test checks the literal ones).
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh folder for test `tag` of test file `suite`: `<tmp>/sg-<suite>-<tag>-<pid>`.
pub fn tmpdir(suite: &str, tag: &str) -> PathBuf {
    scratch(&format!("sg-{suite}-{tag}"))
}

/// A [`tmpdir`] removed when dropped (also when the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Make the folder (see [`tmpdir`]).
    pub fn new(suite: &str, tag: &str) -> TempDir {
        TempDir(tmpdir(suite, tag))
    }
}

impl Drop for TempDir {
    /// Remove the folder and what is in it.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration `name` in `dir` for `replay` and `deliver`: sensor `test-gw`, the policy in
/// `policy`, the store `events.db` (next to the file, batches of 500) and `sinks` (TOML).
pub fn store_config(dir: &Path, name: &str, policy: &Path, sinks: &str) -> PathBuf {
    let c = dir.join(name);
    std::fs::write(
        &c,
        format!(
            "[sensor]\nid = \"test-gw\"\n[policy]\ndir = \"{}\"\n[store]\npath = \"events.db\"\nbatch = 500\n{sinks}",
            policy.display()
        ),
    )
    .unwrap();
    c
}
