//! The weekly report (issue 12): figures from generated events with known counts (CSV and JSON),
//! week edges in the clinic's time zone, pseudonyms, private files, the HTML in headless
//! Chromium (screenshot, element counts, A4 width, PDF), e-mail to a local STARTTLS SMTP server,
//! and the daemon's schedule.

pub(crate) mod browser;
mod fixtures;
use crate::common::cli::bin;
use crate::common::files::{policies, root, tmpdir};
use crate::common::frames::{dhcp, SYNTH_CLIENT_MAC};
use crate::common::synth;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fixtures::TZ;
use serde_json::Value;

/// Run `shadowgate report` on the fixture store; returns the output folder and the JSON.
fn report(dir: &Path, week: &str, tz: &str, extra: &[&str]) -> (PathBuf, Value) {
    let db = dir.join("events.db");
    if !db.exists() {
        fixtures::store(&db);
        fixtures::inventory(&dir.join("inventory.csv"));
    }
    let out = dir.join(format!("out-{week}-{}", tz.replace('/', "_")));
    let o = bin()
        .args(["report", "--week", week, "--timezone", tz, "--store"])
        .arg(&db)
        .arg("--policy")
        .arg(policies())
        .arg("--out")
        .arg(&out)
        .arg("--inventory")
        .arg(dir.join("inventory.csv"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "report failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let j: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    (out, j)
}

fn csv_rows(out: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(out.join("report.csv")).unwrap();
    r.deserialize().map(|x| x.unwrap()).collect()
}

fn row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    device: &str,
    service: &str,
    action: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r["device"] == device && r["service"] == service && r["action"] == action)
        .unwrap_or_else(|| panic!("no CSV row {device} {service} {action}: {rows:#?}"))
}

