//! The event: one policy decision about one observation, as the clinic audits it. Sortable id
//! (ULID), sensor, client (IP, MAC, DHCP host name, groups), service, name and how it was seen,
//! action, rule, steer target, flow addresses and a repeat count (aggregated alerts).

use serde::{Deserialize, Serialize};

use super::words::{self, Enforced, EventKind, PortalKind, Word};
use crate::csv_out::Cell;
use crate::flow::observation::{mac_string, Transport};
use crate::flow::{Evidence, Observation};
use crate::policy::config::Category;
use crate::policy::{Action, Decision, Service, Severity};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// ULID: sortable by creation time, unique across sensors.
    pub id: String,
    /// Store sequence number (0 until stored); sinks deliver in this order.
    #[serde(default)]
    pub seq: i64,
    /// Event time: the observation's capture time, ns since the Unix epoch.
    pub ts: u64,
    pub sensor: String,
    pub client_ip: String,
    pub client_port: u16,
    pub client_mac: Option<String>,
    pub client_hostname: Option<String>,
    /// Client groups, comma-separated, in policy order.
    pub client_groups: String,
    pub server_ip: String,
    pub server_port: u16,
    /// None for events about no flow (system events, grant expiries): written `""`.
    #[serde(with = "transport_word")]
    pub transport: Option<Transport>,
    /// What the event is about: an observation's kind (`dns_query`, `tls_client_hello`, ...), a
    /// portal event or a system event.
    #[serde(with = "words::word")]
    pub kind: EventKind,
    /// The name the decision is about, and how it was seen (`dns`, `tls`, `quic`, `http`, `inferred`).
    pub name: String,
    pub seen_via: String,
    /// How strongly the traffic shows the name: `wire`, `own_lookup`, `resolver_lookup`,
    /// `other_client`, `unmatched_answer` (none for system events and events stored before v4).
    #[serde(default, with = "words::opt_word")]
    pub evidence: Option<Evidence>,
    pub service: Option<String>,
    pub service_name: Option<String>,
    #[serde(default, with = "words::opt_word")]
    pub category: Option<Category>,
    /// The policy's action; none for system events (written `info`).
    #[serde(with = "action_word")]
    pub action: Option<Action>,
    #[serde(with = "words::word")]
    pub severity: Severity,
    pub rule_id: String,
    pub steer_url: Option<String>,
    pub shared_tenant: bool,
    /// Events folded into this one (1 for a single event).
    pub repeat_count: u32,
    /// What happened, as a JSON object: for a decision what enforcement did (`enforcement`,
    /// `how` or `dns_answer`: [`Enforced::detail`]) and what the portal adds; for a system
    /// event its errors, counts, digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `transport` as its word, `""` for none.
