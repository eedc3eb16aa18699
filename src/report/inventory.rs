//! The optional device inventory: a CSV with a header naming `mac` and/or `hostname` and any of
//! `owner`, `department`, `location`, so a device keeps its owner across DHCP address changes.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub owner: Option<String>,
    pub department: Option<String>,
    pub location: Option<String>,
}

/// Inventory entries by lower-case MAC and by lower-case host name.
#[derive(Debug, Default)]
pub struct Inventory {
    by_mac: HashMap<String, Owner>,
    by_host: HashMap<String, Owner>,
}

/// `02-00-5E-10-00-01` or `0200.5e10.0001` -> `02:00:5e:10:00:01`.
fn norm_mac(s: &str) -> String {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if hex.len() != 12 {
        return s.trim().to_ascii_lowercase();
    }
    hex.to_ascii_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, String> {
        let err = |e: &dyn std::fmt::Display| format!("inventory {}: {e}", path.display());
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| err(&e))?;
        let head: Vec<String> = r
            .headers()
            .map_err(|e| err(&e))?
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let col = |n: &str| head.iter().position(|h| h == n);
        let (mac, host) = (col("mac"), col("hostname").or(col("host")));
        if mac.is_none() && host.is_none() {
            return Err(err(
                &"the header needs a `mac` or `hostname` column (and owner, department, location)",
            ));
        }
        let (owner, dept, loc) = (col("owner"), col("department"), col("location"));
        let mut inv = Inventory::default();
        for (n, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| err(&format!("line {}: {e}", n + 2)))?;
            let get = |i: Option<usize>| {
                i.and_then(|i| rec.get(i))
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            };
            let o = Owner {
                owner: get(owner),
                department: get(dept),
                location: get(loc),
            };
            if let Some(m) = get(mac) {
                inv.by_mac.insert(norm_mac(&m), o.clone());
            }
            if let Some(h) = get(host) {
                inv.by_host.insert(h.to_ascii_lowercase(), o);
            }
        }
        Ok(inv)
    }

    /// The owner of a device: by MAC first (stable), then by host name.
    pub fn lookup(&self, mac: Option<&str>, host: Option<&str>) -> Option<&Owner> {
        mac.and_then(|m| self.by_mac.get(&norm_mac(m)))
            .or_else(|| host.and_then(|h| self.by_host.get(&h.to_ascii_lowercase())))
    }

    pub fn len(&self) -> usize {
        self.by_mac.len() + self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_by_mac_then_host() {
        let p = std::env::temp_dir().join(format!("sg-inv-{}.csv", std::process::id()));
        std::fs::write(
            &p,
            "MAC,hostname,owner,department,location\n02-00-5E-10-00-01,,Dr Rao,Cardiology,Room 4\n,ws-07,Front desk,Admin,Lobby\n",
        )
        .unwrap();
        let inv = Inventory::load(&p).unwrap();
        assert_eq!(
            inv.lookup(Some("02:00:5e:10:00:01"), Some("x"))
                .unwrap()
                .owner
                .as_deref(),
            Some("Dr Rao")
        );
        assert_eq!(
            inv.lookup(None, Some("WS-07"))
                .unwrap()
                .department
                .as_deref(),
            Some("Admin")
        );
        assert!(inv.lookup(Some("02:00:5e:10:00:02"), None).is_none());
        std::fs::write(&p, "owner\nx\n").unwrap();
        assert!(Inventory::load(&p).unwrap_err().contains("mac"));
        let _ = std::fs::remove_file(&p);
    }
}
