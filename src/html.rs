//! The one HTML escape, for every page shadowgate writes (the portal's pages, the weekly report).
//!
//! Text on those pages comes from the network (a DHCP host name, an SNI, a coach justification)
//! or from configuration. It is escaped for element content and quoted attribute values, and
//! control characters are dropped: they have no business on a page, and a terminal escape or a
//! NUL in a host name must not reach the compliance officer's browser or printer.

/// Escape `s` for HTML element content and quoted (single or double) attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn control_characters_are_dropped_and_text_kept() {
        assert_eq!(esc("recep\u{1b}[31mtion\0-pc\r\n"), "recep[31mtion-pc");
        assert_eq!(esc("Praxis Müller – 東京"), "Praxis Müller – 東京");
    }
}
