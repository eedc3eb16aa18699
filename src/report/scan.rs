//! Reads the event store for the report's window (five ISO weeks, plus a day either side so
//! visits that cross the edges are whole) in one pass over the time index, and turns each
//! device's events for one service into runs: visits (with connection evidence) or lookups.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row};

/// Event kinds that show a connection (or a portal page view): a run holding one is a visit.
pub const CONNECTION_KINDS: &[&str] = &[
    "tls_client_hello",
    "quic_initial",
    "http_request",
    "proxy_connect",
    "portal_view",
];

/// Actions from least to most restrictive: a visit takes its most restrictive event's action.
pub const ACTIONS: [&str; 5] = ["allow", "alert", "coach", "steer", "block"];

/// Kinds of events that matter to the report but are not part of visits.
pub const COACH_ACK: &str = "coach_ack";
pub const GRANT_EXPIRED: &str = "grant_expired";

/// A device as the store names it: by MAC when known (stable across DHCP changes), else by DHCP
/// host name, else by address.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub key: String,
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// Addresses seen, in order of first use (at most 8 kept).
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Svc {
    pub id: String,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// A run of one device's events for one service with no gap longer than the visit gap.
#[derive(Debug, Clone)]
pub struct Run {
    pub dev: u32,
    pub svc: u32,
    /// Interned `client_groups` of the run's first event.
    pub groups: u32,
    pub start_ns: u64,
    /// Index into [`ACTIONS`] of the most restrictive action.
    pub action: u8,
    /// Connection evidence: this run is a visit; otherwise it was lookups only.
    pub visit: bool,
    /// A connection to port 853 (DNS over TLS).
    pub dot: bool,
    pub events: u32,
}

/// A system (or portal) event inside the report week.
#[derive(Debug, Clone)]
pub struct Note {
    pub ts: u64,
    pub kind: String,
    pub summary: String,
    pub detail: serde_json::Value,
    pub dev: Option<u32>,
    pub svc: Option<u32>,
}

/// Everything the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub devices: Vec<Device>,
    pub services: Vec<Svc>,
    pub groups: Vec<String>,
    /// Runs that started inside the window, in start order.
    pub runs: Vec<Run>,
    /// System, coach and grant events in the report week, in time order.
    pub notes: Vec<Note>,
    /// The last `sensor_start`/`sensor_stop` before the report week (in the scanned window).
    pub lifecycle_before: Option<String>,
    pub rows_read: u64,
}

/// A run still open: its first and last event, and what it has shown so far.
struct Open {
    first: u64,
    last: u64,
    groups: u32,
    action: Option<u8>,
    visit: bool,
    dot: bool,
    events: u32,
}

impl Open {
    /// A run that begins with an event at `ts`.
    fn new(ts: u64, groups: u32, action: Option<u8>) -> Self {
        Open {
            first: ts,
            last: ts,
            groups,
            action,
            visit: false,
            dot: false,
            events: 0,
        }
    }
}

/// The action's rank, none for `info` (system and portal events) and unknown words.
fn action_index(a: &str) -> Option<u8> {
    ACTIONS.iter().position(|x| *x == a).map(|i| i as u8)
}

/// A portal page view: connection evidence for the service it is about, whoever recorded it.
pub const PORTAL_VIEW: &str = "portal_view";

/// Open the store read-only (the report never writes to it).
pub fn open(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!(
            "{}: no such event store (give --store FILE, or --config with a [store] section)",
            path.display()
        ));
    }
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: cannot open the event store: {e}", path.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if v < 3 {
        return Err(format!(
            "{}: event store schema v{v} is older than the report needs (v3); run any shadowgate command with --config once to upgrade it",
            path.display()
        ));
    }
    Ok(c)
}

/// Names to dense indices (devices, services, groups), so runs and notes hold `u32`s.
struct Interner {
    map: HashMap<String, u32>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            map: HashMap::new(),
        }
    }
    /// The index of `s`, made by `add` the first time `s` is seen.
    fn get(&mut self, s: &str, mut add: impl FnMut(&str) -> u32) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = add(s);
        self.map.insert(s.to_string(), i);
        i
    }
}

/// The window's events in time order (over the time index), with the columns the report reads.
const WINDOW_SQL: &str =
    "SELECT ts, client_ip, client_mac, client_hostname, client_groups, server_port, kind, \
     seen_via, service, service_name, category, action, name, detail \
     FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts";

fn sql(e: rusqlite::Error) -> String {
    format!("reading the event store: {e}")
}

