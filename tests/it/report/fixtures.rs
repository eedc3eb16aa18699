//! Event fixtures with known counts for the weekly report tests: devices, services, visits that
//! cross week edges in New York time, lookups alone, DNS bypass, coach and system events.

use std::path::Path;

use shadowgate::record::{Event, Store};

pub const TZ: &str = "America/New_York";

/// Local New York time `2026-11-17T10:00` -> ns since the epoch.
pub fn ny(local: &str) -> u64 {
    let tz = jiff::tz::TimeZone::get(TZ).unwrap();
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    dt.to_zoned(tz).unwrap().timestamp().as_nanosecond() as u64
}

/// UTC time `2026-11-16T03:00:00Z` -> ns.
pub fn utc(s: &str) -> u64 {
    s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as u64
}

#[derive(Clone, Copy)]
pub struct Dev {
    pub ip: &'static str,
    pub mac: Option<&'static str>,
    pub host: Option<&'static str>,
    pub groups: &'static str,
}

pub const A: Dev = Dev {
    ip: "10.20.1.1",
    mac: Some("02:00:00:00:00:aa"),
    host: Some("ws-01"),
    groups: "clinical",
};
pub const B: Dev = Dev {
    ip: "10.20.1.2",
    mac: Some("02:00:00:00:00:bb"),
    host: Some("ws-02"),
    groups: "clinical",
};
/// B after a DHCP change: another address, same MAC.
pub const B2: Dev = Dev {
    ip: "10.20.1.9",
    ..B
};
pub const C: Dev = Dev {
    ip: "10.99.0.5",
    mac: None,
    host: None,
    groups: "it-admin",
};
pub const D: Dev = Dev {
    ip: "10.20.2.2",
    mac: None,
    host: Some("ws-04"),
    groups: "clinical",
};
pub const E: Dev = Dev {
    ip: "10.20.5.5",
    mac: Some("02:00:00:00:00:ee"),
    host: Some("ws-05"),
    groups: "clinical,enterprise-claude",
};
pub const F: Dev = Dev {
    ip: "10.20.3.3",
    mac: None,
    host: None,
    groups: "",
};

fn category(service: &str) -> &'static str {
    match service {
        "clinic-ai-portal" => "approved_route",
        "anthropic-api" => "enterprise_ai_api",
        "cloudflare-dns" | "google-dns" => "dns_resolver",
        _ => "consumer_ai",
    }
}

/// An event written with these words, read as the store reads it back.
pub fn event(ts: u64, d: Dev, kind: &str, service: &str, action: &str, port: u16) -> Event {
    let transport = if kind == "quic_initial" || kind.starts_with("dns") {
        "udp"
    } else {
        "tcp"
    };
    let seen_via = match kind {
        "tls_client_hello" => "tls",
        "quic_initial" => "quic",
        "http_request" => "http",
        "portal_view" => "portal",
        _ => "dns",
    };
    serde_json::from_value(serde_json::json!({
        "id": ulid::Ulid::new().to_string(),
        "seq": 0,
        "ts": ts,
        "sensor": "gw-test",
        "client_ip": d.ip,
        "client_port": 50000,
        "client_mac": d.mac,
        "client_hostname": d.host,
        "client_groups": d.groups,
        "server_ip": "192.0.2.10",
        "server_port": port,
        "transport": transport,
        "kind": kind,
        "name": format!("{service}.example"),
        "seen_via": seen_via,
        "evidence": "wire",
        "service": service,
        "service_name": service,
        "category": category(service),
        "action": action,
        "severity": "medium",
        "rule_id": "SG-TEST",
        "steer_url": null,
        "shared_tenant": false,
        "repeat_count": 1,
    }))
    .unwrap()
}

pub fn tls(ts: u64, d: Dev, service: &str, action: &str) -> Event {
    event(ts, d, "tls_client_hello", service, action, 443)
}

pub fn lookup(ts: u64, d: Dev, service: &str, action: &str) -> Event {
    event(ts, d, "dns_query", service, action, 53)
}

pub fn system(ts: u64, kind: &str, summary: &str, detail: serde_json::Value) -> Event {
    let e = Event::system(
        shadowgate::record::event::SystemKind::SensorStart,
        ts,
        "gw-test",
        summary,
        detail,
    );
    let mut v = serde_json::to_value(&e).unwrap();
    v["kind"] = kind.into();
    v["rule_id"] = format!("system.{kind}").into();
    serde_json::from_value(v).unwrap()
}

/// A portal or coach event about a device and service (as the daemon's portal records them).
pub fn portal(
    ts: u64,
    d: Dev,
    kind: &str,
    service: &str,
    action: &str,
    detail: serde_json::Value,
) -> Event {
    let mut e = event(ts, d, kind, service, action, 443);
    e.seen_via = "system".into();
    e.detail = Some(detail.to_string());
    e
}