#[test]
fn known_counts_in_json_and_csv() {
    let dir = tmpdir("report", "counts");
    let (out, j) = report(&dir, "2026-W47", TZ, &[]);
    let h = &j["headline"]["this_week"];
    // A 3 (2 claude, 1 approved), B 2, C 1, D 1, E 2.
    assert_eq!(h["visits"], 9, "{h:#}");
    assert_eq!(h["lookups"], 1);
    assert_eq!(h["devices"], 5);
    assert_eq!(h["services"], 6);
    assert_eq!(h["consumer_visits"], 7);
    assert_eq!(h["approved_visits"], 1);
    assert_eq!(h["enterprise_visits"], 1);
    assert_eq!(
        h["actions"],
        serde_json::json!({"block": 2, "steer": 3, "coach": 1, "alert": 2, "allow": 1})
    );
    // Previous week: A's claude, C's visit that began Sunday 23:50, D's Sunday-night gemini.
    assert_eq!(j["headline"]["previous_week"]["visits"], 3);
    assert_eq!(j["headline"]["change"]["visits"], 6);
    assert_eq!(j["headline"]["change"]["devices"], 2);
    let trend: Vec<(String, u64)> = j["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["week"].as_str().unwrap().to_string(),
                w["visits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trend,
        [
            ("2026-W43", 0),
            ("2026-W44", 0),
            ("2026-W45", 2),
            ("2026-W46", 3),
            ("2026-W47", 9)
        ]
        .map(|(w, n)| (w.to_string(), n))
    );

    // Adoption: 1 approved against 7 consumer visits; A used claude in W46 and the portal now.
    assert_eq!(j["adoption"]["adoption_pct"], 12.5);
    let moved = j["adoption"]["moved_devices"].as_array().unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["device"], "ws-01");
    assert_eq!(moved[0]["owner"], "Ann Alder");
    assert_eq!(moved[0]["earlier_consumer_visits"], 1);
    let groups = j["groups"].as_array().unwrap();
    let g = |n: &str| groups.iter().find(|g| g["group"] == n).unwrap();
    assert_eq!(g("clinical")["visits"], 8);
    assert_eq!(g("clinical")["devices"], 4);
    assert_eq!(g("clinical")["adoption_pct"], 12.5);
    assert_eq!(g("enterprise-claude")["visits"], 2);
    assert_eq!(g("it-admin")["visits"], 1);

    // Services with BAA status from the catalogue; sora is new this week.
    let svc = |id: &str| {
        j["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(svc("claude")["visits"], 3);
    assert_eq!(svc("claude")["devices"], 2);
    assert!(svc("claude")["baa"].as_str().unwrap().contains("no BAA"));
    assert_eq!(svc("chatgpt")["visits"], 2);
    assert_eq!(svc("chatgpt")["lookups"], 1);
    assert_eq!(
        svc("chatgpt")["devices"],
        1,
        "B is one device across its DHCP change"
    );
    let first: Vec<&str> = j["first_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["sora"]);
    // DNS bypass: DoH and DoT, not among the AI services.
    let bypass = j["dns_bypass"].as_array().unwrap();
    assert_eq!(bypass.len(), 2);
    assert_eq!(
        bypass
            .iter()
            .map(|b| b["visits"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert_eq!(
        bypass
            .iter()
            .map(|b| b["dot_visits"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert!(j["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["category"] != "dns_resolver"));

    // Top devices: B with both addresses and its owner from the inventory (by MAC).
    let b = j["top_devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "ws-02")
        .unwrap();
    assert_eq!(b["visits"], 2);
    assert_eq!(b["owner"], "Dr Berg");
    assert_eq!(b["ips"], serde_json::json!(["10.20.1.2", "10.20.1.9"]));
    assert_eq!(j["top_devices"][0]["device"], "ws-01");

    // Coach, policy, coverage.
    assert_eq!(
        j["justifications"][0]["text"],
        "Summarising a public guideline, no patient data"
    );
    assert_eq!(j["justifications"][0]["device"], "ws-05");
    assert_eq!(j["portal_views"], 1);
    assert_eq!(j["grants_expired"], 1);
    assert_eq!(j["policy"]["reloads"].as_array().unwrap().len(), 1);
    assert_eq!(j["policy"]["rejected"].as_array().unwrap().len(), 1);
    let cv = &j["coverage"];
    assert_eq!(cv["lifecycle_known"], true);
    assert_eq!(
        (cv["starts"].as_u64(), cv["stops"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(cv["down_seconds"], 3600);
    assert_eq!(cv["capture_gap_bytes"], 1000);
    assert_eq!(cv["kernel_dropped_packets"], 42);
    assert_eq!(cv["sink_outages"], 1);
    // The catalogue in force at the end of the week, and the steered names the portal CA
    // cannot certify (a line in the HTML coverage section too).
    assert!(
        cv["catalogue"].as_str().unwrap().contains("2027.01.1"),
        "{cv}"
    );
    assert_eq!(cv["portal_uncertifiable"], 2);
    assert_eq!(
        cv["portal_uncertifiable_names"],
        serde_json::json!(["*.newai.example", "newai.example"])
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let coverage = &html[html.find("<section id=\"coverage\">").unwrap()..];
    assert!(
        coverage.contains(
            "Steered names the portal CA cannot certify: 2 (*.newai.example, newai.example)"
        ) && coverage.contains("shadowgate portal ca ... --force"),
        "{coverage}"
    );

    // The CSV: a row per device x service x action, same numbers.
    let rows = csv_rows(&out);
    let a = row(&rows, "ws-01", "claude", "steer");
    assert_eq!(
        (
            a["visits"].as_str(),
            a["lookups"].as_str(),
            a["events"].as_str()
        ),
        ("2", "0", "5")
    );
    assert_eq!(a["owner"], "Ann Alder");
    let l = row(&rows, "ws-01", "chatgpt", "steer");
    assert_eq!((l["visits"].as_str(), l["lookups"].as_str()), ("0", "1"));
    let b = row(&rows, "ws-02", "chatgpt", "block");
    assert_eq!(b["visits"], "2");
    assert_eq!(b["ips"], "10.20.1.2 10.20.1.9");
    assert_eq!(b["mac"], "02:00:00:00:00:bb");
    assert_eq!(
        row(&rows, "10.99.0.5", "anthropic-api", "alert")["visits"],
        "1"
    );
    assert_eq!(row(&rows, "ws-05", "claude", "coach")["visits"], "1");
    let visits: u64 = rows
        .iter()
        .filter(|r| r["category"] != "dns_resolver")
        .map(|r| r["visits"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(visits, 9);
    assert_eq!(rows.len(), 10, "{rows:#?}");

    // Private files.
    for f in ["report.html", "report.csv", "report.json"] {
        let m = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn week_edges_follow_the_time_zone() {
    let dir = tmpdir("report", "edges");
    // The visit that began Sunday 23:50 of W47 and went on past midnight is W47's: none in W48.
    let (_, w48) = report(&dir, "2026-W48", TZ, &[]);
    assert_eq!(w48["headline"]["this_week"]["visits"], 0);
    assert_eq!(w48["headline"]["previous_week"]["visits"], 9);
    // In UTC the Sunday-night events of New York are Monday's: W46 keeps only A's visit and
    // W48 gets D's Monday 04:30 and C's Monday 04:50.
    let (_, u) = report(&dir, "2026-W48", "UTC", &[]);
    assert_eq!(u["headline"]["this_week"]["visits"], 2);
    let trend: Vec<u64> = u["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["visits"].as_u64().unwrap())
        .collect();
    assert_eq!(trend, [0, 2, 1, 9, 2]);
    assert_eq!(u["start"], "2026-11-23T00:00:00+00:00");
    // A 3-minute visit gap splits A's 10:00..10:20 run (gaps of 1, 4 and 15 minutes) in three,
    // and cuts C's Monday 00:15 event off its Sunday 23:50 visit: a visit of its own in W47.
    let (_, g) = report(&dir, "2026-W47", TZ, &["--visit-gap", "3"]);
    assert_eq!(g["headline"]["this_week"]["visits"], 12);
    assert_eq!(g["visit_gap_minutes"], 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pseudonymised_report_hides_people_and_is_stable_across_weeks() {
    let dir = tmpdir("report", "pseudo");
    std::fs::write(dir.join("key"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(
        dir.join("sg.toml"),
        "[report]\npseudonymise_secret_file = \"key\"\n",
    )
    .unwrap();
    let cfg = dir.join("sg.toml");
    let args = ["--pseudonymise", "--config", cfg.to_str().unwrap()];
    let (out, j) = report(&dir, "2026-W47", TZ, &args);
    assert_eq!(j["pseudonymised"], true);
    for f in ["report.html", "report.csv", "report.json"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        for secret in [
            "ws-01",
            "ws-02",
            "02:00:00:00:00:bb",
            "10.20.1.2",
            "10.99.0.5",
            "Dr Berg",
            "Ann Alder",
            "public guideline",
        ] {
            assert!(!text.contains(secret), "{f} shows {secret}");
        }
    }
    assert_eq!(j["justifications"][0]["text"], Value::Null);
    assert_eq!(
        j["headline"]["this_week"]["visits"], 9,
        "the figures do not change"
    );
    let a = j["top_devices"][0]["device"].as_str().unwrap().to_string();
    assert!(a.starts_with("host-") && a.len() == 17, "{a}");
    // The same device has the same pseudonym in another week's report.
    let (_, w46) = report(&dir, "2026-W46", TZ, &args);
    let names: Vec<&str> = w46["top_devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert!(names.contains(&a.as_str()), "{a} not in {names:?}");
    // No key, no pseudonyms.
    let o = bin()
        .args(["report", "--week", "2026-W47", "--pseudonymise", "--store"])
        .arg(dir.join("events.db"))
        .arg("--out")
        .arg(dir.join("nokey"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pseudonymise_secret_file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn html_in_headless_chromium() {
    let Some(chromium) = browser::chromium() else {
        println!("skipped: Debian's chromium is not installed (CI installs it)");
        return;
    };
    let dir = tmpdir("report", "html");
    let (out, _) = report(&dir, "2026-W47", TZ, &[]);
    let html = out.join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "the report has no scripts");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "self-contained"
    );

    let art = root().join("target/test-artifacts/report");
    std::fs::create_dir_all(&art).unwrap();
    // Element counts and overflow, measured by Chromium at the width of A4 paper less the
    // print margins (190 mm = 718 CSS px) and at the full A4 width (794 px).
    for width in [718u32, 794] {
        let m = browser::measure(&chromium, &html, width, &dir);
        println!("{width} px: {m:?}");
        assert_eq!(m["charts"], 2, "two inline SVG charts");
        assert!(
            m["chart_paths"].as_u64().unwrap() >= 3,
            "the charts have drawn lines: {m}"
        );
        assert!(m["tables"].as_u64().unwrap() >= 10, "{m}");
        assert!(m["rows"].as_u64().unwrap() >= 40, "{m}");
        assert_eq!(m["sections"], 11);
        assert!(
            m["scroll_width"].as_u64().unwrap() <= width as u64,
            "horizontal overflow at {width} px: {m}"
        );
        assert_eq!(
            m["overflowing"], 0,
            "elements wider than the page at {width} px: {m}"
        );
    }
    // A screenshot (kept as a test artifact) and a PDF printed from the page.
    let png = art.join("report.png");
    browser::screenshot(&chromium, &html, &png, &dir);
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png_bytes.len() > 20_000, "a blank screenshot is small");
    let pdf = art.join("report.pdf");
    browser::print_pdf(&chromium, &html, &pdf, &dir);
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF-"));
    println!("PDF {} bytes", pdf_bytes.len());
    if let Ok(o) = Command::new("pdfinfo").arg(&pdf).output() {
        let info = String::from_utf8_lossy(&o.stdout);
        println!("{info}");
        assert!(info.contains("(A4)"), "not A4: {info}");
        let pages: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((2..=8).contains(&pages), "{pages} pages");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mailed_through_a_local_starttls_server() {
    if !browser::has_aiosmtpd() {
        println!("skipped: python3 with aiosmtpd is not installed (CI installs it with pip)");
        return;
    }
    let dir = tmpdir("report", "mail");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let server = browser::SmtpServer::start(&dir, &inbox);
    std::fs::write(
        dir.join("sg.toml"),
        format!(
            "[report]\ntimezone = \"{TZ}\"\n[report.smtp]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"cert.pem\"\nfrom = \"shadowgate <gateway@clinic.example>\"\nto = [\"compliance@clinic.example\", \"it@clinic.example\"]\n",
            server.port
        ),
    )
    .unwrap();
    let cfg = dir.join("sg.toml");
    let (_, j) = report(
        &dir,
        "2026-W47",
        TZ,
        &["--config", cfg.to_str().unwrap(), "--mail"],
    );
    assert_eq!(j["headline"]["this_week"]["visits"], 9);
    let mails: Vec<PathBuf> = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(mails.len(), 1, "one message received");
    let m = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(
        m.contains("X-Starttls: yes"),
        "not sent over STARTTLS:\n{}",
        &m[..m.len().min(400)]
    );
    assert!(m.contains("RCPT: compliance@clinic.example") && m.contains("RCPT: it@clinic.example"));
    assert!(m.contains("Subject: Shadow-AI weekly report 2026-W47"));
    assert!(
        m.contains("Visits to AI services: 9 (+6 on the previous week)"),
        "{m}"
    );
    for a in ["html", "csv", "json"] {
        assert!(
            m.contains(&format!("shadow-ai-report-2026-W47.{a}")),
            "attachment {a}"
        );
    }
    // Plain SMTP to a server that requires STARTTLS is refused, and said so.
    std::fs::write(
        dir.join("plain.toml"),
        format!("[report.smtp]\nhost = \"127.0.0.1\"\nport = {}\nstarttls = false\nfrom = \"a@clinic.example\"\nto = [\"b@clinic.example\"]\n", server.port),
    )
    .unwrap();
    let o = bin()
        .args(["report", "--week", "2026-W47", "--mail", "--config"])
        .arg(dir.join("plain.toml"))
        .arg("--store")
        .arg(dir.join("events.db"))
        .arg("--out")
        .arg(dir.join("plain-out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("mailing the report"));
    assert!(
        dir.join("plain-out/report.html").exists(),
        "written even when the mail fails"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn schedule_writes_last_weeks_report() {
    let dir = tmpdir("report", "sched");
    let db = dir.join("events.db");
    // One visit in the last complete week (UTC), whatever today is.
    let now = shadowgate::time::now_ns();
    let tz = jiff::tz::TimeZone::UTC;
    let last = shadowgate::report::Week::last_complete(now, &tz).unwrap();
    let mut st = shadowgate::record::Store::open(&db).unwrap();
    st.append(&mut [fixtures::tls(
        last.start_ns + 3_600 * 1_000_000_000,
        fixtures::A,
        "claude",
        "steer",
    )])
    .unwrap();
    drop(st);
    let at = jiff::Timestamp::from_nanosecond(now as i128 + 2_000_000_000)
        .unwrap()
        .to_zoned(tz);
    let conf = shadowgate::report::ReportConf {
        timezone: Some("UTC".into()),
        out_dir: dir.join("reports"),
        schedule: Some(shadowgate::report::ScheduleConf {
            weekday: at.strftime("%A").to_string(),
            time: at.strftime("%H:%M:%S").to_string(),
        }),
        ..Default::default()
    };
    let h = shadowgate::report::schedule::spawn(conf, db, Some(policies())).unwrap();
    let file = dir.join("reports").join(last.label()).join("report.json");
    let t0 = std::time::Instant::now();
    while h.last_result().is_none() && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = h.last_result().expect("the schedule ran within 30 s");
    assert!(r.is_ok(), "{r:?}");
    h.stop();
    let j: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(j["week"], last.label());
    assert_eq!(j["headline"]["this_week"]["visits"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_say_what_to_do() {
    let dir = tmpdir("report", "args");
    let run = |args: &[&str]| {
        let o = bin().arg("report").args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let db = dir.join("events.db");
    fixtures::store(&db);
    let db = db.to_str().unwrap();
    let out = dir.join("o");
    let out = out.to_str().unwrap();
    let (code, e) = run(&["--store", db, "--out", out, "--week", "2026-47"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("2026-W47"), "{e}");
    let (code, e) = run(&[
        "--store",
        "/nonexistent/events.db",
        "--out",
        out,
        "--week",
        "2026-W47",
    ]);
    assert_eq!(code, Some(1));
    assert!(e.contains("no such event store"), "{e}");
    let (_, e) = run(&["--week", "2026-W47", "--out", out]);
    assert!(e.contains("--store"), "{e}");
    let (_, e) = run(&["--store", db, "--week", "2026-W47"]);
    assert!(e.contains("--out"), "{e}");
    let (_, e) = run(&[
        "--store",
        db,
        "--out",
        out,
        "--week",
        "2026-W47",
        "--timezone",
        "Nowhere/Town",
    ]);
    assert!(e.contains("IANA"), "{e}");
    let (_, e) = run(&["--store", db, "--out", out, "--week", "2026-W47", "--mail"]);
    assert!(e.contains("[report.smtp]"), "{e}");
    // Without a catalogue the report still works and says BAA status is unknown.
    let (code, e) = run(&[
        "--store",
        db,
        "--out",
        out,
        "--week",
        "2026-W47",
        "--timezone",
        TZ,
    ]);
    assert_eq!(code, Some(0), "{e}");
    assert!(e.contains("BAA status will show as unknown"), "{e}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(dir.join("o/report.json")).unwrap()).unwrap();
    assert_eq!(j["catalogue"], false);
    assert_eq!(
        j["headline"]["this_week"]["visits"], 9,
        "categories come from the events"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Does a spreadsheet read this cell as a formula (OWASP: = + - @ tab CR first)?
fn formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// Issue 18 (CSV injection, events CSV of a mixed store): a DHCP host name that is a
/// spreadsheet formula, replayed into a store, is a neutralised text cell in `report.csv` and
/// in `events --format csv`; the events CSV has a row per event of the store (system and
/// decision events), each with the header's columns.
#[test]
fn formula_host_names_are_text_in_every_csv() {
    let dir = tmpdir("report", "formula");
    let evil = "=HYPERLINK(\"http://evil.example/x\",\"open\")";
    // The sensor reports host names in lower case.
    let neutralised = format!("'{}", evil.to_lowercase());
    let mut frames = vec![
        dhcp(SYNTH_CLIENT_MAC, Some(evil), None),
        dhcp(SYNTH_CLIENT_MAC, None, Some([10, 20, 9, 9])),
    ];
    frames.extend(crate::common::frames::tls_connection(
        [10, 20, 9, 9],
        [160, 79, 104, 10],
        50000,
        "claude.ai",
    ));
    // Frames at 2023-11-14T22:13:20Z and 1 ms apart: ISO week 2023-W46.
    let pcap = dir.join("dhcp-formula.pcap");
    synth::write_pcap(&pcap, &frames).unwrap();
    let db = dir.join("events.db");
    let cfg = dir.join("shadowgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nid = \"gw-formula\"\n[policy]\ndir = \"{}\"\n[store]\npath = \"{}\"\n",
            policies().display(),
            db.display()
        ),
    )
    .unwrap();
    let o = bin()
        .args(["replay", "-q", "--drain-timeout", "0", "--config"])
        .arg(&cfg)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("hyperlink"),
        "the replay did not see the host name: {stdout}"
    );

    // report.csv
    let out = dir.join("out");
    let o = bin()
        .args([
            "report",
            "--week",
            "2023-W46",
            "--timezone",
            "UTC",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = csv_rows(&out);
    let row = rows
        .iter()
        .find(|r| r["service"] == "claude")
        .unwrap_or_else(|| panic!("no claude row: {rows:#?}"));
    assert_eq!(row["hostname"], neutralised, "{row:#?}");
    assert_eq!(row["visits"], "1", "{row:#?}");
    for r in &rows {
        assert!(!r.values().any(|c| formula(c)), "formula cell in {r:#?}");
    }
    // report.json keeps the name as sent: it is data, not a spreadsheet.
    let j: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(
        j["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["hostname"] == evil.to_lowercase().as_str()),
        "{}",
        j["rows"]
    );

    // events --format csv
    let o = bin()
        .args(["events", "--format", "csv", "--store"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rd = csv::Reader::from_reader(o.stdout.as_slice());
    let header = rd.headers().unwrap().clone();
    assert_eq!(header.len(), 26, "{header:?}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let recs: Vec<csv::StringRecord> = rd
        .records()
        .map(|r| r.expect("every row has the header's columns"))
        .collect();
    let stored = shadowgate::record::Store::open(&db)
        .unwrap()
        .count()
        .unwrap();
    assert_eq!(recs.len() as u64, stored as u64, "a row per stored event");
    let via: Vec<&str> = recs.iter().map(|r| &r[col("seen_via")]).collect();
    assert!(via.contains(&"system"), "no system event: {via:?}");
    assert!(via.iter().any(|v| *v != "system"), "no decision: {via:?}");
    let decision = recs
        .iter()
        .find(|r| &r[col("service")] == "claude")
        .unwrap_or_else(|| panic!("no claude event: {recs:#?}"));
    assert_eq!(&decision[col("client_hostname")], neutralised.as_str());
    for r in &recs {
        assert_eq!(r.len(), header.len(), "{r:?}");
        assert!(!r.iter().any(formula), "formula cell in {r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A system event of device `d` (as the capture records `blind_spot` and DNS mode `dns_bypass`).
fn device_event(ts: u64, d: fixtures::Dev, kind: &str, detail: Value) -> shadowgate::record::Event {
    let mut e = fixtures::system(ts, kind, &format!("{kind} of {}", d.ip), detail);
    e.client_ip = d.ip.to_string();
    e.client_mac = d.mac.map(str::to_string);
    e.client_hostname = d.host.map(str::to_string);
    e
}

/// Issue 23: the coverage section lists the devices whose traffic the gateway could not name
/// (by kind, minutes and hours, first and last), and the DNS-bypass section the devices that
/// looked up each bypass name DNS mode answered itself, and how often.
#[test]
fn blind_devices_and_dns_bypass_tries() {
    use fixtures::{ny, A, B};
    let dir = tmpdir("report", "blind-spots");
    let db = dir.join("events.db");
    let blind = |t: &str, d, kind: &str| {
        device_event(
            ny(t),
            d,
            "blind_spot",
            serde_json::json!({"kind": kind, "client": d.ip}),
        )
    };
    let bypass = |t: &str, d, what: &str, name: &str| {
        device_event(
            ny(t),
            d,
            "dns_bypass",
            serde_json::json!({"what": what, "name": name, "client": d.ip}),
        )
    };
    let mut evs = vec![
        fixtures::system(
            ny("2026-11-16T00:00"),
            "sensor_start",
            "started",
            serde_json::json!({}),
        ),
        // A: WireGuard in three minutes of two hours on two days; B: ECH without DNS once.
        blind("2026-11-17T10:00", A, "wireguard"),
        blind("2026-11-17T10:01", A, "wireguard"),
        blind("2026-11-18T15:30", A, "wireguard"),
        blind("2026-11-19T09:00", B, "ech_no_dns"),
        // Outside the week: not counted.
        blind("2026-11-24T09:00", B, "ech_no_dns"),
        // DNS bypass names: A twice (two names), B once.
        bypass(
            "2026-11-17T08:00",
            A,
            "icloud_private_relay",
            "mask.icloud.com",
        ),
        bypass(
            "2026-11-17T09:30",
            A,
            "icloud_private_relay",
            "mask-h2.icloud.com",
        ),
        bypass(
            "2026-11-18T08:00",
            B,
            "firefox_doh_canary",
            "use-application-dns.net",
        ),
    ];
    shadowgate::record::Store::open(&db)
        .unwrap()
        .append(&mut evs)
        .unwrap();
    let out = dir.join("out");
    let o = bin()
        .args([
            "report",
            "--week",
            "2026-W47",
            "--timezone",
            fixtures::TZ,
            "--store",
        ])
        .arg(&db)
        .arg("--policy")
        .arg(policies())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();

    let rows = j["coverage"]["blind"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["device"], "ws-01");
    assert_eq!(rows[0]["mac"], "02:00:00:00:00:aa");
    assert_eq!(rows[0]["kind"], "wireguard");
    assert_eq!(rows[0]["minutes"], 3);
    assert_eq!(rows[0]["hours"], 2);
    assert!(
        rows[0]["first"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-17 10:00"),
        "{}",
        rows[0]
    );
    assert!(
        rows[0]["last"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18 15:30"),
        "{}",
        rows[0]
    );
    assert_eq!(rows[1]["device"], "ws-02");
    assert_eq!(rows[1]["kind"], "ech_no_dns");
    assert_eq!(rows[1]["minutes"], 1);

    let tries = j["dns_bypass_tries"].as_array().unwrap();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0]["what"], "firefox_doh_canary");
    assert_eq!(tries[0]["device"], "ws-02");
    assert_eq!(tries[0]["events"], 1);
    assert_eq!(tries[1]["what"], "icloud_private_relay");
    assert_eq!(tries[1]["device"], "ws-01");
    assert_eq!(tries[1]["events"], 2);
    assert_eq!(
        tries[1]["names"],
        serde_json::json!(["mask-h2.icloud.com", "mask.icloud.com"])
    );

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<h3>Blind spots</h3>"),
        "no blind spots section"
    );
    assert!(html.contains("WireGuard VPN") && html.contains("ws-01"));
    assert!(html.contains("2 devices sent traffic the gateway cannot name"));
    assert!(
        html.contains("icloud_private_relay: 1 device, 2 lookups"),
        "bypass summary"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
