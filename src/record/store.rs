//! The embedded event store: SQLite in WAL mode with `synchronous=FULL`, so an event counts as
//! recorded once its transaction committed and survives a crash or power loss. Versioned schema
//! migrations, indexes for the report's queries, retention, per-sink delivery cursors, and a
//! file that only its owner can read (it names staff devices).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::event::Event;

/// Schema versions, applied in order; `PRAGMA user_version` records how far a file is.
const MIGRATIONS: &[&str] = &[
    // 1: events and sink cursors.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        sensor TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        client_port INTEGER NOT NULL,
        client_mac TEXT,
        client_hostname TEXT,
        client_groups TEXT NOT NULL,
        server_ip TEXT NOT NULL,
        server_port INTEGER NOT NULL,
        transport TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        seen_via TEXT NOT NULL,
        service TEXT,
        service_name TEXT,
        category TEXT,
        action TEXT NOT NULL,
        severity TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        steer_url TEXT,
        shared_tenant INTEGER NOT NULL,
        repeat_count INTEGER NOT NULL
     );
     CREATE TABLE sink_cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
    // 2: indexes for the weekly report (by time, service, client, action).
    "CREATE INDEX events_ts ON events (ts);
     CREATE INDEX events_service_ts ON events (service, ts);
     CREATE INDEX events_client_ts ON events (client_ip, ts);
     CREATE INDEX events_action_ts ON events (action, ts);",
    // 3: system events carry a JSON detail (errors, digests, counts).
    "ALTER TABLE events ADD COLUMN detail TEXT;
     ALTER TABLE sink_cursors ADD COLUMN down_since INTEGER;",
    // 4: the evidence level of a decision (wire, own_lookup, ...).
    "ALTER TABLE events ADD COLUMN evidence TEXT;",
];

#[derive(Debug)]
pub enum StoreError {
    Io(PathBuf, std::io::Error),
    Sql(PathBuf, rusqlite::Error),
    TooNew(PathBuf, i64),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StoreError::Sql(p, e) => write!(f, "{}: event store error: {e} (is the disk full, or the file damaged? `sqlite3 FILE 'PRAGMA integrity_check'` tells)", p.display()),
            StoreError::TooNew(p, v) => write!(f, "{}: schema version {v} is newer than this shadowgate knows ({}); upgrade shadowgate", p.display(), MIGRATIONS.len()),
        }
    }
}

impl std::error::Error for StoreError {}

/// What `events` can filter on.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub service: Option<String>,
    pub client: Option<String>,
    pub action: Option<String>,
    pub limit: Option<usize>,
}

pub struct Store {
    path: PathBuf,
    conn: Connection,
}

const COLUMNS: &str = "seq, id, ts, sensor, client_ip, client_port, client_mac, client_hostname, client_groups, server_ip, server_port, transport, kind, name, seen_via, service, service_name, category, action, severity, rule_id, steer_url, shared_tenant, repeat_count, detail, evidence";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        id: r.get(1)?,
        ts: r.get::<_, i64>(2)? as u64,
        sensor: r.get(3)?,
        client_ip: r.get(4)?,
        client_port: r.get(5)?,
        client_mac: r.get(6)?,
        client_hostname: r.get(7)?,
        client_groups: r.get(8)?,
        server_ip: r.get(9)?,
        server_port: r.get(10)?,
        transport: r.get(11)?,
        kind: r.get(12)?,
        name: r.get(13)?,
        seen_via: r.get(14)?,
        service: r.get(15)?,
        service_name: r.get(16)?,
        category: r.get(17)?,
        action: r.get(18)?,
        severity: r.get(19)?,
        rule_id: r.get(20)?,
        steer_url: r.get(21)?,
        shared_tenant: r.get(22)?,
        repeat_count: r.get(23)?,
        detail: r.get(24)?,
        evidence: r.get(25)?,
    })
}

