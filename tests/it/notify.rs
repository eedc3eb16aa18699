//! Notifications (issue 24): Teams, Slack and e-mail notifiers delivered from their own cursors
//! (at least once, only after a 2xx), filtered by severity and action, folded, rate-limited into
//! a summary, with hostile names escaped; the payloads checked against the Adaptive Card and
//! Block Kit rules below. And `shadowgate events --follow`. Receivers are listeners on 127.0.0.1
//! the test starts (HTTP) or aiosmtpd (SMTP).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use shadowgate::flow::observation::Transport;
use shadowgate::flow::{Evidence, Kind};
use shadowgate::policy::{Action, Severity};
use shadowgate::record::{Event, Store};

use crate::common::cli::bin;
use crate::common::files::{policies, store_config, TempDir};

const T0: u64 = 1_780_000_000_000_000_000;

fn ev(client: &str, host: &str, service: &str, action: Action, sev: Severity, t_s: u64) -> Event {
    Event {
        id: format!("01NOTIFY{t_s:018}"),
        seq: 0,
        ts: T0 + t_s * 1_000_000_000,
        sensor: "test-gw".into(),
        client_ip: client.into(),
        client_port: 50000,
        client_mac: Some("02:00:00:00:00:01".into()),
        client_hostname: Some(host.into()),
        client_groups: "staff,reception".into(),
        server_ip: "192.0.2.10".into(),
        server_port: 443,
        transport: Some(Transport::Tcp),
        kind: Kind::TlsClientHello.into(),
        name: format!("{service}.example"),
        seen_via: "tls".into(),
        evidence: Some(Evidence::Wire),
        service: Some(service.into()),
        service_name: Some(format!("{service} app")),
        category: None,
        action: Some(action),
        severity: sev,
        rule_id: "block-consumer-ai".into(),
        steer_url: None,
        shared_tenant: false,
        repeat_count: 1,
        detail: None,
    }
}

fn append(store: &Path, mut events: Vec<Event>) -> i64 {
    Store::open(store).unwrap().append(&mut events).unwrap()
}

/// An HTTP/1.1 receiver on 127.0.0.1: answers the scripted statuses in turn (then 200) and
/// keeps every request body (parsed as JSON) with the status it got.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Hook {
    fn start(statuses: &[u16]) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook/secret-path",
            listener.local_addr().unwrap().port()
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, script) = (Arc::clone(&got), statuses.to_vec());
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for s in listener.incoming().flatten() {
                let mut r = BufReader::new(s);
                loop {
                    let mut len = None;
                    let mut any = false;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        any = true;
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse::<usize>().ok();
                        }
                    }
                    if !any {
                        break;
                    }
                    let mut body = vec![0; len.unwrap_or(0)];
                    if r.read_exact(&mut body).is_err() {
                        break;
                    }
                    let status = script.next().unwrap_or(200);
                    g.lock()
                        .unwrap()
                        .push((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    let _ = write!(
                        r.get_mut(),
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok"
                    );
                }
            }
        });
        Hook { url, got }
    }

    /// Bodies the receiver accepted (2xx).
    fn accepted(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| (200..300).contains(s))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn config(dir: &Path, sinks: &str) -> PathBuf {
    store_config(dir, "shadowgate.toml", &policies(), sinks)
}

