//! E-mails a written report with `lettre`: SMTP submission with STARTTLS (required), optional
//! login, the headline in the text body and the HTML (plus CSV and JSON) attached.

use std::path::Path;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Message, Transport};

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

/// Send a written report as `[report.smtp]` says (the SMTP transport is the notifiers').
pub fn send(conf: &SmtpConf, w: &Written) -> Result<(), String> {
    let msg = message(conf, w)?;
    let server = crate::record::notify::mail::SmtpServer {
        host: conf.host.clone(),
        port: conf.port,
        starttls: conf.starttls,
        ca_file: conf.ca_file.clone(),
        username: conf.username.clone(),
        password_file: conf.password_file.clone(),
    };
    let t = crate::record::notify::mail::transport(&server, "[report.smtp]")?;
    t.send(&msg).map_err(|e| {
        format!(
            "mailing the report via {}:{}: {e} (check [report.smtp] host, port, starttls and ca_file; the report files are written either way)",
            conf.host, conf.port
        )
    })?;
    Ok(())
}
