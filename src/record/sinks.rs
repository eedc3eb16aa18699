//! SIEM sinks: JSON lines with ECS fields (file or TCP), syslog RFC 5424 with a CEF payload
//! (UDP, TCP with RFC 6587 octet counting, TLS per RFC 5425, RELP plain or over TLS) and an
//! HTTP(S) webhook posting JSON arrays. A sink either delivers a whole batch or fails; the
//! caller retries from its cursor.
//!
//! What "delivered" means differs: UDP is best effort; TCP and TLS mean written to the socket;
//! RELP means the receiver acknowledged each message; the webhook means the server answered 2xx.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::ecs;
use super::event::{Event, SystemKind};
use super::words::{EventKind, Word};
use crate::policy::Severity;

pub trait Sink: Send {
    fn name(&self) -> &str;
    /// Deliver all of `batch` (in order) or return why not.
    fn deliver(&mut self, batch: &[Event]) -> Result<(), String>;

    /// Deliver folded alerts: `last_ts[i]` is the event time of the last event folded into
    /// `batch[i]` (whose `ts` is the first's). Sinks that only count repeats take [`Sink::deliver`].
    fn deliver_folded(&mut self, batch: &[Event], last_ts: &[u64]) -> Result<(), String> {
        let _ = last_ts;
        self.deliver(batch)
    }

