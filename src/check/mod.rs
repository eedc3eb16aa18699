//! `shadowgate check`: the whole setup checked before going live (like `nginx -t`): the
//! configuration and the policy, the ports, the interfaces, what the kernel offers, the
//! capabilities, the event store, the portal CA and whether the upstreams and sinks answer.
//! Each check gives findings (ok, warn, error) that say what was found and what to do next.
//! Nothing here changes the live system: ports are bound and let go, nf_tables is asked on a
//! scratch table of its own, the store is read, never opened for writing.

mod kernel;
mod portal;
mod ports;
mod reach;
mod store;

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::policy::Policy;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warn,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// What a check found: its short name, how bad, what it found and what to do next (empty when
/// nothing is to be done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            severity: Severity::Ok,
            message: message.into(),
            fix: String::new(),
        }
    }

    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity: Severity::Warn,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn error(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity: Severity::Error,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// The check names, in the order they run (and the table groups them).
pub const CHECKS: [&str; 13] = [
    "config",
    "policy",
    "port",
    "interface",
    "nftables",
    "element-destroy",
    "af-packet",
    "capability",
    "store",
    "portal-ca",
    "upstream",
    "sink",
    "summary",
];

/// Every finding for the configuration at `path`. A configuration that does not parse, or a
/// policy that does not load, ends the checks that need them.
pub fn run(path: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let config = match Config::load(path) {
        Ok(c) => {
            out.push(Finding::ok("config", format!("{}: parses", path.display())));
            c
        }
        Err(e) => {
            out.push(Finding::error(
                "config",
                e.to_string(),
                format!(
                    "fix {} at the place named (unknown keys are errors: compare with deploy/shadowgate.toml), then run `shadowgate check --config {}` again",
                    path.display(),
                    path.display()
                ),
            ));
            return out;
        }
    };
    out.extend(daemon_needs(&config, path));
    // The reachability checks wait on the network: start them first, collect them last.
    let reach = reach::start(&config);
    let policy = load_policy(&config, &mut out);
    out.extend(ports::check(&config));
    out.extend(kernel::interfaces(&config));
    out.extend(kernel::nftables(&config));
    out.extend(kernel::af_packet(&config));
    out.extend(kernel::capabilities(&config));
    out.extend(store::check(&config));
    out.extend(portal::check(&config, policy.as_ref()));
    out.extend(reach.finish());
    out
}

/// What the daemon refuses to start without (`daemon::validate`'s rules, said as findings).
fn daemon_needs(c: &Config, path: &Path) -> Vec<Finding> {
    let p = path.display();
    let mut out = Vec::new();
    if c.policy.is_none() {
        out.push(Finding::error(
            "config",
            format!("{p}: no [policy] section"),
            "add [policy] dir = \"/etc/shadowgate/policies\" (see deploy/shadowgate.toml)",
        ));
    }
    if c.store.is_none() {
        out.push(Finding::error(
            "config",
            format!("{p}: no [store] section: every decision is recorded there"),
            "add [store] path = \"/var/lib/shadowgate/events.db\"",
        ));
    }
    if c.capture.is_none() && c.dns.is_none() {
        out.push(Finding::error(
            "config",
            format!("{p}: nothing to run (neither [capture] nor [dns])"),
            "add [capture] interfaces = [\"lan0\"] and/or a [dns] section",
        ));
    }
    if c.capture
        .as_ref()
        .is_some_and(|cap| cap.interfaces.is_empty())
    {
        out.push(Finding::error(
            "config",
            format!("{p}: [capture] interfaces is empty"),
            "name the clinic-side interfaces (`ip link` lists them)",
        ));
    }
    let intercept = c.enforce.as_ref().is_some_and(|e| e.intercept_dns);
    if intercept && c.dns.is_none() {
        out.push(Finding::error(
            "config",
            format!("{p}: [enforce] intercept_dns needs a [dns] section to redirect to"),
            "add a [dns] section or set intercept_dns = false",
        ));
    }
    out
}

/// The policy and catalogue, as the daemon loads them (with the clinic's own resolvers).
fn load_policy(c: &Config, out: &mut Vec<Finding>) -> Option<Policy> {
    let dir = &c.policy.as_ref()?.dir;
    match Policy::load(dir) {
        Ok(p) => {
            let p = p.with_clinic_resolvers(&c.clinic_resolvers());
            out.push(Finding::ok(
                "policy",
                format!(
                    "{}: {} services, {} rules load",
                    dir.display(),
                    p.services().len(),
                    p.rule_count()
                ),
            ));
            for w in p.group_warnings() {
                out.push(Finding::warn(
                    "policy",
                    w.to_string(),
                    format!("read it with `shadowgate policy check {}`", dir.display()),
                ));
            }
            Some(p)
        }
        Err(e) => {
            out.push(Finding::error(
                "policy",
                e.to_string().trim_end().to_string(),
                format!(
                    "fix the file:line:column named, then `shadowgate policy check {}`",
                    dir.display()
                ),
            ));
            None
        }
    }
}

/// The exit status: 0 all ok, 1 warnings only, 2 any error.
pub fn exit_status(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warn) => 1,
        _ => 0,
    }
}

