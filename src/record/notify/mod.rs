//! Notifications that reach a person without a SIEM: Microsoft Teams (Workflows webhook with an
//! Adaptive Card), Slack (incoming webhook with Block Kit) and e-mail (SMTP). A notifier is a
//! sink like the others: its own cursor in the store, at-least-once delivery with backoff, the
//! cursor moved only once the channel accepted every message of a batch (HTTP 2xx, SMTP 250).
//!
//! What reaches the channel is filtered (at or above a severity, optionally some actions:
//! [`crate::record::deliver::Filter`]), folded (repeats of one device, service and action within
//! `fold_window_s` become one message with the count and the first and last time: the
//! [`crate::record::deliver::Aggregator`]) and rate-limited here: at most `max_per_minute`
//! messages a minute; a batch with more alerts than the minute has left sends what fits and sums
//! the rest up in one last message, and the next batch waits in the store until the minute is
//! over. Nothing is dropped without a word, and no storm reaches a phone.

pub mod mail;
pub mod message;
pub mod slack;
pub mod teams;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use lettre::Transport;

use super::event::Event;
use super::sinks::Sink;
use message::Message;

/// Where a notifier posts.
pub enum Channel {
    Teams { url: String },
    Slack { url: String },
    Mail(Box<MailTo>),
}

/// Where a mail notifier submits, and to whom.
pub struct MailTo {
    pub server: mail::SmtpServer,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// Built at the first message (it reads the password file).
    pub transport: Option<lettre::SmtpTransport>,
}

/// The messages of one batch, and how many of them the channel has accepted: a retry of the same
/// batch (the channel failed half-way) sends only the rest, under the same plan.
struct Plan {
    key: (i64, i64, usize),
    messages: Vec<Message>,
    done: usize,
}

