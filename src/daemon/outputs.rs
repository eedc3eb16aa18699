//! What the daemon adds to each capture pipeline: the event `detail` saying what enforcement did,
//! and the device table's completion of each observation before the policy decides.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::devices::Devices;
use crate::enforce::grants::Grants;
use crate::flow::{Kind, Observation};
use crate::pipeline::Annotate;
use crate::policy::{Action, Decision};

/// Does this decision stop traffic (for a client without a grant)?
pub fn stops(d: &Decision) -> bool {
    matches!(d.action, Action::Block | Action::Steer | Action::Coach)
}

/// The `detail` of a capture decision's event: what enforcement did (or would have done).
pub fn annotator(grants: Arc<Grants>, enforcing: Arc<AtomicBool>) -> Annotate {
    Box::new(move |o: &Observation, d: &Decision| {
        if !stops(d) {
            return None;
        }
        let granted = d.action == Action::Coach
            && d.service
                .as_deref()
                .is_some_and(|s| grants.active(o.client.ip, s));
        let how = match o.kind {
            Kind::TlsClientHello | Kind::HttpRequest | Kind::ProxyConnect => "reset",
            Kind::QuicInitial => "quic_drop",
            Kind::DnsQuery | Kind::DnsAnswer => "quic_drop_answered",
        };
        let state = if granted {
            "granted"
        } else if enforcing.load(Ordering::Relaxed) {
            "stopped"
        } else {
            "would_stop"
        };
        Some(json!({"enforcement": state, "how": how}).to_string())
    })
}

/// Learn the client's MAC and DHCP host name from an observation into the device table, and
/// complete what the observation lacks from it (neighbour table, leases file).
pub fn enricher(devices: Arc<Devices>) -> crate::pipeline::Enrich {
    Box::new(move |o: &mut Observation| {
        crate::devices::learn_from_observation(&devices, o);
        let c = &mut o.client;
        if c.mac.is_none() || c.hostname.is_none() {
            if let Some(d) = devices.lookup(c.ip) {
                if c.mac.is_none() {
                    c.mac = d.mac;
                }
                if c.hostname.is_none() {
                    c.hostname = d.hostname;
                }
            }
        }
    })
}