/// A text column as a string; none when NULL (or not text).
fn text(r: &Row<'_>, i: usize) -> Option<String> {
    r.get_ref(i)
        .ok()
        .and_then(|v| v.as_str_or_null().ok().flatten().map(str::to_string))
}

/// A text column; none when NULL or empty.
fn nonempty<'r>(r: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, String> {
    Ok(r.get_ref(i)
        .map_err(sql)?
        .as_str_or_null()
        .ok()
        .flatten()
        .filter(|v| !v.is_empty()))
}

/// Read events with `from_ns <= ts < to_ns`; runs are kept when they start in
/// `[keep_from, keep_to)`, notes when they fall in `[week_from, week_to)`.
pub fn scan(
    c: &Connection,
    from_ns: u64,
    to_ns: u64,
    keep: (u64, u64),
    week: (u64, u64),
    gap_ns: u64,
) -> Result<Scan, String> {
    let mut st = c.prepare(WINDOW_SQL).map_err(sql)?;
    let mut rows = st
        .query(rusqlite::params![
            from_ns.min(i64::MAX as u64) as i64,
            to_ns.min(i64::MAX as u64) as i64
        ])
        .map_err(sql)?;
    let mut b = Builder::new(keep, week, gap_ns);
    while let Some(r) = rows.next().map_err(sql)? {
        b.event(r)?;
    }
    Ok(b.finish())
}

/// The scan while it reads: what it has found so far, the names interned, and each (device,
/// service)'s open run.
struct Builder {
    s: Scan,
    dev_ix: Interner,
    svc_ix: Interner,
    grp_ix: Interner,
    open: HashMap<(u32, u32), Open>,
    keep: (u64, u64),
    week: (u64, u64),
    gap_ns: u64,
}

impl Builder {
    fn new(keep: (u64, u64), week: (u64, u64), gap_ns: u64) -> Self {
        Builder {
            s: Scan::default(),
            dev_ix: Interner::new(),
            svc_ix: Interner::new(),
            grp_ix: Interner::new(),
            open: HashMap::new(),
            keep,
            week,
            gap_ns,
        }
    }

    /// One event: its device and service first (every event names them), then a note for
    /// system, coach and portal events, and a step of a run for the rest (portal views are
    /// both: they are connection evidence).
    fn event(&mut self, r: &Row<'_>) -> Result<(), String> {
        self.s.rows_read += 1;
        let ts = r.get::<_, i64>(0).map_err(sql)?.max(0) as u64;
        let kind = r.get_ref(6).map_err(sql)?.as_str().unwrap_or("");
        let via = r.get_ref(7).map_err(sql)?.as_str().unwrap_or("");
        let is_system = via == crate::record::event::SYSTEM;
        let is_ack = kind == COACH_ACK || kind == GRANT_EXPIRED;
        let dev = self.device(r)?;
        let svc = self.service(r)?;

        let portal = kind == PORTAL_VIEW;
        if is_system || is_ack || portal {
            self.note(r, ts, kind, dev, svc);
            if !portal {
                return Ok(());
            }
        }
        let (Some(dev), Some(svc)) = (dev, svc) else {
            return Ok(());
        };
        self.step(r, ts, kind, dev, svc)
    }

    /// The event's device, interned by MAC, else host name, else address; its MAC, latest host
    /// name and addresses (the first 8) recorded. None for an event with no client.
    fn device(&mut self, r: &Row<'_>) -> Result<Option<u32>, String> {
        let ip = r.get_ref(1).map_err(sql)?.as_str().unwrap_or("");
        let mac = nonempty(r, 2)?;
        let host = nonempty(r, 3)?;
        if ip.is_empty() && mac.is_none() && host.is_none() {
            return Ok(None);
        }
        let key = mac.or(host).unwrap_or(ip);
        let devices = &mut self.s.devices;
        let d = self.dev_ix.get(key, |k| {
            devices.push(Device {
                key: k.to_string(),
                ..Device::default()
            });
            (devices.len() - 1) as u32
        });
        let dv = &mut self.s.devices[d as usize];
        if dv.mac.is_none() {
            dv.mac = mac.map(str::to_string);
        }
        if let Some(h) = host {
            if dv.hostname.as_deref() != Some(h) {
                dv.hostname = Some(h.to_string());
            }
        }
        if !ip.is_empty() && dv.ips.len() < 8 && !dv.ips.iter().any(|x| x == ip) {
            dv.ips.push(ip.to_string());
        }
        Ok(Some(d))
    }