/// One line per finding, grouped by check in [`CHECKS`] order, the fix under it; then a count.
pub fn table(findings: &[Finding], quiet: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for name in CHECKS {
        for f in findings.iter().filter(|f| f.check == name) {
            if quiet && f.severity == Severity::Ok {
                continue;
            }
            let _ = writeln!(
                s,
                "{:<5}  {:<15}  {}",
                f.severity.name(),
                f.check,
                one_line(&f.message)
            );
            if !f.fix.is_empty() {
                let _ = writeln!(s, "{:<5}  {:<15}  fix: {}", "", "", one_line(&f.fix));
            }
        }
    }
    let n = |sev| findings.iter().filter(|f| f.severity == sev).count();
    let _ = writeln!(
        s,
        "shadowgate check: {} ok, {} warning{}, {} error{}",
        n(Severity::Ok),
        n(Severity::Warn),
        if n(Severity::Warn) == 1 { "" } else { "s" },
        n(Severity::Error),
        if n(Severity::Error) == 1 { "" } else { "s" },
    );
    s
}

/// A JSON array of `{check, severity, message, fix}`.
pub fn json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".into())
}

/// A multi-line message (policy errors with hints) on one line.
fn one_line(m: &str) -> String {
    m.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_the_worst_finding() {
        let ok = Finding::ok("config", "parses");
        let warn = Finding::warn("upstream", "no answer", "check it");
        let err = Finding::error("port", "in use", "stop it");
        assert_eq!(exit_status(&[]), 0);
        assert_eq!(exit_status(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_status(&[ok.clone(), warn.clone()]), 1);
        assert_eq!(exit_status(&[warn, err, ok]), 2);
    }

    #[test]
    fn table_groups_by_check_and_quiet_leaves_out_ok() {
        let f = vec![
            Finding::error("port", "udp 127.0.0.1:53: in use", "stop it"),
            Finding::ok("config", "parses"),
        ];
        let t = table(&f, false);
        let cfg = t.find("config").unwrap();
        let port = t.find("port").unwrap();
        assert!(cfg < port, "{t}");
        assert!(t.contains("fix: stop it"), "{t}");
        assert!(t.contains("1 ok, 0 warnings, 1 error"), "{t}");
        assert!(!table(&f, true).contains("parses"));
    }

    #[test]
    fn json_has_the_four_fields() {
        let f = vec![Finding::warn("sink", "down", "start it")];
        let v: serde_json::Value = serde_json::from_str(&json(&f)).unwrap();
        assert_eq!(v[0]["check"], "sink");
        assert_eq!(v[0]["severity"], "warn");
        assert_eq!(v[0]["message"], "down");
        assert_eq!(v[0]["fix"], "start it");
    }

    #[test]
    fn a_config_that_does_not_parse_is_one_error() {
        let d = std::env::temp_dir().join(format!("sg-check-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("bad.toml");
        std::fs::write(&p, "[store]\npath = \"x.db\"\nbogus = 1\n").unwrap();
        let f = run(&p);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].check, f[0].severity), ("config", Severity::Error));
        assert!(f[0].message.contains("bogus"), "{f:?}");
        assert!(!f[0].fix.is_empty());
    }
}
