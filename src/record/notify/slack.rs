//! Slack through an incoming webhook: `text` (the notification's fallback) and Block Kit blocks:
//! a header (plain text, catalogue words only), a section with the sentence, sections of fields
//! (at most 10 each) and a context line.
//!
//! Every string from an event is escaped for mrkdwn (`&`, `<`, `>` as entities: no `<!channel>`,
//! `<@U…>` or `<url|text>` can be formed), `@here`-style words and formatting marks are broken
//! with a zero-width space, and text objects are `verbatim` (no automatic links or mentions).

use serde_json::{json, Value};

use super::message::{plain, Message};

/// Block Kit limits the payload keeps to.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER: usize = 150;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;

/// A string from an event as inert mrkdwn.
pub fn escape(s: &str, max: usize) -> String {
    let s = plain(s, max);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '~' | '`' | '@' | '!' => {
                out.push(c);
                out.push('\u{200B}');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Header text: plain text, no entities needed, but still no control characters or brackets.
fn header(s: &str) -> String {
    plain(&s.replace(['<', '>', '&'], " "), MAX_HEADER)
}

fn mrkdwn(text: String) -> Value {
    json!({ "type": "mrkdwn", "text": text, "verbatim": true })
}

/// The body posted to the incoming webhook.
pub fn payload(m: &Message) -> Value {
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": header(&m.title), "emoji": false } }),
        json!({ "type": "section", "text": mrkdwn(escape(&m.summary, 2500)) }),
    ];
    for chunk in m.facts.chunks(MAX_FIELDS) {
        blocks.push(json!({
            "type": "section",
            "fields": chunk
                .iter()
                .map(|(k, v)| mrkdwn(format!("*{k}*\n{}", escape(v, 1000))))
                .collect::<Vec<_>>(),
        }));
    }
    let mut context = vec![mrkdwn(format!(
        "shadowgate · severity {}",
        m.severity.as_str()
    ))];
    if let Some(l) = &m.link {
        // The configured link (checked at load: http(s), no spaces, `|` or `>`).
        context.push(mrkdwn(format!("<{l}|Open the gateway's page>")));
    }
    blocks.push(json!({ "type": "context", "elements": context }));
    blocks.truncate(MAX_BLOCKS);
    let device = m
        .facts
        .iter()
        .find(|(k, _)| *k == "Device")
        .map(|(_, v)| format!(" — {}", escape(v, 300)))
        .unwrap_or_default();
    json!({
        "text": format!("{}{device}", escape(&m.title, 300)),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mention_or_link_can_be_formed() {
        let e = escape(
            "<!channel> <@U123> <https://evil.example|x> & @here *b*",
            500,
        );
        assert!(!e.contains('<') && !e.contains('>'), "{e}");
        assert!(e.contains("&lt;!\u{200B}channel&gt;"), "{e}");
        assert!(e.contains("&amp;"));
        assert!(!e.contains("@here"));
    }
}
