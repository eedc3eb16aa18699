//! The bundled policy directory: matching edge cases, decisions for client groups (including the
//! shared-tenant limit), explain output, validation errors with positions, schedules, and hot
//! reload with a broken file while decisions continue.

use crate::common::cli::bin;
use crate::common::files::{policies, root, tmpdir};
use crate::common::frames::{dhcp, SYNTH_CLIENT_MAC};
use crate::common::policy::{bundled, copy_tree};
use crate::common::synth;
use crate::common::wait::until;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use shadowgate::policy::matcher::normalize;
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::policy::{Action, Category, Client, Policy, Via};

fn client(ip: &str) -> Client<'static> {
    Client {
        ip: Some(ip.parse().unwrap()),
        ..Default::default()
    }
}

fn service(p: &Policy, name: &str) -> Option<String> {
    p.classify(&normalize(name).unwrap())
        .map(|m| m.service.id.clone())
}

/// A scratch copy of the bundled policy directory.
fn scratch(tag: &str) -> PathBuf {
    let d = tmpdir("policy", tag);
    copy_tree(&policies(), &d);
    d
}

#[test]
fn catalogue_covers_what_the_issue_asks() {
    let p = bundled();
    let consumer = p
        .services()
        .iter()
        .filter(|s| s.category == Category::ConsumerAi)
        .count();
    assert!(consumer >= 40, "{consumer} consumer AI services");
    for s in p.services() {
        assert!(
            !s.baa.is_empty() && !s.baa_source.is_empty(),
            "{} lacks its BAA note or source",
            s.id
        );
    }
    for name in [
        "claude.ai",
        "chatgpt.com",
        "gemini.google.com",
        "copilot.microsoft.com",
        "www.perplexity.ai",
        "chat.deepseek.com",
        "chat.mistral.ai",
        "grok.com",
        "www.meta.ai",
        "poe.com",
        "character.ai",
        "cdn.oaistatic.com",
    ] {
        assert!(service(&p, name).is_some(), "{name} not catalogued");
    }
    // Bedrock in every region, Vertex AI regional hosts, Azure OpenAI resources.
    assert_eq!(
        service(&p, "bedrock-runtime.eu-central-1.amazonaws.com").as_deref(),
        Some("aws-bedrock")
    );
    assert_eq!(
        service(&p, "bedrock-runtime.us-gov-west-1.amazonaws.com").as_deref(),
        Some("aws-bedrock")
    );
    assert_eq!(
        service(&p, "europe-west4-aiplatform.googleapis.com").as_deref(),
        Some("google-vertex")
    );
    assert_eq!(
        service(&p, "clinic-prod.openai.azure.com").as_deref(),
        Some("azure-openai")
    );
    assert_eq!(service(&p, "dns.google").as_deref(), Some("google-dns"));
    assert_eq!(
        service(&p, "mozilla.cloudflare-dns.com").as_deref(),
        Some("mozilla-trr")
    );
}

#[test]
fn most_specific_entry_wins_and_false_friends_do_not_match() {
    let p = bundled();
    assert_eq!(
        service(&p, "api.anthropic.com").as_deref(),
        Some("anthropic-api")
    );
    assert_eq!(
        service(&p, "www.anthropic.com").as_deref(),
        Some("anthropic-web")
    );
    assert_eq!(service(&p, "api.openai.com").as_deref(), Some("openai-api"));
    assert_eq!(service(&p, "chat.openai.com").as_deref(), Some("chatgpt"));
    assert_eq!(
        service(&p, "platform.openai.com").as_deref(),
        Some("openai-web")
    );
    for n in [
        "gemini.com",
        "www.gemini.com",
        "claude.ai.evil.example",
        "notclaude.ai",
        "claude.ai-login.example",
        "chatgpt.com.example.net",
        "example.com",
    ] {
        assert_eq!(service(&p, n), None, "{n} must not match");
    }
    // Case, trailing dot and IDN are normalised before matching.
    assert_eq!(service(&p, "CLAUDE.AI.").as_deref(), Some("claude"));
    assert_eq!(
        normalize("Bücher.Example").unwrap(),
        "xn--bcher-kva.example"
    );
    // A homograph of claude.ai becomes punycode and does not match the real one.
    assert!(normalize("çlaude.ai").unwrap().starts_with("xn--"));
    assert_eq!(service(&p, "çlaude.ai"), None);
}

