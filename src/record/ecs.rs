//! Event -> Elastic Common Schema document (`@timestamp`, `event.*`, `source.*`,
//! `destination.*`, `dns.question.name`, `tls.client.server_name`, `url.domain`, `rule.id`, ...).
//! Fields ECS has no place for live under `shadowgate.*`.

use serde_json::{json, Map, Value};

use super::event::{Event, SystemKind};
use super::words::{EventKind, Word};
use crate::flow::Kind;
use crate::policy::{Action, Severity, Via};

/// ECS `event.severity` (numeric) for a policy severity.
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// ECS `event.type` for an action: stopped traffic (block, steer, coach) is `denied`, allowed
/// traffic `allowed`, an alert (let through, reported) and no action (system events) `info`.
pub fn event_type(action: Option<Action>) -> &'static str {
    match action {
        Some(Action::Block | Action::Steer | Action::Coach) => "denied",
        Some(Action::Allow) => "allowed",
        Some(Action::Alert) | None => "info",
    }
}

/// ECS `event.category`, `event.type` and `event.outcome` of a system event kind.
fn system_category(kind: SystemKind) -> (&'static str, &'static str, &'static str) {
    use SystemKind as K;
    let (category, typ) = match kind {
        K::SensorStart => ("process", "start"),
        K::SensorStop => ("process", "end"),
        K::PolicyReload | K::CatalogLoaded => ("configuration", "change"),
        K::PolicyRejected => ("configuration", "error"),
        K::Retention => ("database", "deletion"),
        K::StoreFull | K::StoreOk => ("database", "info"),
        // Capture gaps, kernel drops, sink outages and recoveries: the sensor's own health.
        K::CaptureGap
        | K::KernelDrops
        | K::SinkDown
        | K::SinkUp
        | K::BreakGlass
        | K::DnsUpstreamDown
        | K::DnsUpstreamUp
        | K::SetFull => ("host", "info"),
        K::DnsBypass => ("network", "denied"),
        K::Spoofed => ("intrusion_detection", "info"),
        // Traffic the gateway cannot name (VPN, relay, ECH without DNS).
        K::BlindSpot => ("network", "info"),
    };
    let outcome = match kind {
        K::PolicyRejected
        | K::SinkDown
        | K::CaptureGap
        | K::KernelDrops
        | K::DnsUpstreamDown
        | K::StoreFull
        | K::SetFull
        | K::Spoofed => "failure",
        K::SensorStart
        | K::SensorStop
        | K::PolicyReload
        | K::SinkUp
        | K::Retention
        | K::StoreOk
        | K::BreakGlass
        | K::DnsUpstreamUp
        | K::CatalogLoaded
        | K::DnsBypass => "success",
        K::BlindSpot => "unknown",
    };
    (category, typ, outcome)
}

/// The ECS document of a system event (`event.dataset` = `shadowgate.system`).
fn system_document(e: &Event, kind: SystemKind) -> Value {
    let (category, typ, outcome) = system_category(kind);
    let detail: Value = e
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    json!({
        "@timestamp": e.time(),
        "event": {
            "id": e.id,
            "kind": "event",
            "category": [category],
            "type": [typ],
            "action": kind.as_str(),
            "outcome": outcome,
            "severity": severity_number(e.severity),
            "dataset": "shadowgate.system",
            "module": "shadowgate",
            "sequence": e.seq,
        },
        "message": e.name,
        "rule": { "id": e.rule_id, "ruleset": "shadowgate-system" },
        "observer": { "name": e.sensor, "type": "sensor", "vendor": "shadowgate", "product": "shadowgate" },
        "shadowgate": { "system": kind.as_str(), "detail": detail },
    })
}

