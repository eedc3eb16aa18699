//! Policy directories for the tests: the bundled one loaded, private copies to break and fix,
//! and the bundled catalogue with a test's own `policy.toml`.

use std::path::{Path, PathBuf};

use shadowgate::policy::Policy;

use super::files::policies;

/// The rules of the portal tests: chatgpt coached, other consumer AI steered, the approved route.
pub const PORTAL_RULES: &str = r#"
[settings]
default_action = "alert"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant (covered by our BAA): sign in with your clinic account."

[[rule]]
id = "T-100-chatgpt-coach"
services = ["chatgpt"]
action = "coach"
severity = "medium"
steer_to = "approved"

[[rule]]
id = "T-300-consumer-ai"
categories = ["consumer_ai"]
action = "steer"
severity = "medium"
"#;

/// The bundled policy, loaded (a test of it fails with the loader's errors if it is invalid).
pub fn bundled() -> Policy {
    Policy::load(&policies()).unwrap_or_else(|e| panic!("bundled policy invalid:\n{e}"))
}

/// Copy the folder `from` with everything under it to `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A private copy of the bundled policy, `dir/policies` (tests may break it).
pub fn copy_bundled(dir: &Path) -> PathBuf {
    let p = dir.join("policies");
    copy_tree(&policies(), &p);
    p
}

/// The policy directory `dir` (created): the bundled catalogue and `policy_toml` as its rules.
pub fn with_rules(dir: &Path, policy_toml: &str) -> PathBuf {
    copy_tree(&policies().join("catalog"), &dir.join("catalog"));
    std::fs::write(dir.join("policy.toml"), policy_toml).unwrap();
    dir.to_path_buf()
}
