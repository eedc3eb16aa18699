//! What the enforcer holds across a restart: the stop entries (TCP flows stopped, QUIC drops and
//! a grant's allow entries, each with when it ends) and the coach grants, in one small state file
//! next to the store (`enforce.state`, mode 0600, in the unit's `StateDirectory`).
//!
//! The nftables table belongs to the daemon's netlink socket and goes with the process, so at
//! start the daemon reads this file, drops what has ended and puts the rest back with the time
//! it has left, before capture and the listeners start. A stopped flow stays stopped and a granted
//! user is not coached again.
//!
//! Why a file and not the store: it is a snapshot, not a history (a table in the store would be
//! rewritten as often, through the recorder's queue and the store's migrations); it must work
//! whatever the store is doing (a retention run holds the write lock for seconds); and it is small
//! and bounded ([`MAX_ENTRIES`], [`MAX_FILE_BYTES`]). The hot path only puts an entry in a map
//! under a lock; a writer thread writes the whole map when it changed, at most every
//! [`WRITE_EVERY`] (write to a temporary file, fsync, rename, fsync the folder: the file is always
//! one whole snapshot). A `kill -9` loses at most what changed in the last [`WRITE_EVERY`] and
//! the write after it.
//!
//! The file is text, one entry a line (times are Unix milliseconds; `ttl` is the entry's whole
//! length, so a clock set back cannot make an entry last longer than it was given):
//!
//! ```text
//! shadowgate-enforce-state 1
//! stop 10.20.1.2:50000 192.0.2.1:443 UNTIL TTL
//! quic 10.20.1.2 192.0.2.1 UNTIL TTL SERVICE
//! allow 10.20.1.2 192.0.2.1 UNTIL TTL
//! grant 10.20.1.2 UNTIL TTL SERVICE
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first line of a state file this version writes and reads.
pub const HEADER: &str = "shadowgate-enforce-state 1";
/// Entries kept at most (past it, ended ones are dropped; if none has ended, a new entry is not
/// kept: it is in force, only not restored after a restart). About 6 MB of file at worst.
pub const MAX_ENTRIES: usize = 65_536;
/// A state file is read up to this size at most (the rest is ignored).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// A service name longer than this (or with spaces or control characters) is not kept.
pub const MAX_SERVICE: usize = 128;
/// The writer looks for changes this often: the most a `kill -9` loses.
pub const WRITE_EVERY: Duration = Duration::from_millis(500);
/// The state file's name, next to the store.
pub const FILE_NAME: &str = "enforce.state";

/// One thing to hold across a restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A TCP flow stopped (the `stop` sets).
    Stop {
        client: SocketAddr,
        server: SocketAddr,
    },
    /// QUIC from `client` to `server` dropped for `service` (the `quic` sets).
    Quic {
        client: IpAddr,
        server: IpAddr,
        service: String,
    },
    /// Everything between `client` and `server` accepted under a grant (the `allow` sets).
    Allow { client: IpAddr, server: IpAddr },
    /// A coach grant.
    Grant { client: IpAddr, service: String },
}

impl Entry {
    /// The word of its line (and of `shadowgate_restored_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Stop { .. } => "stop",
            Entry::Quic { .. } => "quic",
            Entry::Allow { .. } => "allow",
            Entry::Grant { .. } => "grant",
        }
    }
}

/// When an entry ends (Unix ms) and how long it was given (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Until {
    at_ms: u64,
    ttl_ms: u64,
}

