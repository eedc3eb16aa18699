//! The steering portal in a real browser against the real daemon (`shadowgate run`) on the
//! namespace testbed: DNS mode, enforcement, portal; chromium (playwright) in the client namespace.
//!
//! Needs root, `ip`, /usr/bin/chromium, node, certutil (libnss3-tools) and `npm ci` run in
//! tests/browser (CI does all of that); skips with the reason when one is missing.

use crate::common;
use crate::common::cli::{bin, run};
use crate::common::daemon::{dns_from, http_get, metric, tls_from, wait_healthy, Daemon, METRICS};
use crate::common::events::{events, of_kind};
use crate::common::files::{root, tmpdir};
use crate::common::netns::{
    suffix, Testbed, CLIENT, CLIENT2, GW_LAN, SERVER, SERVER2, UPSTREAM_DNS,
};
use crate::common::policy::{copy_bundled, with_rules, PORTAL_RULES};
use crate::common::servers::{dns_server, TlsServer};
use crate::common::tools::{have, must};
use crate::common::wait::until;

use shadowgate::portal::ca::covers;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Long enough for the checks under the grant on a loaded 2-core machine (two browser starts).
const GRANT_SECONDS: u64 = 60;
const JUSTIFICATION: &str = "Drafting a staff newsletter about the flu clinic";

fn skip_reason() -> Option<String> {
    if !common::netns::can_run() {
        return Some("needs root and `ip netns` (network namespaces)".into());
    }
    for t in ["node", "certutil"] {
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
    None
}

/// `/etc/netns/<ns>/resolv.conf` (bind-mounted over /etc/resolv.conf by `ip netns exec`),
/// removed on drop.
struct Resolv(PathBuf);

impl Resolv {
    fn new(ns: &str, server: Ipv4Addr) -> Resolv {
        let d = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("resolv.conf"),
            format!("nameserver {server}\noptions timeout:5 attempts:3\n"),
        )
        .unwrap();
        Resolv(d)
    }
}

impl Drop for Resolv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The client namespace's source address (all its routes): which client the browser is.
fn use_source(tb: &Testbed, src: Ipv4Addr) {
    let s = src.to_string();
    for r in [
        vec![
            "10.20.1.0/24",
            "dev",
            "eth0",
            "proto",
            "kernel",
            "scope",
            "link",
            "src",
            &s,
        ],
        vec!["default", "via", "10.20.1.1", "src", &s],
    ] {
        let mut a = vec!["ip", "-n", &tb.client, "route", "replace"];
        a.extend(r);
        must(&a);
    }
}

/// Run one browser phase in the client namespace; returns its JSON report.
fn browser(tb: &Testbed, phase: &str, home: &Path, dir: &Path, art: &Path) -> serde_json::Value {
    let t = Instant::now();
    let o = Command::new("ip")
        .args(["netns", "exec", &tb.client, "node", "portal.mjs"])
        .current_dir(root().join("tests/browser"))
        .env("SG_PHASE", phase)
        .env("SG_PORTAL_IP", GW_LAN.to_string())
        .env("SG_SERVER_IP", SERVER.to_string())
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
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("phase {phase}: {e}: {stdout}"));
    eprintln!("browser phase {phase}: {:?}: {v}", t.elapsed());
    assert_eq!(v["ok"], true, "{v}");
    v
}

/// How often the checks below poll the daemon.
const POLL: Duration = Duration::from_millis(200);

