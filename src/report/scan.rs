//! Reads the event store for the report's window (five ISO weeks, plus a day either side so
//! visits that cross the edges are whole) in one pass over the time index, and turns each
//! device's events for one service into runs: visits (with connection evidence) or lookups.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

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

struct Open {
    first: u64,
    last: u64,
    groups: u32,
    action: Option<u8>,
    visit: bool,
    dot: bool,
    events: u32,
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

struct Interner {
    map: HashMap<String, u32>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            map: HashMap::new(),
        }
    }
    fn get(&mut self, s: &str, mut add: impl FnMut(&str) -> u32) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = add(s);
        self.map.insert(s.to_string(), i);
        i
    }
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
    let sql = |e: rusqlite::Error| format!("reading the event store: {e}");
    let mut s = Scan::default();
    let mut dev_ix = Interner::new();
    let mut svc_ix = Interner::new();
    let mut grp_ix = Interner::new();
    let mut open: HashMap<(u32, u32), Open> = HashMap::new();

    let mut st = c
        .prepare(
            "SELECT ts, client_ip, client_mac, client_hostname, client_groups, server_port, kind, \
             seen_via, service, service_name, category, action, name, detail \
             FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts",
        )
        .map_err(sql)?;
    let mut rows = st
        .query(rusqlite::params![
            from_ns.min(i64::MAX as u64) as i64,
            to_ns.min(i64::MAX as u64) as i64
        ])
        .map_err(sql)?;
    let text = |r: &rusqlite::Row<'_>, i: usize| -> Option<String> {
        r.get_ref(i)
            .ok()
            .and_then(|v| v.as_str_or_null().ok().flatten().map(str::to_string))
    };
    while let Some(r) = rows.next().map_err(sql)? {
        s.rows_read += 1;
        let ts = r.get::<_, i64>(0).map_err(sql)?.max(0) as u64;
        let kind_ref = r.get_ref(6).map_err(sql)?;
        let kind = kind_ref.as_str().unwrap_or("");
        let via = r.get_ref(7).map_err(sql)?.as_str().unwrap_or("");
        let is_system = via == crate::record::event::SYSTEM;
        let is_ack = kind == COACH_ACK || kind == GRANT_EXPIRED;
        let service = r.get_ref(8).map_err(sql)?.as_str_or_null().ok().flatten();

        // The device: MAC, else host name, else address.
        let ip = r.get_ref(1).map_err(sql)?.as_str().unwrap_or("");
        let mac = r
            .get_ref(2)
            .map_err(sql)?
            .as_str_or_null()
            .ok()
            .flatten()
            .filter(|m| !m.is_empty());
        let host = r
            .get_ref(3)
            .map_err(sql)?
            .as_str_or_null()
            .ok()
            .flatten()
            .filter(|h| !h.is_empty());
        let has_client = !ip.is_empty() || mac.is_some() || host.is_some();
        let dev = if has_client {
            let key = mac.or(host).unwrap_or(ip);
            let devices = &mut s.devices;
            let d = dev_ix.get(key, |k| {
                devices.push(Device {
                    key: k.to_string(),
                    ..Device::default()
                });
                (devices.len() - 1) as u32
            });
            let dv = &mut s.devices[d as usize];
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
            Some(d)
        } else {
            None
        };
        let svc = service.map(|id| {
            let services = &mut s.services;
            let i = svc_ix.get(id, |k| {
                services.push(Svc {
                    id: k.to_string(),
                    ..Svc::default()
                });
                (services.len() - 1) as u32
            });
            let sv = &mut s.services[i as usize];
            if sv.name.is_none() {
                sv.name = text(r, 9);
            }
            if sv.category.is_none() {
                sv.category = text(r, 10);
            }
            i
        });

        let portal = kind == PORTAL_VIEW;
        if is_system || is_ack || portal {
            if ts < week.0 && (kind == "sensor_start" || kind == "sensor_stop") {
                s.lifecycle_before = Some(kind.to_string());
            }
            if ts >= week.0 && ts < week.1 {
                let detail = text(r, 13)
                    .and_then(|d| serde_json::from_str(&d).ok())
                    .unwrap_or(serde_json::Value::Null);
                s.notes.push(Note {
                    ts,
                    kind: kind.to_string(),
                    summary: text(r, 12).unwrap_or_default(),
                    detail,
                    dev,
                    svc,
                });
            }
            if !portal {
                continue;
            }
        }
        let (Some(dev), Some(svc)) = (dev, svc) else {
            continue;
        };
        let groups = {
            let g = r.get_ref(4).map_err(sql)?.as_str().unwrap_or("");
            let groups = &mut s.groups;
            grp_ix.get(g, |k| {
                groups.push(k.to_string());
                (groups.len() - 1) as u32
            })
        };
        let action = action_index(r.get_ref(11).map_err(sql)?.as_str().unwrap_or(""));
        let conn = CONNECTION_KINDS.contains(&kind);
        let dot = conn && r.get::<_, i64>(5).unwrap_or(0) == 853;
        let o = open.entry((dev, svc)).or_insert(Open {
            first: ts,
            last: ts,
            groups,
            action,
            visit: false,
            dot: false,
            events: 0,
        });
        if ts.saturating_sub(o.last) > gap_ns {
            let old = std::mem::replace(
                o,
                Open {
                    first: ts,
                    last: ts,
                    groups,
                    action,
                    visit: false,
                    dot: false,
                    events: 0,
                },
            );
            close(&mut s.runs, dev, svc, old, keep);
        }
        o.last = ts;
        o.action = o.action.max(action);
        o.visit |= conn;
        o.dot |= dot;
        o.events += 1;
    }
    drop(rows);
    drop(st);
    let mut rest: Vec<((u32, u32), Open)> = open.into_iter().collect();
    rest.sort_by_key(|(k, o)| (o.first, *k));
    for ((dev, svc), o) in rest {
        close(&mut s.runs, dev, svc, o, keep);
    }
    s.runs.sort_by_key(|r| (r.start_ns, r.dev, r.svc));

    Ok(s)
}

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
