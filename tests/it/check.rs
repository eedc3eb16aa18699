//! `shadowgate check --config FILE`: broken setups, each giving its own finding (name, severity,
//! a fix) and exit status, and a clean setup in a network namespace that exits 0 quickly.
//! Each namespace test has a namespace of its own with `lan0` (10.31.0.1/24, a veth whose peer is up), a DNS
//! upstream and a syslog receiver inside it.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cli::EXE;
use crate::common::files::{policies, tmpdir};
use crate::common::netns::in_ns;
use crate::common::policy::copy_bundled;
use crate::common::servers::dns_server;

/// A finding of the JSON output.
#[derive(Debug, serde::Deserialize)]
struct Finding {
    check: String,
    severity: String,
    message: String,
    fix: String,
}

/// A network namespace `chk<tag>-<pid>` with lo up and `lan0` (10.31.0.1/24, .53, .54), one end of a veth pair, deleted
/// on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let n = Ns(format!("chk{tag}-{}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "del", &n.0]).output();
        for args in [
            vec!["netns", "add", &n.0],
            vec!["-n", &n.0, "link", "set", "lo", "up"],
            vec![
                "-n", &n.0, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p",
            ],
            vec!["-n", &n.0, "link", "set", "lan0p", "up"],
            vec!["-n", &n.0, "addr", "add", "10.31.0.1/24", "dev", "lan0"],
            vec!["-n", &n.0, "addr", "add", "10.31.0.53/24", "dev", "lan0"],
            vec!["-n", &n.0, "addr", "add", "10.31.0.54/24", "dev", "lan0"],
            vec!["-n", &n.0, "link", "set", "lan0", "up"],
        ] {
            let o = Command::new("ip").args(&args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        n
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `shadowgate check --config CFG --format json`, in namespace `ns` if given: (exit status,
/// findings, run time).
fn check(ns: Option<&Ns>, cfg: &Path, env: &[(&str, &str)]) -> (i32, Vec<Finding>, Duration) {
    let mut c = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &n.0, EXE]);
            c
        }
        None => Command::new(EXE),
    };
    c.args(["check", "--format", "json", "--config"]).arg(cfg);
    c.envs(env.iter().copied());
    let t = Instant::now();
    let o = c.output().unwrap();
    let took = t.elapsed();
    let f: Vec<Finding> = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), f, took)
}

/// The one finding of check `name` with `severity` whose message contains `text`; its fix must
/// say what to do.
fn find<'a>(f: &'a [Finding], name: &str, severity: &str, text: &str) -> &'a Finding {
    let hit = f
        .iter()
        .find(|x| x.check == name && x.severity == severity && x.message.contains(text))
        .unwrap_or_else(|| panic!("no {severity} {name} finding with {text:?} in {f:#?}"));
    assert!(severity == "ok" || !hit.fix.is_empty(), "no fix: {hit:?}");
    hit
}

/// Everything but `except` is ok.
fn only(f: &[Finding], except: &str) {
    let bad: Vec<_> = f
        .iter()
        .filter(|x| x.severity != "ok" && x.check != except)
        .collect();
    assert!(bad.is_empty(), "unexpected: {bad:#?}");
}