#[test]
fn shared_tenant_service_is_allowed_only_for_the_enrolled_group() {
    let p = bundled();
    // Enrolled: in the pilot subnet and named ai-pilot-* (a granting group's host names narrow
    // its network).
    let pilot = Client {
        ip: "10.20.5.7".parse().ok(),
        hostname: Some("ai-pilot-07"),
        ..Default::default()
    };
    let enrolled = p.decide("claude.ai", &pilot, 0, Via::Tls).unwrap();
    assert_eq!(
        (enrolled.action, enrolled.rule_id.as_str()),
        (Action::Allow, "SG-110-claude-enterprise")
    );
    assert!(enrolled.shared_tenant);
    let other = p
        .decide("claude.ai", &client("10.20.1.2"), 0, Via::Tls)
        .unwrap();
    assert_eq!(
        (other.action, other.rule_id.as_str()),
        (Action::Steer, "SG-300-consumer-ai")
    );
    assert_eq!(
        other.steer_to.as_ref().unwrap().url,
        "https://ai.clinic.example/"
    );
    // A group that lets traffic through places a device by network (or MAC); its DHCP host
    // name only narrows that. A device names itself: a renamed PC gains no allow group.
    let ip = "10.20.5.7".parse().ok();
    let pilot = Client {
        ip,
        hostname: Some("AI-PILOT-07"),
        ..Default::default()
    };
    assert_eq!(
        p.decide("claude.ai", &pilot, 0, Via::Dns).unwrap().action,
        Action::Allow
    );
    let renamed = Client {
        ip: "10.20.1.2".parse().ok(),
        hostname: Some("ai-pilot-x"),
        ..Default::default()
    };
    let d = p.decide("claude.ai", &renamed, 0, Via::Dns).unwrap();
    assert_eq!(
        (d.action, d.rule_id.as_str()),
        (Action::Steer, "SG-300-consumer-ai")
    );
    assert_eq!(d.groups, ["clinical"], "{d:?}");
    let unnamed = Client {
        ip,
        ..Default::default()
    };
    assert_eq!(
        p.decide("claude.ai", &unnamed, 0, Via::Dns).unwrap().action,
        Action::Steer,
        "the pilot subnet without the pilot name is not the group"
    );
    // it-admin is excepted from SG-200 by its network; a locally administered MAC (which any
    // device can take) no longer places a device in it.
    let admin = client("10.99.0.5");
    let d = p.decide("api.openai.com", &admin, 0, Via::Tls).unwrap();
    assert_eq!(
        d.rule_id, "default",
        "it-admin is excepted from SG-200: {d:?}"
    );
    let claimed_mac = Client {
        ip: "10.20.1.2".parse().ok(),
        mac: Some([0x02, 0, 0x5e, 0x10, 0, 0x42]),
        ..Default::default()
    };
    let d = p
        .decide("api.openai.com", &claimed_mac, 0, Via::Tls)
        .unwrap();
    assert_eq!(d.rule_id, "SG-200-enterprise-api", "{d:?}");
    // Approved route and the clinic's Bedrock account: allowed.
    assert_eq!(
        p.decide("ai.clinic.example", &client("10.20.1.2"), 0, Via::Tls)
            .unwrap()
            .action,
        Action::Allow
    );
    assert_eq!(
        p.decide(
            "bedrock-runtime.us-east-1.amazonaws.com",
            &client("10.20.1.2"),
            0,
            Via::Tls
        )
        .unwrap()
        .action,
        Action::Allow
    );
    // DoH resolvers: stopped outside IT (SG-410), alerted for IT (SG-400).
    let doh = p
        .decide("cloudflare-dns.com", &client("10.20.1.2"), 0, Via::Tls)
        .unwrap();
    assert_eq!(
        (doh.action, doh.rule_id.as_str()),
        (Action::Block, "SG-410-encrypted-dns-stop")
    );
    let doh = p
        .decide("cloudflare-dns.com", &client("10.99.0.5"), 0, Via::Tls)
        .unwrap();
    assert_eq!(
        (doh.action, doh.rule_id.as_str()),
        (Action::Alert, "SG-400-dns-bypass")
    );
    // Not AI, not in any rule: no decision at all.
    assert!(p
        .decide("www.epic.com", &client("10.20.1.2"), 0, Via::Tls)
        .is_none());
}