/// A leaf signed by the portal CA for any name, even outside its constraints (the portal itself
/// never does that), as leaf.pem (with the CA) and leaf.key in `out`.
fn mint_unchecked(cadir: &Path, name: &str, out: &Path) {
    let ca = shadowgate::portal::ca::PortalCa::load(
        &cadir.join("portal-ca.pem"),
        &cadir.join("portal-ca.key"),
        Duration::from_secs(3600),
        1,
    )
    .unwrap();
    let (der, key) = ca.mint_der(name).unwrap();
    let pem = |label: &str, b: &[u8]| {
        let b64 = base64(b);
        let mut s = format!("-----BEGIN {label}-----\n");
        for c in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(c).unwrap());
            s.push('\n');
        }
        s + &format!("-----END {label}-----\n")
    };
    std::fs::create_dir_all(out).unwrap();
    let chain = pem("CERTIFICATE", &der) + &pem("CERTIFICATE", ca.ca_der());
    std::fs::write(out.join("leaf.pem"), chain).unwrap();
    std::fs::write(out.join("leaf.key"), pem("PRIVATE KEY", &key)).unwrap();
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn portal_in_a_real_browser() {
    if let Some(r) = skip_reason() {
        eprintln!("skipping portal_in_a_real_browser: {r}");
        return;
    }
    let tb = Testbed::new(&format!("sgpo-{}", suffix()));
    let dir = tmpdir("daemon", "portal");

    // The internet: an upstream DNS zone, and one TLS server (20 ms away) for both services.
    let (service, _other) = tb
        .in_ns(&tb.inet, || {
            dns_server(
                SocketAddr::new(UPSTREAM_DNS.into(), 53),
                vec![
                    ("claude.ai", SERVER),
                    ("chatgpt.com", SERVER),
                    ("www.example.org", SERVER2),
                ],
                Duration::from_millis(20),
            );
            let d = Duration::from_millis(20);
            (
                TlsServer::start(
                    SocketAddr::new(SERVER.into(), 443),
                    &["claude.ai", "chatgpt.com"],
                    d,
                ),
                TlsServer::start(
                    SocketAddr::new(SERVER2.into(), 443),
                    &["www.example.org"],
                    d,
                ),
            )
        })
        .join()
        .unwrap();

    // Policy (chatgpt coached, other consumer AI steered), portal CA (through the CLI), and
    // leaves the CA signed for a name outside its constraints and (control) one inside.
    let policy = dir.join("policy");
    with_rules(&policy, PORTAL_RULES);
    let cadir = dir.join("ca");
    let o = bin()
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
    mint_unchecked(&cadir, "outside.example", &dir.join("outside"));
    mint_unchecked(&cadir, "control.claude.ai", &dir.join("inside"));

    // The browser's NSS database trusts the test portal CA (HOME is the temp dir).
    let home = dir.join("home");
    let nss = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    must(&["certutil", "-d", &db, "-N", "--empty-password"]);
    must(&[
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

    // The daemon in the gateway namespace: capture on the LAN side, enforcement, DNS mode and
    // the portal (the clients' connections to the portal itself are shadowgate's own: neither
    // decided nor stopped).
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
batch = 1

[capture]
interfaces = ["lan0"]
stats_interval_s = 1

[metrics]
listen = "{METRICS}"

[enforce]
mode = "enforce"
break_glass_file = "{glass}"

[dns]
listen = ["{GW_LAN}:53"]
upstreams = ["{UPSTREAM_DNS}:53"]
clients = ["10.20.1.0/24"]
rate_per_client = 200

[portal]
address = "{GW_LAN}"
http = "{GW_LAN}:80"
https = "{GW_LAN}:443"
ca_cert = "{cert}"
ca_key = "{key}"
clinic_name = "Elm Street Clinic"
logo_text = "Elm Street Clinic · IT"
contact = "the privacy officer (privacy@elm.example, ext. 210)"
grant_seconds = {GRANT_SECONDS}
rate_per_client = 600
"#,
            policy = policy.display(),
            store = dir.join("events.db").display(),
            glass = dir.join("glass").display(),
            cert = cadir.join("portal-ca.pem").display(),
            key = cadir.join("portal-ca.key").display(),
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    let (_, h) = http_get(&tb, METRICS.parse().unwrap(), "/healthz").unwrap();
    assert!(
        h.contains("\"portal\":\"ok\"") || h.contains("\"portal\": \"ok\""),
        "{h}"
    );

    // Before anything: both clients are sent to the portal by DNS and stopped on the wire.
    for c in [CLIENT, CLIENT2] {
        assert_eq!(
            dns_from(&tb, c, GW_LAN, "chatgpt.com"),
            Ok(vec![GW_LAN]),
            "{}",
            d.log()
        );
        assert_eq!(dns_from(&tb, c, GW_LAN, "claude.ai"), Ok(vec![GW_LAN]));
    }
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "www.example.org"),
        Ok(vec![SERVER2])
    );
    assert!(tls_from(&tb, CLIENT, SERVER, "chatgpt.com").is_err());
    // The portal mints no certificate for a name nobody steers.
    let refused = tls_from(&tb, CLIENT, GW_LAN, "www.example.org");
    assert!(refused.is_err(), "{refused:?}");

    let art = root().join("target/test-artifacts/portal");
    std::fs::create_dir_all(&art).unwrap();
    // Chromium in the client namespace asks the daemon for every name.
    let _resolv = Resolv::new(&tb.client, GW_LAN);

    // Client 1 (10.20.1.2): steer over HTTP and HTTPS, constraints, axe, coach flow, grant.
    use_source(&tb, CLIENT);
    let t_ack = Instant::now();
    let r1 = browser(&tb, "client1", &home, &dir, &art);

    // The same client now REALLY reaches the service: a fresh lookup gets the real address, a TLS
    // connection from it gets the server's answer; then a new browser process loads the page.
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "chatgpt.com"),
        Ok(vec![SERVER]),
        "{}",
        d.log()
    );
    let got = tls_from(&tb, CLIENT, SERVER, "chatgpt.com");
    assert!(
        got.as_deref().is_ok_and(|s| s.contains("ok")),
        "{got:?}\n{}",
        d.log()
    );
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "claude.ai"),
        Ok(vec![GW_LAN]),
        "grant is per service"
    );
    let reach = browser(&tb, "reach", &home, &dir, &art);
    // A second client (10.20.1.3) is still steered: DNS, the wire and the browser.
    assert_eq!(
        dns_from(&tb, CLIENT2, GW_LAN, "chatgpt.com"),
        Ok(vec![GW_LAN])
    );
    assert!(tls_from(&tb, CLIENT2, SERVER, "chatgpt.com").is_err());
    use_source(&tb, CLIENT2);
    let r2 = browser(&tb, "client2", &home, &dir, &art);
    use_source(&tb, CLIENT);
    assert!(
        t_ack.elapsed() < Duration::from_secs(GRANT_SECONDS),
        "the checks under the grant took {:?}, longer than the grant: raise GRANT_SECONDS",
        t_ack.elapsed()
    );
    // The real server got the application bytes of the granted client's connections.
    assert!(service
        .wait(2)
        .iter()
        .any(|c| c.handshake_done && c.app_bytes > 0));

    // The acknowledgement is on record with its justification, for client 1's address only.
    let ev = events(&dir);
    let acks = of_kind(&ev, "coach_ack");
    assert_eq!(acks.len(), 1, "one acknowledgement: {acks:#?}");
    let detail: serde_json::Value =
        serde_json::from_str(acks[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["justification"], JUSTIFICATION);
    assert_eq!(acks[0].client_ip, CLIENT.to_string());
    assert_eq!(acks[0].service.as_deref(), Some("chatgpt"));
    assert_eq!(acks[0].action, "coach");
    // The granted TLS connection is on record as granted, not stopped.
    assert!(
        ev.iter().any(|e| e.kind == "tls_client_hello"
            && e.name == "chatgpt.com"
            && e.client_ip == CLIENT.to_string()
            && e.detail.as_deref().unwrap_or("").contains("\"granted\"")),
        "{:#?}",
        of_kind(&ev, "tls_client_hello")
    );

    // The grant expires by itself: event, DNS answers the portal again, the wire stops the
    // service again, and a browser on client 1 is coached again.
    let expired = until(Duration::from_secs(GRANT_SECONDS + 30), POLL, || {
        !of_kind(&events(&dir), "grant_expired").is_empty()
    });
    assert!(expired, "no grant_expired event\n{}", d.log());
    let ev = events(&dir);
    let exp = of_kind(&ev, "grant_expired");
    assert_eq!(exp.len(), 1, "{exp:#?}");
    assert_eq!(exp[0].client_ip, CLIENT.to_string());
    assert_eq!(exp[0].service.as_deref(), Some("chatgpt"));
    assert!(
        until(Duration::from_secs(10), POLL, || dns_from(
            &tb,
            CLIENT,
            GW_LAN,
            "chatgpt.com"
        ) == Ok(vec![GW_LAN])),
        "after expiry DNS answers the portal again: {:?}",
        dns_from(&tb, CLIENT, GW_LAN, "chatgpt.com")
    );
    assert!(
        until(Duration::from_secs(10), POLL, || tls_from(
            &tb,
            CLIENT,
            SERVER,
            "chatgpt.com"
        )
        .is_err()),
        "after expiry the wire stops the service again"
    );
    let r3 = browser(&tb, "expired", &home, &dir, &art);

    // Page views: one per portal navigation (the form post is not one, the page its 303 leads to
    // is), none for favicons or the fetches the test made.
    let ev = events(&dir);
    let views = of_kind(&ev, "portal_view");
    let navs: u64 = [&r1, &reach, &r2, &r3]
        .iter()
        .map(|r| r["navigations"].as_u64().unwrap())
        .sum();
    // A load Chromium aborted with ERR_NETWORK_CHANGED and tried again may have been served once
    // already; with no such retry the count is exact.
    let retried: u64 = [&r1, &reach, &r2, &r3]
        .iter()
        .map(|r| r["network_changed_retries"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        (navs..=navs + retried).contains(&(views.len() as u64)),
        "{} views for {navs} navigations ({retried} retried); views: {:?}",
        views.len(),
        views
            .iter()
            .map(|v| (&v.client_ip, &v.name, &v.detail))
            .collect::<Vec<_>>()
    );
    assert!(views
        .iter()
        .any(|v| v.client_ip == CLIENT2.to_string() && v.name == "chatgpt.com"));

    // The daemon's metrics.
    let (_, m) = http_get(&tb, METRICS.parse().unwrap(), "/metrics").unwrap();
    assert!(
        metric(&m, "shadowgate_portal_certs_minted_total", "") >= 2.0,
        "claude.ai and chatgpt.com leaves\n{m}"
    );
    assert_eq!(metric(&m, "shadowgate_portal_grants_total", ""), 1.0, "{m}");
    assert_eq!(
        metric(&m, "shadowgate_portal_grants_expired_total", ""),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "shadowgate_portal_tls_refused_total", "") >= 1.0,
        "www.example.org got no certificate\n{m}"
    );
    assert!(
        metric(
            &m,
            "shadowgate_portal_requests_total",
            "kind=\"coach_refused\""
        ) >= 2.0,
        "cross-site post and replay refused\n{m}"
    );
    for f in [
        "steer-desktop.png",
        "steer-phone.png",
        "coach-desktop.png",
        "coach-phone.png",
        "granted-desktop.png",
        "expired-desktop.png",
    ] {
        assert!(
            art.join(f)
                .metadata()
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{f} saved"
        );
    }

    // Clean stop.
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        d.log()
    );
    if std::env::var_os("SG_KEEP_TMP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `shadowgate portal ca` and `portal constraints` (no root needed).
#[test]
fn portal_ca_cli() {
    let dir = std::env::temp_dir().join(format!("sgportal-cli-{}", suffix()));
    let out = dir.join("ca");
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
    // The constraints list what the bundled policy steers or coaches: consumer AI, never an
    // enterprise API, the approved route or a DNS resolver (`except` lines: subtrees excluded
    // inside a permitted one).
    let o = run(&[
        "portal",
        "constraints",
        out.join("portal-ca.pem").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let names = String::from_utf8_lossy(&o.stdout).to_string();
    let (permitted, excluded): (Vec<&str>, Vec<&str>) =
        names.lines().partition(|l| !l.starts_with("except "));
    let excluded: Vec<&str> = excluded.iter().map(|l| &l["except ".len()..]).collect();
    let certifiable =
        |n: &str| permitted.iter().any(|p| covers(p, n)) && !excluded.iter().any(|x| covers(x, n));
    assert!(
        certifiable("claude.ai") && certifiable("chatgpt.com"),
        "{names}"
    );
    let policy = shadowgate::policy::Policy::load(&pol).unwrap();
    let mut never = vec![
        "bedrock-runtime.us-east-1.amazonaws.com".to_string(),
        "api.anthropic.com".to_string(),
        "api.openai.com".to_string(),
    ];
    for s in policy.services() {
        use shadowgate::policy::Category::*;
        if matches!(s.category, ApprovedRoute | EnterpriseAiApi | DnsResolver) {
            never.extend(
                s.patterns
                    .iter()
                    .map(|p| p.trim_start_matches("*.").to_string()),
            );
        }
    }
    assert!(never.len() > 100, "templates expanded: {}", never.len());
    for n in &never {
        assert!(!certifiable(n), "{n} is certifiable: {names}");
        assert!(!permitted.contains(&n.as_str()), "{n} listed: {names}");
    }
    assert!(excluded.contains(&"api.anthropic.com"), "{names}");
    // `portal ca` says who must own the key.
    let o = run(&[
        "portal",
        "ca",
        "--policy",
        pol.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        said.contains("chown shadowgate:shadowgate") && said.contains("chmod 0600"),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("warning: portal CA scope:")
                && l.contains(" claude.ai,")
                && l.contains("(service claude)")),
        "{said}"
    );
    // `policy check` warns that claude.ai is both steered and allowed, naming the rules.
    let o = run(&["policy", "check", pol.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.lines().any(|l| l.contains("warning: portal CA scope:")
            && l.contains(" claude.ai,")
            && l.contains("SG-110-claude-enterprise"))
            && err.contains("SG-300-consumer-ai"),
        "{err}"
    );
    // The portal refuses a key others can read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = shadowgate::portal::ca::PortalCa::load(
        &out.join("portal-ca.pem"),
        &key,
        Duration::from_secs(3600),
        8,
    )
    .unwrap_err();
    assert!(
        e.contains("chmod 0600") && e.contains("chown shadowgate"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real daemon refuses a portal CA wider than the policy (one made with the old rule: every
/// catalogued subtree but the approved route's), naming what it reaches and the command that
/// makes a fitting CA; with the CA that command makes, it starts.
#[test]
fn daemon_refuses_a_wider_portal_ca() {
    if !common::netns::can_run() {
        eprintln!("skipping daemon_refuses_a_wider_portal_ca: needs root and `ip netns`");
        return;
    }
    use shadowgate::portal::ca;
    use std::os::unix::fs::PermissionsExt;
    let tb = Testbed::new(&format!("sgpw-{}", suffix()));
    let dir = tmpdir("daemon", "portal-wide");
    let policy = copy_bundled(&dir);
    let cadir = dir.join("ca");
    std::fs::create_dir_all(&cadir).unwrap();
    let p = shadowgate::policy::Policy::load(&policy).unwrap();
    let all: Vec<String> = p
        .services()
        .iter()
        .filter(|s| s.category != shadowgate::policy::Category::ApprovedRoute)
        .flat_map(|s| {
            s.patterns
                .iter()
                .map(|x| x.trim_start_matches("*.").to_string())
        })
        .collect();
    let old: Vec<String> = all
        .iter()
        .filter(|d| !all.iter().any(|o| o != *d && covers(o, d)))
        .cloned()
        .collect();
    assert!(old.iter().any(|d| d == "anthropic.com") && old.iter().any(|d| d == "dns.google"));
    let (cert, key) = ca::make_ca(&old, &[], 2, "Elm Street Clinic").unwrap();
    std::fs::write(cadir.join("portal-ca.pem"), cert).unwrap();
    std::fs::write(cadir.join("portal-ca.key"), key).unwrap();
    std::fs::set_permissions(
        cadir.join("portal-ca.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cfg = common::daemon::config(
        &dir,
        &policy,
        &format!(
            "[portal]\naddress = \"{GW_LAN}\"\nhttp = \"{GW_LAN}:80\"\nhttps = \"{GW_LAN}:443\"\nca_cert = \"{}\"\nca_key = \"{}\"\nclinic_name = \"Elm Street Clinic\"\n",
            cadir.join("portal-ca.pem").display(),
            cadir.join("portal-ca.key").display()
        ),
    );
    let mut d = Daemon::start(&tb, &cfg);
    let st = d
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the daemon runs with a wide CA; its log:\n{}", d.log()));
    assert!(!st.success());
    let fix = format!(
        "shadowgate portal ca --policy {} --out {} --clinic 'Elm Street Clinic' --force",
        policy.display(),
        cadir.display()
    );
    assert!(
        until(Duration::from_secs(5), POLL, || d.log().contains(&fix)),
        "{}",
        d.log()
    );
    let log = d.log();
    for n in [
        "bedrock-runtime.us-east-1.amazonaws.com",
        "api.anthropic.com",
        "api.openai.com",
        "dns.google",
        "enterprise_ai_api",
        "dns_resolver",
    ] {
        assert!(log.contains(n), "{n}: {log}");
    }
    drop(d);

    // The command in the message makes a CA the daemon accepts.
    let args: Vec<String> = vec![
        "portal".into(),
        "ca".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--out".into(),
        cadir.display().to_string(),
        "--clinic".into(),
        "Elm Street Clinic".into(),
        "--force".into(),
    ];
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);
    let (_, h) = http_get(&tb, METRICS.parse().unwrap(), "/healthz").unwrap();
    assert!(h.contains("portal"), "{h}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
