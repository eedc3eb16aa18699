//! E-mails a written report with `lettre`: SMTP submission with STARTTLS (required), optional
//! login, the headline in the text body and the HTML (plus CSV and JSON) attached.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::config::SmtpConf;
use super::model::Report;
use super::Written;

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The plain-text body: the week, its headline numbers and what is attached.
pub fn body(r: &Report) -> String {
    let t = &r.headline.this_week;
    let c = &r.headline.change;
    format!(
        "Shadow-AI weekly report {week} ({start} to {end}, {tz}).\n\n\
         Visits to AI services: {v} ({cv:+} on the previous week)\n\
         Devices: {d} ({cd:+})\nServices: {s} ({cs:+})\n\
         Blocked {b}, steered {st}, coached {co}, alerted {al}, allowed {allow} (visits)\n\
         Approved-route adoption: {ad}\n\n\
         The full report is attached (report.html: open it in a browser, or print it to PDF).\n\
         Counts are visits and devices, not packets.{ps}\n",
        week = r.week,
        start = &r.start[..r.start.len().min(10)],
        end = &r.end[..r.end.len().min(10)],
        tz = r.timezone,
        v = t.visits,
        cv = c.visits,
        d = t.devices,
        cd = c.devices,
        s = t.services,
        cs = c.services,
        b = t.actions.block,
        st = t.actions.steer,
        co = t.actions.coach,
        al = t.actions.alert,
        allow = t.actions.allow,
        ad = r
            .adoption
            .adoption_pct
            .map(|p| format!("{p:.1} %"))
            .unwrap_or_else(|| "no consumer or approved-route visits".into()),
        ps = if r.pseudonymised {
            " Devices and owners are pseudonymised."
        } else {
            ""
        }
    )
}

/// Build the message for a written report.
pub fn message(conf: &SmtpConf, w: &Written) -> Result<Message, String> {
    let from: Mailbox = conf
        .from
        .parse()
        .map_err(|e| format!("[report.smtp] from {:?}: {e}", conf.from))?;
    if conf.to.is_empty() {
        return Err("[report.smtp] to: give at least one address".into());
    }
    let mut b = Message::builder()
        .from(from)
        .subject(format!("Shadow-AI weekly report {}", w.week));
    for t in &conf.to {
        b = b.to(t
            .parse::<Mailbox>()
            .map_err(|e| format!("[report.smtp] to {t:?}: {e}"))?);
    }
    let ct = |s: &str| ContentType::parse(s).map_err(|e| e.to_string());
    let mut parts = MultiPart::mixed()
        .singlepart(SinglePart::plain(body(&w.report)))
        .singlepart(
            Attachment::new(format!("shadow-ai-report-{}.html", w.week))
                .body(read(&w.html)?, ct("text/html; charset=utf-8")?),
        );
    if conf.attach_data {
        parts = parts
            .singlepart(
                Attachment::new(format!("shadow-ai-report-{}.csv", w.week))
                    .body(read(&w.csv)?, ct("text/csv; charset=utf-8")?),
            )
            .singlepart(
                Attachment::new(format!("shadow-ai-report-{}.json", w.week))
                    .body(read(&w.json)?, ct("application/json")?),
            );
    }
    b.multipart(parts)
        .map_err(|e| format!("building the report e-mail: {e}"))
}

/// Send a written report as `[report.smtp]` says.
pub fn send(conf: &SmtpConf, w: &Written) -> Result<(), String> {
    let msg = message(conf, w)?;
    let tls = if conf.starttls {
        let mut p = TlsParameters::builder(conf.host.clone());
        if let Some(ca) = &conf.ca_file {
            let pem = read(ca)?;
            p = p.add_root_certificate(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("[report.smtp] ca_file {}: {e}", ca.display()))?,
            );
        }
        Tls::Required(
            p.build_rustls()
                .map_err(|e| format!("[report.smtp] TLS: {e}"))?,
        )
    } else {
        Tls::None
    };
    let mut t = SmtpTransport::builder_dangerous(conf.host.as_str())
        .port(conf.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(60)));
    if let Some(user) = &conf.username {
        let pf = conf.password_file.as_ref().ok_or_else(|| {
            "[report.smtp] username needs password_file (a 0600 file holding the password)"
                .to_string()
        })?;
        let pw = String::from_utf8(read(pf)?)
            .map_err(|_| format!("{}: the password is not UTF-8", pf.display()))?;
        t = t.credentials(Credentials::new(
            user.clone(),
            pw.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    t.build().send(&msg).map_err(|e| {
        format!(
            "mailing the report via {}:{}: {e} (check [report.smtp] host, port, starttls and ca_file; the report files are written either way)",
            conf.host, conf.port
        )
    })?;
    Ok(())
}
