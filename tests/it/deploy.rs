//! deploy/: the example configuration loads (every section, and every commented-out sink once
//! uncommented), and the systemd unit's directories agree with the paths the configuration uses.

use crate::common::cli::EXE;
use crate::common::files::{root, scratch};

use std::path::{Path, PathBuf};

use shadowgate::config::{Config, EnforceMode, SinkKind};

/// The file `f` of `deploy/`.
fn deploy(f: &str) -> PathBuf {
    root().join("deploy").join(f)
}

#[test]
fn example_config_has_every_section() {
    let c = Config::load(&deploy("shadowgate.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sensor.id, "clinic-gw-1");
    assert!(c.policy.is_some() && c.store.is_some());
    assert_eq!(c.sink.len(), 1);
    assert_eq!(c.capture.unwrap().interfaces, ["lan0"]);
    // The guide says: monitor first.
    assert_eq!(c.enforce.unwrap().mode, EnforceMode::Monitor);
    assert_eq!(c.dns.unwrap().listen[0].port(), 53);
    assert!(c.portal.is_some());
    assert!(c.metrics.unwrap().listen.ip().is_loopback());
    let d = c.devices.unwrap();
    assert!(d.neighbours && d.leases_file.is_none());
}

/// The sink examples are valid once uncommented (their TLS files replaced by real ones).
#[test]
fn example_sinks_load_when_uncommented() {
    let dir = scratch("sg-deploy");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["loghost.clinic.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    for f in ["siem-ca.pem", "shadowgate-cert.pem"] {
        std::fs::write(dir.join(f), cert.pem()).unwrap();
    }
    std::fs::write(dir.join("shadowgate-key.pem"), key.serialize_pem()).unwrap();

    let text = std::fs::read_to_string(deploy("shadowgate.toml")).unwrap();
    let mut out = String::new();
    let mut in_block = false;
    let mut uncommented = 0;
    for line in text.lines() {
        if line.starts_with("#[[sink]]") {
            in_block = true;
        } else if !line.starts_with('#') {
            in_block = false;
        }
        match line.strip_prefix('#') {
            Some(rest) if in_block && !rest.starts_with([' ', '#']) && !rest.is_empty() => {
                uncommented += 1;
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(uncommented > 15, "{uncommented}");
    let out = out.replace("/etc/shadowgate/", &format!("{}/", dir.display()));
    let p = dir.join("shadowgate.toml");
    std::fs::write(&p, out).unwrap();
    let c = Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.sink.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ecs-file",
            "siem-syslog",
            "rsyslog-relp",
            "webhook",
            "teams-manager",
            "slack-it",
            "mail-manager"
        ]
    );
    assert!(matches!(c.sink[2].kind, SinkKind::Syslog { .. }));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Key=value` settings of the unit (the last one wins, as in systemd).
fn unit(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(deploy("shadowgate.service")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

#[test]
fn unit_directories_match_the_config() {
    let c = Config::load(&deploy("shadowgate.toml")).unwrap();
    let exec = unit("ExecStart").concat();
    assert_eq!(
        exec,
        "/usr/local/bin/shadowgate run --config /etc/shadowgate/shadowgate.toml"
    );
    let under = |key: &str, root: &str, p: &Path| {
        let d = unit(key).concat();
        assert!(
            p.starts_with(Path::new(root).join(&d)),
            "{} is outside {key}={d}",
            p.display()
        );
    };
    under("StateDirectory", "/var/lib", &c.store.unwrap().path);
    match &c.sink[0].kind {
        SinkKind::Jsonl { path: Some(p), .. } => under("LogsDirectory", "/var/log", p),
        k => panic!("{k:?}"),
    }
    under(
        "RuntimeDirectory",
        "/run",
        &c.enforce.unwrap().break_glass_file,
    );
    under("ConfigurationDirectory", "/etc", &c.policy.unwrap().dir);
    assert_eq!(unit("Type"), ["notify"]);
    assert_eq!(unit("UMask"), ["0077"]);
    let caps = unit("CapabilityBoundingSet").concat();
    assert_eq!(caps, "CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE");
    let fams = unit("RestrictAddressFamilies").concat();
    for f in ["AF_PACKET", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(fams.split(' ').any(|x| x == f), "{f} missing: {fams}");
    }
}

/// The unit does not restart on the daemon's configuration-error status, restarts on anything
/// else, and `systemd-analyze verify` accepts it (with ExecStart pointing at the built binary).
#[test]
fn unit_verifies_and_does_not_restart_on_a_config_error() {
    assert_eq!(unit("Restart"), ["always"]);
    assert_eq!(
        unit("RestartPreventExitStatus"),
        [shadowgate::daemon::EXIT_CONFIG.to_string()]
    );
    assert_eq!(
        shadowgate::daemon::EXIT_CONFIG,
        78,
        "documented in docs/src/operations.md"
    );
    let ops = std::fs::read_to_string(root().join("docs/src/operations.md")).unwrap();
    assert!(
        ops.contains("exit status 78"),
        "docs/src/operations.md documents the status"
    );
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if analyze.is_err() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: no systemd-analyze (CI installs systemd)");
        return;
    }
    let dir = scratch("sg-unit");
    let text = std::fs::read_to_string(deploy("shadowgate.service"))
        .unwrap()
        .replace("/usr/local/bin/shadowgate", EXE);
    let unit_file = dir.join("shadowgate.service");
    std::fs::write(&unit_file, text).unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_file)
        .output()
        .expect("systemd-analyze runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("shadowgate.service"),
        "systemd-analyze verify: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