mod transport_word {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Transport>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(words::or_word(*v, ""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Transport>, D::Error> {
        words::from_or_word(&String::deserialize(d)?, "").map_err(serde::de::Error::custom)
    }
}

/// `action` as its word, `info` for none.
mod action_word {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Action>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(words::or_word(*v, INFO))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Action>, D::Error> {
        words::from_or_word(&String::deserialize(d)?, INFO).map_err(serde::de::Error::custom)
    }
}

/// The `action` word of events without a policy action (system events).
pub const INFO: &str = "info";

/// An `action` word as the store and the CLI write it: a policy action, or none for `info`.
pub fn parse_action(s: &str) -> Result<Option<Action>, String> {
    words::from_or_word(s, INFO).map_err(|_| {
        format!("unknown action `{s}`: use one of allow, alert, block, steer, coach, info")
    })
}

/// The system's own events (`seen_via` = `system`): coverage and changes for the report and SIEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemKind {
    /// The sensor started (version, policy digest).
    SensorStart,
    /// The sensor stopped (how, counters).
    SensorStop,
    /// A new policy was accepted (digests, what changed).
    PolicyReload,
    /// A policy failed validation; the previous one stays in force (errors).
    PolicyRejected,
    /// Part of the input was not seen (damaged capture, recorder behind).
    CaptureGap,
    /// The kernel dropped packets in an interval.
    KernelDrops,
    /// A SIEM sink failed; events wait in the store.
    SinkDown,
    /// A SIEM sink delivers again.
    SinkUp,
    /// Retention deleted old events (by age, or the oldest delivered ones for the size cap).
    Retention,
    /// The store is over its size cap and nothing more can be deleted: every event left is
    /// one a sink has not delivered yet (undelivered events are never deleted).
    StoreFull,
    /// The store is back under its size cap.
    StoreOk,
    /// Enforcement was turned off (or on again) with the break-glass switch.
    BreakGlass,
    /// No upstream resolver answered DNS mode for a minute: lookups fail (the daemon runs on).
    DnsUpstreamDown,
    /// An upstream resolver answers again.
    DnsUpstreamUp,
    /// The service catalogue in force (at start and each accepted reload): versions, counts,
    /// the clinic's overrides, and steered names the portal CA cannot certify.
    CatalogLoaded,
    /// A client reached its quota of stop entries or QUIC drops (or a shared set is full): its
    /// further flows are still reset but not added (at most once a minute per kind).
    SetFull,
    /// A device looked up a browser's or its OS's bypass name (DNS over HTTPS canary, iCloud
    /// Private Relay, designated resolvers), answered by the resolver (once an hour per client
    /// and name).
    DnsBypass,
    /// A frame whose source address the gateway binds to another MAC (its DHCP server's lease,
    /// its neighbour table): a device speaking in another's name. Decided and recorded as
    /// `unverified_source`, never acted on; the event names the MAC that sent it (once a minute
    /// per address and MAC).
    Spoofed,
    /// Traffic from a device the gateway cannot name: a VPN handshake (WireGuard, OpenVPN,
    /// IKE), iCloud Private Relay, or an ECH hello with no name from DNS (once a minute of
    /// capture time per device and kind; the clinic's `known_tunnels` are not counted).
    BlindSpot,
}

impl SystemKind {
    pub const ALL: [SystemKind; 19] = [
        SystemKind::SensorStart,
        SystemKind::SensorStop,
        SystemKind::PolicyReload,
        SystemKind::PolicyRejected,
        SystemKind::CaptureGap,
        SystemKind::KernelDrops,
        SystemKind::SinkDown,
        SystemKind::SinkUp,
        SystemKind::Retention,
        SystemKind::StoreFull,
        SystemKind::StoreOk,
        SystemKind::BreakGlass,
        SystemKind::DnsUpstreamDown,
        SystemKind::DnsUpstreamUp,
        SystemKind::CatalogLoaded,
        SystemKind::SetFull,
        SystemKind::DnsBypass,
        SystemKind::Spoofed,
        SystemKind::BlindSpot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemKind::SensorStart => "sensor_start",
            SystemKind::SensorStop => "sensor_stop",
            SystemKind::PolicyReload => "policy_reload",
            SystemKind::PolicyRejected => "policy_rejected",
            SystemKind::CaptureGap => "capture_gap",
            SystemKind::KernelDrops => "kernel_drops",
            SystemKind::SinkDown => "sink_down",
            SystemKind::SinkUp => "sink_up",
            SystemKind::Retention => "retention",
            SystemKind::StoreFull => "store_full",
            SystemKind::StoreOk => "store_ok",
            SystemKind::BreakGlass => "break_glass",
            SystemKind::DnsUpstreamDown => "dns_upstream_down",
            SystemKind::DnsUpstreamUp => "dns_upstream_up",
            SystemKind::CatalogLoaded => "catalog_loaded",
            SystemKind::SetFull => "set_full",
            SystemKind::DnsBypass => "dns_bypass",
            SystemKind::Spoofed => "spoofed",
            SystemKind::BlindSpot => "blind_spot",
        }
    }

    /// Severity of the event (failures and gaps matter to the compliance officer).
    fn severity(self) -> Severity {
        match self {
            SystemKind::PolicyRejected
            | SystemKind::CaptureGap
            | SystemKind::SinkDown
            | SystemKind::DnsUpstreamDown
            | SystemKind::StoreFull
            | SystemKind::BreakGlass
            | SystemKind::Spoofed => Severity::High,
            SystemKind::KernelDrops | SystemKind::SetFull => Severity::Medium,
            SystemKind::SensorStart
            | SystemKind::SensorStop
            | SystemKind::PolicyReload
            | SystemKind::SinkUp
            | SystemKind::Retention
            | SystemKind::StoreOk
            | SystemKind::DnsUpstreamUp
            | SystemKind::CatalogLoaded => Severity::Info,
            SystemKind::DnsBypass | SystemKind::BlindSpot => Severity::Low,
        }
    }
}

/// `seen_via` of system events.
pub const SYSTEM: &str = "system";