    /// Not before this instant (a notifier that spent its messages for the minute): the batch
    /// waits in the store, which is not a failure.
    fn hold_until(&self) -> Option<std::time::Instant> {
        None
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: &str) -> Result<TcpStream, String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let s = TcpStream::connect_timeout(&sa, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    s.set_write_timeout(Some(TIMEOUT)).ok();
    s.set_nodelay(true).ok();
    Ok(s)
}

/// Write `buf` to the open stream; on failure drop the stream so the next try reconnects.
fn send(conn: &mut Option<Box<dyn Write + Send>>, buf: &[u8], addr: &str) -> Result<(), String> {
    let Some(c) = conn.as_mut() else {
        return Err(format!("{addr}: not connected"));
    };
    match c.write_all(buf).and_then(|_| c.flush()) {
        Ok(()) => Ok(()),
        Err(e) => {
            *conn = None;
            Err(format!("{addr}: {e}"))
        }
    }
}

/// ECS JSON, one document per line, appended to a file or written to a TCP peer.
pub struct JsonLines {
    name: String,
    target: JsonTarget,
    tcp: Option<Box<dyn Write + Send>>,
}

pub enum JsonTarget {
    File(PathBuf),
    Tcp(String),
}

impl JsonLines {
    pub fn new(name: &str, target: JsonTarget) -> Self {
        JsonLines {
            name: name.into(),
            target,
            tcp: None,
        }
    }
}

impl Sink for JsonLines {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &[Event]) -> Result<(), String> {
        let mut buf = Vec::with_capacity(batch.len() * 600);
        for e in batch {
            serde_json::to_writer(&mut buf, &ecs::document(e)).map_err(|e| e.to_string())?;
            buf.push(b'\n');
        }
        match &self.target {
            JsonTarget::File(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                f.write_all(&buf)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
            JsonTarget::Tcp(addr) => {
                if self.tcp.is_none() {
                    self.tcp = Some(Box::new(connect(addr)?));
                }
                send(&mut self.tcp, &buf, addr)
            }
        }
    }
}

/// Escape a CEF header field (`|` and `\`).
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Escape a CEF extension value (`=`, `\`, newlines).
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// The CEF payload of one event.
pub fn cef(e: &Event) -> String {
    if let EventKind::System(k) = e.kind {
        return cef_system(e, k);
    }
    let name = format!(
        "{} {} ({})",
        e.action_word(),
        e.service.as_deref().unwrap_or(&e.name),
        e.category.map_or("uncatalogued", Word::word)
    );
    let mut ext = vec![
        format!("rt={}", e.ts / 1_000_000),
        format!("externalId={}", e.id),
        format!("src={}", e.client_ip),
        format!("spt={}", e.client_port),
        format!("dst={}", e.server_ip),
        format!("dpt={}", e.server_port),
        format!("dhost={}", cef_value(&e.name)),
        format!(
            "proto={}",
            e.transport.map_or("", Word::word).to_ascii_uppercase()
        ),
        format!("act={}", e.action_word()),
        format!("cnt={}", e.repeat_count),
        format!(
            "cs1Label=service cs1={}",
            cef_value(e.service.as_deref().unwrap_or(""))
        ),
        format!(
            "cs2Label=category cs2={}",
            cef_value(e.category.map_or("", Word::word))
        ),
        format!("cs3Label=seenVia cs3={}", e.seen_via),
        format!("cs4Label=clientGroups cs4={}", cef_value(&e.client_groups)),
    ];
    if let Some(m) = &e.client_mac {
        ext.push(format!("smac={m}"));
    }
    if let Some(h) = &e.client_hostname {
        ext.push(format!("shost={}", cef_value(h)));
    }
    if let Some(u) = &e.steer_url {
        ext.push(format!("cs5Label=steerTo cs5={}", cef_value(u)));
    }
    if let Some(v) = e.evidence {
        ext.push(format!("cs6Label=evidence cs6={}", v.word()));
    }
    // Portal events (`coach_ack`: the justification) carry a JSON detail.
    if let Some(d) = &e.detail {
        ext.push(format!("msg={}", cef_value(d)));
    }
    format!(
        "CEF:0|shadowgate|shadowgate|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&e.rule_id),
        cef_header(&name),
        ecs::severity_number(e.severity),
        ext.join(" ")
    )
}

/// The CEF payload of a system event: signature `system.<kind>`, the summary as the name and
/// `msg`, the JSON detail in a custom string.
fn cef_system(e: &Event, kind: SystemKind) -> String {
    let ext = [
        format!("rt={}", e.ts / 1_000_000),
        format!("externalId={}", e.id),
        format!("act={}", kind.as_str()),
        format!("msg={}", cef_value(&e.name)),
        format!("cs1Label=sensor cs1={}", cef_value(&e.sensor)),
        format!(
            "cs6Label=detail cs6={}",
            cef_value(e.detail.as_deref().unwrap_or("{}"))
        ),
    ];
    format!(
        "CEF:0|shadowgate|shadowgate|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&e.rule_id),
        cef_header(&e.name),
        ecs::severity_number(e.severity),
        ext.join(" ")
    )
}

/// RFC 5424 message: facility local4 (20), severity from the event.
pub fn syslog_line(e: &Event, hostname: &str) -> String {
    let sev = match e.severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    };
    let pri = 20 * 8 + sev;
    let host = if hostname.is_empty() { "-" } else { hostname };
    format!(
        "<{pri}>1 {} {host} shadowgate {} {} - {}",
        e.time(),
        std::process::id(),
        if e.is_system() { "system" } else { "decision" },
        cef(e)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    Udp,
    Tcp,
    Tls,
    /// RELP: every message acknowledged by the receiver (see `relp.rs`).
    Relp,
    /// RELP over TLS.
    #[serde(rename = "relp-tls")]
    RelpTls,
}

impl SyslogTransport {
    pub fn is_tls(self) -> bool {
        matches!(self, SyslogTransport::Tls | SyslogTransport::RelpTls)
    }

    pub fn is_relp(self) -> bool {
        matches!(self, SyslogTransport::Relp | SyslogTransport::RelpTls)
    }
}

/// The TLS settings of a syslog sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    /// PEM CA bundle to verify the server with (default: the public web roots).
    pub ca_file: Option<&'a std::path::Path>,
    /// PEM client certificate (chain) and its private key, for servers that authenticate
    /// clients (rsyslog's imrelp with TLS always does).
    pub cert_file: Option<&'a std::path::Path>,
    pub key_file: Option<&'a std::path::Path>,
}

fn tls_config(files: TlsFiles<'_>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match files.ca_file {
        Some(p) => {
            for c in
                CertificateDer::pem_file_iter(p).map_err(|e| format!("{}: {e}", p.display()))?
            {
                roots
                    .add(c.map_err(|e| format!("{}: {e}", p.display()))?)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match (files.cert_file, files.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("{}: {e}", c.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", c.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate in the file", c.display()));
            }
            let key =
                PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{} / {}: {e}", c.display(), k.display()))
        }
        _ => {
            Err("give both `cert_file` and `key_file` (the client certificate and its key)".into())
        }
    }
}

pub struct Syslog {
    name: String,
    addr: String,
    transport: SyslogTransport,
    hostname: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: String,
    conn: Option<Box<dyn Write + Send>>,
    relp: Option<super::relp::Client>,
}

impl Syslog {
    /// `tls`: CA bundle and client certificate for the TLS transports; `server_name`: name to
    /// verify (default: the host part of `addr`).
    pub fn new(
        name: &str,
        addr: &str,
        transport: SyslogTransport,
        tls: TlsFiles<'_>,
        server_name: Option<&str>,
    ) -> Result<Self, String> {
        let tls = if transport.is_tls() {
            Some(Arc::new(tls_config(tls)?))
        } else {
            None
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_matches(['[', ']']);
        Ok(Syslog {
            name: name.into(),
            addr: addr.into(),
            transport,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            tls,
            server_name: server_name.unwrap_or(host).to_string(),
            conn: None,
            relp: transport
                .is_relp()
                .then(|| super::relp::Client::new(super::relp::DEFAULT_WINDOW, TIMEOUT)),
        })
    }

    /// A TCP connection, wrapped in TLS for the TLS transports.
    fn open_stream(&self) -> Result<super::relp::Connected, String> {
        let tcp = connect(&self.addr)?;
        // Also bounds the TLS handshake, which reads inside the first write.
        tcp.set_read_timeout(Some(TIMEOUT)).ok();
        let raw = tcp.try_clone().map_err(|e| format!("{}: {e}", self.addr))?;
        let stream: Box<dyn super::relp::Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let sn = rustls::pki_types::ServerName::try_from(self.server_name.clone())
                    .map_err(|e| format!("{}: {e}", self.server_name))?;
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), sn).map_err(|e| e.to_string())?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Ok(super::relp::Connected { stream, tcp: raw })
    }

    fn open(&self) -> Result<Box<dyn Write + Send>, String> {
        Ok(Box::new(self.open_stream()?.stream))
    }
}

impl Sink for Syslog {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &[Event]) -> Result<(), String> {
        if self.transport == SyslogTransport::Udp {
            let sock = UdpSocket::bind(if self.addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .map_err(|e| e.to_string())?;
            for e in batch {
                sock.send_to(syslog_line(e, &self.hostname).as_bytes(), &self.addr)
                    .map_err(|er| format!("{}: {er}", self.addr))?;
            }
            return Ok(());
        }
        if let Some(mut relp) = self.relp.take() {
            // Delivered only once the receiver acknowledged every message.
            let msgs: Vec<(&str, Vec<u8>)> = batch
                .iter()
                .map(|e| (e.id.as_str(), syslog_line(e, &self.hostname).into_bytes()))
                .collect();
            let r = relp.deliver(&msgs, || self.open_stream());
            self.relp = Some(relp);
            return r.map_err(|e| format!("{}: {e}", self.addr));
        }
        let mut buf = Vec::new();
        for e in batch {
            let line = syslog_line(e, &self.hostname);
            // RFC 6587 / RFC 5425 octet counting: "LEN SP MSG".
            buf.extend_from_slice(format!("{} ", line.len()).as_bytes());
            buf.extend_from_slice(line.as_bytes());
        }
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        send(&mut self.conn, &buf, &self.addr)
    }
}

/// POSTs each batch as a JSON array of ECS documents; any 2xx is success.
pub struct Webhook {
    name: String,
    url: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(name: &str, url: &str, headers: Vec<(String, String)>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Webhook {
            name: name.into(),
            url: url.into(),
            headers,
            agent,
        }
    }
}

impl Sink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &[Event]) -> Result<(), String> {
        let docs: Vec<serde_json::Value> = batch.iter().map(ecs::document).collect();
        let body = serde_json::to_vec(&docs).map_err(|e| e.to_string())?;
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = req
            .send(&body[..])
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{}: HTTP {status}", self.url))
        }
    }
}
