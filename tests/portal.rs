//! The steering portal in a real browser: a namespace testbed (gateway holding the portal address,
//! two client namespaces), the portal (examples/portal_serve) and Debian's chromium via playwright.
//!
//! Needs root, `ip`, /usr/bin/chromium, node, certutil (libnss3-tools) and `npm ci` run in
//! tests/browser (CI does all of that); skips with the reason when one is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod portal_bed;
use portal_bed::{bin, have, root, sh, suffix, write_policy};

const GW1: &str = "10.77.1.1";
const C1: &str = "10.77.1.10";
const GW2: &str = "10.77.2.1";
const C2: &str = "10.77.2.10";
const GRANT_SECONDS: u64 = 6;
const JUSTIFICATION: &str = "Drafting a staff newsletter about the flu clinic";

/// Namespaces, the portal process and the temp directory; all removed on drop (even on failure).
struct Bed {
    ns: Vec<String>,
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals only the portal process this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        if std::env::var_os("SG_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The example binary built beside this test (`cargo test --all-targets` builds examples).
fn example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe
        .parent()?
        .parent()?
        .join("examples")
        .join("portal_serve");
    p.exists().then_some(p)
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for t in ["ip", "node", "certutil"] {
        if !have(t) {
            return Some(format!("{t} is not installed"));
        }
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed (apt-get install chromium)".into());
    }
    if !root()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Some("run `npm ci` in tests/browser (playwright-core, axe-core)".into());
    }
    if example().is_none() {
        return Some("examples/portal_serve is not built (cargo test --all-targets, or cargo build --example portal_serve)".into());
    }
    None
}

fn testbed(dir: PathBuf) -> Bed {
    let s = suffix();
    let (g, c1, c2) = (
        format!("sgpo-g-{s}"),
        format!("sgpo-c1-{s}"),
        format!("sgpo-c2-{s}"),
    );
    let mut bed = Bed {
        ns: Vec::new(),
        child: None,
        dir,
    };
    for n in [&g, &c1, &c2] {
        sh(&["ip", "netns", "add", n]);
        bed.ns.push(n.clone());
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    for (i, c, gw, cip) in [(1, &c1, GW1, C1), (2, &c2, GW2, C2)] {
        let (a, b) = (format!("sgpo{i}g{s}"), format!("sgpo{i}c{s}"));
        sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        sh(&["ip", "link", "set", &a, "netns", &g]);
        sh(&["ip", "link", "set", &b, "netns", c]);
        sh(&[
            "ip",
            "-n",
            &g,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            &a,
        ]);
        sh(&[
            "ip",
            "-n",
            c,
            "addr",
            "add",
            &format!("{cip}/24"),
            "dev",
            &b,
        ]);
        sh(&["ip", "-n", &g, "link", "set", &a, "up"]);
        sh(&["ip", "-n", c, "link", "set", &b, "up"]);
        sh(&["ip", "-n", c, "route", "add", "default", "via", gw]);
    }
    bed
}

/// Run one browser phase in namespace `ns`; returns its JSON report.
fn browser(ns: &str, phase: &str, home: &Path, dir: &Path, art: &Path) -> serde_json::Value {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "node", "portal.mjs"])
        .current_dir(root().join("tests/browser"))
        .env("SG_PHASE", phase)
        .env("SG_PORTAL_IP", GW1)
        .env("SG_ARTIFACTS", art)
        .env("SG_BAD_LEAF_DIR", dir)
        .env("SG_JUSTIFICATION", JUSTIFICATION)
        .env("HOME", home)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "browser phase {phase} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("phase {phase}: {e}: {stdout}"))
}

fn events(store: &Path) -> Vec<serde_json::Value> {
    let o = Command::new(bin())
        .args(["events", "--store"])
        .arg(store)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of_kind<'a>(ev: &'a [serde_json::Value], k: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["kind"] == k).collect()
}

