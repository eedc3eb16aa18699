//! deploy/man/ and deploy/completions/, what the Debian package ships, are what the binary writes
//! from its own command line (`shadowgate docs --out DIR`, clap_mangen and clap_complete): a new
//! flag or subcommand changes them. After such a change regenerate them with
//! `cargo run --profile ci -- docs --out deploy` and commit the result.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::cli::bin;
use crate::common::files::{root, TempDir};

/// The files of `dir` by name, with their text.
fn files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn packaged_pages_and_completions_are_current() {
    let out = TempDir::new("clidocs", "gen");
    let o = bin().arg("docs").arg("--out").arg(&out.0).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for sub in ["man", "completions"] {
        let fresh = files(&out.0.join(sub));
        let shipped = files(&root().join("deploy").join(sub));
        let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&shipped),
            names(&fresh),
            "deploy/{sub}/ lists other files than the command line has: regenerate with \
             `cargo run --profile ci -- docs --out deploy`"
        );
        for (name, text) in &fresh {
            assert!(
                shipped[name] == *text,
                "deploy/{sub}/{name} is out of date: regenerate with \
                 `cargo run --profile ci -- docs --out deploy`"
            );
        }
    }
    // A page per subcommand, nested ones included; the hidden `docs` has none.
    let man = files(&out.0.join("man"));
    for page in [
        "shadowgate.1",
        "shadowgate-run.1",
        "shadowgate-policy-check.1",
    ] {
        assert!(man.contains_key(page), "{page} missing: {:?}", man.keys());
    }
    assert!(!man.contains_key("shadowgate-docs.1"));
    assert!(
        man["shadowgate-run.1"].contains("\\-\\-config"),
        "{}",
        man["shadowgate-run.1"]
    );
    let bash = &files(&out.0.join("completions"))["shadowgate.bash"];
    assert!(bash.contains("complete -F _shadowgate"), "{bash}");
    // (clap_complete lists the hidden `docs` too; the manual pages and `--help` do not.)
    assert!(bash.contains("break-glass"), "{bash}");
}