/// The fixture. In New York time, week 2026-W47 has 9 visits on 5 devices and 6 services
/// (7 consumer AI, 1 approved route, 1 enterprise API), 1 lookup-only run, 2 DNS-bypass visits
/// (1 DoT); W46 has 3 visits, W45 2, W48 none. See tests/it/report.rs for each figure.
pub fn events() -> Vec<Event> {
    let mut v = vec![
        // Coverage: running since W46, down one hour in W47.
        system(
            ny("2026-11-10T08:00"),
            "sensor_start",
            "shadowgate started",
            serde_json::json!({}),
        ),
        system(
            ny("2026-11-18T02:00"),
            "sensor_stop",
            "shadowgate stopped (signal)",
            serde_json::json!({"how": "signal"}),
        ),
        system(
            ny("2026-11-18T03:00"),
            "sensor_start",
            "shadowgate started",
            serde_json::json!({}),
        ),
        system(
            ny("2026-11-18T09:00"),
            "policy_reload",
            "policy reloaded: 1 rule changed",
            serde_json::json!({}),
        ),
        system(
            ny("2026-11-18T09:05"),
            "policy_rejected",
            "policy reload rejected (1 error)",
            serde_json::json!({"errors": ["x"]}),
        ),
        system(
            ny("2026-11-19T04:00"),
            "capture_gap",
            "x.pcap: 1000 bytes not read",
            serde_json::json!({"skipped_bytes": 1000}),
        ),
        system(
            ny("2026-11-19T05:00"),
            "kernel_drops",
            "kernel dropped 42 packets",
            serde_json::json!({"dropped": 42}),
        ),
        system(
            ny("2026-11-19T06:00"),
            "sink_down",
            "sink siem: connection refused",
            serde_json::json!({"sink": "siem"}),
        ),
        // The catalogue grew past the portal CA (issue 21 part 5).
        system(
            ny("2026-11-19T07:00"),
            "catalog_loaded",
            "catalogue 2026.12.1, 2027.01.1: 214 services, 827 patterns, 0 clinic overrides; the portal CA cannot certify 2 steered or coached names (browsers get a certificate error; make a new CA)",
            serde_json::json!({"version": "2026.12.1, 2027.01.1", "services": 214, "portal_uncertifiable": 2, "portal_uncertifiable_names": ["*.newai.example", "newai.example"]}),
        ),
        // W45: F uses four services once each (so they are not new in W47).
        tls(ny("2026-11-04T10:00"), F, "chatgpt", "steer"),
        tls(ny("2026-11-04T11:00"), F, "clinic-ai-portal", "allow"),
        tls(ny("2026-11-04T12:00"), F, "cloudflare-dns", "alert"),
        tls(ny("2026-11-04T13:00"), F, "google-dns", "alert"),
        // W46: A uses consumer AI (so it "moves" to the approved route in W47).
        tls(ny("2026-11-09T10:00"), A, "claude", "steer"),
        // A visit that starts in W46 (Sunday 23:50) and goes on into W47: counted in W46.
        tls(ny("2026-11-15T23:50"), C, "anthropic-api", "alert"),
        tls(ny("2026-11-16T00:15"), C, "anthropic-api", "alert"),
        // Sunday 22:00 in New York, Monday 03:00 UTC: W46 here.
        tls(utc("2026-11-16T03:00:00Z"), D, "gemini", "alert"),
        // W47. A: a lookup and three connections = 1 visit; 40 minutes later another visit.
        lookup(ny("2026-11-17T10:00"), A, "claude", "steer"),
        tls(ny("2026-11-17T10:01"), A, "claude", "steer"),
        tls(ny("2026-11-17T10:05"), A, "claude", "steer"),
        tls(ny("2026-11-17T10:20"), A, "claude", "steer"),
        tls(ny("2026-11-17T11:00"), A, "claude", "steer"),
        // A: a lookup alone (a link preview) is no visit.
        lookup(ny("2026-11-18T09:00"), A, "chatgpt", "steer"),
        // A: the approved route.
        tls(ny("2026-11-19T10:00"), A, "clinic-ai-portal", "allow"),
        // B: two blocked visits, its address changed in between (DHCP).
        tls(ny("2026-11-16T09:00"), B, "chatgpt", "block"),
        tls(ny("2026-11-20T14:00"), B2, "chatgpt", "block"),
        // B: DNS bypass, DoH and DoT.
        tls(ny("2026-11-18T12:00"), B, "cloudflare-dns", "alert"),
        event(
            ny("2026-11-18T12:01"),
            B,
            "tls_client_hello",
            "google-dns",
            "alert",
            853,
        ),
        // B: DoT to the clinic's own upstream (allowed by rule `upstream`): no bypass, no visit.
        {
            let mut e = event(
                ny("2026-11-18T12:02"),
                B,
                "tls_client_hello",
                "quad9",
                "allow",
                853,
            );
            e.rule_id = "upstream".into();
            e.detail = Some(r#"{"enforcement":"allowed","matched_by":"upstream"}"#.into());
            e
        },
        // C: starts Sunday 23:50 of W47, goes on past midnight into W48: one W47 visit.
        tls(ny("2026-11-22T23:50"), C, "anthropic-api", "alert"),
        tls(ny("2026-11-23T00:10"), C, "anthropic-api", "alert"),
        // D: Sunday 23:30 in New York (Monday 04:30 UTC): W47 here.
        tls(utc("2026-11-23T04:30:00Z"), D, "gemini", "alert"),
        // E: a coached portal view (a visit), its acknowledgement, and a new service.
        portal(
            ny("2026-11-19T15:00"),
            E,
            "portal_view",
            "claude",
            "coach",
            serde_json::json!({"page": "coach"}),
        ),
        portal(
            ny("2026-11-19T15:01"),
            E,
            "coach_ack",
            "claude",
            "info",
            serde_json::json!({"justification": "Summarising a public guideline, no patient data"}),
        ),
        portal(
            ny("2026-11-19T15:31"),
            E,
            "grant_expired",
            "claude",
            "info",
            serde_json::json!({}),
        ),
        tls(ny("2026-11-20T16:00"), E, "sora", "steer"),
    ];
    // Stored out of time order, as several writers may do.
    v.reverse();
    v
}

pub fn store(path: &Path) {
    let mut st = Store::open(path).unwrap();
    let mut evs = events();
    st.append(&mut evs).unwrap();
}

pub fn inventory(path: &Path) {
    std::fs::write(
        path,
        "mac,hostname,owner,department,location\n02:00:00:00:00:bb,,Dr Berg,Cardiology,Room 2\n,ws-01,Ann Alder,Front desk,Lobby\n",
    )
    .unwrap();
}
