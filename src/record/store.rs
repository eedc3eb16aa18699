//! The embedded event store: SQLite in WAL mode with `synchronous=FULL`, so an event counts as
//! recorded once its transaction committed and survives a crash or power loss. Versioned schema
//! migrations, indexes for the report's queries, retention, per-sink delivery cursors, and a
//! file that only its owner can read (it names staff devices).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::event::{Event, INFO};
use super::words::{self, Word};
use crate::policy::{Action, Severity};

/// Schema versions, applied in order; `PRAGMA user_version` records how far a file is.
/// The newest schema version this binary reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

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

/// The WAL file is cut back to this after a checkpoint (SQLite's `journal_size_limit`).
const WAL_LIMIT_BYTES: i64 = 16 << 20;

#[derive(Debug)]
pub enum StoreError {
    Io(PathBuf, std::io::Error),
    Sql(PathBuf, rusqlite::Error),
    TooNew(PathBuf, i64),
    /// The copy taken before a schema upgrade could not be made (the store is unchanged).
    Backup(PathBuf, rusqlite::Error),
}

/// The copy of a store at schema version `from` taken before it is upgraded to `to`:
/// `<path>.pre-v<to>.bak` (a VACUUM INTO copy, mode 0600).
pub fn backup_path(path: &Path, to: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".pre-v{to}.bak"));
    PathBuf::from(p)
}

/// What an older shadowgate says of a store a newer one upgraded: the two ways back.
fn too_new(p: &Path, v: i64) -> String {
    let known = MIGRATIONS.len();
    let bak = backup_path(p, v.max(0) as usize);
    let restore = if bak.exists() {
        format!(
            "or go back to the copy taken before that upgrade, {bak} (the events recorded since are lost): \
             `systemctl stop shadowgate`, `mv {bak} {store}`, `rm -f {store}-wal {store}-shm`, `systemctl start shadowgate`",
            bak = bak.display(),
            store = p.display()
        )
    } else {
        format!(
            "or, if a copy taken before that upgrade is there ({}), stop shadowgate, move it into place over the store (removing {store}-wal and {store}-shm), and start it",
            bak.display(),
            store = p.display()
        )
    };
    format!(
        "{}: schema version {v} is newer than this shadowgate knows ({known}): a newer shadowgate wrote it. Install the newer shadowgate again, {restore}",
        p.display()
    )
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StoreError::Sql(p, e) => write!(f, "{}: event store error: {e} (is the disk full, or the file damaged? `sqlite3 FILE 'PRAGMA integrity_check'` tells)", p.display()),
            StoreError::TooNew(p, v) => write!(f, "{}", too_new(p, *v)),
            StoreError::Backup(p, e) => write!(f, "{}: cannot back the store up before upgrading its schema ({e}); nothing was changed: free disk space next to it (the copy is about as large as the store), then start again", p.display()),
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
    /// Events with this action (`Some(None)`: `info`, the system's own events).
    pub action: Option<Option<Action>>,
    pub limit: Option<usize>,
    /// Events whose client is in this group (one of `client_groups`).
    pub group: Option<String>,
    /// Events at or above this severity.
    pub min_severity: Option<Severity>,
    /// Events after this sequence number, and up to this one (a follower's window).
    pub after_seq: Option<i64>,
    pub upto_seq: Option<i64>,
    /// With `limit`: the newest `limit` events (still returned oldest first), as `tail` does.
    pub newest: bool,
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
        transport: opt_word(r, 11, "")?,
        kind: word(r, 12)?,
        name: r.get(13)?,
        seen_via: r.get(14)?,
        service: r.get(15)?,
        service_name: r.get(16)?,
        category: nullable_word(r, 17)?,
        action: opt_word(r, 18, INFO)?,
        severity: word(r, 19)?,
        rule_id: r.get(20)?,
        steer_url: r.get(21)?,
        shared_tenant: r.get(22)?,
        repeat_count: r.get(23)?,
        detail: r.get(24)?,
        evidence: nullable_word(r, 25)?,
    })
}

/// A column written by [`Word::word`]: a word this shadowgate does not know (a store written by
/// a newer version) is an error that names it.
fn word<T: Word>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    T::from_word(&s).ok_or_else(|| unknown_word(i, &s))
}