impl Event {
    /// The one event of a decision: `kind` is the observation's kind, or what the portal did
    /// about it; `enforced` what became of it at the gateway (none where nothing acts: replay);
    /// `extra` further `detail` fields (the portal's page, a justification).
    pub fn decided(
        kind: EventKind,
        o: &Observation,
        d: &Decision,
        sensor: &str,
        enforced: Option<Enforced>,
        extra: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Event {
        let mut detail = enforced.map(Enforced::detail).unwrap_or_default();
        if o.flags.contains(&crate::flow::Flag::UnverifiedSource) {
            // The source may be forged: not acted on, and no visit in the report.
            detail.insert("unverified_source".into(), true.into());
        }
        if o.flags.contains(&crate::flow::Flag::Desync) {
            // Decided on another version of the connection's first flight (a bypass tool's fake
            // came first): the SIEM sees the attempt.
            detail.insert("desync".into(), true.into());
        }
        if !d.matched_by.is_name() {
            // Matched by the server's address or port, or the clinic's own resolver: `name` is
            // then the server address.
            detail.insert("matched_by".into(), d.matched_by.as_str().into());
        }
        detail.extend(extra.unwrap_or_default());
        Event {
            id: ulid::Ulid::from_datetime(crate::time::ns_to_system(o.ts)).to_string(),
            seq: 0,
            ts: o.ts,
            sensor: sensor.to_string(),
            client_ip: o.client.ip.to_string(),
            client_port: o.client.port,
            client_mac: o.client.mac.as_ref().map(mac_string),
            client_hostname: o.client.hostname.clone(),
            client_groups: d.groups.join(","),
            server_ip: o.server.ip.to_string(),
            server_port: o.server.port,
            transport: Some(o.transport),
            kind,
            name: d.matched_name.clone(),
            seen_via: d.via.as_str().to_string(),
            evidence: Some(d.evidence),
            service: d.service.clone(),
            service_name: d.service_name.clone(),
            category: d.category,
            action: Some(d.action),
            severity: d.severity,
            rule_id: d.rule_id.clone(),
            steer_url: d.steer_to.as_ref().map(|s| s.url.clone()),
            shared_tenant: d.shared_tenant,
            repeat_count: 1,
            detail: (!detail.is_empty()).then(|| serde_json::Value::Object(detail).to_string()),
        }
    }

    /// A coach grant ended: the client's access to `service` (`svc`: its catalogue entry, if
    /// it still has one) is stopped again.
    pub fn grant_expired(
        ts: u64,
        sensor: &str,
        client: std::net::IpAddr,
        device: (Option<String>, Option<String>),
        service: &str,
        svc: Option<&Service>,
    ) -> Event {
        Event {
            id: ulid::Ulid::from_datetime(crate::time::ns_to_system(ts)).to_string(),
            seq: 0,
            ts,
            sensor: sensor.to_string(),
            client_ip: client.to_string(),
            client_port: 0,
            client_mac: device.0,
            client_hostname: device.1,
            client_groups: String::new(),
            server_ip: String::new(),
            server_port: 0,
            transport: None,
            kind: EventKind::Portal(PortalKind::GrantExpired),
            name: service.to_string(),
            seen_via: "portal".into(),
            evidence: None,
            service: Some(service.to_string()),
            service_name: svc.map(|s| s.name.clone()),
            category: svc.map(|s| s.category),
            action: Some(Action::Coach),
            severity: Severity::Info,
            rule_id: "portal.grant_expired".into(),
            steer_url: None,
            shared_tenant: svc.is_some_and(|s| s.shared_tenant.is_some()),
            repeat_count: 1,
            detail: Some(
                serde_json::json!({ "service": service, "client": client.to_string() }).to_string(),
            ),
        }
    }

    /// A system event at `ts_ns`: `summary` is one line for people (stored as `name`), `detail`
    /// a JSON object for machines.
    pub fn system(
        kind: SystemKind,
        ts_ns: u64,
        sensor: &str,
        summary: &str,
        detail: serde_json::Value,
    ) -> Event {
        Event {
            id: ulid::Ulid::from_datetime(crate::time::ns_to_system(ts_ns)).to_string(),
            seq: 0,
            ts: ts_ns,
            sensor: sensor.to_string(),
            client_ip: String::new(),
            client_port: 0,
            client_mac: None,
            client_hostname: None,
            client_groups: String::new(),
            server_ip: String::new(),
            server_port: 0,
            transport: None,
            kind: EventKind::System(kind),
            name: summary.to_string(),
            seen_via: SYSTEM.to_string(),
            evidence: None,
            service: None,
            service_name: None,
            category: None,
            action: None,
            severity: kind.severity(),
            rule_id: format!("system.{}", kind.as_str()),
            steer_url: None,
            shared_tenant: false,
            repeat_count: 1,
            detail: Some(detail.to_string()),
        }
    }

    /// A `blind_spot` system event: the device (address, MAC, DHCP host name), the server and
    /// its port, and the kind in `detail`.
    pub fn blind_spot(b: &crate::flow::BlindSpot, sensor: &str) -> Event {
        let (kind, client, server) = (b.kind.as_str(), b.client.ip, b.server.ip);
        let what = match b.kind {
            crate::flow::Blind::Wireguard => "a WireGuard handshake",
            crate::flow::Blind::Openvpn => "an OpenVPN handshake",
            crate::flow::Blind::Ike => "an IKE (IPsec) handshake",
            crate::flow::Blind::PrivateRelay => "iCloud Private Relay",
            crate::flow::Blind::EchNoDns => "an Encrypted Client Hello with no name from DNS",
        };
        let mut e = Event::system(
            SystemKind::BlindSpot,
            b.ts,
            sensor,
            &format!(
                "{client} used {what} to {server} port {}: where it goes is not visible",
                b.server.port
            ),
            serde_json::json!({
                "client": client.to_string(),
                "kind": kind,
                "server": server.to_string(),
                "server_port": b.server.port,
                "transport": b.transport.as_str(),
            }),
        );
        e.client_ip = client.to_string();
        e.client_port = b.client.port;
        e.client_mac = b.client.mac.as_ref().map(mac_string);
        e.client_hostname = b.client.hostname.clone();
        e.server_ip = server.to_string();
        e.server_port = b.server.port;
        e.transport = Some(b.transport);
        e
    }

    /// The columns of `shadowgate events --format csv`: every field, in the struct's order
    /// (`detail` too, empty for decision events), so every row has the same columns.
    pub const CSV_HEADER: [&'static str; 26] = [
        "id",
        "seq",
        "ts",
        "sensor",
        "client_ip",
        "client_port",
        "client_mac",
        "client_hostname",
        "client_groups",
        "server_ip",
        "server_port",
        "transport",
        "kind",
        "name",
        "seen_via",
        "evidence",
        "service",
        "service_name",
        "category",
        "action",
        "severity",
        "rule_id",
        "steer_url",
        "shared_tenant",
        "repeat_count",
        "detail",
    ];

    /// This event as a CSV row under [`Event::CSV_HEADER`] (text cells are neutralised by the
    /// writer, numbers stay numbers).
    pub fn csv_cells(&self) -> [Cell<'_>; 26] {
        [
            Cell::Text(&self.id),
            Cell::Int(self.seq),
            Cell::Uint(self.ts),
            Cell::Text(&self.sensor),
            Cell::Text(&self.client_ip),
            Cell::Uint(self.client_port.into()),
            Cell::OptText(self.client_mac.as_deref()),
            Cell::OptText(self.client_hostname.as_deref()),
            Cell::Text(&self.client_groups),
            Cell::Text(&self.server_ip),
            Cell::Uint(self.server_port.into()),
            Cell::Text(words::or_word(self.transport, "")),
            Cell::Text(self.kind.word()),
            Cell::Text(&self.name),
            Cell::Text(&self.seen_via),
            Cell::OptText(self.evidence.map(Word::word)),
            Cell::OptText(self.service.as_deref()),
            Cell::OptText(self.service_name.as_deref()),
            Cell::OptText(self.category.map(Word::word)),
            Cell::Text(self.action_word()),
            Cell::Text(self.severity.word()),
            Cell::Text(&self.rule_id),
            Cell::OptText(self.steer_url.as_deref()),
            Cell::Bool(self.shared_tenant),
            Cell::Uint(self.repeat_count.into()),
            Cell::OptText(self.detail.as_deref()),
        ]
    }

    /// Is this one of the system's own events (not a traffic decision)?
    pub fn is_system(&self) -> bool {
        self.kind.is_system()
    }

    /// The `action` word: the policy's action, `info` for system events.
    pub fn action_word(&self) -> &'static str {
        words::or_word(self.action, INFO)
    }

    /// RFC 3339 time of the event.
    pub fn time(&self) -> String {
        crate::flow::observation::format_ts(self.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV header names every field of the JSON form (a field added to `Event` must be
    /// added to the CSV too), in the same order.
    #[test]
    fn csv_header_matches_the_fields() {
        let e = Event::system(SystemKind::SinkUp, 1, "s", "sink up", serde_json::json!({}));
        let v = serde_json::to_value(&e).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut header = Event::CSV_HEADER.to_vec();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        header.sort_unstable();
        assert_eq!(header, sorted);
        assert_eq!(e.csv_cells().len(), Event::CSV_HEADER.len());
    }
}
