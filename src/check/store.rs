//! The event store: its folder exists and is writable, the schema is one this binary reads
//! (read from the file's header, never opened for writing), and neither the file nor its folder
//! is open to other users (the events name staff devices).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Finding;
use crate::config::Config;

/// SQLite's header: the magic string, and `PRAGMA user_version` (big-endian) at offset 60.
const MAGIC: &[u8] = b"SQLite format 3\0";

/// The schema version (`user_version`) of a SQLite file's first 100 bytes; None if it is not
/// a SQLite file (an empty file is version 0: SQLite has not written it yet).
fn header_version(head: &[u8]) -> Option<u32> {
    if head.is_empty() {
        return Some(0);
    }
    if head.len() < 64 || !head.starts_with(MAGIC) {
        return None;
    }
    Some(u32::from_be_bytes([head[60], head[61], head[62], head[63]]))
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads the NUL-terminated path only.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

pub fn check(c: &Config) -> Vec<Finding> {
    let Some(s) = &c.store else {
        return Vec::new();
    };
    let path = &s.path;
    let mut out = Vec::new();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Err(e) => out.push(Finding::error(
            "store",
            format!("{}: the store's folder: {e}", dir.display()),
            format!(
                "create it for the daemon's user: `install -d -m 0700 -o shadowgate -g shadowgate {}` (the unit's StateDirectory= makes /var/lib/shadowgate)",
                dir.display()
            ),
        )),
        Ok(m) => {
            if !writable(dir) {
                out.push(Finding::error(
                    "store",
                    format!("{}: the store's folder is not writable by this user", dir.display()),
                    format!("`chown shadowgate:shadowgate {}` (the daemon writes the store and its -wal file there)", dir.display()),
                ));
            }
            if m.permissions().mode() & 0o007 != 0 {
                out.push(Finding::warn(
                    "store",
                    format!(
                        "{}: the store's folder has mode {:04o}: other users can list or enter it",
                        dir.display(),
                        m.permissions().mode() & 0o7777
                    ),
                    format!("`chmod o-rwx {}`", dir.display()),
                ));
            }
        }
    }
    if !path.exists() {
        out.push(Finding::ok(
            "store",
            format!(
                "{}: not there yet; the daemon creates it (mode 0600)",
                path.display()
            ),
        ));
        return out;
    }
    let known = crate::record::store::SCHEMA_VERSION;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        f.take(100).read_to_end(&mut head)
    });
    match read.map(|_| header_version(&head)) {
        Err(e) => out.push(Finding::error(
            "store",
            format!("{}: cannot read: {e}", path.display()),
            format!("the daemon's user must own it: `chown shadowgate:shadowgate {}`", path.display()),
        )),
        Ok(None) => out.push(Finding::error(
            "store",
            format!("{}: not a SQLite event store", path.display()),
            "point [store] path at the event store, or move this file aside so the daemon creates a new one",
        )),
        Ok(Some(v)) if v as usize > known => out.push(Finding::error(
            "store",
            format!(
                "{}: schema version {v} is newer than this shadowgate reads ({known}): a newer shadowgate wrote it",
                path.display()
            ),
            format!(
                "install the newer shadowgate again, or restore the store from the backup taken before the upgrade (stop the daemon, copy the backup to {}); never delete it: it holds the record",
                path.display()
            ),
        )),
        Ok(Some(v)) => out.push(Finding::ok(
            "store",
            if (v as usize) < known {
                format!("{}: schema version {v}; the daemon migrates it to {known} at start", path.display())
            } else {
                format!("{}: schema version {v}", path.display())
            },
        )),
    }
    for p in [
        path.to_path_buf(),
        path.with_extension(ext(path, "-wal")),
        path.with_extension(ext(path, "-shm")),
    ] {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            out.push(Finding::error(
                "store",
                format!(
                    "{}: mode {mode:04o}: {} can read the events (they name staff devices)",
                    p.display(),
                    if mode & 0o007 != 0 {
                        "every user"
                    } else {
                        "the group"
                    }
                ),
                format!("`chmod 0600 {}`", p.display()),
            ));
        }
    }
    out
}

/// The extension that turns `events.db` into `events.db-wal`.
fn ext(path: &Path, suffix: &str) -> String {
    format!(
        "{}{suffix}",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_from_the_header() {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(MAGIC);
        h[63] = 4;
        assert_eq!(header_version(&h), Some(4));
        h[60] = 1;
        assert_eq!(header_version(&h), Some(0x0100_0004));
        assert_eq!(header_version(b""), Some(0));
        assert_eq!(
            header_version(b"not sqlite at all, just some text here that is long enough ok"),
            None
        );
        assert_eq!(header_version(&h[..20]), None);
    }

    #[test]
    fn a_real_store_reads_as_this_binarys_schema() {
        let d = std::env::temp_dir().join(format!("sg-check-store-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = d.join("events.db");
        drop(crate::record::Store::open(&p).unwrap());
        let c: Config = toml::from_str(&format!("[store]\npath = \"{}\"\n", p.display())).unwrap();
        let f = check(&c);
        let _ = std::fs::remove_dir_all(&d);
        assert!(
            f.iter().all(|f| f.severity == super::super::Severity::Ok),
            "{f:?}"
        );
        assert!(
            f.iter().any(|f| f.message.ends_with(&format!(
                "schema version {}",
                crate::record::store::SCHEMA_VERSION
            ))),
            "{f:?}"
        );
    }
}