fn deliver(cfg: &Path, timeout_s: u64) -> std::process::Output {
    bin()
        .args(["deliver", "--timeout", &timeout_s.to_string(), "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

/// The Adaptive Card rules the Teams payload must meet (schema 1.4/1.5): the Workflows message
/// envelope, then the card's required `type`, `version` and `body`, and each element one of
/// TextBlock (non-empty `text`), FactSet (`facts` of `title` and `value` strings) or ColumnSet
/// (`columns` of Columns holding such elements), with no other keys than those known.
fn check_teams(v: &Value) -> Result<(), String> {
    let obj = |v: &Value, what: &str| -> Result<serde_json::Map<String, Value>, String> {
        v.as_object()
            .cloned()
            .ok_or_else(|| format!("{what} is not an object: {v}"))
    };
    let only = |o: &serde_json::Map<String, Value>, keys: &[&str], what: &str| match o
        .keys()
        .find(|k| !keys.contains(&k.as_str()))
    {
        Some(k) => Err(format!("{what}: unknown property {k}")),
        None => Ok(()),
    };
    let m = obj(v, "message")?;
    only(&m, &["type", "attachments"], "message")?;
    if m["type"] != "message" {
        return Err("message type is not \"message\"".into());
    }
    let atts = m["attachments"]
        .as_array()
        .ok_or("attachments is not an array")?;
    if atts.len() != 1 {
        return Err(format!("{} attachments, not 1", atts.len()));
    }
    let a = obj(&atts[0], "attachment")?;
    only(&a, &["contentType", "contentUrl", "content"], "attachment")?;
    if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err(format!("contentType {}", a["contentType"]));
    }
    let c = obj(&a["content"], "card")?;
    only(
        &c,
        &["$schema", "type", "version", "body", "actions", "msteams"],
        "card",
    )?;
    if c["type"] != "AdaptiveCard" {
        return Err("card type is not AdaptiveCard".into());
    }
    if !matches!(
        c.get("version").and_then(Value::as_str),
        Some("1.4" | "1.5")
    ) {
        return Err(format!("card version {:?}", c.get("version")));
    }
    if c.get("$schema").and_then(Value::as_str)
        != Some("http://adaptivecards.io/schemas/adaptive-card.json")
    {
        return Err("$schema missing".into());
    }
    fn element(e: &Value) -> Result<(), String> {
        let o = e.as_object().ok_or("element is not an object")?;
        let known = |keys: &[&str]| match o.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(format!("{}: unknown property {k}", o["type"])),
            None => Ok(()),
        };
        let enum_of = |k: &str, allowed: &[&str]| match o.get(k) {
            None => Ok(()),
            Some(v) if v.as_str().is_some_and(|s| allowed.contains(&s)) => Ok(()),
            Some(v) => Err(format!("{k} = {v} is not one of {allowed:?}")),
        };
        match o.get("type").and_then(Value::as_str) {
            Some("TextBlock") => {
                known(&[
                    "type",
                    "text",
                    "weight",
                    "size",
                    "color",
                    "wrap",
                    "isSubtle",
                    "spacing",
                    "separator",
                    "id",
                    "maxLines",
                    "horizontalAlignment",
                    "fontType",
                ])?;
                if o.get("text")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err("TextBlock without text".into());
                }
                enum_of("weight", &["Default", "Lighter", "Bolder"])?;
                enum_of(
                    "size",
                    &["Default", "Small", "Medium", "Large", "ExtraLarge"],
                )?;
                enum_of(
                    "color",
                    &[
                        "Default",
                        "Dark",
                        "Light",
                        "Accent",
                        "Good",
                        "Warning",
                        "Attention",
                    ],
                )?;
                if o.get("wrap").is_some_and(|w| !w.is_boolean()) {
                    return Err("wrap is not a boolean".into());
                }
                Ok(())
            }
            Some("FactSet") => {
                known(&["type", "facts", "spacing", "separator", "id"])?;
                let facts = o
                    .get("facts")
                    .and_then(Value::as_array)
                    .ok_or("FactSet without facts")?;
                if facts.is_empty() {
                    return Err("FactSet with no facts".into());
                }
                for f in facts {
                    let f = f.as_object().ok_or("fact is not an object")?;
                    if f.len() != 2
                        || !f.get("title").is_some_and(Value::is_string)
                        || !f.get("value").is_some_and(Value::is_string)
                    {
                        return Err(format!("fact {f:?} is not {{title, value}}"));
                    }
                }
                Ok(())
            }
            Some("ColumnSet") => {
                known(&["type", "columns", "spacing", "separator", "id"])?;
                for col in o
                    .get("columns")
                    .and_then(Value::as_array)
                    .ok_or("ColumnSet without columns")?
                {
                    if col["type"] != "Column" {
                        return Err("a column that is not a Column".into());
                    }
                    for item in col["items"].as_array().ok_or("Column without items")? {
                        element(item)?;
                    }
                }
                Ok(())
            }
            t => Err(format!(
                "element type {t:?} is not TextBlock, FactSet or ColumnSet"
            )),
        }
    }
    let body = c
        .get("body")
        .and_then(Value::as_array)
        .ok_or("card without body")?;
    if body.is_empty() {
        return Err("empty body".into());
    }
    body.iter().try_for_each(element)
}