/// A clean setup's files in `dir`: the bundled policy, a store folder of mode 0700, a portal CA
/// made for the policy (unless `ca` says otherwise), enforce mode on lan0, DNS on 10.31.0.1
/// forwarding to 10.31.0.53, a syslog receiver on 10.31.0.1:5514, metrics on 127.0.0.1:9811.
/// `extra` is appended; `edit` changes the text before it is written.
struct Setup {
    dir: PathBuf,
    policy: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = tmpdir("check", tag);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let policy = copy_bundled(&dir.join("policy"));
        let scope = shadowgate::portal::ca::policy_scope(&policy).unwrap();
        let (cert, key) = shadowgate::portal::ca::make_ca_for(&scope, 365, "check test").unwrap();
        write_private(&dir.join("portal-ca.pem"), &cert);
        write_private(&dir.join("portal-ca.key"), &key);
        Setup { dir, policy }
    }

    fn config(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let text = format!(
            "[sensor]\nid = \"check-gw\"\n\n[policy]\ndir = \"{policy}\"\n\n[store]\npath = \"{dir}/events.db\"\n\n\
             [capture]\ninterfaces = [\"lan0\"]\n\n[enforce]\nmode = \"enforce\"\nlan = [\"10.31.0.0/24\"]\nbreak_glass_file = \"{dir}/glass\"\n\n\
             [dns]\nlisten = [\"10.31.0.1:53\"]\nupstreams = [\"10.31.0.53:53\"]\nclients = [\"10.31.0.0/24\"]\n\n\
             [portal]\naddress = \"10.31.0.1\"\nca_cert = \"{dir}/portal-ca.pem\"\nca_key = \"{dir}/portal-ca.key\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:9811\"\n\n\
             [[sink]]\nname = \"siem\"\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"10.31.0.1:5514\"\n",
            policy = self.policy.display(),
            dir = self.dir.display()
        );
        let p = self.dir.join("shadowgate.toml");
        std::fs::write(&p, edit(text)).unwrap();
        p
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_private(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The upstream DNS server and the syslog receiver of a clean setup, inside `ns` (they live
/// as long as the namespace: their sockets are in it).
fn services(ns: &Ns) -> TcpListener {
    in_ns(&ns.0, || {
        dns_server(
            "10.31.0.53:53".parse().unwrap(),
            vec![("example.org", "10.31.0.9".parse().unwrap())],
            Duration::ZERO,
        );
        TcpListener::bind("10.31.0.1:5514").unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn a_config_syntax_error_is_an_error_with_its_place() {
    let s = Setup::new("syntax");
    let cfg = s.config(|t| t.replace("[capture]", "[capture"));
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2, "{f:#?}");
    let x = find(&f, "config", "error", "shadowgate.toml:");
    assert!(x.fix.contains("shadowgate check --config"), "{x:?}");
    assert_eq!(f.len(), 1, "nothing else is checked: {f:#?}");
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let s = Setup::new("unknown");
    let cfg = s.config(|t| t.replace("[store]\n", "[store]\nretention_dayz = 3\n"));
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "config", "error", "retention_dayz");
    assert!(x.fix.contains("unknown keys"), "{x:?}");
}

#[test]
fn a_broken_policy_is_an_error_at_file_line_column() {
    let s = Setup::new("policy");
    let file = s.policy.join("policy.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[[rule]]\nid = \"broken\"\naction = \"explode\"\n"),
    )
    .unwrap();
    let cfg = s.config(|t| t);
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "policy", "error", "policy.toml:");
    assert!(x.message.contains("explode"), "{x:?}");
    assert!(x.fix.contains("shadowgate policy check"), "{x:?}");
}

#[test]
fn a_port_in_use_is_an_error_naming_its_holder() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("port");
    let _svc = services(&ns);
    let s = Setup::new("port");
    let cfg = s.config(|t| t);
    let _holder = in_ns(&ns.0, || TcpListener::bind("127.0.0.1:9811").unwrap())
        .join()
        .unwrap();
    let (code, f, _) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 2, "{f:#?}");
    let x = find(
        &f,
        "port",
        "error",
        "127.0.0.1:9811 ([metrics] listen): in use",
    );
    assert!(
        x.message.contains(&format!("pid {}", std::process::id())),
        "{x:?}"
    );
    assert!(x.fix.contains("ss -lnpt"), "{x:?}");
    only(&f, "port");
}

#[test]
fn a_missing_interface_is_an_error() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("noif");
    let _svc = services(&ns);
    let s = Setup::new("noif");
    let cfg = s.config(|t| t.replace("interfaces = [\"lan0\"]", "interfaces = [\"lan9\"]"));
    let (code, f, _) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "interface", "error", "\"lan9\" does not exist");
    assert!(x.fix.contains("ip -br link"), "{x:?}");
    only(&f, "interface");
}

