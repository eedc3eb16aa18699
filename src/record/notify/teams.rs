//! Microsoft Teams through a Workflows webhook ("Post to a channel when a webhook request is
//! received"): a message with one Adaptive Card (schema 1.4) attachment of TextBlocks and a
//! FactSet.
//!
//! Card text is markdown to Teams, and `{{DATE(...)}}` is a function: every string from an event
//! has its markdown characters backslash-escaped, braces and URL schemes broken with a zero-width
//! space, control characters removed, and is cut to a bounded length. The JSON itself is written
//! by serde, so no value can leave its string.

use serde_json::{json, Value};

use super::message::{plain, Message};
use crate::policy::Severity;

/// The Adaptive Card version sent (Teams renders 1.4 and 1.5 in Workflows posts).
pub const CARD_VERSION: &str = "1.4";

/// A string from an event as inert card text.
pub fn escape(s: &str, max: usize) -> String {
    let s = plain(s, max);
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = ' ';
    for c in s.chars() {
        match c {
            // Brackets escaped: no link or image can be formed, so `(` stays as it is.
            '\\' | '*' | '_' | '[' | ']' | '`' | '~' | '<' | '>' | '#' | '|' => {
                out.push('\\');
                out.push(c);
            }
            // A list or heading marker only matters at the start.
            '-' | '+' if out.is_empty() => {
                out.push('\\');
                out.push(c);
            }
            // `{{` opens a date function; `://` makes a link.
            '{' | '}' if prev == c => {
                out.push('\u{200B}');
                out.push(c);
            }
            '/' if out.ends_with(':') => {
                out.push('\u{200B}');
                out.push(c);
            }
            _ => out.push(c),
        }
        prev = c;
    }
    out
}

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "Attention",
        Severity::Medium => "Warning",
        Severity::Low | Severity::Info => "Default",
    }
}

/// The Adaptive Card of a message.
pub fn card(m: &Message) -> Value {
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": escape(&m.title, 200),
            "weight": "Bolder",
            "size": "Medium",
            "color": color(m.severity),
            "wrap": true,
        }),
        json!({ "type": "TextBlock", "text": escape(&m.summary, 1000), "wrap": true }),
        json!({
            "type": "FactSet",
            "facts": m.facts.iter().map(|(k, v)| json!({ "title": k, "value": escape(v, 300) })).collect::<Vec<_>>(),
        }),
    ];
    if let Some(l) = &m.link {
        // The configured link (checked at load: http(s), no spaces or brackets).
        body.push(json!({
            "type": "TextBlock",
            "text": format!("[Open the gateway's page]({l})"),
            "wrap": true,
            "isSubtle": true,
        }));
    }
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    })
}

/// The body posted to the Workflows webhook.
pub fn payload(m: &Message) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card(m),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_text() {
        let e = escape(
            "[click](https://evil.example) **x** {{DATE(2026-01-01T00:00:00Z)}}\n# h",
            300,
        );
        assert!(!e.contains("[click]("), "{e}");
        assert!(e.contains("\\[click\\](https:"), "{e}");
        assert!(!e.contains("{{") && !e.contains("://"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(escape("- a", 10), "\\- a");
        assert_eq!(escape("a-b.example", 20), "a-b.example");
    }
}