#[test]
fn explain_says_which_rule_and_why() {
    let p = bundled();
    let e = p.explain("Claude.AI.", &client("10.20.1.2"), 0);
    for needle in [
        "name:      claude.ai",
        "service:   claude",
        "catalogue entry \"claude.ai\"",
        "skipped:   rule SG-110-claude-enterprise would select this name, but client is not in enterprise-claude",
        "rule:      SG-300-consumer-ai",
        "action:    steer",
        "steer to:  https://ai.clinic.example/",
        "LIMIT:",
        "cannot tell a BAA-covered enterprise",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
    let e = p.explain("gemini.com", &client("10.20.1.2"), 0);
    assert!(
        e.contains("not in the catalogue") && e.contains("action:    none"),
        "{e}"
    );
}

fn check(d: &Path) -> (bool, String) {
    let out = bin().args(["policy", "check"]).arg(d).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn policy_check_reports_file_line_column_and_a_hint() {
    let (ok, out) = check(&policies());
    assert!(ok && out.contains("test is successful"), "{out}");

    let d = scratch("check");
    let pf = d.join("policy.toml");
    let text = std::fs::read_to_string(&pf).unwrap();
    std::fs::write(
        &pf,
        text.replace("services = [\"claude\"]", "services = [\"claud\"]"),
    )
    .unwrap();
    let (ok, out) = check(&d);
    assert!(!ok);
    let line = text
        .lines()
        .position(|l| l.contains("services = [\"claude\"]"))
        .unwrap()
        + 1;
    assert!(out.contains(&format!("policy.toml:{line}:13: rule \"SG-110-claude-enterprise\" names unknown service \"claud\"")), "{out}");
    assert!(
        out.contains("did you mean \"claude\"") && out.contains("test failed"),
        "{out}"
    );

    std::fs::write(&pf, "[settings]\ndefault_action = \"alert\n").unwrap();
    let (ok, out) = check(&d);
    assert!(!ok && out.contains("policy.toml:2:"), "{out}");

    std::fs::write(
        &pf,
        text.replace("action = \"steer\"", "action = \"redirect\""),
    )
    .unwrap();
    let (ok, out) = check(&d);
    assert!(
        !ok && out.contains("\"redirect\" is not a valid action")
            && out.contains("use one of: allow, alert, block, steer, coach"),
        "{out}"
    );

    // A catalogue mistake: a domain claimed twice, and a pattern with a middle wildcard.
    std::fs::write(&pf, &text).unwrap();
    std::fs::write(d.join("catalog/extra.toml"), "[[service]]\nid = \"x\"\nname = \"X\"\nvendor = \"X\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"claude.ai\", \"chat.*.example\"]\nbaa = \"none\"\nbaa_source = \"test\"\n").unwrap();
    let (ok, out) = check(&d);
    assert!(
        !ok && out.contains("extra.toml:7:")
            && out.contains("already claimed by service \"claude\"")
            && out.contains("only allowed as a leading"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn schedules_follow_the_policy_time_zone() {
    let d = scratch("sched");
    let pf = d.join("policy.toml");
    let text = std::fs::read_to_string(&pf).unwrap();
    let text = text.replace("[settings]\n", "[settings]\ntimezone = \"UTC\"\n").replace(
        "[[rule]]\nid = \"SG-300-consumer-ai\"",
        "[[rule]]\nid = \"SG-250-office-hours-block\"\ncategories = [\"consumer_ai\"]\naction = \"block\"\nschedule = { days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], from = \"08:00\", to = \"18:00\" }\n\n[[rule]]\nid = \"SG-300-consumer-ai\"",
    );
    std::fs::write(&pf, text).unwrap();
    let p = Policy::load(&d).unwrap();
    let c = client("10.20.1.2");
    // 2026-11-23 is a Monday.
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as u64;
    assert_eq!(
        p.decide("chatgpt.com", &c, at("2026-11-23T09:00:00Z"), Via::Tls)
            .unwrap()
            .action,
        Action::Block
    );
    assert_eq!(
        p.decide("chatgpt.com", &c, at("2026-11-23T18:30:00Z"), Via::Tls)
            .unwrap()
            .action,
        Action::Steer
    );
    assert_eq!(
        p.decide("chatgpt.com", &c, at("2026-11-22T09:00:00Z"), Via::Tls)
            .unwrap()
            .action,
        Action::Steer
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Wait (up to 10 s) until `cond` holds; fail the test naming `what` if it never does.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        until(Duration::from_secs(10), Duration::from_millis(20), cond),
        "timed out waiting for {what}"
    );
}

#[test]
fn hot_reload_rejects_a_broken_file_and_keeps_deciding() {
    let d = scratch("reload");
    let pf = d.join("policy.toml");
    let good = std::fs::read_to_string(&pf).unwrap();
    let h = PolicyHandle::load(&d).unwrap();
    let _w = h.watch().unwrap();
    let c = client("10.20.1.2");
    let action = |h: &PolicyHandle| {
        h.current()
            .decide("chatgpt.com", &c, 0, Via::Tls)
            .unwrap()
            .action
    };
    assert_eq!(action(&h), Action::Steer);

    // A broken file: rejected, counted, and the old policy keeps deciding.
    std::fs::write(
        &pf,
        good.replace("action = \"steer\"", "action = \"stear\""),
    )
    .unwrap();
    wait_for("the reload failure", || {
        h.reload_failures.load(Ordering::Relaxed) >= 1
    });
    assert!(h
        .last_error()
        .unwrap()
        .contains("\"stear\" is not a valid action"));
    for _ in 0..1000 {
        assert_eq!(action(&h), Action::Steer);
    }

    // A good change: swapped in whole.
    std::fs::write(
        &pf,
        good.replace("action = \"steer\"", "action = \"block\""),
    )
    .unwrap();
    wait_for("the reload", || h.reloads.load(Ordering::Relaxed) >= 1);
    wait_for("the new action", || action(&h) == Action::Block);
    assert!(h.last_error().is_none());

    // SIGHUP reloads too (the handler is installed by watch()).
    let before = h.reloads.load(Ordering::Relaxed);
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    wait_for("the SIGHUP reload", || {
        h.reloads.load(Ordering::Relaxed) > before
    });
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn replay_with_policy_gives_the_expected_decisions_for_the_ai_captures() {
    let p = bundled();
    let caps = root().join("pcaps/generated");
    let mut got = Vec::new();
    for f in ["curl-dig.pcap", "aioquic.pcap", "chromium-ai.pcap"] {
        let mut sensor = shadowgate::flow::Sensor::new(Default::default());
        shadowgate::replay::replay_file(
            &caps.join(f),
            &mut sensor,
            |o| {
                if let Some(d) = p.decide_observation(o) {
                    got.push((
                        f,
                        o.kind.as_str(),
                        d.matched_name,
                        d.service.unwrap_or_default(),
                        d.rule_id,
                        d.action.as_str(),
                        d.via,
                    ));
                }
            },
            |_| {},
        )
        .unwrap();
    }
    got.dedup();
    let want = [
        (
            "curl-dig.pcap",
            "dns_query",
            "claude.ai",
            "claude",
            "SG-300-consumer-ai",
            "steer",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "dns_answer",
            "claude.ai",
            "claude",
            "SG-300-consumer-ai",
            "steer",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "dns_query",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "dns_answer",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "dns_query",
            "api.anthropic.com",
            "anthropic-api",
            "SG-200-enterprise-api",
            "alert",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "dns_answer",
            "api.anthropic.com",
            "anthropic-api",
            "SG-200-enterprise-api",
            "alert",
            Via::Dns,
        ),
        (
            "curl-dig.pcap",
            "tls_client_hello",
            "copilot.microsoft.com",
            "copilot-consumer",
            "SG-300-consumer-ai",
            "steer",
            Via::Tls,
        ),
        (
            "curl-dig.pcap",
            "tls_client_hello",
            "api.anthropic.com",
            "anthropic-api",
            "SG-200-enterprise-api",
            "alert",
            Via::Tls,
        ),
        (
            "curl-dig.pcap",
            "http_request",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Http,
        ),
        // The bare-IP connection: no SNI, named by the DNS answers for its address.
        (
            "curl-dig.pcap",
            "tls_client_hello",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Inferred,
        ),
        (
            "aioquic.pcap",
            "quic_initial",
            "gemini.google.com",
            "gemini",
            "SG-300-consumer-ai",
            "steer",
            Via::Quic,
        ),
        (
            "aioquic.pcap",
            "quic_initial",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Quic,
        ),
        (
            "aioquic.pcap",
            "quic_initial",
            "claude.ai",
            "claude",
            "SG-300-consumer-ai",
            "steer",
            Via::Quic,
        ),
        (
            "chromium-ai.pcap",
            "tls_client_hello",
            "claude.ai",
            "claude",
            "SG-300-consumer-ai",
            "steer",
            Via::Tls,
        ),
        (
            "chromium-ai.pcap",
            "tls_client_hello",
            "chatgpt.com",
            "chatgpt",
            "SG-300-consumer-ai",
            "steer",
            Via::Tls,
        ),
    ];
    for w in &want {
        assert!(
            got.iter().any(|g| g.0 == w.0
                && g.1 == w.1
                && g.2 == w.2
                && g.3 == w.3
                && g.4 == w.4
                && g.5 == w.5
                && g.6 == w.6),
            "missing {w:?} in {got:#?}"
        );
    }
    // Chromium's own background hosts (accounts.google.com, update.googleapis.com) are not AI.
    assert!(got.iter().all(|g| !g.3.is_empty()), "{got:#?}");
}

#[test]
fn dhcp_host_names_select_policy_groups() {
    let mac = SYNTH_CLIENT_MAC;
    let frames = [
        dhcp(mac, Some("AI-Pilot-03"), None),
        dhcp(mac, None, Some([10, 20, 5, 9])),
        synth::tcp(
            [10, 20, 5, 9],
            [160, 79, 104, 10],
            50000,
            443,
            1,
            0,
            "PA",
            &synth::client_hello("claude.ai", 600),
        ),
    ];
    let mut sensor = shadowgate::flow::Sensor::new(Default::default());
    let out = crate::common::sensor::feed(&mut sensor, 1, &frames);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].client.hostname.as_deref(), Some("ai-pilot-03"));
    let d = bundled().decide_observation(&out[0]).unwrap();
    assert_eq!(
        (d.action, d.rule_id.as_str()),
        (Action::Allow, "SG-110-claude-enterprise"),
        "{d:?}"
    );
    assert_eq!(d.groups, ["clinical", "enterprise-claude"]);
}

/// The service-owned names of three public community AI-domain lists (tests/data/ai-domains):
/// a DNS question for at least 90 % of them gets a catalogued decision.
#[test]
fn catalogue_covers_community_ai_lists() {
    let p = bundled();
    let data = root().join("tests/data/ai-domains");
    let list = std::fs::read_to_string(data.join("domains.txt")).unwrap();
    let names: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.len() > 250, "{} names in domains.txt", names.len());
    let c = client("10.20.0.15");
    let mut misses = Vec::new();
    for n in &names {
        let d = p.decide(&normalize(n).unwrap(), &c, 0, Via::Dns);
        match d {
            Some(d) if d.service.is_some() => {}
            _ => misses.push(*n),
        }
    }
    let covered = names.len() - misses.len();
    let pct = covered as f64 * 100.0 / names.len() as f64;
    eprintln!(
        "community AI lists: {covered}/{} covered ({pct:.1} %); misses: {misses:?}",
        names.len()
    );
    assert!(pct >= 90.0, "only {pct:.1} % covered; misses: {misses:#?}");

    // Hosts on shared platforms were counted apart; the catalogue names some of them exactly.
    let excluded = std::fs::read_to_string(data.join("excluded.txt")).unwrap();
    let shared: Vec<&str> = excluded
        .lines()
        .filter(|l| l.contains(" shared: "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let tenant = shared.iter().filter(|n| service(&p, n).is_some()).count();
    eprintln!(
        "shared-platform hosts: {tenant}/{} named as exact tenant hosts",
        shared.len()
    );
    // Never a platform suffix: another tenant of the same platform is not caught.
    for other in [
        "someone-else.s3.amazonaws.com",
        "x.cloudinary.com",
        "other.livekit.cloud",
        "b.blob.core.windows.net",
    ] {
        assert!(
            service(&p, other).is_none(),
            "{other} caught by a platform suffix"
        );
    }
}

/// Shared apexes of large companies: never listed, neither themselves nor as `*.` suffixes.
const SHARED_APEXES: &[&str] = &[
    "microsoft.com",
    "google.com",
    "apple.com",
    "amazon.com",
    "bing.com",
    "github.com",
    "adobe.com",
    "facebook.com",
    "meta.com",
    "x.com",
    "tencent.com",
    "baidu.com",
    "amazonaws.com",
    "googleapis.com",
    "gstatic.com",
    "azure.com",
    "cloudflare.com",
    "githubusercontent.com",
    "clients6.google.com",
    "windows.net",
    "live.com",
    "office.com",
];

/// Two-label public suffixes under which a registrable domain has three labels.
const TWO_LABEL_SUFFIXES: &[&str] = &["co.uk", "com.cn", "com.au", "co.jp", "com.br", "co.in"];

fn registrable(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    let take = if n >= 3 && TWO_LABEL_SUFFIXES.contains(&labels[n - 2..].join(".").as_str()) {
        3
    } else {
        2
    };
    labels[n.saturating_sub(take)..].join(".")
}

/// Catalogue lint: every problem found, as sentences.
fn lint(p: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let vendor = |name: &str| p.vendors().iter().find(|v| v.name == name);
    for v in p.vendors() {
        for d in &v.domains {
            if registrable(d) != *d {
                out.push(format!(
                    "vendor {:?}: {d:?} is not a registrable domain",
                    v.name
                ));
            }
        }
    }
    for s in p.services() {
        if s.category == Category::ApprovedRoute {
            continue; // the clinic's own route (local.toml)
        }
        if s.baa_source.trim().is_empty() {
            out.push(format!("service {:?} has no baa_source", s.id));
        }
        if s.source_date.as_deref().is_none_or(|d| d.trim().is_empty()) {
            out.push(format!("service {:?} has no source_date", s.id));
        }
        if vendor(&s.vendor).is_none() {
            out.push(format!(
                "service {:?}: vendor {:?} is not declared",
                s.id, s.vendor
            ));
        }
        for h in &s.tenant_hosts {
            let own =
                vendor(&s.vendor).is_some_and(|v| v.domains.iter().any(|d| d == &registrable(h)));
            if own || h.starts_with("*.") {
                out.push(format!(
                    "service {:?}: tenant host {h:?} is a wildcard or the vendor's own domain",
                    s.id
                ));
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (pat, s) in p.catalog_patterns() {
        if let Some(other) = seen.insert(pat.to_string(), s.id.clone()) {
            out.push(format!("{pat:?} listed by {:?} and {:?}", other, s.id));
        }
        if s.category == Category::ApprovedRoute || s.tenant_hosts.iter().any(|h| h == pat) {
            continue;
        }
        let name = pat.strip_prefix("*.").unwrap_or(pat);
        if SHARED_APEXES.contains(&name) {
            out.push(format!("service {:?} lists the shared apex {pat:?}", s.id));
        }
        let reg = registrable(name);
        let owned = vendor(&s.vendor).is_some_and(|v| v.domains.contains(&reg));
        if !owned {
            out.push(format!(
                "service {:?}: {pat:?} (registrable {reg:?}) is not a domain of vendor {:?}",
                s.id, s.vendor
            ));
        }
    }
    out
}

#[test]
fn catalogue_lint_vendor_domains_sources_and_false_friends() {
    let p = bundled();
    let problems = lint(&p);
    assert!(problems.is_empty(), "{problems:#?}");
    for s in p.services() {
        if let Some(d) = &s.source_date {
            assert!(d.len() == 7 || d.len() == 10, "{}: {d}", s.id);
        }
    }
    // Names that non-AI businesses (or whole companies) own stay uncatalogued.
    for name in [
        "gemini.com",
        "www.gemini.com",
        "microsoft.com",
        "www.microsoft.com",
        "google.com",
        "www.google.com",
        "apple.com",
        "bing.com",
        "www.bing.com",
        "github.com",
        "office.com",
        "muse.ai",
        "mail.google.com",
        "docs.google.com",
        "outlook.office.com",
    ] {
        assert!(service(&p, name).is_none(), "{name} is caught");
    }
    // The names the issue lists are caught, each by its own service.
    for (name, id) in [
        ("perplexity.com", "perplexity"),
        ("copilot.com", "copilot-consumer"),
        ("chat.com", "chatgpt"),
        ("duck.ai", "duck-ai"),
        ("kimi.ai", "kimi"),
        ("coze.com", "coze"),
        ("openrouter.ai", "openrouter"),
        ("groq.com", "groq"),
        ("cohere.com", "cohere"),
        ("notebooklm.google.com", "notebooklm"),
        ("labs.google", "google-labs"),
        ("arena.ai", "lmarena"),
        ("minimax.io", "minimax"),
        ("elevenlabs.io", "elevenlabs"),
        ("sider.ai", "sider"),
        ("novelai.net", "novelai"),
        ("clau.de", "claude"),
        ("www.getfreed.ai", "freed"),
        ("scribe.heidihealth.com", "heidi"),
        ("www.openevidence.com", "openevidence"),
        ("gpt.doximity.com", "doximity-gpt"),
        ("www.doximity.com", "doximity"),
    ] {
        assert_eq!(service(&p, name).as_deref(), Some(id), "{name}");
    }
    let cat = |id: &str| p.services().iter().find(|s| s.id == id).map(|s| s.category);
    assert_eq!(cat("freed"), Some(Category::AiClinical));
    assert_eq!(cat("cursor"), Some(Category::AiCoding));
    assert_eq!(cat("midjourney"), Some(Category::AiMedia));
    assert_eq!(cat("otter"), Some(Category::AiMeeting));
    assert_eq!(cat("notion"), Some(Category::GeneralPlatform));
    assert_eq!(cat("claude"), Some(Category::ConsumerAi));
    assert_eq!(cat("anthropic-api"), Some(Category::EnterpriseAiApi));

    // The lint finds each kind of mistake: an undeclared vendor, a foreign or shared-apex domain,
    // a service without a source date.
    let d = scratch("lint");
    std::fs::write(
        d.join("catalog/zz-extra.toml"),
        "[[service]]\nid = \"x\"\nname = \"X\"\nvendor = \"Nobody\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"gemini.com\", \"*.microsoft.com\"]\nbaa = \"none\"\nbaa_source = \"\"\n",
    )
    .unwrap();
    let bad = Policy::load(&d).unwrap_or_else(|e| panic!("{e}"));
    let problems = lint(&bad);
    for want in [
        "service \"x\" has no baa_source",
        "service \"x\" has no source_date",
        "vendor \"Nobody\" is not declared",
        "lists the shared apex \"*.microsoft.com\"",
        "\"gemini.com\" (registrable \"gemini.com\") is not a domain of vendor \"Nobody\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want:?} not in {problems:#?}"
        );
    }

    // The loader itself refuses, for a declared vendor, a domain it does not own, a name two
    // services list, a wildcard tenant host and a date that is not one.
    std::fs::write(
        d.join("catalog/zz-extra.toml"),
        "[[service]]\nid = \"x\"\nname = \"X\"\nvendor = \"OpenAI\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"gemini.com\", \"claude.ai\"]\ntenant_hosts = [\"*.s3.amazonaws.com\"]\nbaa = \"none\"\nbaa_source = \"test\"\nsource_date = \"last week\"\n",
    )
    .unwrap();
    let (ok, out) = check(&d);
    assert!(!ok, "{out}");
    for want in [
        "zz-extra.toml:7:",
        "domain \"gemini.com\" of service \"x\" is not a domain of its vendor \"OpenAI\"",
        "already claimed by service \"claude\"",
        "tenant host \"*.s3.amazonaws.com\" of service \"x\" must be one exact host name",
        "source_date \"last week\" of service \"x\" is not a date",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 21 part 4: the clinic's files (`local/*.toml`, `catalog/local.toml`) win over the
/// vendor catalogue, are reported, and survive a catalogue upgrade (new vendor files).
#[test]
fn clinic_overrides_win_over_the_vendor_catalogue_and_survive_an_upgrade() {
    use shadowgate::policy::OverrideKind;
    let d = scratch("overrides");
    std::fs::create_dir_all(d.join("local")).unwrap();
    // The clinic approves Perplexity Enterprise (its own entry, same id, another category) and
    // claims one ChatGPT name for its own service.
    std::fs::write(
        d.join("local/clinic.toml"),
        "[[service]]\nid = \"perplexity\"\nname = \"Perplexity Enterprise (clinic contract)\"\nvendor = \"Perplexity AI\"\ncategory = \"enterprise_ai_api\"\nkind = \"chat\"\ndomains = [\"perplexity.ai\", \"*.perplexity.ai\"]\nbaa = \"Clinic contract with a BAA.\"\nbaa_source = \"Clinic BAA register #12\"\nsource_date = \"2026-11\"\n\n\
         [[service]]\nid = \"clinic-gpt-sso\"\nname = \"Clinic ChatGPT Enterprise SSO\"\nvendor = \"Clinic IT\"\ncategory = \"approved_route\"\nkind = \"portal\"\ndomains = [\"auth.openai.com\"]\nbaa = \"Clinic contract.\"\nbaa_source = \"Clinic BAA register #13\"\n",
    )
    .unwrap();
    let p = Policy::load(&d).unwrap_or_else(|e| panic!("{e}"));
    let svc = |p: &Policy, n: &str| {
        p.classify(&normalize(n).unwrap())
            .map(|m| (m.service.id.clone(), m.service.category))
    };
    assert_eq!(
        svc(&p, "www.perplexity.ai"),
        Some(("perplexity".into(), Category::EnterpriseAiApi))
    );
    // The vendor entry is gone whole: its other domains are no longer catalogued.
    assert_eq!(svc(&p, "perplexity.com"), None);
    assert_eq!(
        svc(&p, "auth.openai.com"),
        Some(("clinic-gpt-sso".into(), Category::ApprovedRoute))
    );
    assert_eq!(svc(&p, "chatgpt.com").map(|s| s.0), Some("chatgpt".into()));
    let o = p.catalog_overrides();
    assert_eq!(o.len(), 2, "{o:#?}");
    assert!(o.iter().any(|o| o.kind == OverrideKind::Replaces
        && o.service == "perplexity"
        && o.file.ends_with("local/clinic.toml")));
    assert!(o.iter().any(|o| o.kind == OverrideKind::Claims
        && o.service == "chatgpt"
        && o.by == "clinic-gpt-sso"
        && o.pattern.as_deref() == Some("auth.openai.com")));
    // `policy check` reports them (a note, not an error).
    let (ok, out) = check(&d);
    assert!(ok, "{out}");
    assert!(
        out.contains("note: vendor service \"perplexity\"")
            && out.contains("auth.openai.com of vendor service \"chatgpt\" is claimed by the clinic's service \"clinic-gpt-sso\""),
        "{out}"
    );

    // A catalogue upgrade replaces the vendor files (here: a new consumer-ai.toml version that
    // also adds perplexity.ai names); the clinic's files stay and still win.
    let cf = d.join("catalog/consumer-ai.toml");
    let text = std::fs::read_to_string(&cf).unwrap();
    let text = text
        .replacen("version = \"2026.12.1\"", "version = \"2027.01.1\"", 1)
        .replacen(
            "\"perplexity.com\", \"*.perplexity.com\"",
            "\"perplexity.com\", \"*.perplexity.com\", \"labs.perplexity.ai\"",
            1,
        );
    std::fs::write(&cf, text).unwrap();
    let p = Policy::load(&d).unwrap_or_else(|e| panic!("{e}"));
    assert!(p
        .catalog_versions()
        .iter()
        .any(|v| v.version == "2027.01.1"));
    assert_eq!(
        svc(&p, "labs.perplexity.ai"),
        Some(("perplexity".into(), Category::EnterpriseAiApi))
    );
    assert_eq!(p.catalog_overrides().len(), 2);

    // The clinic's files carry no vendor version, and two clinic entries still may not share
    // a name.
    std::fs::write(
        d.join("local/zz.toml"),
        "[catalog]\nversion = \"1\"\ndate = \"2026-01-01\"\n\n[[service]]\nid = \"x\"\nname = \"X\"\nvendor = \"X\"\ncategory = \"consumer_ai\"\nkind = \"chat\"\ndomains = [\"auth.openai.com\"]\nbaa = \"none\"\nbaa_source = \"test\"\n",
    )
    .unwrap();
    let (ok, out) = check(&d);
    assert!(!ok, "{out}");
    assert!(
        out.contains("a clinic file has a [catalog] table")
            && out.contains("already claimed by service \"clinic-gpt-sso\""),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Groups a device cannot claim alone (issue 22): `policy check` names each granting group that
/// trusts what a device says of itself, and such a group grants nothing on that alone.
#[test]
fn policy_check_warns_where_a_device_could_claim_a_granting_group() {
    let dir = tmpdir("policy", "claimable-groups");
    let p = crate::common::policy::with_rules(
        &dir,
        r#"
[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's assistant."

[[group]]
id = "pilots"
hostnames = ["ai-pilot-*"]

[[group]]
id = "admins"
cidrs = ["10.99.0.0/24"]
macs = ["02:00:5e:10:00:*"]

[[group]]
id = "blocked-kiosks"
hostnames = ["kiosk-*"]

[[rule]]
id = "R-allow-pilots"
services = ["claude"]
groups = ["pilots"]
action = "allow"

[[rule]]
id = "R-kiosks"
categories = ["consumer_ai"]
groups = ["blocked-kiosks"]
action = "block"

[[rule]]
id = "R-steer"
categories = ["consumer_ai"]
except_groups = ["admins"]
action = "steer"
"#,
    );
    let out = bin().args(["policy", "check"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("group \"pilots\" lets traffic through (R-allow-pilots)")
            && err.contains("DHCP host name only"),
        "{err}"
    );
    assert!(
        err.contains("group \"admins\" lets traffic through (R-steer)")
            && err.contains("locally administered MAC prefix 02:00:5e:10:00:*"),
        "{err}"
    );
    // A group that only restricts more may match by host name: no warning.
    assert!(!err.contains("blocked-kiosks"), "{err}");

    let pol = Policy::load(&p).unwrap();
    let named = Client {
        ip: "10.20.1.2".parse().ok(),
        hostname: Some("ai-pilot-9"),
        ..Default::default()
    };
    assert_eq!(
        pol.decide("claude.ai", &named, 0, Via::Tls)
            .unwrap()
            .rule_id,
        "R-steer",
        "a host name alone grants nothing"
    );
    let kiosk = Client {
        hostname: Some("kiosk-2"),
        ..named
    };
    assert_eq!(
        pol.decide("claude.ai", &kiosk, 0, Via::Tls)
            .unwrap()
            .rule_id,
        "R-kiosks",
        "a host name may still restrict"
    );
    let admin_net = client("10.99.0.7");
    let d = pol.decide("claude.ai", &admin_net, 0, Via::Tls);
    assert!(
        d.as_ref().is_none_or(|d| d.rule_id != "R-steer"),
        "the admins' network is excepted: {d:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
