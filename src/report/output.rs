//! Writes the report's files: `report.html`, `report.csv` (a row per device x service x action)
//! and `report.json` (every figure), each created 0600 in a 0700 folder and renamed into place.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::model::{Report, Row};
use crate::csv_out::CsvWriter;

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

/// `report.csv`: the header (even for an empty week, so scripts see the columns), then a row
/// per device x service x action, text cells neutralised against formula injection.
pub fn csv_bytes(r: &Report) -> Result<Vec<u8>, String> {
    rows_csv(&r.rows)
}

fn rows_csv(rows: &[Row]) -> Result<Vec<u8>, String> {
    let mut w = CsvWriter::new(Vec::new(), Row::CSV_HEADER).map_err(|e| e.to_string())?;
    for row in rows {
        w.row(row.csv_cells()).map_err(|e| e.to_string())?;
    }
    w.into_inner()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV has a column per field of the JSON rows, in the same order, and a DHCP host
    /// name that is a formula arrives as text.
    #[test]
    fn csv_columns_are_the_row_fields_and_formulas_are_text() {
        let t = |s: &str| s.to_string();
        let row = Row {
            week: t("2026-W47"),
            device: t("=hyperlink(\"http://x\",\"click\")"),
            hostname: t("=hyperlink(\"http://x\",\"click\")"),
            mac: t("02:00:00:00:00:01"),
            ips: t("10.20.9.9"),
            owner: t("@owner"),
            department: t("+dep"),
            location: t("-loc"),
            groups: t("clinical"),
            service: t("claude"),
            service_name: t("Claude"),
            category: t("chat"),
            baa: t("no"),
            action: t("steer"),
            visits: 2,
            lookups: 0,
            events: 5,
        };
        let json = serde_json::to_value(&row).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut header = Row::CSV_HEADER.to_vec();
        fields.sort_unstable();
        header.sort_unstable();
        assert_eq!(header, fields);

        let bytes = rows_csv(&[row]).unwrap();
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(rd.headers().unwrap(), Row::CSV_HEADER.to_vec());
        let rec = rd.records().next().unwrap().unwrap();
        assert_eq!(&rec[1], "'=hyperlink(\"http://x\",\"click\")");
        assert_eq!(&rec[2], "'=hyperlink(\"http://x\",\"click\")");
        assert_eq!((&rec[5], &rec[6], &rec[7]), ("'@owner", "'+dep", "'-loc"));
        assert_eq!((&rec[14], &rec[16]), ("2", "5"));
    }
}