#[test]
fn an_interface_down_is_a_warning() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("down");
    let _svc = services(&ns);
    let s = Setup::new("down");
    // A second interface, down: lan0 keeps the addresses the listeners need.
    let o = Command::new("ip")
        .args([
            "-n", &ns.0, "link", "add", "lan1", "type", "veth", "peer", "name", "lan1p",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let cfg = s.config(|t| {
        t.replace(
            "interfaces = [\"lan0\"]",
            "interfaces = [\"lan0\", \"lan1\"]",
        )
    });
    let (code, f, _) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 1, "{f:#?}");
    let x = find(&f, "interface", "warn", "lan1: down");
    assert!(x.fix.contains("ip link set lan1 up"), "{x:?}");
    find(&f, "interface", "ok", "lan0: present and up");
    only(&f, "interface");
}

#[test]
fn a_store_of_a_newer_schema_is_an_error_saying_how_to_restore() {
    let s = Setup::new("schema");
    let db = s.dir.join("events.db");
    drop(shadowgate::record::Store::open(&db).unwrap());
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(c);
    let cfg = s.config(|t| t);
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "store", "error", "schema version 99 is newer");
    assert!(x.fix.contains("restore"), "{x:?}");
}

#[test]
fn a_world_readable_store_is_an_error() {
    let s = Setup::new("readable");
    let db = s.dir.join("events.db");
    drop(shadowgate::record::Store::open(&db).unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = s.config(|t| t);
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "store", "error", "every user can read the events");
    assert!(x.fix.contains("chmod 0600"), "{x:?}");
}

#[test]
fn a_missing_portal_ca_is_an_error_with_the_command_that_makes_one() {
    let s = Setup::new("noca");
    std::fs::remove_file(s.dir.join("portal-ca.pem")).unwrap();
    std::fs::remove_file(s.dir.join("portal-ca.key")).unwrap();
    let cfg = s.config(|t| t);
    let (code, f, _) = check(None, &cfg, &[]);
    assert_eq!(code, 2);
    let x = find(&f, "portal-ca", "error", "portal-ca.key");
    assert!(x.fix.contains("shadowgate portal ca --policy"), "{x:?}");
}

#[test]
fn steered_names_the_ca_cannot_certify_are_a_warning_listing_them() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("narrow");
    let _svc = services(&ns);
    let s = Setup::new("narrow");
    // A CA for all but the policy's first permitted subtree.
    let scope = shadowgate::portal::ca::policy_scope(&s.policy).unwrap();
    assert!(scope.permitted.len() >= 2, "{:?}", scope.permitted);
    let left_out = scope.permitted[0].clone();
    let (cert, key) = shadowgate::portal::ca::make_ca(
        &scope.permitted[1..],
        &scope.excluded_subtrees(),
        365,
        "check test",
    )
    .unwrap();
    write_private(&s.dir.join("portal-ca.pem"), &cert);
    write_private(&s.dir.join("portal-ca.key"), &key);
    let cfg = s.config(|t| t);
    let (code, f, _) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 1, "{f:#?}");
    let x = find(&f, "portal-ca", "warn", "the CA cannot certify");
    assert!(x.message.contains(&left_out), "{left_out}: {x:?}");
    assert!(x.fix.contains("shadowgate portal ca"), "{x:?}");
    only(&f, "portal-ca");
}

