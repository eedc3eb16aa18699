//! E-mail: one plain-text message per notification, and the SMTP submission (STARTTLS required
//! unless turned off, a CA bundle, a password file) that the weekly report's `--mail` uses too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::SmtpTransport;

use super::message::{plain, Message};

/// Where and how to submit mail (`[report.smtp]`, or a `type = "mail"` sink): the same keys.
#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The SMTP transport for `s`; `section` names the configuration it came from in errors.
pub fn transport(s: &SmtpServer, section: &str) -> Result<SmtpTransport, String> {
    let tls = if s.starttls {
        let mut p = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = read(ca)?;
            p = p.add_root_certificate(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("{section} ca_file {}: {e}", ca.display()))?,
            );
        }
        Tls::Required(
            p.build_rustls()
                .map_err(|e| format!("{section} TLS: {e}"))?,
        )
    } else {
        Tls::None
    };
    let mut t = SmtpTransport::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(60)));
    if let Some(user) = &s.username {
        let pf = s.password_file.as_ref().ok_or_else(|| {
            format!("{section} username needs password_file (a 0600 file holding the password)")
        })?;
        let pw = String::from_utf8(read(pf)?)
            .map_err(|_| format!("{}: the password is not UTF-8", pf.display()))?;
        t = t.credentials(Credentials::new(
            user.clone(),
            pw.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    Ok(t.build())
}

/// Parse the sender and the recipients (at least one).
pub fn mailboxes(
    from: &str,
    to: &[String],
    section: &str,
) -> Result<(Mailbox, Vec<Mailbox>), String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("{section} from {from:?}: {e}"))?;
    if to.is_empty() {
        return Err(format!("{section} to: give at least one address"));
    }
    let to = to
        .iter()
        .map(|t| {
            t.parse::<Mailbox>()
                .map_err(|e| format!("{section} to {t:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((from, to))
}

/// Subject line: the title, one line, bounded (lettre encodes it).
pub fn subject(m: &Message) -> String {
    format!("[shadowgate] {}", plain(&m.title, 150))
}

/// The plain-text body: the sentence, the facts one a line, the configured link.
pub fn body(m: &Message) -> String {
    let mut b = plain(&m.summary, 2000);
    b.push_str("\n\n");
    for (k, v) in &m.facts {
        b.push_str(&format!("{k}: {}\n", plain(v, 500)));
    }
    if let Some(l) = &m.link {
        b.push_str(&format!("\nOpen the gateway's page: {l}\n"));
    }
    b.push_str("\nSent by shadowgate, the clinic's AI-use gateway.\n");
    b
}

/// The e-mail of a message.
pub fn email(from: &Mailbox, to: &[Mailbox], m: &Message) -> Result<lettre::Message, String> {
    let mut b = lettre::Message::builder()
        .from(from.clone())
        .subject(subject(m));
    for t in to {
        b = b.to(t.clone());
    }
    b.header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body(m))
        .map_err(|e| format!("building the notification e-mail: {e}"))
}
