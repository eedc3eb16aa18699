//! What the portal sees, for the one decision path: a page request becomes an observation
//! (`http_request`, or `tls_client_hello` over HTTPS) that the judge completes, decides and
//! records as `portal_view` or `coach_ack`; an ended grant becomes a `grant_expired` event.

use std::net::SocketAddr;

use crate::enforce::grants::Grants;
use crate::flow::observation::{mac_string, Transport};
use crate::flow::{Kind, Observation};
use crate::pipeline::Judge;
use crate::policy::{Policy, Via};
use crate::record::Event;

/// Who and where: the client (address, port, device) and the portal socket it reached.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// A request for `name` from `peer` (`via`: TLS for HTTPS, HTTP otherwise), as the policy
/// sees it: the name is on the wire (the SNI or the Host header).
pub fn observation(name: &str, peer: Peer, via: Via) -> Observation {
    let kind = if via == Via::Tls {
        Kind::TlsClientHello
    } else {
        Kind::HttpRequest
    };
    Observation::between(
        crate::time::now_ns(),
        kind,
        Some(name.to_string()),
        Transport::Tcp,
        peer.client,
        peer.server,
    )
}

/// Take the expired grants out of `grants` and make one `grant_expired` event each. Only one
/// task may call this (or [`Grants::expire`]) in a process: the portal's expiry task does.
pub fn expiry_events(grants: &Grants, judge: &Judge, policy: &Policy) -> Vec<Event> {
    grants
        .expire()
        .into_iter()
        .map(|g| {
            let dev = judge
                .devices()
                .and_then(|d| d.lookup(g.client))
                .unwrap_or_default();
            let svc = policy.services().iter().find(|s| s.id == g.service);
            Event::grant_expired(
                crate::time::now_ns(),
                judge.sensor(),
                g.client,
                (dev.mac.as_ref().map(mac_string), dev.hostname),
                &g.service,
                svc,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Devices;
    use crate::policy::reload::PolicyHandle;
    use crate::record::{EventKind, PortalKind};
    use serde_json::json;
    use std::net::IpAddr;
    use std::sync::Arc;

    #[test]
    fn coach_ack_reaches_the_siem_with_its_justification() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let handle = Arc::new(PolicyHandle::load(&dir).unwrap());
        let p = handle.current();
        let ip: IpAddr = "10.20.1.2".parse().unwrap();
        let devices = Arc::new(Devices::new());
        devices.learn(ip, Some([2, 0, 0, 0, 0, 7]), Some("frontdesk-3"));
        let judge = Judge::new(Arc::clone(&handle), "s1").with_devices(devices);
        let peer = Peer {
            client: SocketAddr::new(ip, 50000),
            server: "10.0.0.1:443".parse().unwrap(),
        };
        let mut o = observation("chatgpt.com", peer, Via::Tls);
        let d = judge.decide(&mut o).unwrap();
        // The judge named the device from the table.
        assert_eq!(o.client.hostname.as_deref(), Some("frontdesk-3"));
        let extra = json!({ "justification": "newsletter draft" });
        let e = Event::decided(
            PortalKind::CoachAck.into(),
            &o,
            &d,
            "s1",
            None,
            extra.as_object().cloned(),
        );
        assert_eq!(e.kind, EventKind::Portal(PortalKind::CoachAck));
        assert_eq!(e.client_hostname.as_deref(), Some("frontdesk-3"));
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
        let ev = expiry_events(&g, &judge, &p);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Portal(PortalKind::GrantExpired));
        assert_eq!(ev[0].client_mac.as_deref(), Some("02:00:00:00:00:07"));
        assert_eq!(ev[0].service_name.as_deref(), Some("ChatGPT"));
        assert!(g.is_empty());
    }
}
