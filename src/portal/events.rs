//! The portal's events for the store and the SIEM: `portal_view` (a top-level page view),
//! `coach_ack` (an acknowledgement, with the justification) and `grant_expired`.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use crate::devices::Devices;
use crate::enforce::grants::Grants;
use crate::flow::observation::mac_string;
use crate::policy::{Decision, Policy};
use crate::record::Event;

pub const PORTAL_VIEW: &str = "portal_view";
pub const COACH_ACK: &str = "coach_ack";
pub const GRANT_EXPIRED: &str = "grant_expired";

/// Who and where: the client (address, port, device) and the portal socket it reached.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// An event of `kind` about `name` for `peer`, from the decision that put the page up.
pub fn portal_event(
    kind: &str,
    sensor: &str,
    peer: Peer,
    devices: &Devices,
    d: &Decision,
    detail: Value,
) -> Event {
    let ts = crate::time::now_ns();
    let dev = devices.lookup(peer.client.ip());
    let via = serde_json::to_value(d.via)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Event {
        id: ulid::Ulid::from_datetime(crate::time::ns_to_system(ts)).to_string(),
        seq: 0,
        ts,
        sensor: sensor.to_string(),
        client_ip: peer.client.ip().to_string(),
        client_port: peer.client.port(),
        client_mac: dev.as_ref().and_then(|d| d.mac.as_ref().map(mac_string)),
        client_hostname: dev.and_then(|d| d.hostname),
        client_groups: d.groups.join(","),
        server_ip: peer.server.ip().to_string(),
        server_port: peer.server.port(),
        transport: "tcp".into(),
        kind: kind.to_string(),
        name: d.matched_name.clone(),
        seen_via: via,
        evidence: Some(d.evidence.as_str().to_string()),
        service: d.service.clone(),
        service_name: d.service_name.clone(),
        category: d.category.map(|c| c.as_str().to_string()),
        action: d.action.as_str().to_string(),
        severity: d.severity.as_str().to_string(),
        rule_id: d.rule_id.clone(),
        steer_url: d.steer_to.as_ref().map(|s| s.url.clone()),
        shared_tenant: d.shared_tenant,
        repeat_count: 1,
        detail: Some(detail.to_string()),
    }
}

/// Take the expired grants out of `grants` and make one `grant_expired` event each. Only one
/// task may call this (or [`Grants::expire`]) in a process: the portal's expiry task does.
pub fn expiry_events(
    grants: &Grants,
    sensor: &str,
    policy: &Policy,
    devices: &Devices,
) -> Vec<Event> {
    grants
        .expire()
        .into_iter()
        .map(|g| grant_expired(&g.client, &g.service, sensor, policy, devices))
        .collect()
}

fn grant_expired(
    client: &IpAddr,
    service: &str,
    sensor: &str,
    policy: &Policy,
    devices: &Devices,
) -> Event {
    let ts = crate::time::now_ns();
    let dev = devices.lookup(*client);
    let svc = policy.services().iter().find(|s| s.id == service);
    Event {
        id: ulid::Ulid::from_datetime(crate::time::ns_to_system(ts)).to_string(),
        seq: 0,
        ts,
        sensor: sensor.to_string(),
        client_ip: client.to_string(),
        client_port: 0,
        client_mac: dev.as_ref().and_then(|d| d.mac.as_ref().map(mac_string)),
        client_hostname: dev.and_then(|d| d.hostname),
        client_groups: String::new(),
        server_ip: String::new(),
        server_port: 0,
        transport: String::new(),
        kind: GRANT_EXPIRED.to_string(),
        name: service.to_string(),
        seen_via: "portal".into(),
        evidence: None,
        service: Some(service.to_string()),
        service_name: svc.map(|s| s.name.clone()),
        category: svc.map(|s| s.category.as_str().to_string()),
        action: "coach".into(),
        severity: "info".into(),
        rule_id: "portal.grant_expired".into(),
        steer_url: None,
        shared_tenant: svc.is_some_and(|s| s.shared_tenant.is_some()),
        repeat_count: 1,
        detail: Some(json!({ "service": service, "client": client.to_string() }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Client;

    #[test]
    fn coach_ack_reaches_the_siem_with_its_justification() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let p = Policy::load(&dir).unwrap();
        let ip: IpAddr = "10.20.1.2".parse().unwrap();
        let c = Client {
            ip: Some(ip),
            ..Client::default()
        };
        let d = p
            .decide_on(
                "chatgpt.com",
                &c,
                0,
                crate::policy::Via::Tls,
                crate::flow::Evidence::Wire,
            )
            .unwrap();
        let peer = Peer {
            client: SocketAddr::new(ip, 50000),
            server: "10.0.0.1:443".parse().unwrap(),
        };
        let e = portal_event(
            COACH_ACK,
            "s1",
            peer,
            &Devices::new(),
            &d,
            json!({ "justification": "newsletter draft" }),
        );
        assert_eq!(e.kind, COACH_ACK);
        assert_eq!(e.client_ip, "10.20.1.2");
        assert_eq!(e.service.as_deref(), Some("chatgpt"));
        let doc = crate::record::ecs::document(&e);
        assert_eq!(
            doc["shadowgate"]["detail"]["justification"],
            "newsletter draft"
        );
        assert!(crate::record::sinks::cef(&e).contains("newsletter draft"));
        let g = Grants::new();
        g.grant(ip, "chatgpt", std::time::Duration::ZERO);
        let ev = expiry_events(&g, "s1", &p, &Devices::new());
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, GRANT_EXPIRED);
        assert_eq!(ev[0].service_name.as_deref(), Some("ChatGPT"));
        assert!(g.is_empty());
    }
}