/// The entries in force, written to `path` by [`Book::spawn_writer`].
#[derive(Debug)]
pub struct Book {
    path: PathBuf,
    map: Mutex<HashMap<Entry, Until>>,
    /// Bumped on every change; the writer writes when it differs from what it wrote.
    changes: AtomicU64,
    /// Entries not kept because the book was full of entries still in force.
    pub not_kept: AtomicU64,
    last_prune: Mutex<Option<Instant>>,
    /// One write at a time (the writer thread and the clean stop's last write).
    writing: Mutex<()>,
    /// Stop entries and QUIC drops put back at start, for the first enforcer's own state.
    seed: Mutex<Vec<(Entry, Instant)>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn service_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SERVICE
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Book {
    /// An empty book that writes to `path` (nothing is read: see [`Book::load`]).
    pub fn new(path: &Path) -> Book {
        Book {
            path: path.to_path_buf(),
            map: Mutex::default(),
            changes: AtomicU64::new(0),
            not_kept: AtomicU64::new(0),
            last_prune: Mutex::default(),
            writing: Mutex::default(),
            seed: Mutex::default(),
        }
    }

    /// The stop entries and QUIC drops put back at start, each with when it ends (once: the
    /// first enforcer takes them, so a grant can lift the drops and a repeat is not added again).
    pub fn take_seed(&self) -> Vec<(Entry, Instant)> {
        std::mem::take(&mut *self.seed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The state file next to a store at `store`.
    pub fn path_for_store(store: &Path) -> PathBuf {
        store
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(FILE_NAME)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hold `e` for `ttl` from now (a repeat replaces the end). False when it is not kept: a
    /// service name that cannot be written, or a full book.
    pub fn put(&self, e: Entry, ttl: Duration) -> bool {
        if let Entry::Quic { service, .. } | Entry::Grant { service, .. } = &e {
            if !service_ok(service) {
                return false;
            }
        }
        let ttl_ms = (ttl.as_millis() as u64).max(1);
        let now = now_ms();
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_ENTRIES && !m.contains_key(&e) {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            // A full book is pruned at most once a second (each prune reads every entry).
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                *last = Some(Instant::now());
                m.retain(|_, u| u.at_ms > now);
            }
            if m.len() >= MAX_ENTRIES {
                self.not_kept.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        m.insert(
            e,
            Until {
                at_ms: now.saturating_add(ttl_ms),
                ttl_ms,
            },
        );
        self.changes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Forget `e` (a grant revoked, a QUIC drop lifted).
    pub fn remove(&self, e: &Entry) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.remove(e).is_some() {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forget the client's QUIC drops towards these addresses (a grant lifted them).
    pub fn remove_quic(&self, client: IpAddr, servers: &[IpAddr]) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let before = m.len();
        m.retain(|e, _| {
            !matches!(e, Entry::Quic { client: c, server: s, .. }
                if *c == client && servers.contains(s))
        });
        if m.len() != before {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forget every stopped flow and QUIC drop (break glass flushed their sets).
    pub fn clear_stops(&self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|e, _| !matches!(e, Entry::Stop { .. } | Entry::Quic { .. }));
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's text now: the entries still in force, in a stable order.
    pub fn encode(&self) -> String {
        let now = now_ms();
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Ended entries leave the book here (each write), not only when it is full.
        m.retain(|_, u| u.at_ms > now);
        super::shrink_sparse(&mut m);
        let mut lines: Vec<String> = m.iter().map(|(e, u)| line(e, *u)).collect();
        drop(m);
        lines.sort_unstable();
        let mut s = String::with_capacity(HEADER.len() + 1 + lines.len() * 64);
        s.push_str(HEADER);
        s.push('\n');
        for l in lines {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }

    /// Write the file now if anything changed since `written` (a change count); returns the
    /// count written.
    fn write_if_changed(&self, written: u64) -> std::io::Result<u64> {
        let now = self.changes.load(Ordering::Relaxed);
        if now == written {
            return Ok(written);
        }
        self.write_now()?;
        Ok(now)
    }

    /// Write the file now (a clean stop).
    pub fn write_now(&self) -> std::io::Result<()> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        write_atomic(&self.path, self.encode().as_bytes())
    }

    /// Write the file every [`WRITE_EVERY`] while it changes, until `stop`, then once more.
    pub fn spawn_writer(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let book = Arc::clone(self);
        std::thread::Builder::new()
            .name("sg-state".into())
            .spawn(move || {
                let mut written = u64::MAX;
                let mut said = false;
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    match book.write_if_changed(written) {
                        Ok(w) => {
                            written = w;
                            said = false;
                        }
                        Err(e) if !said => {
                            said = true;
                            eprintln!(
                                "shadowgate: cannot write {} ({e}): stopped flows and grants will not survive a restart; check the disk and the folder's owner",
                                book.path.display()
                            );
                        }
                        Err(_) => {}
                    }
                    if stopping {
                        return;
                    }
                    std::thread::sleep(WRITE_EVERY);
                }
            })
    }

    /// Read the state file at `path`: the entries still in force, each with the time it has
    /// left (never more than it was given), and how many had ended or could not be read. No
    /// file is an empty state.
    pub fn load(path: &Path) -> std::io::Result<Loaded> {
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        f.take(MAX_FILE_BYTES).read_to_end(&mut buf)?;
        Ok(decode(&String::from_utf8_lossy(&buf), now_ms()))
    }

    /// Hold what was loaded again (so the next write keeps it), with the time it has left.
    pub fn keep(&self, loaded: &Loaded) {
        for (e, left) in &loaded.entries {
            self.put(e.clone(), *left);
        }
    }
}

/// How many entries of each kind were put back at start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub stop: usize,
    pub quic: usize,
    pub allow: usize,
    pub grant: usize,
}

/// Put back what `loaded` holds with the time each has left: grants into `grants`, stop, QUIC and
/// allow entries into the table (none without one, or with enforcement off: break glass flushed
/// them), all kept in `book` again. Call before capture and the listeners start.
pub fn restore(
    loaded: &Loaded,
    book: &Book,
    nft: Option<&super::nft::Nft>,
    grants: &super::grants::Grants,
) -> Restored {
    let mut r = Restored::default();
    let table = nft.filter(|n| n.enforcing());
    let now = Instant::now();
    let mut seed = Vec::new();
    for (e, left) in &loaded.entries {
        match (e, table) {
            (Entry::Grant { client, service }, _) => {
                grants.restore(*client, service, *left);
                book.put(e.clone(), *left);
                r.grant += 1;
            }
            (Entry::Stop { client, server }, Some(n)) => {
                n.stop_flow(*client, *server, *left);
                seed.push((e.clone(), now + *left));
                r.stop += 1;
            }
            (Entry::Quic { client, server, .. }, Some(n)) => {
                n.drop_quic(*client, *server, *left);
                book.put(e.clone(), *left);
                seed.push((e.clone(), now + *left));
                r.quic += 1;
            }
            (Entry::Allow { client, server }, Some(n)) => {
                n.allow(*client, *server, *left);
                r.allow += 1;
            }
            (_, None) => {}
        }
    }
    *book.seed.lock().unwrap_or_else(|e| e.into_inner()) = seed;
    r
}

/// What a state file held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Entries in force, with the time each has left.
    pub entries: Vec<(Entry, Duration)>,
    /// Entries whose time was over.
    pub ended: usize,
    /// Lines that could not be read (another version, damage), and entries past the bound.
    pub unreadable: usize,
}

fn line(e: &Entry, u: Until) -> String {
    let (at, ttl) = (u.at_ms, u.ttl_ms);
    match e {
        Entry::Stop { client, server } => format!("stop {client} {server} {at} {ttl}"),
        Entry::Quic {
            client,
            server,
            service,
        } => format!("quic {client} {server} {at} {ttl} {service}"),
        Entry::Allow { client, server } => format!("allow {client} {server} {at} {ttl}"),
        Entry::Grant { client, service } => format!("grant {client} {at} {ttl} {service}"),
    }
}

/// Read a state file's text as of `now` (Unix ms). Never panics; a line it cannot read is
/// counted and skipped; a file without the header is read as nothing.
pub fn decode(text: &str, now: u64) -> Loaded {
    let mut out = Loaded::default();
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        out.unreadable = text.lines().count();
        return out;
    }
    for l in lines {
        if l.trim().is_empty() {
            continue;
        }
        let Some((e, u)) = parse_line(l) else {
            out.unreadable += 1;
            continue;
        };
        if u.at_ms <= now {
            out.ended += 1;
            continue;
        }
        if out.entries.len() >= MAX_ENTRIES {
            out.unreadable += 1;
            continue;
        }
        let left = Duration::from_millis((u.at_ms - now).min(u.ttl_ms));
        out.entries.push((e, left));
    }
    out
}

fn parse_line(l: &str) -> Option<(Entry, Until)> {
    let f: Vec<&str> = l.split(' ').collect();
    let until = |at: &str, ttl: &str| -> Option<Until> {
        Some(Until {
            at_ms: at.parse().ok()?,
            ttl_ms: ttl.parse().ok()?,
        })
    };
    let service = |s: &str| service_ok(s).then(|| s.to_string());
    match f.as_slice() {
        ["stop", c, s, at, ttl] => Some((
            Entry::Stop {
                client: c.parse().ok()?,
                server: s.parse().ok()?,
            },
            until(at, ttl)?,
        )),
        ["quic", c, s, at, ttl, svc] => Some((
            Entry::Quic {
                client: c.parse().ok()?,
                server: s.parse().ok()?,
                service: service(svc)?,
            },
            until(at, ttl)?,
        )),
        ["allow", c, s, at, ttl] => Some((
            Entry::Allow {
                client: c.parse().ok()?,
                server: s.parse().ok()?,
            },
            until(at, ttl)?,
        )),
        ["grant", c, at, ttl, svc] => Some((
            Entry::Grant {
                client: c.parse().ok()?,
                service: service(svc)?,
            },
            until(at, ttl)?,
        )),
        _ => None,
    }
}

/// Replace `path` with `bytes` whole: a temporary file (0600) written and synced, renamed over
/// it, the folder synced.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("state.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_read_back_with_the_time_they_have_left() {
        let dir = std::env::temp_dir().join(format!("sg-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        let b = Book::new(&path);
        let hour = Duration::from_secs(3600);
        let all = [
            Entry::Stop {
                client: "10.20.1.2:50000".parse().unwrap(),
                server: "[2001:db8::1]:443".parse().unwrap(),
            },
            Entry::Quic {
                client: ip("10.20.1.2"),
                server: ip("192.0.2.1"),
                service: "chatgpt".into(),
            },
            Entry::Allow {
                client: ip("10.20.1.2"),
                server: ip("192.0.2.7"),
            },
            Entry::Grant {
                client: ip("fe80::1"),
                service: "gemini".into(),
            },
        ];
        for e in &all {
            assert!(b.put(e.clone(), hour));
        }
        b.write_now().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "not world- or group-readable: {mode:o}");
        let l = Book::load(&path).unwrap();
        assert_eq!((l.ended, l.unreadable), (0, 0));
        assert_eq!(l.entries.len(), 4);
        for e in &all {
            let (_, left) = l.entries.iter().find(|(x, _)| x == e).expect("read back");
            assert!(
                *left <= hour && *left > hour - Duration::from_secs(60),
                "{left:?}"
            );
        }
        // No file: nothing.
        assert_eq!(Book::load(&dir.join("none")).unwrap(), Loaded::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ended_entries_and_bad_lines_are_dropped_and_time_never_grows() {
        let text = format!(
            "{HEADER}\n\
             stop 10.0.0.1:1 192.0.2.1:443 2000 1000\n\
             stop 10.0.0.1:2 192.0.2.1:443 900 1000\n\
             grant 10.0.0.1 1000000 5000 gemini\n\
             grant 10.0.0.1 5000 5000 two words\n\
             quic 10.0.0.1 nonsense 5000 5000 x\n\
             allow 10.0.0.1 192.0.2.1 99999999999999999999999 1\n\
             \n\
             what\n"
        );
        let l = decode(&text, 1000);
        assert_eq!(l.ended, 1, "{l:?}");
        assert_eq!(l.unreadable, 4, "{l:?}");
        assert_eq!(l.entries.len(), 2);
        // 1 s left of 1 s; a clock set back (999 s left) gives no more than the 5 s granted.
        assert_eq!(l.entries[0].1, Duration::from_millis(1000));
        assert_eq!(l.entries[1].1, Duration::from_millis(5000));
        // Another version's file is read as nothing.
        let other = decode(
            "shadowgate-enforce-state 2\nstop 10.0.0.1:1 192.0.2.1:443 2000 1000\n",
            0,
        );
        assert!(other.entries.is_empty());
        // Bytes that are not text do not panic.
        let junk = decode(&String::from_utf8_lossy(&[0xff, 0, 0x0a, 0x20, 0x80]), 0);
        assert!(junk.entries.is_empty());
    }

    #[test]
    fn the_book_is_bounded_and_unwritable_names_are_not_kept() {
        let b = Book::new(Path::new("/nonexistent/enforce.state"));
        assert!(!b.put(
            Entry::Grant {
                client: ip("10.0.0.1"),
                service: "has space".into()
            },
            Duration::from_secs(1)
        ));
        assert!(!b.put(
            Entry::Grant {
                client: ip("10.0.0.1"),
                service: "x".repeat(MAX_SERVICE + 1)
            },
            Duration::from_secs(1)
        ));
        let hour = Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES {
            let e = Entry::Stop {
                client: SocketAddr::new(ip("10.0.0.1"), (i % 65_536) as u16),
                server: SocketAddr::new(IpAddr::from([192, 0, 2, (i / 65_536) as u8]), 443),
            };
            assert!(b.put(e, hour));
        }
        let one_more = Entry::Stop {
            client: "10.0.0.2:1".parse().unwrap(),
            server: "192.0.2.9:443".parse().unwrap(),
        };
        assert!(!b.put(one_more, hour));
        assert_eq!(b.len(), MAX_ENTRIES);
        assert_eq!(b.not_kept.load(Ordering::Relaxed), 1);
        // The whole file stays within what a load reads.
        assert!((b.encode().len() as u64) < MAX_FILE_BYTES);
        // Writing where it cannot is an error, not a panic.
        assert!(b.write_now().is_err());
    }

    #[test]
    fn lifted_drops_and_break_glass_are_forgotten() {
        let b = Book::new(Path::new("unused"));
        let hour = Duration::from_secs(3600);
        let q = |s: &str| Entry::Quic {
            client: ip("10.0.0.1"),
            server: ip(s),
            service: "chatgpt".into(),
        };
        b.put(q("192.0.2.1"), hour);
        b.put(q("192.0.2.2"), hour);
        b.remove_quic(ip("10.0.0.1"), &[ip("192.0.2.1")]);
        assert_eq!(b.len(), 1);
        let g = Entry::Grant {
            client: ip("10.0.0.1"),
            service: "gemini".into(),
        };
        b.put(g.clone(), hour);
        b.clear_stops();
        assert_eq!(b.len(), 1, "the grant stays");
        b.remove(&g);
        assert!(b.is_empty());
    }
}