impl Store {
    /// Open (or create, mode 0600) the store and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let io = |e| StoreError::Io(path.into(), e);
        let sql = |e| StoreError::Sql(path.into(), e);
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            // Created 0600 before SQLite opens it; SQLite gives its -wal/-shm files the same mode.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
        }
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        let mut s = Store {
            path: path.into(),
            conn,
        };
        s.migrate()?;
        Ok(s)
    }

    fn sql(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sql(self.path.clone(), e)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        if v as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew(self.path.clone(), v));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            let tx = self
                .conn
                .transaction()
                .map_err(|e| StoreError::Sql(self.path.clone(), e))?;
            tx.execute_batch(m)
                .map_err(|e| StoreError::Sql(self.path.clone(), e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| StoreError::Sql(self.path.clone(), e))?;
            tx.commit()
                .map_err(|e| StoreError::Sql(self.path.clone(), e))?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> i64 {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append events in one transaction. When this returns Ok they are recorded; their `seq`
    /// fields are set. Returns the last sequence number.
    pub fn append(&mut self, events: &mut [Event]) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::Sql(path.clone(), e);
        let tx = self.conn.transaction().map_err(sql)?;
        let mut last = 0;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (id, ts, sensor, client_ip, client_port, client_mac, client_hostname, client_groups, server_ip, server_port, transport, kind, name, seen_via, service, service_name, category, action, severity, rule_id, steer_url, shared_tenant, repeat_count, detail, evidence)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
                )
                .map_err(sql)?;
            for e in events.iter_mut() {
                st.execute(params![
                    e.id,
                    e.ts as i64,
                    e.sensor,
                    e.client_ip,
                    e.client_port,
                    e.client_mac,
                    e.client_hostname,
                    e.client_groups,
                    e.server_ip,
                    e.server_port,
                    e.transport,
                    e.kind,
                    e.name,
                    e.seen_via,
                    e.service,
                    e.service_name,
                    e.category,
                    e.action,
                    e.severity,
                    e.rule_id,
                    e.steer_url,
                    e.shared_tenant,
                    e.repeat_count,
                    e.detail,
                    e.evidence
                ])
                .map_err(sql)?;
                last = tx.last_insert_rowid();
                e.seq = last;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(last)
    }

    /// Events after `seq`, in order (what a sink delivers next).
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params![seq, limit as i64], row)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    pub fn query(&self, q: &Query) -> Result<Vec<Event>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = q.since_ns {
            sql += " AND ts >= ?";
            args.push((s as i64).into());
        }
        if let Some(u) = q.until_ns {
            sql += " AND ts < ?";
            args.push((u as i64).into());
        }
        if let Some(s) = &q.service {
            sql += " AND service = ?";
            args.push(s.clone().into());
        }
        if let Some(c) = &q.client {
            sql += " AND (client_ip = ? OR client_mac = ? OR client_hostname = ?)";
            for _ in 0..3 {
                args.push(c.to_ascii_lowercase().into());
            }
        }
        if let Some(a) = &q.action {
            sql += " AND action = ?";
            args.push(a.clone().into());
        }
        sql += " ORDER BY seq";
        if let Some(l) = q.limit {
            sql += &format!(" LIMIT {l}");
        }
        let mut st = self.conn.prepare(&sql).map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args), row)
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    pub fn count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    pub fn last_seq(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    pub fn cursor(&self, sink: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT seq FROM sink_cursors WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(|e| self.sql(e))
    }

    pub fn set_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT INTO sink_cursors (sink, seq) VALUES (?1, ?2) ON CONFLICT(sink) DO UPDATE SET seq = excluded.seq", params![sink, seq])
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Since when (ns) the sink has been failing, if it is: kept across runs so that a
    /// recovery in a later process is still reported as one.
    pub fn sink_down_since(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT down_since FROM sink_cursors WHERE sink = ?1",
                [sink],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql(e))
    }

    /// Mark the sink as failing since `since` (ns), or as healthy (`None`).
    pub fn set_sink_down(&self, sink: &str, since: Option<i64>) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT INTO sink_cursors (sink, seq, down_since) VALUES (?1, 0, ?2) ON CONFLICT(sink) DO UPDATE SET down_since = excluded.down_since", params![sink, since])
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Delete events older than `days` before `now_ns`, but never ones a sink has yet to deliver.
    pub fn apply_retention(&self, days: u32, now_ns: u64) -> Result<usize, StoreError> {
        let cutoff = now_ns
            .saturating_sub(days as u64 * 86_400 * 1_000_000_000)
            .min(i64::MAX as u64) as i64;
        self.conn
            .execute(
                "DELETE FROM events WHERE ts < ?1 AND seq <= (SELECT COALESCE(MIN(seq), (SELECT MAX(seq) FROM events)) FROM sink_cursors)",
                [cutoff],
            )
            .map_err(|e| self.sql(e))
    }
}