/// Block Kit rules for the Slack payload: a `text` fallback, at most 50 blocks of header
/// (plain_text, at most 150 characters), section (text at most 3000, at most 10 fields of at
/// most 2000) or context (at most 10 elements), text objects of a known type.
fn check_slack(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("payload is not an object")?;
    if o.get("text")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("no text fallback".into());
    }
    let blocks = o
        .get("blocks")
        .and_then(Value::as_array)
        .ok_or("no blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    let text_obj = |t: &Value, max: usize, plain_only: bool| -> Result<(), String> {
        let ty = t["type"].as_str().unwrap_or("");
        if !(ty == "plain_text" || (!plain_only && ty == "mrkdwn")) {
            return Err(format!("text object type {ty:?}"));
        }
        let s = t["text"].as_str().ok_or("text object without text")?;
        if s.is_empty() || s.chars().count() > max {
            return Err(format!(
                "text of {} characters (at most {max})",
                s.chars().count()
            ));
        }
        Ok(())
    };
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => text_obj(&b["text"], 150, true)?,
            Some("section") => {
                if b.get("text").is_none() && b.get("fields").is_none() {
                    return Err("section without text or fields".into());
                }
                if let Some(t) = b.get("text") {
                    text_obj(t, 3000, false)?;
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().ok_or("fields is not an array")?;
                    if f.is_empty() || f.len() > 10 {
                        return Err(format!("{} fields", f.len()));
                    }
                    for t in f {
                        text_obj(t, 2000, false)?;
                    }
                }
            }
            Some("context") => {
                let e = b["elements"].as_array().ok_or("context without elements")?;
                if e.is_empty() || e.len() > 10 {
                    return Err(format!("{} context elements", e.len()));
                }
                for t in e {
                    text_obj(t, 3000, false)?;
                }
            }
            t => return Err(format!("block type {t:?}")),
        }
    }
    Ok(())
}

/// Every string a Teams card shows, joined (to look for text).
fn card_text(v: &Value) -> String {
    let mut out = String::new();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v["attachments"][0]["content"]["body"], &mut out);
    out
}

#[test]
fn payload_checks_refuse_what_teams_and_slack_refuse() {
    let good = serde_json::json!({"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"x"}]}}]});
    assert_eq!(check_teams(&good), Ok(()));
    for bad in [
        r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.2","body":[{"type":"TextBlock","text":"x"}]}}]}"#,
        r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"Image","url":"x"}]}}]}"#,
        r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","body":[{"type":"FactSet","facts":[{"title":"a"}]}]}}]}"#,
    ] {
        assert!(
            check_teams(&serde_json::from_str(bad).unwrap()).is_err(),
            "{bad}"
        );
    }
    let long = "x".repeat(151);
    let bad_slack = serde_json::json!({"text":"t","blocks":[{"type":"header","text":{"type":"plain_text","text":long}}]});
    assert!(check_slack(&bad_slack).is_err());
    assert!(check_slack(&serde_json::json!({"blocks":[]})).is_err());
}

