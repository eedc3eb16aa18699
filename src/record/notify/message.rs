//! What a notification says, in words a clinic manager reads: a headline, one sentence and a
//! few facts (device, service, what the gateway did, the policy rule, the evidence, when and how
//! often). Text here is raw: names come off the wire and are attacker-controlled, so each channel
//! escapes every string it takes from a [`Message`] (`teams.rs`, `slack.rs`, `mail.rs`).

use crate::flow::Evidence;
use crate::policy::{Action, Severity};
use crate::record::event::Event;
use crate::record::words::{EventKind, Word};

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Short, from trusted words only (action, the catalogue's service name): a Slack header.
    pub title: String,
    /// One sentence: who did what, and what the gateway did about it.
    pub summary: String,
    /// Label (a fixed word) and value (raw text).
    pub facts: Vec<(&'static str, String)>,
    pub severity: Severity,
    /// The configured link (a dashboard), never one taken from an event.
    pub link: Option<String>,
}

/// What the gateway did, as a manager says it.
pub fn action_words(a: Option<Action>) -> &'static str {
    match a {
        Some(Action::Allow) => "Allowed",
        Some(Action::Alert) => "Seen (alert only, not stopped)",
        Some(Action::Block) => "Blocked",
        Some(Action::Steer) => "Steered to the approved service",
        Some(Action::Coach) => "Coached (a warning page was shown)",
        None => "Gateway notice",
    }
}

/// How sure the gateway is of the name, in words.
pub fn evidence_words(e: Evidence) -> &'static str {
    match e {
        Evidence::Wire => "the name was in the connection itself",
        Evidence::OwnLookup => "the device looked the name up just before connecting",
        Evidence::ResolverLookup => "the clinic's resolver gave this device the address",
        Evidence::OtherClient => "another device looked the name up (weaker evidence)",
        Evidence::UnmatchedAnswer => {
            "an address from a DNS answer not matched to this device (weakest evidence)"
        }
    }
}

/// The device as the event names it: host name, address, MAC.
pub fn device(e: &Event) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(h) = e.client_hostname.as_deref().filter(|h| !h.is_empty()) {
        parts.push(h);
    }
    if !e.client_ip.is_empty() {
        parts.push(&e.client_ip);
    }
    if let Some(m) = e.client_mac.as_deref() {
        parts.push(m);
    }
    if parts.is_empty() {
        "unknown device".into()
    } else {
        parts.join(" / ")
    }
}

/// The service: the catalogue's name and id, or the name seen when it is not catalogued.
fn service(e: &Event) -> String {
    match (&e.service_name, &e.service) {
        (Some(n), Some(id)) if n != id => format!("{n} ({id})"),
        (Some(n), _) => n.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => format!("not in the catalogue: {}", e.name),
    }
}

/// The service for a title: only catalogue words (never a name off the wire).
fn service_title(e: &Event) -> String {
    e.service_name
        .clone()
        .or_else(|| e.service.clone())
        .unwrap_or_else(|| "an uncatalogued AI name".into())
}

fn when(first: u64, last: u64, count: u32) -> String {
    let f = crate::time::rfc3339_micros(first);
    if count <= 1 || last <= first {
        if count > 1 {
            return format!("{count} times at {f}");
        }
        return f;
    }
    format!(
        "{count} times between {f} and {}",
        crate::time::rfc3339_micros(last)
    )
}

