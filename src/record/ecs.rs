//! Event -> Elastic Common Schema document (`@timestamp`, `event.*`, `source.*`,
//! `destination.*`, `dns.question.name`, `tls.client.server_name`, `url.domain`, `rule.id`, ...).
//! Fields ECS has no place for live under `shadowgate.*`.

use serde_json::{json, Map, Value};

use super::event::Event;

/// ECS `event.severity` (numeric) for a policy severity word.
pub fn severity_number(s: &str) -> u8 {
    match s {
        "info" => 1,
        "low" => 3,
        "medium" => 5,
        "high" => 8,
        "critical" => 10,
        _ => 5,
    }
}

/// ECS `event.type` for an action: stopped traffic (block, steer, coach) is `denied`, allowed
/// traffic `allowed`, an alert (let through, reported) `info`.
pub fn event_type(action: &str) -> &'static str {
    match action {
        "block" | "steer" | "coach" => "denied",
        "allow" => "allowed",
        _ => "info",
    }
}

/// ECS `event.category` and `event.type` of a system event kind.
fn system_category(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "sensor_start" => ("process", "start"),
        "sensor_stop" => ("process", "end"),
        "policy_reload" | "catalog_loaded" => ("configuration", "change"),
        "policy_rejected" => ("configuration", "error"),
        "retention" => ("database", "deletion"),
        "store_full" | "store_ok" => ("database", "info"),
        // Capture gaps, kernel drops, sink outages and recoveries: the sensor's own health.
        _ => ("host", "info"),
    }
}

/// The ECS document of a system event (`event.dataset` = `shadowgate.system`).
fn system_document(e: &Event) -> Value {
    let (category, typ) = system_category(&e.kind);
    let outcome = match e.kind.as_str() {
        "policy_rejected" | "sink_down" | "capture_gap" | "kernel_drops" | "dns_upstream_down"
        | "store_full" => "failure",
        _ => "success",
    };
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
            "action": e.kind,
            "outcome": outcome,
            "severity": severity_number(&e.severity),
            "dataset": "shadowgate.system",
            "module": "shadowgate",
            "sequence": e.seq,
        },
        "message": e.name,
        "rule": { "id": e.rule_id, "ruleset": "shadowgate-system" },
        "observer": { "name": e.sensor, "type": "sensor", "vendor": "shadowgate", "product": "shadowgate" },
        "shadowgate": { "system": e.kind, "detail": detail },
    })
}

pub fn document(e: &Event) -> Value {
    if e.is_system() {
        return system_document(e);
    }
    let mut d = Map::new();
    d.insert("@timestamp".into(), json!(e.time()));
    d.insert(
        "event".into(),
        json!({
            "id": e.id,
            "kind": if e.action == "allow" { "event" } else { "alert" },
            "category": ["network"],
            "type": [event_type(&e.action)],
            "action": e.action,
            "severity": severity_number(&e.severity),
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
    let proto = match e.seen_via.as_str() {
        "dns" => "dns",
        "http" => "http",
        "quic" => "quic",
        _ => "tls",
    };
    d.insert(
        "network".into(),
        json!({ "transport": e.transport, "protocol": proto }),
    );
    match e.kind.as_str() {
        "dns_query" | "dns_answer" => {
            d.insert("dns".into(), json!({ "question": { "name": e.name } }));
        }
        "tls_client_hello" | "quic_initial" => {
            d.insert("tls".into(), json!({ "client": { "server_name": e.name } }));
        }
        "http_request" => {
            d.insert("url".into(), json!({ "domain": e.name }));
        }
        _ => {}
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
            "category": e.category,
            "seen_via": e.seen_via,
            "evidence": e.evidence,
            "observation": e.kind,
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
            ("block", "denied"),
            ("steer", "denied"),
            ("coach", "denied"),
            ("allow", "allowed"),
            ("alert", "info"),
        ] {
            assert_eq!(event_type(a), t, "{a}");
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