fn nullable_word<T: Word>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    match r.get::<_, Option<String>>(i)? {
        None => Ok(None),
        Some(s) => T::from_word(&s)
            .map(Some)
            .ok_or_else(|| unknown_word(i, &s)),
    }
}

fn opt_word<T: Word>(r: &rusqlite::Row<'_>, i: usize, absent: &str) -> rusqlite::Result<Option<T>> {
    let s: String = r.get(i)?;
    words::from_or_word(&s, absent).map_err(|_| unknown_word(i, &s))
}

fn unknown_word(i: usize, s: &str) -> rusqlite::Error {
    let column = COLUMNS.split(", ").nth(i).unwrap_or("?");
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!(
            "unknown {column} `{s}`: the event was written by a newer shadowgate; upgrade shadowgate to read this store"
        )
        .into(),
    )
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
        // A transaction larger than usual (a big batch, a retention run) grows the WAL file;
        // once checkpointed it is cut back to this size instead of keeping its largest one.
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)
            .map_err(sql)?;
        let mut s = Store {
            path: path.into(),
            conn,
        };
        s.migrate()?;
        Ok(s)
    }

    /// Open an existing store for reading only (`shadowgate events --follow` beside the daemon):
    /// no migration, no pragma that writes; in WAL mode readers never block the writer.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let sql = |e| StoreError::Sql(path.into(), e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        let s = Store {
            path: path.into(),
            conn,
        };
        let v = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| s.sql(e))?;
        if v as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew(path.into(), v));
        }
        if (v as usize) < MIGRATIONS.len() {
            return Err(StoreError::Io(
                path.into(),
                std::io::Error::other(format!(
                    "schema version {v} is older than this shadowgate's ({}): open it once with the daemon or `shadowgate events` (without --follow) to upgrade it",
                    MIGRATIONS.len()
                )),
            ));
        }
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
        if v > 0 && (v as usize) < MIGRATIONS.len() {
            self.backup(MIGRATIONS.len())?;
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

    /// Cap this connection's file at `pages` database pages (SQLite `max_page_count`): writes
    /// that need more fail with `SQLITE_FULL`, as on a full disk. Returns the cap in force.
    pub fn cap_pages(&self, pages: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// Before a schema upgrade to version `to`: a whole copy of the store as it is
    /// (`VACUUM INTO`, [`backup_path`], mode 0600). A copy already there is kept (an upgrade that
    /// stopped halfway left it, and it is the older one).
    fn backup(&self, to: usize) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let bak = backup_path(&self.path, to);
        if bak.exists() {
            return Ok(());
        }
        // Created empty with mode 0600 first: VACUUM INTO writes into an empty file.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bak)
            .map_err(|e| StoreError::Io(bak.clone(), e))?;
        let r = self.conn.execute("VACUUM INTO ?1", [bak.to_string_lossy()]);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&bak);
            return Err(StoreError::Backup(self.path.clone(), e));
        }
        eprintln!(
            "shadowgate: {}: schema upgrade to v{to}; the store as it was is in {}",
            self.path.display(),
            bak.display()
        );
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
                    words::or_word(e.transport, ""),
                    e.kind.word(),
                    e.name,
                    e.seen_via,
                    e.service,
                    e.service_name,
                    e.category.map(Word::word),
                    e.action_word(),
                    e.severity.word(),
                    e.rule_id,
                    e.steer_url,
                    e.shared_tenant,
                    e.repeat_count,
                    e.detail,
                    e.evidence.map(Word::word)
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
        if let Some(a) = q.action {
            sql += " AND action = ?";
            args.push(words::or_word(a, INFO).to_string().into());
        }
        if let Some(g) = &q.group {
            // A whole element of the comma-separated list (no LIKE: a group name may hold `%`).
            sql += " AND instr(',' || client_groups || ',', ',' || ? || ',') > 0";
            args.push(g.clone().into());
        }
        if let Some(min) = q.min_severity {
            let words: Vec<&str> = [
                Severity::Info,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ]
            .into_iter()
            .filter(|s| *s >= min)
            .map(Word::word)
            .collect();
            sql += &format!(" AND severity IN ({})", vec!["?"; words.len()].join(", "));
            args.extend(words.into_iter().map(|w| w.to_string().into()));
        }
        if let Some(s) = q.after_seq {
            sql += " AND seq > ?";
            args.push(s.into());
        }
        if let Some(s) = q.upto_seq {
            sql += " AND seq <= ?";
            args.push(s.into());
        }
        let newest = q.newest && q.limit.is_some();
        sql += if newest {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        };
        if let Some(l) = q.limit {
            sql += &format!(" LIMIT {l}");
        }
        let mut st = self.conn.prepare(&sql).map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args), row)
            .map_err(|e| self.sql(e))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        if newest {
            out.reverse();
        }
        Ok(out)
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

    /// Every sink that has a cursor in the store (configured now or earlier).
    pub fn cursor_names(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT sink FROM sink_cursors ORDER BY sink")
            .map_err(|e| self.sql(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
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

    /// Up to which sequence number every sink in `sinks` (the sinks configured now) has
    /// delivered: the lowest of their cursors, 0 for a sink that has never delivered. A cursor
    /// left in the table by a sink that was removed from the configuration is ignored, so it
    /// cannot hold events back forever. With no sinks every event is only in the store, and the
    /// store is its record: it counts as delivered (`i64::MAX`), so age and size limits apply
    /// to all of it.
    pub fn delivered_upto(&self, sinks: &[String]) -> Result<i64, StoreError> {
        let mut upto = i64::MAX;
        for s in sinks {
            upto = upto.min(self.cursor(s)?);
        }
        Ok(upto)
    }

    /// Events not yet delivered by every sink in `sinks` (see [`Store::delivered_upto`]).
    pub fn undelivered(&self, sinks: &[String]) -> Result<i64, StoreError> {
        let upto = self.delivered_upto(sinks)?;
        self.conn
            .query_row("SELECT COUNT(*) FROM events WHERE seq > ?1", [upto], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))
    }

    /// The space the store takes now: cheap (page counts are in the file header, the WAL size
    /// is a `stat`).
    pub fn size(&self) -> Result<StoreSize, StoreError> {
        let get = |p: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(|e| self.sql(e))
        };
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(StoreSize {
            page_size: get("page_size")?,
            pages: get("page_count")?,
            free_pages: get("freelist_count")?,
            wal_bytes: std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Delete at most `limit` events older than `cutoff_ns` with a sequence number up to
    /// `upto`, in one transaction. Returns how many were deleted.
    pub fn delete_aged(
        &self,
        cutoff_ns: i64,
        upto: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < ?1 AND seq <= ?2 LIMIT ?3)",
                params![cutoff_ns, upto, limit as i64],
            )
            .map_err(|e| self.sql(e))
    }

    /// Events older than `cutoff_ns` that are kept because a sink has not delivered them.
    pub fn aged_undelivered(&self, cutoff_ns: i64, upto: i64) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE ts < ?1 AND seq > ?2",
                params![cutoff_ns, upto],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Delete the `limit` oldest events (lowest sequence numbers) up to `upto`, in one
    /// transaction. Returns how many were deleted: 0 when nothing up to `upto` is left.
    pub fn delete_oldest(&self, upto: i64, limit: usize) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
                params![upto, limit as i64],
            )
            .map_err(|e| self.sql(e))
    }

    /// Delete events older than `days` before `now_ns`, but never ones a sink in `sinks` has
    /// yet to deliver (see [`Store::delivered_upto`]), in transactions of at most `batch`
    /// events so that writers wait at most one batch. Between batches `go_on` is asked whether
    /// to continue (a stopping daemon says no; the rest waits for the next run).
    pub fn retention_batched(
        &self,
        sinks: &[String],
        days: u32,
        now_ns: u64,
        batch: usize,
        mut go_on: impl FnMut() -> bool,
    ) -> Result<Retained, StoreError> {
        let cutoff_ns = now_ns
            .saturating_sub(days as u64 * 86_400 * 1_000_000_000)
            .min(i64::MAX as u64) as i64;
        // Cursors only move forward: what is delivered now stays delivered while this runs.
        let upto = self.delivered_upto(sinks)?;
        let batch = batch.max(1);
        let mut deleted = 0u64;
        let mut complete = true;
        loop {
            let n = self.delete_aged(cutoff_ns, upto, batch)?;
            deleted += n as u64;
            if n < batch {
                break;
            }
            if !go_on() {
                complete = false;
                break;
            }
        }
        Ok(Retained {
            cutoff_ns,
            deleted,
            kept_undelivered: self.aged_undelivered(cutoff_ns, upto)?.max(0) as u64,
            complete,
        })
    }

    /// [`Store::retention_batched`] in batches of [`RETENTION_BATCH`], to the end.
    pub fn apply_retention(
        &self,
        sinks: &[String],
        days: u32,
        now_ns: u64,
    ) -> Result<Retained, StoreError> {
        self.retention_batched(sinks, days, now_ns, RETENTION_BATCH, || true)
    }
}