#[test]
fn teams_and_slack_get_one_valid_message_for_fifty_repeats() {
    let d = TempDir::new("notify", "fold");
    let (teams, slack) = (Hook::start(&[]), Hook::start(&[]));
    let cfg = config(
        &d.0,
        &format!(
            "[[sink]]\nname = \"teams\"\ntype = \"teams\"\nurl = \"{}\"\nfold_window_s = 600\n\
             [[sink]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"{}\"\nfold_window_s = 600\n",
            teams.url, slack.url
        ),
    );
    let store = d.0.join("events.db");
    let mut events: Vec<Event> = (0..50)
        .map(|i| {
            ev(
                "10.0.0.7",
                "reception-pc",
                "chatgpt",
                Action::Block,
                Severity::High,
                i,
            )
        })
        .collect();
    // Another device: its own message.
    events.push(ev(
        "10.0.0.8",
        "lab-pc",
        "chatgpt",
        Action::Block,
        Severity::High,
        3,
    ));
    let last = append(&store, events);
    let out = deliver(&cfg, 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = teams.accepted();
    assert_eq!(t.len(), 2, "{t:#?}");
    for m in &t {
        check_teams(m).unwrap_or_else(|e| panic!("{e}: {m:#}"));
    }
    let text = card_text(&t[0]);
    assert!(text.contains("Blocked: chatgpt app (50 times)"), "{text}");
    assert!(
        text.contains("reception\\-pc") || text.contains("reception-pc"),
        "{text}"
    );
    assert!(text.contains("50 times between "), "{text}");
    assert!(text.contains("block\\-consumer\\-ai") || text.contains("block-consumer-ai"));
    assert!(card_text(&t[1]).contains("lab-pc"));
    let s = slack.accepted();
    assert_eq!(s.len(), 2);
    for m in &s {
        check_slack(m).unwrap_or_else(|e| panic!("{e}: {m:#}"));
    }
    assert_eq!(
        s[0]["blocks"][0]["text"]["text"],
        "Blocked: chatgpt app (50 times)"
    );
    let st = Store::open(&store).unwrap();
    assert_eq!(
        (st.cursor("teams").unwrap(), st.cursor("slack").unwrap()),
        (last, last)
    );
}

#[test]
fn a_storm_becomes_at_most_the_limit_with_a_summary() {
    let d = TempDir::new("notify", "storm");
    let hook = Hook::start(&[]);
    let cfg = config(
        &d.0,
        &format!(
            "[[sink]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"{}\"\nmax_per_minute = 3\n",
            hook.url
        ),
    );
    let store = d.0.join("events.db");
    let events: Vec<Event> = (0..200)
        .map(|i| {
            ev(
                &format!("10.0.{}.{}", i / 100, i % 100 + 1),
                "pc",
                "chatgpt",
                Action::Block,
                Severity::High,
                i,
            )
        })
        .collect();
    let last = append(&store, events);
    let out = deliver(&cfg, 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = hook.accepted();
    assert_eq!(got.len(), 3, "{got:#?}");
    got.iter().for_each(|m| check_slack(m).unwrap());
    let summary = got[2].to_string();
    assert!(summary.contains("198 more alerts summed up"), "{summary}");
    assert!(summary.contains("*Events*\\n198"), "{summary}");
    assert_eq!(
        Store::open(&store).unwrap().cursor("slack").unwrap(),
        last,
        "all acknowledged"
    );
}

#[test]
fn a_failing_receiver_loses_nothing_and_the_cursor_waits_for_a_2xx() {
    let d = TempDir::new("notify", "retry");
    let store = d.0.join("events.db");
    let last = append(
        &store,
        vec![ev(
            "10.0.0.9",
            "pc",
            "claude",
            Action::Block,
            Severity::Critical,
            1,
        )],
    );
    // Always 500: nothing acknowledged, the event waits.
    let down = Hook::start(&[500; 100]);
    let sink = |url: &str| {
        format!("[[sink]]\nname = \"teams\"\ntype = \"teams\"\nurl = \"{url}\"\nactions = [\"block\"]\nfold_window_s = 0\n")
    };
    let cfg = config(&d.0, &sink(&down.url));
    let out = deliver(&cfg, 2);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(
        !err.contains("secret-path"),
        "the webhook's secret path is not printed: {err}"
    );
    assert!(down.got.lock().unwrap().len() >= 2, "retried");
    assert!(down.accepted().is_empty());
    let st = Store::open(&store).unwrap();
    assert_eq!(st.cursor("teams").unwrap(), 0, "no 2xx: the cursor stays");
    let stored = st.after(last, 10).unwrap();
    assert!(
        stored
            .iter()
            .all(|e| !e.detail.as_deref().unwrap_or("").contains("secret-path")),
        "{stored:?}"
    );
    // 500 then 200: delivered once acknowledged.
    let flaky = Hook::start(&[500]);
    let cfg = config(&d.0, &sink(&flaky.url));
    let out = deliver(&cfg, 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = flaky.got.lock().unwrap().clone();
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [500, 200]);
    assert_eq!(all[0].1, all[1].1, "the same message again");
    let st = Store::open(&store).unwrap();
    assert_eq!(st.cursor("teams").unwrap(), st.last_seq().unwrap());
}

#[test]
fn only_events_at_the_severity_and_actions_asked_for_and_hostile_names_stay_text() {
    let d = TempDir::new("notify", "filter");
    let (teams, slack) = (Hook::start(&[]), Hook::start(&[]));
    let rules = "min_severity = \"high\"\nactions = [\"block\", \"steer\"]\nfold_window_s = 0\n";
    let cfg = config(
        &d.0,
        &format!(
            "[[sink]]\nname = \"teams\"\ntype = \"teams\"\nurl = \"{}\"\n{rules}\
             [[sink]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"{}\"\n{rules}",
            teams.url, slack.url
        ),
    );
    let store = d.0.join("events.db");
    let hostile = "<!channel> <@U0123> [click](https://evil.example) {{DATE(2026-01-01T00:00:00Z, SHORT)}} *bold* &amp;";
    append(
        &store,
        vec![
            ev(
                "10.0.0.1",
                "low-pc",
                "chatgpt",
                Action::Block,
                Severity::Low,
                1,
            ),
            ev(
                "10.0.0.2",
                "allow-pc",
                "chatgpt",
                Action::Allow,
                Severity::Critical,
                2,
            ),
            ev(
                "10.0.0.3",
                hostile,
                "chatgpt",
                Action::Block,
                Severity::High,
                3,
            ),
            ev(
                "10.0.0.4",
                "steer-pc",
                "gemini",
                Action::Steer,
                Severity::Critical,
                4,
            ),
        ],
    );
    let out = deliver(&cfg, 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t, s) = (teams.accepted(), slack.accepted());
    assert_eq!(
        (t.len(), s.len()),
        (2, 2),
        "low severity and allow left out"
    );
    let st = s[0].to_string();
    check_slack(&s[0]).unwrap();
    assert!(
        !st.contains("<!channel>") && !st.contains("<@U0123>") && !st.contains("<https://evil"),
        "{st}"
    );
    assert!(st.contains("&lt;!\u{200B}channel&gt;"), "{st}");
    assert!(st.contains("&amp;amp;"), "{st}");
    assert!(s[1].to_string().contains("steer-pc"));
    check_teams(&t[0]).unwrap();
    let tt = card_text(&t[0]);
    assert!(
        !tt.contains("[click](") && !tt.contains("{{DATE") && !tt.contains("https://evil"),
        "{tt}"
    );
    assert!(tt.contains("\\[click\\]"), "{tt}");
}

#[test]
fn mail_reaches_the_smtp_server_with_subject_and_words() {
    use crate::report::browser;
    if !browser::has_aiosmtpd() {
        println!("skipped: python3 with aiosmtpd is not installed (CI installs it with pip)");
        return;
    }
    let d = TempDir::new("notify", "mail");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.0.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(d.0.join("key.pem"), key.serialize_pem()).unwrap();
    let inbox = d.0.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let server = browser::SmtpServer::start(&d.0, &inbox);
    let cfg = config(
        &d.0,
        &format!(
            "[[sink]]\nname = \"manager\"\ntype = \"mail\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"cert.pem\"\n\
             from = \"shadowgate <gateway@clinic.example>\"\nto = [\"manager@clinic.example\"]\nfold_window_s = 600\n",
            server.port
        ),
    );
    let store = d.0.join("events.db");
    append(
        &store,
        (0..3)
            .map(|i| {
                ev(
                    "10.0.0.5",
                    "front-desk",
                    "chatgpt",
                    Action::Block,
                    Severity::High,
                    i,
                )
            })
            .collect(),
    );
    let out = deliver(&cfg, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails: Vec<PathBuf> = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(mails.len(), 1, "three repeats folded into one e-mail");
    let m = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(m.contains("X-Starttls: yes"));
    assert!(m.contains("RCPT: manager@clinic.example"));
    assert!(
        m.contains("Subject: [shadowgate] Blocked: chatgpt app (3 times)"),
        "{m}"
    );
    assert!(m.contains("Device: front-desk / 10.0.0.5"), "{m}");
    assert!(m.contains("Policy rule: block-consumer-ai"), "{m}");
    assert!(
        m.contains("Evidence: the name was in the connection itself"),
        "{m}"
    );
}

/// `shadowgate events --follow ARGS` with its output lines on a channel; killed on drop.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(store: &Path, args: &[&str]) -> Follower {
        let mut child = bin()
            .args(["events", "--follow", "--poll-ms", "100", "--store"])
            .arg(store)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    fn next(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Lines that come within `wait`.
    fn drain(&self, wait: Duration) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(wait) {
            v.push(l);
        }
        v
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        for _ in 0..100 {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (st, err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("events --follow did not end");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_follow_prints_new_matching_events_as_json_lines_and_ends_cleanly() {
    let d = TempDir::new("notify", "follow");
    let store = d.0.join("events.db");
    append(
        &store,
        (0..15)
            .map(|i| {
                ev(
                    "10.0.0.1",
                    "pc",
                    "chatgpt",
                    Action::Block,
                    Severity::High,
                    i,
                )
            })
            .collect(),
    );
    // No --since: the newest 10, then what comes.
    let mut f = Follower::start(
        &store,
        &[
            "--format",
            "json",
            "--service",
            "chatgpt",
            "--severity",
            "high",
            "--group",
            "reception",
        ],
    );
    let history: Vec<Value> = (0..10)
        .map(|_| serde_json::from_str(&f.next().unwrap()).unwrap())
        .collect();
    assert_eq!(history[0]["seq"], 6);
    assert_eq!(history[9]["seq"], 15);
    let mut other_group = ev(
        "10.0.0.3",
        "pc",
        "chatgpt",
        Action::Block,
        Severity::High,
        20,
    );
    other_group.client_groups = "reception-desk".into();
    append(
        &store,
        vec![
            ev(
                "10.0.0.2",
                "pc",
                "claude",
                Action::Block,
                Severity::High,
                16,
            ),
            ev(
                "10.0.0.2",
                "pc",
                "chatgpt",
                Action::Block,
                Severity::Low,
                17,
            ),
            other_group,
            ev(
                "10.0.0.4",
                "new-pc",
                "chatgpt",
                Action::Alert,
                Severity::Critical,
                21,
            ),
        ],
    );
    let l = f.next().expect("the new matching event");
    let j: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(
        (j["seq"].as_i64(), j["client_hostname"].as_str()),
        (Some(19), Some("new-pc"))
    );
    assert!(
        f.drain(Duration::from_millis(600)).is_empty(),
        "nothing else matches"
    );
    f.signal(libc::SIGINT);
    let (st, err) = f.wait();
    assert_eq!(st.code(), Some(0), "Ctrl-C ends it cleanly: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // A table, by device, from --since; a reader that goes away ends it quietly.
    let mut f = Follower::start(
        &store,
        &["--device", "new-pc", "--since", "2020-01-01T00:00:00Z"],
    );
    assert!(f.next().unwrap().starts_with("SEQ"));
    let row = f.next().unwrap();
    assert!(row.contains("10.0.0.4") && row.contains("alert"), "{row}");
    drop(std::mem::replace(&mut f.lines, channel().1));
    append(
        &store,
        vec![ev(
            "10.0.0.4",
            "new-pc",
            "chatgpt",
            Action::Block,
            Severity::High,
            30,
        )],
    );
    let (st, err) = f.wait();
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The store replaced under it: said, exit 1.
    let mut f = Follower::start(&store, &["--format", "json"]);
    assert!(f.next().is_some());
    for ext in ["", "-wal", "-shm"] {
        let mut p = store.clone().into_os_string();
        p.push(ext);
        let _ = std::fs::rename(&p, format!("{}.old", p.to_string_lossy()));
    }
    let (st, err) = f.wait();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("was removed") && err.contains("events --follow"),
        "{err}"
    );
}

#[test]
fn events_follow_refuses_what_cannot_follow() {
    let d = TempDir::new("notify", "followbad");
    let missing = d.0.join("none.db");
    let o = bin()
        .args(["events", "--follow", "--store"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such event store"));
    let store = d.0.join("events.db");
    append(
        &store,
        vec![ev(
            "10.0.0.1",
            "pc",
            "chatgpt",
            Action::Block,
            Severity::High,
            1,
        )],
    );
    for (args, says) in [
        (&["--until", "1h"][..], "--until"),
        (&["--severity", "urgent"][..], "critical"),
        (&["--format", "csv"][..], "table or json"),
    ] {
        let o = bin()
            .args(["events", "--follow", "--store"])
            .arg(&store)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}"
        );
    }
}
