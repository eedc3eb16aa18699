//! The `[store]` and `[[sink]]` sections of `shadowgate.toml`, and the factory that turns each
//! sink into a live [`Sink`]: where events are kept and where the feed goes (ECS JSON lines,
//! syslog with CEF, a webhook). Keys are a contract: keep them stable.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::record::deliver::Filter;
use crate::record::notify::{self, Channel, Notifier};
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
    /// Microsoft Teams: a Workflows webhook URL ("Post to a channel when a webhook request is
    /// received"); an Adaptive Card per notification.
    Teams {
        url: String,
        #[serde(flatten)]
        rules: NotifyRules,
    },
    /// Slack: an incoming webhook URL; Block Kit per notification.
    Slack {
        url: String,
        #[serde(flatten)]
        rules: NotifyRules,
    },
    /// E-mail over SMTP: the keys of `[report.smtp]` (without `attach_data`).
    Mail {
        host: String,
        #[serde(default = "default_smtp_port")]
        port: u16,
        #[serde(default = "yes")]
        starttls: bool,
        ca_file: Option<PathBuf>,
        username: Option<String>,
        password_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
        #[serde(flatten)]
        rules: NotifyRules,
    },
}

/// What a notifier (`teams`, `slack`, `mail`) sends and how often.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifyRules {
    /// Events at or above this severity (default `high`).
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Only these actions (`block`, `steer`, ...; `info`: the gateway's own events). Default: all.
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    /// Repeats of one device, service and action within this many seconds: one message with the
    /// count (0: every event its own message).
    #[serde(default = "default_fold_window")]
    pub fold_window_s: u64,
    /// At most this many messages a minute; more are summed up in one message.
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
    /// A page to link from each message (a dashboard); none by default.
    #[serde(default)]
    pub link_url: Option<String>,
}

fn default_min_severity() -> String {
    "high".into()
}
fn default_fold_window() -> u64 {
    60
}
fn default_max_per_minute() -> u32 {
    5
}
fn default_smtp_port() -> u16 {
    587
}
fn yes() -> bool {
    true
}

impl NotifyRules {
    fn filter(&self) -> Result<Filter, String> {
        use crate::record::words::Word;
        let min_severity =
            crate::policy::Severity::from_word(&self.min_severity).ok_or_else(|| {
                format!(
                    "min_severity {:?}: use one of info, low, medium, high, critical",
                    self.min_severity
                )
            })?;
        let actions = match &self.actions {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|a| crate::record::event::parse_action(a))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Filter {
            min_severity,
            actions,
        })
    }

    fn check(&self) -> Result<(), String> {
        self.filter()?;
        if self.max_per_minute == 0 {
            return Err("max_per_minute: give at least 1".into());
        }
        if let Some(l) = &self.link_url {
            let ok = (l.starts_with("https://") || l.starts_with("http://"))
                && !l
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>|()[]\"\\`".contains(c));
            if !ok {
                return Err(format!(
                    "link_url {l:?}: give an http(s) URL without spaces, quotes, brackets or `|`"
                ));
            }
        }
        Ok(())
    }
}

fn webhook_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err("url: give the webhook's http(s) URL".into())
    }
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
            SinkKind::Teams { url, rules } | SinkKind::Slack { url, rules } => {
                let at = |e: String| format!("sink {:?}: {e}", self.name);
                webhook_url(url).and_then(|()| rules.check()).map_err(at)?;
                self.no_aggregate()?;
                let channel = match &self.kind {
                    SinkKind::Teams { .. } => Channel::Teams { url: url.clone() },
                    _ => Channel::Slack { url: url.clone() },
                };
                Box::new(Notifier::new(
                    &self.name,
                    channel,
                    rules.max_per_minute,
                    rules.link_url.clone(),
                ))
            }
            SinkKind::Mail {
                host,
                port,
                starttls,
                ca_file,
                username,
                password_file,
                from,
                to,
                rules,
            } => {
                let section = format!("sink {:?}:", self.name);
                rules.check().map_err(|e| format!("{section} {e}"))?;
                self.no_aggregate()?;
                let (from, to) = notify::mail::mailboxes(from, to, &section)?;
                Box::new(Notifier::new(
                    &self.name,
                    Channel::Mail(Box::new(notify::MailTo {
                        server: notify::mail::SmtpServer {
                            host: host.clone(),
                            port: *port,
                            starttls: *starttls,
                            ca_file: ca_file.clone(),
                            username: username.clone(),
                            password_file: password_file.clone(),
                        },
                        from,
                        to,
                        transport: None,
                    })),
                    rules.max_per_minute,
                    rules.link_url.clone(),
                ))
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
        if let Some(r) = self.notify_rules() {
            return (r.fold_window_s > 0).then(|| Duration::from_secs(r.fold_window_s));
        }
        (self.aggregate_window_s > 0).then(|| Duration::from_secs(self.aggregate_window_s))
    }

    /// A notifier's rules (`teams`, `slack`, `mail`); none for the SIEM sinks.
    pub fn notify_rules(&self) -> Option<&NotifyRules> {
        match &self.kind {
            SinkKind::Teams { rules, .. }
            | SinkKind::Slack { rules, .. }
            | SinkKind::Mail { rules, .. } => Some(rules),
            _ => None,
        }
    }

    /// Which events the sink takes: a notifier's severity and actions; every event otherwise.
    pub fn filter(&self) -> Option<Filter> {
        self.notify_rules().and_then(|r| r.filter().ok())
    }

    fn no_aggregate(&self) -> Result<(), String> {
        if self.aggregate_window_s > 0 {
            return Err(format!(
                "sink {:?}: notifiers fold with `fold_window_s`; remove `aggregate_window_s`",
                self.name
            ));
        }
        Ok(())
    }
}