/// Events deleted per transaction by retention and the size cap: a few milliseconds of work,
/// so the recorder never waits long for the write lock.
pub const RETENTION_BATCH: usize = 2_000;

/// What a retention run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Events older than this (ns since the epoch) were due.
    pub cutoff_ns: i64,
    pub deleted: u64,
    /// Old enough, but kept because a sink has not delivered them.
    pub kept_undelivered: u64,
    /// False when the run was stopped between two batches.
    pub complete: bool,
}

/// The space the store takes (see [`Store::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreSize {
    pub page_size: u64,
    /// Pages in the database file, and how many of them are free (deleted events leave free
    /// pages: SQLite reuses them for new events but does not shrink the file).
    pub pages: u64,
    pub free_pages: u64,
    /// The write-ahead log's file (SQLite checkpoints it into the database every ~1,000 pages).
    pub wal_bytes: u64,
}

impl StoreSize {
    /// Bytes of the database that hold events, indexes and cursors: what `[store] max_mb` caps.
    pub fn used_bytes(&self) -> u64 {
        self.pages.saturating_sub(self.free_pages) * self.page_size
    }

    /// Bytes on disk: the database file and its WAL.
    pub fn file_bytes(&self) -> u64 {
        self.pages * self.page_size + self.wal_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sg-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("events.db")
    }

