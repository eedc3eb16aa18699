//! The `[store]` and `[[sink]]` sections of `shadowgate.toml`, and the factory that turns each
//! sink into a live [`Sink`]: where events are kept and where the feed goes (ECS JSON lines,
//! syslog with CEF, a webhook). Keys are a contract: keep them stable.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::record::sinks::{
    JsonLines, JsonTarget, Sink, Syslog, SyslogTransport, TlsFiles, Webhook,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConf {
    pub path: PathBuf,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Size cap of the store in MiB (database pages in use; see `record::retention`): the
    /// daemon deletes the oldest events every sink has delivered to stay under it. None (the
    /// default): no cap, since deleting events before `retention_days` is the clinic's choice
    /// to make, not ours; the example configuration sets one.
    #[serde(default)]
    pub max_mb: Option<std::num::NonZeroU64>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// ECS JSON lines to a file (`path`) or a TCP peer (`address`).
    Jsonl {
        path: Option<PathBuf>,
        address: Option<String>,
    },
    /// RFC 5424 with CEF over `udp`, `tcp`, `tls`, `relp` or `relp-tls`.
    Syslog {
        address: String,
        transport: SyslogTransport,
        /// TLS transports: CA bundle to verify the server (default: public web roots).
        ca_file: Option<PathBuf>,
        server_name: Option<String>,
        /// TLS transports: client certificate and key (rsyslog's imrelp over TLS requires one).
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
    Webhook {
        url: String,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
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
                cert_file,
                key_file,
            } => {
                if !transport.is_tls() && (cert_file.is_some() || key_file.is_some()) {
                    return Err(format!(
                        "sink {:?}: `cert_file` and `key_file` need transport \"tls\" or \"relp-tls\"",
                        self.name
                    ));
                }
                Box::new(
                    Syslog::new(
                        &self.name,
                        address,
                        *transport,
                        TlsFiles {
                            ca_file: ca_file.as_deref(),
                            cert_file: cert_file.as_deref(),
                            key_file: key_file.as_deref(),
                        },
                        server_name.as_deref(),
                    )
                    .map_err(|e| format!("sink {:?}: {e}", self.name))?,
                )
            }
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
