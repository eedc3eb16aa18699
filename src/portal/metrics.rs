//! The portal's Prometheus metrics, registered on the registry the daemon gives it: requests by
//! kind, leaves minted, handshakes refused, grants given, expired and active, events dropped, a CA wider than the policy in force,
//! steered names the CA cannot certify.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) struct Metrics {
    pub requests: IntCounterVec,
    pub certs_minted: IntCounter,
    pub tls_refused: IntCounter,
    pub grants: IntCounter,
    pub grants_expired: IntCounter,
    pub grants_active: IntGauge,
    pub events_dropped: IntCounter,
    pub ca_too_wide: IntGauge,
    pub uncertifiable: IntGauge,
}

impl Metrics {
    pub fn register(r: &Registry) -> Result<Metrics, String> {
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "shadowgate_portal_requests_total",
                    "Portal requests by kind (steer, coach, granted, neutral, subresource, coach_ack, coach_refused, limited, bad_request)",
                ),
                &["kind"],
            )
            .map_err(|e| e.to_string())?,
            certs_minted: IntCounter::new(
                "shadowgate_portal_certs_minted_total",
                "Leaf certificates minted by the portal CA",
            )
            .map_err(|e| e.to_string())?,
            tls_refused: IntCounter::new(
                "shadowgate_portal_tls_refused_total",
                "TLS handshakes given no certificate (name not steered or coached for the client, or outside the CA)",
            )
            .map_err(|e| e.to_string())?,
            grants: IntCounter::new(
                "shadowgate_portal_grants_total",
                "Coach grants given after an acknowledgement",
            )
            .map_err(|e| e.to_string())?,
            grants_expired: IntCounter::new(
                "shadowgate_portal_grants_expired_total",
                "Coach grants that expired",
            )
            .map_err(|e| e.to_string())?,
            grants_active: IntGauge::new(
                "shadowgate_portal_grants_active",
                "Coach grants in force",
            )
            .map_err(|e| e.to_string())?,
            events_dropped: IntCounter::new(
                "shadowgate_portal_events_dropped_total",
                "Portal events the recorder queue had no room for",
            )
            .map_err(|e| e.to_string())?,
            ca_too_wide: IntGauge::new(
                "shadowgate_portal_ca_too_wide",
                "1 when a policy reload left the portal CA able to certify names the policy no longer steers or coaches (make a new CA; the daemon refuses it at the next start)",
            )
            .map_err(|e| e.to_string())?,
            uncertifiable: IntGauge::new(
                "shadowgate_portal_uncertifiable_names",
                "Steered or coached catalogue patterns outside the portal CA's name constraints (the catalogue grew after the CA was made): browsers get a certificate error for them; make a new CA",
            )
            .map_err(|e| e.to_string())?,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.certs_minted.clone()),
            Box::new(m.tls_refused.clone()),
            Box::new(m.grants.clone()),
            Box::new(m.grants_expired.clone()),
            Box::new(m.grants_active.clone()),
            Box::new(m.events_dropped.clone()),
            Box::new(m.ca_too_wide.clone()),
            Box::new(m.uncertifiable.clone()),
        ] {
            r.register(c)
                .map_err(|e| format!("portal metrics: {e} (is the portal started twice?)"))?;
        }
        Ok(m)
    }
}