    /// The event's service, interned; its name and category from the first event with them.
    fn service(&mut self, r: &Row<'_>) -> Result<Option<u32>, String> {
        let Some(id) = r.get_ref(8).map_err(sql)?.as_str_or_null().ok().flatten() else {
            return Ok(None);
        };
        let services = &mut self.s.services;
        let i = self.svc_ix.get(id, |k| {
            services.push(Svc {
                id: k.to_string(),
                ..Svc::default()
            });
            (services.len() - 1) as u32
        });
        let sv = &mut self.s.services[i as usize];
        if sv.name.is_none() {
            sv.name = text(r, 9);
        }
        if sv.category.is_none() {
            sv.category = text(r, 10);
        }
        Ok(Some(i))
    }

    /// A system, coach or portal event: a sensor start or stop before the week says whether the
    /// sensor was running when it began; one inside the week is a note.
    fn note(&mut self, r: &Row<'_>, ts: u64, kind: &str, dev: Option<u32>, svc: Option<u32>) {
        if ts < self.week.0 && (kind == "sensor_start" || kind == "sensor_stop") {
            self.s.lifecycle_before = Some(kind.to_string());
        }
        if ts >= self.week.0 && ts < self.week.1 {
            let detail = text(r, 13)
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null);
            self.s.notes.push(Note {
                ts,
                kind: kind.to_string(),
                summary: text(r, 12).unwrap_or_default(),
                detail,
                dev,
                svc,
            });
        }
    }

    /// An event of `dev` for `svc`: it extends their open run, or, after a pause longer than the
    /// visit gap, closes it and begins the next.
    fn step(&mut self, r: &Row<'_>, ts: u64, kind: &str, dev: u32, svc: u32) -> Result<(), String> {
        let groups = self.groups(r)?;
        let action = action_index(r.get_ref(11).map_err(sql)?.as_str().unwrap_or(""));
        let conn = CONNECTION_KINDS.contains(&kind);
        let dot = conn && r.get::<_, i64>(5).unwrap_or(0) == 853;
        let o = self
            .open
            .entry((dev, svc))
            .or_insert(Open::new(ts, groups, action));
        if ts.saturating_sub(o.last) > self.gap_ns {
            let old = std::mem::replace(o, Open::new(ts, groups, action));
            close(&mut self.s.runs, dev, svc, old, self.keep);
        }
        o.last = ts;
        o.action = o.action.max(action);
        o.visit |= conn;
        o.dot |= dot;
        o.events += 1;
        Ok(())
    }

    /// The event's client groups, interned.
    fn groups(&mut self, r: &Row<'_>) -> Result<u32, String> {
        let g = r.get_ref(4).map_err(sql)?.as_str().unwrap_or("");
        let groups = &mut self.s.groups;
        Ok(self.grp_ix.get(g, |k| {
            groups.push(k.to_string());
            (groups.len() - 1) as u32
        }))
    }

    /// After the last event: close the runs still open, in the order they began, and put all
    /// runs in start order.
    fn finish(mut self) -> Scan {
        let mut rest: Vec<((u32, u32), Open)> =
            std::mem::take(&mut self.open).into_iter().collect();
        rest.sort_by_key(|(k, o)| (o.first, *k));
        for ((dev, svc), o) in rest {
            close(&mut self.s.runs, dev, svc, o, self.keep);
        }
        self.s.runs.sort_by_key(|r| (r.start_ns, r.dev, r.svc));
        self.s
    }
}

/// Keep a finished run when it starts in `keep`.
fn close(runs: &mut Vec<Run>, dev: u32, svc: u32, o: Open, keep: (u64, u64)) {
    if o.first >= keep.0 && o.first < keep.1 {
        runs.push(Run {
            dev,
            svc,
            groups: o.groups,
            start_ns: o.first,
            action: o.action.unwrap_or(1),
            visit: o.visit,
            dot: o.dot,
            events: o.events,
        });
    }
}

/// Services among `ids` that have any event before `before_ns` (so are not new this week).
pub fn seen_before(c: &Connection, ids: &[&str], before_ns: u64) -> Result<Vec<bool>, String> {
    let mut st = c
        .prepare_cached("SELECT 1 FROM events WHERE service = ?1 AND ts < ?2 LIMIT 1")
        .map_err(|e| e.to_string())?;
    ids.iter()
        .map(|id| {
            st.exists(rusqlite::params![id, before_ns.min(i64::MAX as u64) as i64])
                .map_err(|e| format!("reading the event store: {e}"))
        })
        .collect()
}