pub fn document(e: &Event) -> Value {
    if let EventKind::System(k) = e.kind {
        return system_document(e, k);
    }
    let mut d = Map::new();
    d.insert("@timestamp".into(), json!(e.time()));
    d.insert(
        "event".into(),
        json!({
            "id": e.id,
            "kind": if e.action == Some(Action::Allow) { "event" } else { "alert" },
            "category": ["network"],
            "type": [event_type(e.action)],
            "action": e.action_word(),
            "severity": severity_number(e.severity),
            "dataset": "shadowgate.decision",
            "module": "shadowgate",
            "sequence": e.seq,
        }),
    );
    let mut source = json!({ "ip": e.client_ip, "port": e.client_port });
    if let Some(m) = &e.client_mac {
        source["mac"] = json!(m.replace(':', "-").to_ascii_uppercase());
    }
    if let Some(h) = &e.client_hostname {
        source["domain"] = json!(h);
    }
    d.insert("source".into(), source);
    d.insert(
        "destination".into(),
        json!({ "ip": e.server_ip, "port": e.server_port, "domain": e.name }),
    );
    let proto = match Via::parse(&e.seen_via) {
        Some(Via::Dns) => "dns",
        Some(Via::Http) => "http",
        Some(Via::Quic) => "quic",
        _ => "tls",
    };
    d.insert(
        "network".into(),
        json!({ "transport": e.transport.map_or("", Word::word), "protocol": proto }),
    );
    match e.kind {
        EventKind::Observed(Kind::DnsQuery | Kind::DnsAnswer) => {
            d.insert("dns".into(), json!({ "question": { "name": e.name } }));
        }
        EventKind::Observed(Kind::TlsClientHello | Kind::QuicInitial) => {
            d.insert("tls".into(), json!({ "client": { "server_name": e.name } }));
        }
        EventKind::Observed(Kind::HttpRequest) => {
            d.insert("url".into(), json!({ "domain": e.name }));
        }
        EventKind::Observed(Kind::ProxyConnect) | EventKind::Portal(_) | EventKind::System(_) => {}
    }
    d.insert(
        "rule".into(),
        json!({ "id": e.rule_id, "ruleset": "shadowgate-policy" }),
    );
    d.insert("observer".into(), json!({ "name": e.sensor, "type": "sensor", "vendor": "shadowgate", "product": "shadowgate" }));
    d.insert(
        "shadowgate".into(),
        json!({
            "service": e.service,
            "service_name": e.service_name,
            "category": e.category.map(Word::word),
            "seen_via": e.seen_via,
            "evidence": e.evidence.map(Word::word),
            "observation": e.kind.word(),
            "client_groups": if e.client_groups.is_empty() { vec![] } else { e.client_groups.split(',').collect::<Vec<_>>() },
            "steer_url": e.steer_url,
            "shared_tenant": e.shared_tenant,
            "repeat_count": e.repeat_count,
        }),
    );
    // Portal events (`coach_ack`: the justification) carry a JSON detail.
    if let Some(dt) = e.detail.as_deref() {
        d["shadowgate"]["detail"] = serde_json::from_str(dt).unwrap_or_else(|_| json!(dt));
    }
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_traffic_is_denied_and_allowed_traffic_allowed() {
        for (a, t) in [
            (Some(Action::Block), "denied"),
            (Some(Action::Steer), "denied"),
            (Some(Action::Coach), "denied"),
            (Some(Action::Allow), "allowed"),
            (Some(Action::Alert), "info"),
            (None, "info"),
        ] {
            assert_eq!(event_type(a), t, "{a:?}");
        }
    }

    #[test]
    fn system_events_have_their_own_dataset_and_category() {
        use crate::record::event::SystemKind;
        let e = Event::system(
            SystemKind::PolicyRejected,
            1_700_000_000_000_000_000,
            "gw1",
            "policy reload rejected: 1 error",
            json!({"errors": ["policy.toml:3:1: unknown action"]}),
        );
        let d = document(&e);
        assert_eq!(d["event"]["dataset"], "shadowgate.system");
        assert_eq!(d["event"]["category"][0], "configuration");
        assert_eq!(d["event"]["outcome"], "failure");
        assert_eq!(d["event"]["action"], "policy_rejected");
        assert_eq!(
            d["shadowgate"]["detail"]["errors"][0],
            "policy.toml:3:1: unknown action"
        );
    }
}
