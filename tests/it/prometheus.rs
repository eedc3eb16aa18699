//! The shipped monitoring (deploy/grafana/shadowgate.json, deploy/prometheus/) against a real
//! Prometheus scraping the real daemon on the namespace testbed: promtool accepts the rules and the
//! example configuration, every dashboard expression returns data, and alerts fire under their
//! faults (break-glass on, the daemon stopped).
//!
//! Needs root, `ip netns` and Debian's `prometheus` (it brings promtool); skips saying so otherwise.

use crate::common;
use crate::common::cli::bin;
use crate::common::daemon::{dns_from, tls_from, wait_healthy, Daemon, METRICS};
use crate::common::files::{root, tmpdir};
use crate::common::netns::{suffix, Testbed, CLIENT, GW_LAN, SERVER, SERVER2, UPSTREAM_DNS};
use crate::common::policy::{with_rules, PORTAL_RULES};
use crate::common::servers::{dns_server, socket2_connect, TlsServer};
use crate::common::tools::have;
use crate::common::wait::until;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prometheus's listener inside the gateway namespace.
const PROM: &str = "127.0.0.1:9391";

fn skip_reason() -> Option<String> {
    if !common::netns::can_run() {
        return Some("needs root and `ip netns` (network namespaces)".into());
    }
    for t in ["prometheus", "promtool"] {
        if !have(t) {
            return Some(format!("{t} is not installed (apt-get install prometheus)"));
        }
    }
    None
}