#[test]
fn portal_in_a_real_browser() {
    if let Some(r) = skip_reason() {
        eprintln!("skipping portal_in_a_real_browser: {r}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sgportal-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bed = testbed(dir.clone());
    let g = bed.ns[0].clone();
    let (c1, c2) = (bed.ns[1].clone(), bed.ns[2].clone());

    // Policy, portal CA (through the CLI), and a leaf signed for a name outside its constraints.
    let policy = dir.join("policy");
    write_policy(&policy);
    let cadir = dir.join("ca");
    let o = Command::new(bin())
        .args([
            "portal",
            "ca",
            "--days",
            "2",
            "--clinic",
            "Elm Street Clinic",
            "--policy",
        ])
        .arg(&policy)
        .arg("--out")
        .arg(&cadir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cadir.join("portal-ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "CA key is private");
    let ex = example().unwrap();
    for (sub, name) in [
        ("outside", "outside.example"),
        ("inside", "control.claude.ai"),
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let o = Command::new(&ex)
            .arg("mint-unchecked")
            .arg(cadir.join("portal-ca.pem"))
            .arg(cadir.join("portal-ca.key"))
            .arg(name)
            .arg(dir.join(sub))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // The browser's NSS database trusts the test portal CA (HOME is the temp dir).
    let home = dir.join("home");
    let nss = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    sh(&["certutil", "-d", &db, "-N", "--empty-password"]);
    sh(&[
        "certutil",
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "shadowgate-test-portal",
        "-i",
        cadir.join("portal-ca.pem").to_str().unwrap(),
    ]);

    // The portal, in the gateway namespace.
    let store = dir.join("events.db");
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[sensor]
id = "portal-test"

[policy]
dir = "{policy}"

[store]
path = "{store}"

[portal]
address = "{GW1}"
http = "{GW1}:80"
https = "{GW1}:443"
ca_cert = "{cert}"
ca_key = "{key}"
clinic_name = "Elm Street Clinic"
logo_text = "Elm Street Clinic · IT"
contact = "the privacy officer (privacy@elm.example, ext. 210)"
grant_seconds = {GRANT_SECONDS}
rate_per_client = 600
"#,
            policy = policy.display(),
            store = store.display(),
            cert = cadir.join("portal-ca.pem").display(),
            key = cadir.join("portal-ca.key").display(),
        ),
    )
    .unwrap();
    // (When `shadowgate run` serves the portal, only this command line changes.)
    let child = Command::new("ip")
        .args(["netns", "exec", &g])
        .arg(&ex)
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(dir.join("portal.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("portal.log")).unwrap())
        .spawn()
        .unwrap();
    bed.child = Some(child);
    // Ready when both ports accept a connection from client 1's namespace.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = [80, 443].iter().all(|p| {
            Command::new("ip")
                .args(["netns", "exec", &c1, "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{GW1}/{p}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "portal did not start: {}",
            std::fs::read_to_string(dir.join("portal.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = std::fs::read_to_string(dir.join("portal.out")).unwrap_or_default();
    assert!(out.contains("healthy=true"), "{out}");

    let art = root().join("target/test-artifacts/portal");
    std::fs::create_dir_all(&art).unwrap();

    // Client 1: steer, HTTPS, constraints, axe, coach flow, grant.
    let t_ack = Instant::now();
    let r1 = browser(&c1, "client1", &home, &dir, &art);
    eprintln!("client1: {r1}");
    assert_eq!(r1["ok"], true);
    // Client 2 (another address) is still coached and steered.
    let r2 = browser(&c2, "client2", &home, &dir, &art);
    assert_eq!(r2["ok"], true);

    // The acknowledgement is on record with its justification, for client 1's address only.
    let ev = events(&store);
    let acks = of_kind(&ev, "coach_ack");
    assert_eq!(acks.len(), 1, "one acknowledgement: {acks:?}");
    let detail: serde_json::Value =
        serde_json::from_str(acks[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["justification"], JUSTIFICATION);
    assert_eq!(acks[0]["client_ip"], C1);
    assert_eq!(acks[0]["service"], "chatgpt");
    assert_eq!(acks[0]["action"], "coach");
    // Page views: one per navigation, none for favicons or the fetches the test made.
    let views = of_kind(&ev, "portal_view");
    let navs = r1["navigations"].as_u64().unwrap() + r2["navigations"].as_u64().unwrap();
    // Neutral pages are not views (http://www.example.org/ twice: directly and as the cross-site
    // page); the form post is not one either, but the page its 303 leads to is.
    let neutral_navs = 2;
    assert_eq!(
        views.len() as u64,
        navs - neutral_navs,
        "views: {:?}",
        views
            .iter()
            .map(|v| (&v["client_ip"], &v["name"], &v["detail"]))
            .collect::<Vec<_>>()
    );
    assert!(views
        .iter()
        .any(|v| v["client_ip"] == C2 && v["name"] == "chatgpt.com"));

    // The grant expires by itself: event, and client 1 is coached again.
    let wait = Duration::from_secs(GRANT_SECONDS + 2).saturating_sub(t_ack.elapsed());
    std::thread::sleep(wait);
    let deadline = Instant::now() + Duration::from_secs(10);
    let expired = loop {
        let ev = events(&store);
        let e: Vec<serde_json::Value> =
            of_kind(&ev, "grant_expired").into_iter().cloned().collect();
        if !e.is_empty() || Instant::now() > deadline {
            break e;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(expired.len(), 1, "one grant_expired event");
    assert_eq!(expired[0]["client_ip"], C1);
    assert_eq!(expired[0]["service"], "chatgpt");
    let r3 = browser(&c1, "expired", &home, &dir, &art);
    assert_eq!(r3["ok"], true);

    // Clean stop; the portal's metrics as it printed them.
    let mut child = bed.child.take().unwrap();
    drop(child.stdin.take());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.try_wait().unwrap();
    if status.is_none() {
        let _ = child.kill();
    }
    let metrics = std::fs::read_to_string(dir.join("portal.log")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "portal stops cleanly: {metrics}"
    );
    eprintln!("{metrics}");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        metric("shadowgate_portal_certs_minted_total") >= 2.0,
        "claude.ai and chatgpt.com leaves"
    );
    assert_eq!(metric("shadowgate_portal_grants_total"), 1.0);
    assert_eq!(metric("shadowgate_portal_grants_expired_total"), 1.0);
    assert!(
        metric("shadowgate_portal_tls_refused_total") >= 1.0,
        "www.example.org got no certificate"
    );
    assert!(
        metric("shadowgate_portal_requests_total{kind=\"coach_refused\"}") >= 2.0,
        "cross-site post and replay refused"
    );
    for f in [
        "steer-desktop.png",
        "steer-phone.png",
        "coach-desktop.png",
        "coach-phone.png",
        "granted-desktop.png",
    ] {
        assert!(
            art.join(f)
                .metadata()
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{f} saved"
        );
    }
}

/// `shadowgate portal ca` and `portal constraints` (no root needed).
#[test]
fn portal_ca_cli() {
    let dir = std::env::temp_dir().join(format!("sgportal-cli-{}", suffix()));
    let out = dir.join("ca");
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .output()
            .expect("shadowgate runs")
    };
    let pol = root().join("policies");
    let o = run(&[
        "portal",
        "ca",
        "--policy",
        pol.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--days",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let key = out.join("portal-ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An existing CA is not replaced by accident.
    let o = run(&[
        "portal",
        "ca",
        "--policy",
        pol.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    // The constraints list the catalogue's subtrees and nothing else.
    let o = run(&[
        "portal",
        "constraints",
        out.join("portal-ca.pem").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let names = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(names.lines().any(|l| l == "claude.ai") && names.lines().any(|l| l == "chatgpt.com"));
    assert!(
        !names.lines().any(|l| l == "ai.clinic.example"),
        "approved route left out: {names}"
    );
    // The portal refuses a key others can read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = shadowgate::act::portal::ca::PortalCa::load(
        &out.join("portal-ca.pem"),
        &key,
        Duration::from_secs(3600),
        8,
    )
    .unwrap_err();
    assert!(e.contains("chmod 600"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
