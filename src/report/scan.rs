//! Reads the event store for the report's window (five ISO weeks, plus a day either side so
//! visits that cross the edges are whole) in one pass over the time index, and turns each
//! device's events for one service into runs: visits (with connection evidence) or lookups.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row};

use crate::flow::Kind;
use crate::policy::Action;
use crate::record::words::Word;
use crate::record::{EventKind, PortalKind, SystemKind};

/// Does an event of this kind show a connection (or a portal page view)? A run holding one is a
/// visit; lookups alone are not.
pub fn is_connection(k: EventKind) -> bool {
    match k {
        EventKind::Observed(
            Kind::TlsClientHello | Kind::QuicInitial | Kind::HttpRequest | Kind::ProxyConnect,
        )
        | EventKind::Portal(PortalKind::View) => true,
        EventKind::Observed(Kind::DnsQuery | Kind::DnsAnswer)
        | EventKind::Portal(PortalKind::CoachAck | PortalKind::GrantExpired)
        | EventKind::System(_) => false,
    }
}

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
    /// The most restrictive action of its events.
    pub action: Action,
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
    pub kind: EventKind,
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
    action: Action,
    visit: bool,
    dot: bool,
    events: u32,
}

impl Open {
    /// A run that begins with an event at `ts`.
    fn new(ts: u64, groups: u32, action: Action) -> Self {
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

/// An event's action: none for `info`; a word this shadowgate does not know is an error.
fn parse_action(word: &str) -> Result<Option<Action>, String> {
    crate::record::event::parse_action(word).map_err(|e| {
        format!(
            "{e}: the store was written by a newer shadowgate; upgrade shadowgate to report on it"
        )
    })
}

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
        let word = r.get_ref(6).map_err(sql)?.as_str().unwrap_or("");
        let kind = EventKind::from_word(word).ok_or_else(|| {
            format!("unknown event kind `{word}`: the store was written by a newer shadowgate; upgrade shadowgate to report on it")
        })?;
        let dev = self.device(r)?;
        let svc = self.service(r)?;
        let step = match kind {
            EventKind::Observed(_) => true,
            // A page view is a note and connection evidence.
            EventKind::Portal(PortalKind::View) => {
                self.note(r, ts, kind, dev, svc);
                true
            }
            EventKind::Portal(PortalKind::CoachAck | PortalKind::GrantExpired)
            | EventKind::System(_) => {
                self.note(r, ts, kind, dev, svc);
                false
            }
        };
        let (true, Some(dev), Some(svc)) = (step, dev, svc) else {
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
    fn note(&mut self, r: &Row<'_>, ts: u64, kind: EventKind, dev: Option<u32>, svc: Option<u32>) {
        if ts < self.week.0
            && matches!(
                kind,
                EventKind::System(SystemKind::SensorStart | SystemKind::SensorStop)
            )
        {
            self.s.lifecycle_before = Some(kind.as_str().to_string());
        }
        if ts >= self.week.0 && ts < self.week.1 {
            let detail = text(r, 13)
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null);
            self.s.notes.push(Note {
                ts,
                kind,
                summary: text(r, 12).unwrap_or_default(),
                detail,
                dev,
                svc,
            });
        }
    }

    /// An event of `dev` for `svc`: it extends their open run, or, after a pause longer than the
    /// visit gap, closes it and begins the next.
    fn step(
        &mut self,
        r: &Row<'_>,
        ts: u64,
        kind: EventKind,
        dev: u32,
        svc: u32,
    ) -> Result<(), String> {
        let word = r.get_ref(11).map_err(sql)?.as_str().unwrap_or("");
        // A decision always has an action; `info` belongs to no visit.
        let Some(action) = parse_action(word)? else {
            return Ok(());
        };
        let detail = r
            .get_ref(13)
            .ok()
            .and_then(|v| v.as_str_or_null().ok().flatten());
        // The clinic's own resolver (`[dns] upstreams`) is no DNS bypass and no use of a service.
        if detail.is_some_and(|d| d.contains("\"matched_by\":\"upstream\"")) {
            return Ok(());
        }
        let groups = self.groups(r)?;
        // A connection whose source may be forged (no handshake seen) is no visit.
        let unverified = detail.is_some_and(|d| d.contains("\"unverified_source\":true"));
        let conn = is_connection(kind) && !unverified;
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
            action: o.action,
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