    /// A store at an older schema version (the first `v` migrations, one row) is copied whole
    /// before it is upgraded; the copy keeps the old version and the row, and only its owner
    /// reads it.
    #[test]
    fn an_upgrade_backs_the_store_up_first() {
        let path = scratch("upgrade");
        let older = MIGRATIONS.len() - 1;
        {
            let c = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..older] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", older as i64).unwrap();
            c.execute(
                "INSERT INTO events (id, ts, sensor, client_ip, client_port, client_groups, server_ip, server_port, transport, kind, name, seen_via, action, severity, rule_id, shared_tenant, repeat_count) \
                 VALUES ('x', 1, 's', '10.0.0.1', 1, '', '192.0.2.1', 443, 'tcp', 'tls_client_hello', 'old.example', 'tls', 'alert', 'low', 'r', 0, 1)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version(), MIGRATIONS.len() as i64);
        let bak = backup_path(&path, MIGRATIONS.len());
        assert!(bak
            .to_string_lossy()
            .ends_with(&format!(".pre-v{}.bak", MIGRATIONS.len())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&bak).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let c = Connection::open(&bak).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, older as i64);
        let name: String = c
            .query_row("SELECT name FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "old.example");
        // Opening again changes nothing: no new copy, the one there is kept.
        drop(s);
        let before = std::fs::metadata(&bak).unwrap().modified().unwrap();
        Store::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&bak).unwrap().modified().unwrap(), before);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A new store needs no copy.
    #[test]
    fn a_new_store_is_not_backed_up() {
        let path = scratch("fresh");
        Store::open(&path).unwrap();
        let dir = path.parent().unwrap();
        let baks: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
            .collect();
        assert!(baks.is_empty(), "{baks:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A store a newer shadowgate wrote: refused, with both ways back in the message.
    #[test]
    fn a_newer_store_is_refused_with_the_way_back() {
        let path = scratch("newer");
        Store::open(&path).unwrap();
        let newer = MIGRATIONS.len() + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer as i64)
            .unwrap();
        std::fs::write(backup_path(&path, newer), b"").unwrap();
        let e = Store::open(&path).err().expect("refused").to_string();
        let bak = backup_path(&path, newer);
        for want in [
            "Install the newer shadowgate again".to_string(),
            format!("mv {} {}", bak.display(), path.display()),
            "systemctl stop shadowgate".to_string(),
        ] {
            assert!(e.contains(&want), "{want:?} not in {e}");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
