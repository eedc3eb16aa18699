//! Build script: the systemd units as the Debian package installs them (`cargo deb`, see
//! `[package.metadata.deb]` in Cargo.toml). deploy/ holds the units for a manual install, with the
//! program in /usr/local/bin; the package puts it in /usr/bin. The copies are written to
//! `target/<profile>/deb/`, the folder cargo-deb reads as `target/release/deb/` whatever the
//! profile (it rewrites the `target/release/` prefix of assets to the build's own folder).

use std::path::{Path, PathBuf};

/// The units the package ships (deploy/<name> -> target/<profile>/deb/<name>).
const UNITS: [&str; 3] = [
    "shadowgate.service",
    "shadowgate-report.service",
    "shadowgate-report.timer",
];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is target/[<triple>/]<profile>/build/shadowgate-<hash>/out.
    let profile_dir = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is <target>/<profile>/build/<package>-<hash>/out");
    let dir = profile_dir.join("deb");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for name in UNITS {
        let src = Path::new("deploy").join(name);
        println!("cargo::rerun-if-changed={}", src.display());
        let text =
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let text = packaged(&text);
        if let Some(line) = text.lines().find(|l| l.contains("/usr/local")) {
            panic!("{}: a /usr/local path the package does not provide: {line:?} (teach build.rs its packaged path)", src.display());
        }
        let dst = dir.join(name);
        std::fs::write(&dst, text).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    }
}

/// A unit of deploy/ as packaged: the program in /usr/bin, the documentation in /usr/share/doc.
fn packaged(unit: &str) -> String {
    unit.replace(
        "# Install: see deploy/OPERATIONS.md. Copy to /etc/systemd/system/shadowgate.service.",
        "# Installed by the shadowgate package (override with `systemctl edit shadowgate`).",
    )
    .replace("/usr/local/bin/shadowgate", "/usr/bin/shadowgate")
    .replace(
        "/usr/local/share/doc/shadowgate/",
        "/usr/share/doc/shadowgate/",
    )
}
