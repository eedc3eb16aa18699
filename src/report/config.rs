//! `[report]` of shadowgate.toml: the weekly report's time zone, visit gap, output folder,
//! schedule, pseudonymisation secret, device inventory and `[report.smtp]` e-mail delivery.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[report]`: every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConf {
    /// IANA time zone of the clinic (`America/New_York`); weeks are ISO weeks in it.
    /// Default: the machine's time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// A visit ends after this many minutes without an event of that device and service.
    #[serde(default = "default_gap")]
    pub visit_gap_minutes: u64,
    /// Where scheduled reports go (one folder per week, `2026-W47/`), and the default of `--out`.
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    /// When the daemon writes last week's report (and mails it).
    #[serde(default)]
    pub schedule: Option<ScheduleConf>,
    /// Key of the pseudonyms (`--pseudonymise`): given inline or, better, in a file (0600).
    #[serde(default)]
    pub pseudonymise_secret: Option<String>,
    #[serde(default)]
    pub pseudonymise_secret_file: Option<PathBuf>,
    /// Pseudonymise scheduled reports too.
    #[serde(default)]
    pub pseudonymise: bool,
    /// Device inventory CSV (mac or hostname -> owner, department, location).
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// How many devices the "top devices" table lists.
    #[serde(default = "default_top")]
    pub top_devices: usize,
    #[serde(default)]
    pub smtp: Option<SmtpConf>,
}

impl Default for ReportConf {
    fn default() -> Self {
        ReportConf {
            timezone: None,
            visit_gap_minutes: default_gap(),
            out_dir: default_out_dir(),
            schedule: None,
            pseudonymise_secret: None,
            pseudonymise_secret_file: None,
            pseudonymise: false,
            inventory: None,
            top_devices: default_top(),
            smtp: None,
        }
    }
}

/// `schedule = { weekday = "monday", time = "07:00" }` in the clinic's time zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConf {
    pub weekday: String,
    /// `HH:MM` or `HH:MM:SS`.
    pub time: String,
}

/// `[report.smtp]`: SMTP submission with STARTTLS (required unless `starttls = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConf {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "yes")]
    pub starttls: bool,
    /// CA bundle (PEM) that signed the server's certificate; default: the public web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    /// Attach the HTML, CSV and JSON (default) or only the HTML.
    #[serde(default = "yes")]
    pub attach_data: bool,
}

fn default_gap() -> u64 {
    30
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("/var/lib/shadowgate/reports")
}
fn default_top() -> usize {
    20
}
fn default_port() -> u16 {
    587
}
fn yes() -> bool {
    true
}

impl ReportConf {
    /// Make relative paths relative to the configuration file's folder.
    pub fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.out_dir);
        for p in [
            self.pseudonymise_secret_file.as_mut(),
            self.inventory.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if let Some(s) = &mut self.smtp {
            for p in [s.ca_file.as_mut(), s.password_file.as_mut()]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
    }

    /// The clinic's time zone (named, or the machine's).
    pub fn tz(&self) -> Result<jiff::tz::TimeZone, String> {
        match &self.timezone {
            Some(n) => jiff::tz::TimeZone::get(n).map_err(|e| {
                format!(
                    "[report] timezone {n:?}: {e} (use an IANA name such as \"America/New_York\")"
                )
            }),
            None => Ok(jiff::tz::TimeZone::system()),
        }
    }

    /// The pseudonymisation key: the file's bytes (trailing newline removed) or the inline text.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        let key = if let Some(f) = &self.pseudonymise_secret_file {
            let mut b = std::fs::read(f)
                .map_err(|e| format!("[report] pseudonymise_secret_file {}: {e}", f.display()))?;
            while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                b.pop();
            }
            b
        } else if let Some(s) = &self.pseudonymise_secret {
            s.as_bytes().to_vec()
        } else {
            return Err("--pseudonymise needs a key: set [report] pseudonymise_secret_file (e.g. `head -c 32 /dev/urandom | base64 > /etc/shadowgate/report.key; chmod 600 ...`) in the configuration".into());
        };
        if key.len() < 16 {
            return Err("[report] pseudonymisation secret: use at least 16 bytes (a random one, kept the same every week so pseudonyms stay stable)".into());
        }
        Ok(key)
    }

    pub fn gap_ns(&self) -> u64 {
        self.visit_gap_minutes.max(1) * 60 * crate::time::SEC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_section_of_the_configuration() {
        let d = std::env::temp_dir().join(format!("sg-report-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("shadowgate.toml");
        std::fs::write(
            &p,
            "[report]\ntimezone = \"Europe/Berlin\"\nvisit_gap_minutes = 20\nout_dir = \"reports\"\n\
             schedule = { weekday = \"monday\", time = \"07:00\" }\npseudonymise_secret_file = \"key\"\n\
             [report.smtp]\nhost = \"smtp.clinic.example\"\nfrom = \"a@clinic.example\"\nto = [\"b@clinic.example\"]\npassword_file = \"pw\"\n",
        )
        .unwrap();
        let c = crate::config::Config::load(&p).unwrap();
        let r = c.report.unwrap();
        assert_eq!(r.visit_gap_minutes, 20);
        assert_eq!(r.gap_ns(), 20 * 60 * crate::time::SEC);
        assert_eq!(r.out_dir, d.join("reports"));
        assert_eq!(
            r.pseudonymise_secret_file.as_deref(),
            Some(d.join("key").as_path())
        );
        let s = r.smtp.as_ref().unwrap();
        assert_eq!((s.port, s.starttls), (587, true));
        assert_eq!(s.password_file.as_deref(), Some(d.join("pw").as_path()));
        assert!(r.tz().is_ok());
        // The secret: missing, too short, read from the file without its newline.
        assert!(r.secret().unwrap_err().contains("key"));
        std::fs::write(d.join("key"), "short\n").unwrap();
        assert!(r.secret().unwrap_err().contains("16 bytes"));
        std::fs::write(d.join("key"), "0123456789abcdef\n").unwrap();
        assert_eq!(r.secret().unwrap(), b"0123456789abcdef");
        // Unknown keys and zones are errors that say where.
        std::fs::write(&p, "[report]\nvisit_gap = 5\n").unwrap();
        let e = crate::config::Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("shadowgate.toml:2"), "{e}");
        let bad = ReportConf {
            timezone: Some("Mars/Olympus".into()),
            ..ReportConf::default()
        };
        assert!(bad.tz().unwrap_err().contains("IANA"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
