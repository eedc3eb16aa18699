//! The steering portal in a real browser: a namespace testbed (gateway holding the portal address,
//! two client namespaces), the portal (examples/portal_serve) and Debian's chromium via playwright.
//!
//! Needs root, `ip`, /usr/bin/chromium, node, certutil (libnss3-tools) and `npm ci` run in
//! tests/browser (CI does all of that); skips with the reason when one is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

fn suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:04x}", (t ^ std::process::id().rotate_left(7)) & 0xffff)
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

fn write_policy(dir: &Path) {
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    for e in std::fs::read_dir(root().join("policies/catalog")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, cat.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("policy.toml"),
        r#"
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
"#,
    )
    .unwrap();
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shadowgate")
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

// ---------------------------------------------------------------------------------------------
// The portal's HTTP and TLS rules without a browser: in-process, in a private network namespace
// of the test thread (loopback only; 127.0.0.1 and 127.0.0.2 are two clients).

mod inproc {
    use super::*;
    use shadowgate::act::config::PortalConf;
    use shadowgate::act::devices::Devices;
    use shadowgate::act::grants::Grants;
    use shadowgate::act::portal::{ca, serve, PortalCtx};
    use shadowgate::policy::reload::PolicyHandle;
    use shadowgate::record::{Query, Store};
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ONE: &str = "127.0.0.1";
    const TWO: &str = "127.0.0.2";

    async fn raw(src: &str, to: SocketAddr, req: String) -> (u16, String) {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
        let mut c = s.connect(to).await.unwrap();
        c.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    fn get(host: &str, path: &str, dest: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Dest: {dest}\r\nConnection: close\r\n\r\n")
    }

    fn post(host: &str, origin: Option<&str>, body: &str) -> String {
        let o = origin
            .map(|o| format!("Origin: {o}\r\nSec-Fetch-Site: same-origin\r\n"))
            .unwrap_or_default();
        format!(
            "POST /.shadowgate/continue HTTP/1.1\r\nHost: {host}\r\n{o}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn token(page: &str) -> String {
        let i = page.find("name=\"token\" value=\"").expect("form token") + 20;
        page[i..].split('"').next().unwrap().to_string()
    }

    async fn handshake(
        src: &str,
        to: SocketAddr,
        sni: &str,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
        let tcp = s.connect(to).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn portal_rules_without_a_browser() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !have("ip") {
            eprintln!("skipping portal_rules_without_a_browser: needs root and ip (a private network namespace)");
            return;
        }
        std::thread::spawn(run).join().unwrap();
    }

    fn run() {
        // SAFETY: moves only this thread into a new, empty network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        sh(&["ip", "link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(format!("sgportal-inproc-{}", suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy_dir = dir.join("policy");
        write_policy(&policy_dir);
        let (cert, key) =
            ca::make_ca(&ca::catalogue_domains(&policy_dir).unwrap(), 1, "Test").unwrap();
        std::fs::write(dir.join("ca.pem"), &cert).unwrap();
        std::fs::write(dir.join("ca.key"), &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let conf: PortalConf = toml::from_str(&format!(
            "address = \"127.0.0.1\"\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nca_cert = \"{}\"\nca_key = \"{}\"\ngrant_seconds = 1\nrate_per_client = 40\n",
            dir.join("ca.pem").display(),
            dir.join("ca.key").display()
        ))
        .unwrap();
        let store_path = dir.join("events.db");
        let (tx, rec) =
            shadowgate::record::queue::start(Store::open(&store_path).unwrap(), 1024, 8, None);
        let grants = Arc::new(Grants::new());
        let registry = prometheus::Registry::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        let roots = Arc::new(roots);
        let one: IpAddr = ONE.parse().unwrap();
        let two: IpAddr = TWO.parse().unwrap();
        rt.block_on(async {
            let h = serve(
                conf,
                PortalCtx {
                    policy: PolicyHandle::load(&policy_dir).unwrap(),
                    grants: Arc::clone(&grants),
                    devices: Arc::new(Devices::new()),
                    events: Some(tx),
                    sensor: "inproc".into(),
                    registry: registry.clone(),
                },
            )
            .await
            .unwrap();
            assert!(h.healthy());
            let (http, https) = (h.http[0], h.https[0]);

            // A navigation is a view; a favicon and a fetch are not.
            let (s, page) = raw(ONE, http, get("chatgpt.com", "/", "document")).await;
            assert_eq!(s, 403);
            assert!(page.contains("I will not enter patient information"));
            let t1 = token(&page);
            assert_eq!(
                raw(ONE, http, get("chatgpt.com", "/favicon.ico", "image"))
                    .await
                    .0,
                404
            );
            assert_eq!(
                raw(ONE, http, get("chatgpt.com", "/api", "empty")).await.0,
                404
            );
            // Not steered: neutral.
            assert_eq!(
                raw(ONE, http, get("www.example.org", "/", "document"))
                    .await
                    .0,
                404
            );

            let good = |t: &str, j: &str| format!("token={t}&ack=yes&justification={j}");
            let origin = Some("http://chatgpt.com");
            // Client 2 cannot use client 1's token (it is bound to the address).
            assert_eq!(
                raw(TWO, http, post("chatgpt.com", origin, &good(&t1, "x")))
                    .await
                    .0,
                403
            );
            // Cross-site, and no Origin at all: refused.
            assert_eq!(
                raw(
                    ONE,
                    http,
                    post("chatgpt.com", Some("http://evil.example"), &good(&t1, "x"))
                )
                .await
                .0,
                403
            );
            assert_eq!(
                raw(ONE, http, post("chatgpt.com", None, &good(&t1, "x")))
                    .await
                    .0,
                403
            );
            // A token for another name: refused.
            assert_eq!(
                raw(
                    ONE,
                    http,
                    post("claude.ai", Some("http://claude.ai"), &good(&t1, "x"))
                )
                .await
                .0,
                403
            );
            assert!(grants.is_empty(), "nothing granted so far");
            // Too long a justification: the form again (the token is spent), no grant.
            let long = "a".repeat(201);
            let (s, page) = raw(ONE, http, post("chatgpt.com", origin, &good(&t1, &long))).await;
            assert_eq!(s, 422, "{page}");
            assert!(grants.is_empty());
            let t2 = token(&page);
            assert_eq!(
                raw(ONE, http, post("chatgpt.com", origin, &good(&t1, "x")))
                    .await
                    .0,
                403,
                "replay"
            );
            let (s, resp) = raw(
                ONE,
                http,
                post(
                    "chatgpt.com",
                    origin,
                    &good(&t2, "Poster+for+the+flu+clinic"),
                ),
            )
            .await;
            assert_eq!(s, 303, "{resp}");
            assert!(grants.active(one, "chatgpt") && !grants.active(two, "chatgpt"));
            let (s, page) = raw(ONE, http, get("chatgpt.com", "/", "document")).await;
            assert_eq!(s, 200);
            assert!(page.contains("Access granted"));
            assert_eq!(
                raw(TWO, http, get("chatgpt.com", "/", "document")).await.0,
                403,
                "client 2 still coached"
            );

            // TLS: leaves for steered/coached names only; none for others.
            handshake(ONE, https, "claude.ai", Arc::clone(&roots))
                .await
                .unwrap();
            handshake(TWO, https, "chatgpt.com", Arc::clone(&roots))
                .await
                .unwrap();
            assert!(handshake(ONE, https, "www.example.org", Arc::clone(&roots))
                .await
                .is_err());

            // The grant expires by itself.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert!(!grants.active(one, "chatgpt"));

            // Rate limit per client: 40 a minute, then 429; the other client is unaffected.
            let mut limited = false;
            for _ in 0..45 {
                if raw(ONE, http, get("claude.ai", "/", "document")).await.0 == 429 {
                    limited = true;
                    break;
                }
            }
            assert!(limited, "client 1 is limited");
            assert_eq!(
                raw(TWO, http, get("claude.ai", "/", "document")).await.0,
                403
            );
            h.shutdown().await;
        });
        rec.stop();
        let ev = Store::open(&store_path)
            .unwrap()
            .query(&Query::default())
            .unwrap();
        let kind = |k: &str| ev.iter().filter(|e| e.kind == k).collect::<Vec<_>>();
        let acks = kind("coach_ack");
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].client_ip, ONE);
        assert!(acks[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("Poster for the flu clinic"));
        let expired = kind("grant_expired");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].service.as_deref(), Some("chatgpt"));
        // Views: the document requests above that reached a steer/coach/granted page.
        let views = kind("portal_view");
        assert!(views
            .iter()
            .all(|v| v.name == "chatgpt.com" || v.name == "claude.ai"));
        assert!(views.iter().any(|v| v.client_ip == TWO));
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("shadowgate_portal_certs_minted_total 2"),
            "{text}"
        );
        assert!(
            text.contains("shadowgate_portal_requests_total{kind=\"subresource\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("shadowgate_portal_requests_total{kind=\"limited\"} 1"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
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
