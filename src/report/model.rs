//! The report's figures as one value: what `report.json` holds and what the HTML and CSV are
//! rendered from. Field names are the JSON schema (schema 1); keep them stable.

use serde::Serialize;

use crate::csv_out::Cell;
use crate::policy::Action;

/// Visits (or lookup-only runs) by their most restrictive action.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Actions {
    pub block: u64,
    pub steer: u64,
    pub coach: u64,
    pub alert: u64,
    pub allow: u64,
}

impl Actions {
    pub fn add(&mut self, action: Action, n: u64) {
        *self.slot(action) += n;
    }

    pub fn get(&self, action: Action) -> u64 {
        match action {
            Action::Block => self.block,
            Action::Steer => self.steer,
            Action::Coach => self.coach,
            Action::Alert => self.alert,
            Action::Allow => self.allow,
        }
    }

    fn slot(&mut self, action: Action) -> &mut u64 {
        match action {
            Action::Block => &mut self.block,
            Action::Steer => &mut self.steer,
            Action::Coach => &mut self.coach,
            Action::Alert => &mut self.alert,
            Action::Allow => &mut self.allow,
        }
    }
}

/// Headline numbers of one week (AI services: every category but `dns_resolver`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Numbers {
    pub visits: u64,
    /// Runs of DNS lookups with no connection (prefetch, link previews): not visits.
    pub lookups: u64,
    pub devices: u64,
    pub services: u64,
    pub consumer_visits: u64,
    pub approved_visits: u64,
    pub enterprise_visits: u64,
    pub actions: Actions,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Headline {
    pub this_week: Numbers,
    pub previous_week: Numbers,
    /// this week minus the previous week.
    pub change: Change,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Change {
    pub visits: i64,
    pub lookups: i64,
    pub devices: i64,
    pub services: i64,
    pub consumer_visits: i64,
    pub approved_visits: i64,
    pub block: i64,
    pub steer: i64,
    pub coach: i64,
    pub alert: i64,
    pub allow: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendWeek {
    pub week: String,
    pub visits: u64,
    pub consumer_visits: u64,
    pub approved_visits: u64,
    pub enterprise_visits: u64,
    pub devices: u64,
    pub lookups: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub name: String,
    pub category: String,
    /// BAA status from the catalogue (`unknown` without one).
    pub baa: String,
    pub baa_source: String,
    pub visits: u64,
    pub lookups: u64,
    pub devices: u64,
    pub actions: Actions,
    pub first_seen: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub visits: u64,
    pub devices: u64,
    pub consumer_visits: u64,
    pub approved_visits: u64,
    /// approved / (approved + consumer), in percent; none when both are 0.
    pub adoption_pct: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceInfo {
    /// The device's label: host name, else MAC, else address (pseudonyms with --pseudonymise).
    pub device: String,
    pub hostname: Option<String>,
    pub mac: Option<String>,
    pub ips: Vec<String>,
    pub owner: Option<String>,
    pub department: Option<String>,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    #[serde(flatten)]
    pub info: DeviceInfo,
    pub groups: String,
    pub visits: u64,
    pub consumer_visits: u64,
    pub approved_visits: u64,
    pub services: u64,
    pub top_service: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MovedDevice {
    #[serde(flatten)]
    pub info: DeviceInfo,
    pub earlier_consumer_visits: u64,
    pub approved_visits: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Adoption {
    pub approved_visits: u64,
    pub consumer_visits: u64,
    pub adoption_pct: Option<f64>,
    /// Devices with consumer-AI visits in one of the four weeks before and approved-route
    /// visits this week.
    pub moved_devices: Vec<MovedDevice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Justification {
    pub time: String,
    pub device: String,
    pub owner: Option<String>,
    pub service: String,
    /// Left out (none) in a pseudonymised report.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bypass {
    pub service: String,
    pub name: String,
    pub visits: u64,
    pub dot_visits: u64,
    pub lookups: u64,
    pub devices: u64,
}

/// A device that looked up a bypass name the resolver answers itself (DNS mode's `dns_bypass`
/// events), per kind of bypass.
#[derive(Debug, Clone, Serialize)]
pub struct BypassTry {
    /// `firefox_doh_canary`, `icloud_private_relay` or `designated_resolver_discovery`.
    pub what: String,
    #[serde(flatten)]
    pub info: DeviceInfo,
    /// The names it looked up.
    pub names: Vec<String>,
    /// `dns_bypass` events (at most one an hour per device and name).
    pub events: u64,
    pub first: String,
    pub last: String,
}

/// A device whose traffic the gateway could not name this week (`blind_spot` events), per kind.
#[derive(Debug, Clone, Serialize)]
pub struct BlindRow {
    #[serde(flatten)]
    pub info: DeviceInfo,
    /// `wireguard`, `openvpn`, `ike`, `private_relay` or `ech_no_dns`.
    pub kind: String,
    /// Minutes with such traffic (one event per device, kind and minute).
    pub minutes: u64,
    /// Hours (of the clock) with such traffic.
    pub hours: u64,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SysRow {
    pub time: String,
    pub kind: String,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub from: String,
    pub to: String,
    pub seconds: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Whether sensor start/stop events tell when the sensor ran this week.
    pub lifecycle_known: bool,
    pub starts: u64,
    pub stops: u64,
    /// Starts with no stop before them (a crash or power loss: the downtime is unknown).
    pub unclean_restarts: u64,
    pub down_seconds: u64,
    pub down: Vec<Interval>,
    pub capture_gaps: u64,
    pub capture_gap_bytes: u64,
    pub events_not_stored: u64,
    pub kernel_drop_reports: u64,
    pub kernel_dropped_packets: u64,
    pub sink_outages: u64,
    /// Gaps, drops and sink outages, in time order.
    pub incidents: Vec<SysRow>,
    /// The catalogue in force at the week's last `catalog_loaded` (versions and counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<String>,
    /// Steered or coached names the portal CA could not certify at that load (browsers got a
    /// certificate error for them): a new CA is due. `None`: no portal CA, or no such event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_uncertifiable: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub portal_uncertifiable_names: Vec<String>,
    /// Devices with traffic the gateway cannot name (VPN handshakes, iCloud Private Relay, ECH
    /// with no name from DNS), per kind: by device, then kind.
    pub blind: Vec<BlindRow>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyChanges {
    pub reloads: Vec<SysRow>,
    pub rejected: Vec<SysRow>,
}

/// One CSV row: a device x service x action of the report week.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub week: String,
    pub device: String,
    pub hostname: String,
    pub mac: String,
    pub ips: String,
    pub owner: String,
    pub department: String,
    pub location: String,
    pub groups: String,
    pub service: String,
    pub service_name: String,
    pub category: String,
    pub baa: String,
    pub action: String,
    pub visits: u64,
    pub lookups: u64,
    pub events: u64,
}

impl Row {
    /// The columns of `report.csv`, in the field order (`rows` of `report.json`).
    pub const CSV_HEADER: [&'static str; 17] = [
        "week",
        "device",
        "hostname",
        "mac",
        "ips",
        "owner",
        "department",
        "location",
        "groups",
        "service",
        "service_name",
        "category",
        "baa",
        "action",
        "visits",
        "lookups",
        "events",
    ];

    /// This row's cells under [`Row::CSV_HEADER`]: names from the network and the inventory
    /// are text (neutralised by the writer); the counts are numbers and stay numbers.
    pub fn csv_cells(&self) -> [Cell<'_>; 17] {
        [
            Cell::Text(&self.week),
            Cell::Text(&self.device),
            Cell::Text(&self.hostname),
            Cell::Text(&self.mac),
            Cell::Text(&self.ips),
            Cell::Text(&self.owner),
            Cell::Text(&self.department),
            Cell::Text(&self.location),
            Cell::Text(&self.groups),
            Cell::Text(&self.service),
            Cell::Text(&self.service_name),
            Cell::Text(&self.category),
            Cell::Text(&self.baa),
            Cell::Text(&self.action),
            Cell::Uint(self.visits),
            Cell::Uint(self.lookups),
            Cell::Uint(self.events),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub week: String,
    pub timezone: String,
    /// Local start and end of the week (end exclusive), RFC 3339 with offset.
    pub start: String,
    pub end: String,
    pub generated_at: String,
    pub sensor_note: String,
    pub visit_gap_minutes: u64,
    pub pseudonymised: bool,
    pub catalogue: bool,
    pub inventory: bool,
    pub headline: Headline,
    pub trend: Vec<TrendWeek>,
    pub services: Vec<ServiceRow>,
    pub groups: Vec<GroupRow>,
    pub top_devices: Vec<DeviceRow>,
    pub first_seen: Vec<ServiceRow>,
    pub adoption: Adoption,
    pub justifications: Vec<Justification>,
    pub justifications_withheld: bool,
    pub portal_views: u64,
    pub grants_expired: u64,
    pub dns_bypass: Vec<Bypass>,
    /// Devices that looked up bypass names DNS mode answers itself, by kind, most events first.
    pub dns_bypass_tries: Vec<BypassTry>,
    pub policy: PolicyChanges,
    pub coverage: Coverage,
    pub rows: Vec<Row>,
    pub events_read: u64,
}

/// How the report counts, said in every report.
pub const COUNTING: &str = "Counts are visits and devices, not packets or connections. A visit is one device's run of events for one service with no gap longer than the visit gap; it needs connection evidence (a TLS, QUIC or HTTP connection, or a portal page view) and counts in the week it starts. Runs of DNS lookups with no connection (prefetching, link previews) are counted separately as lookups. A lookup followed by three connections is one visit. Devices are told apart by MAC address, else DHCP host name, else IP address.";
