//! Writes the report's files: `report.html`, `report.csv` (a row per device x service x action)
//! and `report.json` (every figure), each created 0600 in a 0700 folder and renamed into place.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::model::Report;

/// Create `dir` (and parents) readable by the owner only.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: cannot create the output folder: {e}", dir.display()))
}

/// Write `bytes` to `path` as a private file (0600), atomically (temporary file, then rename).
pub fn private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    drop(f);
    // The rename replaces an earlier report whole: the file left is the new 0600 one.
    std::fs::rename(&tmp, path).map_err(err)
}

pub fn csv_bytes(r: &Report) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if r.rows.is_empty() {
        // A header even for an empty week, so scripts see the columns.
        w.write_record([
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
        ])
        .map_err(|e| e.to_string())?;
    }
    for row in &r.rows {
        w.serialize(row).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

pub struct Files {
    pub html: PathBuf,
    pub csv: PathBuf,
    pub json: PathBuf,
}

pub fn write_all(dir: &Path, r: &Report, html: &str) -> Result<Files, String> {
    private_dir(dir)?;
    let f = Files {
        html: dir.join("report.html"),
        csv: dir.join("report.csv"),
        json: dir.join("report.json"),
    };
    private_file(&f.html, html.as_bytes())?;
    private_file(&f.csv, &csv_bytes(r)?)?;
    let mut json = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
    json.push(b'\n');
    private_file(&f.json, &json)?;
    Ok(f)
}