pub struct Notifier {
    name: String,
    channel: Channel,
    agent: ureq::Agent,
    max_per_minute: u32,
    link: Option<String>,
    /// When each message of the last minute was accepted.
    sent: VecDeque<Instant>,
    plan: Option<Plan>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Notifier {
    pub fn new(name: &str, channel: Channel, max_per_minute: u32, link: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Notifier {
            name: name.into(),
            channel,
            agent,
            max_per_minute: max_per_minute.max(1),
            link,
            sent: VecDeque::new(),
            plan: None,
        }
    }

    fn sent_last_minute(&self, now: Instant) -> usize {
        self.sent
            .iter()
            .filter(|t| now.duration_since(**t) < MINUTE)
            .count()
    }

    fn post(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let resp = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .send(
                serde_json::to_vec(body)
                    .map_err(|e| e.to_string())?
                    .as_slice(),
            )
            .map_err(|e| format!("{}: {e}", redact(url)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{}: HTTP {status}", redact(url)))
        }
    }

    fn send(&mut self, m: &Message) -> Result<(), String> {
        match &mut self.channel {
            Channel::Teams { url } => {
                let url = url.clone();
                self.post(&url, &teams::payload(m))
            }
            Channel::Slack { url } => {
                let url = url.clone();
                self.post(&url, &slack::payload(m))
            }
            Channel::Mail(m2) => {
                let MailTo {
                    server,
                    from,
                    to,
                    transport,
                } = &mut **m2;
                if transport.is_none() {
                    *transport = Some(mail::transport(server, &format!("sink {:?}:", self.name))?);
                }
                let t = transport.as_ref().expect("built above");
                let msg = mail::email(from, to, m)?;
                t.send(&msg).map(|_| ()).map_err(|e| {
                    format!(
                        "mailing via {}:{}: {e} (check the sink's host, port, starttls and ca_file)",
                        server.host, server.port
                    )
                })
            }
        }
    }
}

/// A webhook URL without its path and query: they are the secret (Slack's path, the Workflows
/// `sig`), and errors end up in the store's `sink_down` events.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}/…")
}

/// The messages of a batch of alerts when `budget` messages are left this minute: one each if
/// they fit, else `budget - 1` of them and a summary of the rest (at least the summary).
pub fn plan(
    batch: &[Event],
    last_ts: &[u64],
    budget: usize,
    max_per_minute: u32,
    link: Option<&str>,
) -> Vec<Message> {
    let alerts: Vec<(&Event, u64)> = batch
        .iter()
        .enumerate()
        .map(|(i, e)| (e, last_ts.get(i).copied().unwrap_or(e.ts).max(e.ts)))
        .collect();
    if alerts.len() <= budget {
        return alerts
            .iter()
            .map(|(e, l)| message::alert(e, *l, link))
            .collect();
    }
    let single = budget.saturating_sub(1);
    let mut out: Vec<Message> = alerts[..single]
        .iter()
        .map(|(e, l)| message::alert(e, *l, link))
        .collect();
    out.push(message::summary(&alerts[single..], max_per_minute, link));
    out
}

impl Sink for Notifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &[Event]) -> Result<(), String> {
        let ts: Vec<u64> = batch.iter().map(|e| e.ts).collect();
        self.deliver_folded(batch, &ts)
    }

    fn deliver_folded(&mut self, batch: &[Event], last_ts: &[u64]) -> Result<(), String> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let key = (first.seq, last.seq, batch.len());
        if self.plan.as_ref().is_none_or(|p| p.key != key) {
            let now = Instant::now();
            self.sent.retain(|t| now.duration_since(*t) < MINUTE);
            let budget = (self.max_per_minute as usize)
                .saturating_sub(self.sent.len())
                .max(1);
            self.plan = Some(Plan {
                key,
                messages: plan(
                    batch,
                    last_ts,
                    budget,
                    self.max_per_minute,
                    self.link.as_deref(),
                ),
                done: 0,
            });
        }
        let mut p = self.plan.take().expect("planned above");
        while p.done < p.messages.len() {
            if let Err(e) = self.send(&p.messages[p.done]) {
                self.plan = Some(p);
                return Err(e);
            }
            p.done += 1;
            self.sent.push_back(Instant::now());
        }
        Ok(())
    }

    fn hold_until(&self) -> Option<Instant> {
        if self.plan.is_some() {
            // A batch half sent: its remaining messages were counted when it was planned.
            return None;
        }
        let now = Instant::now();
        if self.sent_last_minute(now) < self.max_per_minute as usize {
            return None;
        }
        self.sent
            .iter()
            .find(|t| now.duration_since(**t) < MINUTE)
            .map(|t| *t + MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, Severity};

    fn ev(seq: i64, client: &str, host: &str, count: u32) -> Event {
        Event {
            id: format!("id{seq}"),
            seq,
            ts: 1_780_000_000_000_000_000 + seq as u64 * 1_000_000_000,
            sensor: "gw".into(),
            client_ip: client.into(),
            client_port: 50000,
            client_mac: Some("02:00:00:00:00:01".into()),
            client_hostname: Some(host.into()),
            client_groups: "staff,reception".into(),
            server_ip: "192.0.2.1".into(),
            server_port: 443,
            transport: Some(crate::flow::observation::Transport::Tcp),
            kind: crate::flow::Kind::TlsClientHello.into(),
            name: "chatgpt.com".into(),
            seen_via: "tls".into(),
            evidence: Some(crate::flow::Evidence::Wire),
            service: Some("chatgpt".into()),
            service_name: Some("ChatGPT".into()),
            category: None,
            action: Some(Action::Block),
            severity: Severity::High,
            rule_id: "block-consumer-ai".into(),
            steer_url: None,
            shared_tenant: false,
            repeat_count: count,
            detail: None,
        }
    }

    #[test]
    fn a_batch_over_the_budget_sends_what_fits_and_sums_up_the_rest() {
        let batch: Vec<Event> = (1..=40)
            .map(|i| ev(i, &format!("10.0.0.{i}"), "pc", 2))
            .collect();
        let ts: Vec<u64> = batch.iter().map(|e| e.ts + 5).collect();
        let m = plan(&batch, &ts, 5, 5, None);
        assert_eq!(m.len(), 5);
        let s = &m[4];
        assert_eq!(s.title, "36 more alerts summed up");
        assert!(s.facts.contains(&("Events", "72".into())), "{:?}", s.facts);
        assert!(s.facts.contains(&("Devices", "36".into())));
        assert!(s.summary.contains("shadowgate events --since"));
        // A budget of one: only the summary; enough budget: one message each.
        assert_eq!(plan(&batch, &ts, 1, 5, None).len(), 1);
        assert_eq!(plan(&batch[..3], &ts[..3], 5, 5, None).len(), 3);
    }

    #[test]
    fn an_alert_says_who_what_which_rule_and_how_often() {
        let e = ev(1, "10.0.0.7", "reception-pc", 50);
        let m = message::alert(
            &e,
            e.ts + 240 * 1_000_000_000,
            Some("https://gw.clinic.example/"),
        );
        assert_eq!(m.title, "Blocked: ChatGPT (50 times)");
        assert!(
            m.summary.contains("reception-pc / 10.0.0.7"),
            "{}",
            m.summary
        );
        assert!(m.summary.contains("rule block-consumer-ai"));
        let when = &m.facts.iter().find(|(k, _)| *k == "When").unwrap().1;
        assert!(when.starts_with("50 times between "), "{when}");
        assert!(m
            .facts
            .iter()
            .any(|(k, v)| *k == "Evidence" && v.contains("in the connection itself")));
        // Teams and Slack payloads carry it, the link only as configured.
        let t = teams::payload(&m);
        assert_eq!(t["attachments"][0]["content"]["version"], "1.4");
        let s = slack::payload(&m);
        assert!(s["text"].as_str().unwrap().starts_with("Blocked: ChatGPT"));
        assert!(s
            .to_string()
            .contains("<https://gw.clinic.example/|Open the gateway's page>"));
    }

    #[test]
    fn webhook_secrets_stay_out_of_errors() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("https://x.logic.azure.com:443/workflows/1/triggers?sig=abc"),
            "https://x.logic.azure.com:443/…"
        );
    }

    #[test]
    fn the_minute_is_spent_then_the_notifier_holds() {
        let mut n = Notifier::new(
            "n",
            Channel::Slack {
                url: "http://127.0.0.1:9/".into(),
            },
            2,
            None,
        );
        assert!(n.hold_until().is_none());
        n.sent.push_back(Instant::now());
        n.sent.push_back(Instant::now());
        let t = n.hold_until().expect("two of two sent");
        assert!(t > Instant::now() + Duration::from_secs(55));
    }
}