/// Prometheus in a namespace, killed and reaped on drop (also when the test fails).
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` from Prometheus (HTTP/1.0: a plain body, never chunked) in the gateway namespace:
/// the JSON answer, or None while it does not answer.
fn prom_get(tb: &Testbed, path: &str) -> Option<serde_json::Value> {
    let path = path.to_string();
    tb.in_ns(&tb.gw, move || {
        let mut s =
            TcpStream::connect_timeout(&PROM.parse().unwrap(), Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (_, body) = out.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    })
    .join()
    .unwrap()
}

/// The result of the instant query `expr` (an empty list while it has no data).
fn query(tb: &Testbed, expr: &str) -> Vec<serde_json::Value> {
    let v = prom_get(tb, &format!("/api/v1/query?query={}", encode(expr)));
    let Some(v) = v else { return Vec::new() };
    assert_ne!(v["status"], "error", "Prometheus refused `{expr}`: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The alerts Prometheus holds now: (name, state, severity).
fn alerts(tb: &Testbed) -> Vec<(String, String, String)> {
    let Some(v) = prom_get(tb, "/api/v1/alerts") else {
        return Vec::new();
    };
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    let s = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
                    (
                        s("alertname"),
                        a["state"].as_str().unwrap_or("").to_string(),
                        s("severity"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn firing(tb: &Testbed, name: &str) -> bool {
    alerts(tb)
        .iter()
        .any(|(n, s, _)| n == name && s == "firing")
}

/// Every panel's expressions in the dashboard, with Grafana's variables given values a query
/// can run with: (panel title, expression).
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap();
            let e = e
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m")
                .replace("$__interval", "15s")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(!e.contains('$'), "a variable the test does not know in {e}");
            out.push((p["title"].as_str().unwrap().to_string(), e));
        }
    }
    out
}

/// A plain HTTP request to the portal from `src` in the client namespace (Host `name`).
fn http_from(tb: &Testbed, src: std::net::Ipv4Addr, name: &str) -> Option<String> {
    let name = name.to_string();
    tb.in_ns(&tb.client, move || {
        let mut s = socket2_connect(src.into(), SocketAddr::new(GW_LAN.into(), 80)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET / HTTP/1.0\r\nHost: {name}\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .join()
    .unwrap()
}

fn promtool(args: &[&str], cwd: &Path) {
    let o = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn dashboard_and_alerts_against_a_real_prometheus() {
    if let Some(r) = skip_reason() {
        eprintln!("skipping dashboard_and_alerts_against_a_real_prometheus: {r}");
        return;
    }
    let t0 = Instant::now();
    let deploy = root().join("deploy/prometheus");
    // (a) promtool accepts the shipped rules and the example configuration (which loads them).
    promtool(&["check", "rules", "shadowgate-alerts.yml"], &deploy);
    promtool(&["check", "config", "prometheus.yml"], &deploy);

    let tb = Testbed::new(&format!("sgpm-{}", suffix()));
    let dir = tmpdir("prometheus", "bed");

    // The internet: a DNS zone and TLS servers.
    let _servers = tb
        .in_ns(&tb.inet, || {
            dns_server(
                SocketAddr::new(UPSTREAM_DNS.into(), 53),
                vec![("chatgpt.com", SERVER), ("www.example.org", SERVER2)],
                Duration::from_millis(5),
            );
            let d = Duration::from_millis(5);
            (
                TlsServer::start(SocketAddr::new(SERVER.into(), 443), &["chatgpt.com"], d),
                TlsServer::start(
                    SocketAddr::new(SERVER2.into(), 443),
                    &["www.example.org"],
                    d,
                ),
            )
        })
        .join()
        .unwrap();

    // The daemon: enforce mode, DNS mode, the portal, a sink and a store cap (every metric the
    // dashboard reads exists).
    let policy = dir.join("policy");
    with_rules(&policy, PORTAL_RULES);
    let cadir = dir.join("ca");
    let o = bin()
        .args(["portal", "ca", "--days", "2", "--policy"])
        .arg(&policy)
        .arg("--out")
        .arg(&cadir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[sensor]
id = "prometheus-test"

[policy]
dir = "{policy}"

[store]
path = "{store}"
batch = 1
max_mb = 64

[[sink]]
name = "siem-file"
type = "jsonl"
path = "{jsonl}"

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

[portal]
address = "{GW_LAN}"
http = "{GW_LAN}:80"
https = "{GW_LAN}:443"
ca_cert = "{cert}"
ca_key = "{key}"
"#,
            policy = policy.display(),
            store = dir.join("events.db").display(),
            jsonl = dir.join("events.jsonl").display(),
            glass = dir.join("glass").display(),
            cert = cadir.join("portal-ca.pem").display(),
            key = cadir.join("portal-ca.key").display(),
        ),
    )
    .unwrap();
    let d = Daemon::start(&tb, &cfg);
    wait_healthy(&tb, &d);

    // Prometheus in the gateway namespace: 1 s scrapes and evaluations, the shipped rules with
    // every `for:` cut to 1 s (the copy only; the shipped durations stay), a temporary TSDB.
    let rules = std::fs::read_to_string(deploy.join("shadowgate-alerts.yml")).unwrap();
    let fast: String = rules
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 1s\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(fast.contains("for: 1s") && !fast.contains("for: 2m"));
    std::fs::write(dir.join("rules.yml"), fast).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: shadowgate\n    static_configs:\n      - targets: [\"{METRICS}\"]\n",
            rules = dir.join("rules.yml").display()
        ),
    )
    .unwrap();
    promtool(&["check", "config", "prometheus.yml"], &dir);
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let prom = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &tb.gw, "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROM}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let prom_log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(
        until(Duration::from_secs(20), Duration::from_millis(200), || {
            !query(&tb, "up{job=\"shadowgate\"} == 1").is_empty()
        }),
        "Prometheus does not scrape the daemon:\n{}",
        prom_log()
    );
    eprintln!("prometheus scraping after {:?}", t0.elapsed());

    // Traffic: DNS through DNS mode (steered and real answers), a stopped TLS connection to the
    // coached service, the portal over HTTPS (a minted certificate) and HTTP, a policy reload.
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "chatgpt.com"),
        Ok(vec![GW_LAN])
    );
    assert_eq!(
        dns_from(&tb, CLIENT, GW_LAN, "www.example.org"),
        Ok(vec![SERVER2])
    );
    assert!(tls_from(&tb, CLIENT, SERVER, "chatgpt.com").is_err());
    assert!(tls_from(&tb, CLIENT, SERVER2, "www.example.org").is_ok());
    let page = tls_from(&tb, CLIENT, GW_LAN, "chatgpt.com");
    assert!(page.is_ok(), "portal over HTTPS: {page:?}\n{}", d.log());
    assert!(http_from(&tb, CLIENT, "chatgpt.com").is_some());
    d.signal(libc::SIGHUP);

    // (b) every dashboard expression returns data.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/shadowgate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["schemaVersion"], 39);
    let exprs = dashboard_exprs(&dash);
    let panels = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .count();
    assert!(panels >= 25 && exprs.len() >= panels, "{panels} panels");
    let t_dash = Instant::now();
    let mut empty: Vec<&(String, String)> = exprs.iter().collect();
    until(Duration::from_secs(25), Duration::from_millis(500), || {
        empty.retain(|(_, e)| query(&tb, e).is_empty());
        empty.is_empty()
    });
    assert!(
        empty.is_empty(),
        "dashboard expressions without data: {empty:#?}\ndaemon log:\n{}",
        d.log()
    );
    eprintln!(
        "{panels} panels, {} expressions with data after {:?}",
        exprs.len(),
        t_dash.elapsed()
    );

    // (c) nothing fires on a healthy daemon; break-glass on fires ShadowgateBreakGlass.
    let now = alerts(&tb);
    assert!(
        !now.iter().any(|(_, s, _)| s == "firing"),
        "alerts firing on a healthy daemon: {now:?}\n{}",
        d.log()
    );
    let o = bin()
        .args([
            "break-glass",
            "on",
            "--reason",
            "prometheus test",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t_glass = Instant::now();
    assert!(
        until(Duration::from_secs(20), Duration::from_millis(250), || {
            firing(&tb, "ShadowgateBreakGlass")
        }),
        "ShadowgateBreakGlass not firing: {:?}\n{}",
        alerts(&tb),
        d.log()
    );
    eprintln!(
        "ShadowgateBreakGlass firing {:?} after break-glass on",
        t_glass.elapsed()
    );
    let sev = alerts(&tb);
    assert!(
        sev.iter()
            .any(|(n, s, sev)| n == "ShadowgateBreakGlass" && s == "firing" && sev == "warning"),
        "{sev:?}"
    );

    // The daemon stopped: ShadowgateDown fires.
    drop(d);
    let t_down = Instant::now();
    assert!(
        until(Duration::from_secs(20), Duration::from_millis(250), || {
            firing(&tb, "ShadowgateDown")
        }),
        "ShadowgateDown not firing: {:?}\n{}",
        alerts(&tb),
        prom_log()
    );
    eprintln!(
        "ShadowgateDown firing {:?} after the daemon stopped; test {:?}",
        t_down.elapsed(),
        t0.elapsed()
    );
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}
