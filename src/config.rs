//! `shadowgate.toml`: sensor id, policy directory, event store and SIEM sinks, for replay and
//! (later) the daemon. Errors name the file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::error::PolicyError;
use crate::record::sinks::{JsonLines, JsonTarget, Sink, Syslog, SyslogTransport, Webhook};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sensor: SensorConf,
    #[serde(default)]
    pub policy: Option<PolicyConf>,
    #[serde(default)]
    pub store: Option<StoreConf>,
    #[serde(default)]
    pub sink: Vec<SinkConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConf {
    #[serde(default = "default_sensor")]
    pub id: String,
}

impl Default for SensorConf {
    fn default() -> Self {
        SensorConf {
            id: default_sensor(),
        }
    }
}

fn default_sensor() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "shadowgate".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConf {
    pub dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConf {
    pub path: PathBuf,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Events per transaction.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_retention() -> u32 {
    400
}

fn default_batch() -> usize {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// ECS JSON lines to a file (`path`) or a TCP peer (`address`).
    Jsonl {
        path: Option<PathBuf>,
        address: Option<String>,
    },
    Syslog {
        address: String,
        transport: SyslogTransport,
        ca_file: Option<PathBuf>,
        server_name: Option<String>,
    },
    Webhook {
        url: String,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    },
}

#[derive(Debug, Deserialize)]
pub struct SinkConf {
    pub name: String,
    /// Fold repeats of (client, service, action) within this many seconds into one alert.
    #[serde(default)]
    pub aggregate_window_s: u64,
    #[serde(default = "default_sink_batch")]
    pub batch: usize,
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn default_sink_batch() -> usize {
    500
}

impl SinkConf {
    pub fn build(&self) -> Result<Box<dyn Sink>, String> {
        Ok(match &self.kind {
            SinkKind::Jsonl {
                path: Some(p),
                address: None,
            } => Box::new(JsonLines::new(&self.name, JsonTarget::File(p.clone()))),
            SinkKind::Jsonl {
                path: None,
                address: Some(a),
            } => Box::new(JsonLines::new(&self.name, JsonTarget::Tcp(a.clone()))),
            SinkKind::Jsonl { .. } => {
                return Err(format!(
                    "sink {:?}: give exactly one of `path` or `address`",
                    self.name
                ))
            }
            SinkKind::Syslog {
                address,
                transport,
                ca_file,
                server_name,
            } => Box::new(Syslog::new(
                &self.name,
                address,
                *transport,
                ca_file.as_deref(),
                server_name.as_deref(),
            )?),
            SinkKind::Webhook { url, headers } => Box::new(Webhook::new(
                &self.name,
                url,
                headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
        })
    }

    pub fn aggregate(&self) -> Option<Duration> {
        (self.aggregate_window_s > 0).then(|| Duration::from_secs(self.aggregate_window_s))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::new(path, format!("cannot read: {e}")))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            let err = PolicyError::new(path, e.message().trim().to_string());
            match e.span() {
                Some(s) => err.at(&text, s.start),
                None => err,
            }
        })?;
        // Relative paths are relative to the configuration file.
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut c.policy {
            fix(&mut p.dir);
        }
        if let Some(s) = &mut c.store {
            fix(&mut s.path);
        }
        for s in &mut c.sink {
            if let SinkKind::Jsonl { path: Some(p), .. } = &mut s.kind {
                fix(p);
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &c.sink {
            if !names.insert(s.name.clone()) {
                return Err(PolicyError::new(
                    path,
                    format!("sink name {:?} is used twice", s.name),
                )
                .hint("each sink keeps its own delivery cursor under its name"));
            }
            s.build().map_err(|e| PolicyError::new(path, e))?;
        }
        Ok(c)
    }
}