#[test]
fn an_upstream_that_does_not_answer_is_a_warning() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("mute");
    let _svc = services(&ns);
    // 10.31.0.54:53 takes queries and never answers.
    let _mute = in_ns(&ns.0, || UdpSocket::bind("10.31.0.54:53").unwrap())
        .join()
        .unwrap();
    let s = Setup::new("mute");
    let cfg = s.config(|t| {
        t.replace(
            "upstreams = [\"10.31.0.53:53\"]",
            "upstreams = [\"10.31.0.53:53\", \"10.31.0.54:53\"]\nupstream_timeout_ms = 500",
        )
    });
    let (code, f, took) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 1, "{f:#?}");
    let x = find(
        &f,
        "upstream",
        "warn",
        "10.31.0.54:53: no answer within 500 ms",
    );
    assert!(x.fix.contains("other upstreams"), "{x:?}");
    find(&f, "upstream", "ok", "10.31.0.53:53: answers");
    only(&f, "upstream");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn an_unreachable_sink_is_a_warning() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("sink");
    let _svc = services(&ns);
    let s = Setup::new("sink");
    let cfg = s.config(|t| {
        t + "\n[[sink]]\nname = \"relp\"\ntype = \"syslog\"\ntransport = \"relp\"\naddress = \"10.31.0.1:5599\"\n"
    });
    let (code, f, _) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 1, "{f:#?}");
    let x = find(
        &f,
        "sink",
        "warn",
        "relp: RELP receiver: cannot connect to 10.31.0.1:5599",
    );
    assert!(x.fix.contains("keeps the events in the store"), "{x:?}");
    find(
        &f,
        "sink",
        "ok",
        "siem: syslog receiver 10.31.0.1:5514 accepts",
    );
    only(&f, "sink");
}

#[test]
fn a_clean_setup_exits_0_within_seconds_and_forced_plain_deletes_warn() {
    need_root!(crate::common::netns::unavailable());
    let ns = Ns::new("clean");
    let _svc = services(&ns);
    let s = Setup::new("clean");
    let cfg = s.config(|t| t);
    let (code, f, took) = check(Some(&ns), &cfg, &[]);
    assert_eq!(code, 0, "{f:#?}");
    only(&f, "");
    for name in [
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
    ] {
        assert!(
            f.iter().any(|x| x.check == name),
            "no {name} finding: {f:#?}"
        );
    }
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("clean check took {} ms", took.as_millis());
    // Linux < 6.3 (Debian 12's 6.1), as the daemon's test switch forces it.
    let (code, f, _) = check(Some(&ns), &cfg, &[("SHADOWGATE_NFT_PLAIN_DELETES", "1")]);
    assert_eq!(code, 1, "{f:#?}");
    let x = find(&f, "element-destroy", "warn", "one at a time");
    assert!(x.fix.contains("6.3"), "{x:?}");
    // The table output and --fail-on error (the unit's ExecStartPre=): warnings exit 0.
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            EXE,
            "check",
            "--fail-on",
            "error",
            "--quiet",
            "--config",
        ])
        .arg(&cfg)
        .env("SHADOWGATE_NFT_PLAIN_DELETES", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warn ") && out.contains("element-destroy") && out.contains("fix: "),
        "{out}"
    );
    assert!(
        !out.contains("ok     config"),
        "--quiet leaves out what is ok: {out}"
    );
    assert!(out.contains("1 warning, 0 errors"), "{out}");
}

/// The unit runs the check before the daemon, without letting it block the start.
#[test]
fn the_unit_runs_the_check_first() {
    let unit =
        std::fs::read_to_string(crate::common::files::root().join("deploy/shadowgate.service"))
            .unwrap();
    let pre: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStartPre="))
        .collect();
    assert_eq!(
        pre,
        ["-/usr/local/bin/shadowgate check --config /etc/shadowgate/shadowgate.toml --fail-on error --quiet"]
    );
}

/// `policy check` outside a source tree takes the directory from `--config`, and says which.
#[test]
fn policy_check_takes_the_directory_from_a_config() {
    let s = Setup::new("polcfg");
    let cfg = s.config(|t| t);
    let o = Command::new(EXE)
        .args(["policy", "check", "--config"])
        .arg(&cfg)
        .current_dir(&s.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("policy directory {}", s.policy.display())),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("test is successful"));
    // The bundled policy through --dir still works as before.
    let o = Command::new(EXE)
        .args(["policy", "explain", "claude.ai", "--dir"])
        .arg(policies())
        .output()
        .unwrap();
    assert!(o.status.success());
}