/// The message of one alert (`e` folds `e.repeat_count` events, the last at `last_ts`).
pub fn alert(e: &Event, last_ts: u64, link: Option<&str>) -> Message {
    let count = e.repeat_count.max(1);
    let times = if count > 1 {
        format!(" ({count} times)")
    } else {
        String::new()
    };
    if let EventKind::System(k) = e.kind {
        return Message {
            title: format!("Gateway: {}", k.as_str().replace('_', " ")),
            summary: e.name.clone(),
            facts: vec![
                ("What", k.as_str().replace('_', " ")),
                ("Severity", e.severity.word().into()),
                ("When", when(e.ts, last_ts, count)),
                ("Gateway", e.sensor.clone()),
                ("Rule", e.rule_id.clone()),
            ],
            severity: e.severity,
            link: link.map(str::to_string),
        };
    }
    let did = action_words(e.action);
    let mut facts = vec![
        ("Device", device(e)),
        ("Service", service(e)),
        ("Name seen", format!("{} (via {})", e.name, e.seen_via)),
        ("What happened", did.to_string()),
        ("Policy rule", e.rule_id.clone()),
    ];
    if let Some(ev) = e.evidence {
        facts.push(("Evidence", evidence_words(ev).to_string()));
    }
    if !e.client_groups.is_empty() {
        facts.push(("Groups", e.client_groups.replace(',', ", ")));
    }
    if let Some(u) = &e.steer_url {
        facts.push(("Steered to", u.clone()));
    }
    facts.push(("When", when(e.ts, last_ts, count)));
    facts.push(("Severity", e.severity.word().into()));
    facts.push(("Gateway", e.sensor.clone()));
    Message {
        title: format!("{did}: {}{times}", service_title(e)),
        summary: format!(
            "{} used {}{times}. The gateway's decision: {} (rule {}).",
            device(e),
            service(e),
            did.to_lowercase(),
            e.rule_id
        ),
        facts,
        severity: e.severity,
        link: link.map(str::to_string),
    }
}

/// Labels the summary can use for its top lines (a fixed set: labels are never wire text).
const TOP: [&str; 8] = [
    "Top 1", "Top 2", "Top 3", "Top 4", "Top 5", "Top 6", "Top 7", "Top 8",
];

/// The summary of alerts held back by the rate limit: how many, of what, from how many devices,
/// when; none is dropped without a word.
pub fn summary(alerts: &[(&Event, u64)], max_per_minute: u32, link: Option<&str>) -> Message {
    use std::collections::{BTreeMap, BTreeSet};
    let events: u64 = alerts
        .iter()
        .map(|(e, _)| u64::from(e.repeat_count.max(1)))
        .sum();
    let first = alerts.iter().map(|(e, _)| e.ts).min().unwrap_or(0);
    let last = alerts.iter().map(|(_, l)| *l).max().unwrap_or(first);
    let devices: BTreeSet<String> = alerts
        .iter()
        .filter(|(e, _)| !e.is_system())
        .map(|(e, _)| e.client_ip.clone())
        .collect();
    let severity = alerts
        .iter()
        .map(|(e, _)| e.severity)
        .max()
        .unwrap_or(Severity::Info);
    let mut by: BTreeMap<(String, String), (u64, BTreeSet<&str>)> = BTreeMap::new();
    for (e, _) in alerts {
        let what = if e.is_system() {
            e.kind.word().replace('_', " ")
        } else {
            service_title(e)
        };
        let s = by
            .entry((action_words(e.action).to_string(), what))
            .or_default();
        s.0 += u64::from(e.repeat_count.max(1));
        s.1.insert(&e.client_ip);
    }
    let mut top: Vec<_> = by.into_iter().collect();
    top.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    let mut facts = vec![
        ("Alerts", alerts.len().to_string()),
        ("Events", events.to_string()),
        ("Devices", devices.len().to_string()),
        ("When", when(first, last, 0)),
    ];
    for (label, ((did, what), (n, devs))) in TOP.iter().zip(top.iter()) {
        facts.push((
            label,
            format!("{did}: {what}, {n} events from {} devices", devs.len()),
        ));
    }
    if top.len() > TOP.len() {
        facts.push(("And", format!("{} more kinds", top.len() - TOP.len())));
    }
    Message {
        title: format!("{} more alerts summed up", alerts.len()),
        summary: format!(
            "More than {max_per_minute} alerts came within a minute: so that this channel is not flooded, \
             these {} alerts ({events} events) are summed up here. Every event is in the gateway's \
             record: run `shadowgate events --since {}` on the gateway to see them all.",
            alerts.len(),
            crate::time::rfc3339_micros(first)
        ),
        facts,
        severity,
        link: link.map(str::to_string),
    }
}

/// Text from the wire made safe to show anywhere: control characters (newlines included) become
/// spaces, and it is cut at `max` characters.
pub fn plain(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}
