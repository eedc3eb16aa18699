//! The portal's pages (steer, coach, granted, neutral, notices): self-contained HTML with inline
//! CSS only, landmarks and labels for screen readers, and a layout that reflows on a phone.

use crate::policy::SteerDef;
use crate::portal::config::PortalConf;

/// How the clinic's pages look (from `[portal]`), with colours checked before they reach CSS.
#[derive(Debug, Clone)]
pub struct Look {
    pub clinic: String,
    pub logo: String,
    pub primary: String,
    pub accent: String,
    pub contact: Option<String>,
    pub lang: String,
}

impl Look {
    pub fn from_conf(c: &PortalConf) -> Look {
        let lang: String = c
            .language
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
            .take(16)
            .collect();
        Look {
            clinic: c.clinic_name.clone(),
            logo: c.logo_text.clone().unwrap_or_else(|| c.clinic_name.clone()),
            primary: colour(c.colour_primary.as_deref()).unwrap_or_else(|| "#1d4f7c".into()),
            accent: colour(c.colour_accent.as_deref()).unwrap_or_else(|| "#9a5b00".into()),
            contact: c.contact.clone(),
            lang: if lang.is_empty() { "en".into() } else { lang },
        }
    }
}

/// `#rgb` or `#rrggbb`, else nothing (a colour never carries CSS of its own).
pub fn colour(c: Option<&str>) -> Option<String> {
    let c = c?.trim();
    let h = c.strip_prefix('#')?;
    ((h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| c.to_ascii_lowercase())
}

pub use crate::html::esc;

/// Only http(s) links leave the page (a `javascript:` steer target is shown as text).
fn safe_url(u: &str) -> Option<&str> {
    let l = u.trim().to_ascii_lowercase();
    (l.starts_with("https://") || l.starts_with("http://")).then_some(u.trim())
}

fn shell(look: &Look, title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title} · {clinic}</title>
<style>
:root {{ --primary: {primary}; --accent: {accent}; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; font-size: 1.0625rem; line-height: 1.55; color: #1a1a1a; background: #f4f5f7; }}
header {{ background: var(--primary); color: #fff; padding: 0.9rem 1.25rem; }}
header p {{ margin: 0; font-weight: 700; font-size: 1.15rem; letter-spacing: 0.01em; }}
main {{ max-width: 44rem; margin: 1.25rem auto; padding: 0 1rem; }}
.card {{ background: #fff; border-radius: 0.5rem; padding: 1.25rem 1.25rem 1rem; margin-bottom: 1rem; border: 1px solid #d5d8dd; }}
.card.warn {{ border-left: 0.4rem solid var(--accent); }}
h1 {{ font-size: 1.55rem; line-height: 1.25; margin: 0 0 0.75rem; }}
h2 {{ font-size: 1.2rem; margin: 0 0 0.5rem; }}
p {{ margin: 0 0 0.75rem; }}
a {{ color: var(--primary); }}
a.button, button {{ display: inline-block; background: var(--primary); color: #fff; border: 0; border-radius: 0.4rem; padding: 0.7rem 1.1rem; font: inherit; font-weight: 600; text-decoration: none; cursor: pointer; min-height: 2.75rem; }}
button.secondary {{ background: #fff; color: var(--primary); border: 2px solid var(--primary); }}
a.button:focus, button:focus, input:focus, textarea:focus {{ outline: 3px solid #111; outline-offset: 2px; }}
.url {{ overflow-wrap: anywhere; color: #3d3d3d; font-size: 0.95rem; }}
.small {{ color: #3d3d3d; font-size: 0.95rem; }}
label {{ display: block; font-weight: 600; margin-bottom: 0.3rem; }}
.check {{ display: flex; gap: 0.6rem; align-items: flex-start; margin-bottom: 0.9rem; }}
.check input {{ width: 1.4rem; height: 1.4rem; margin-top: 0.15rem; flex: none; }}
.check label {{ margin: 0; }}
textarea {{ width: 100%; min-height: 5rem; font: inherit; padding: 0.5rem; border: 1px solid #6b6f76; border-radius: 0.3rem; }}
.hint {{ color: #3d3d3d; font-size: 0.95rem; margin: 0 0 0.4rem; }}
.error {{ background: #fdecec; border: 1px solid #b3261e; color: #7a1712; padding: 0.6rem 0.8rem; border-radius: 0.3rem; }}
.status {{ background: #e7f4ea; border: 1px solid #1e6b34; color: #14471f; padding: 0.6rem 0.8rem; border-radius: 0.3rem; font-weight: 600; }}
footer {{ max-width: 44rem; margin: 0 auto 2rem; padding: 0 1rem; color: #3d3d3d; font-size: 0.9rem; }}
@media (max-width: 30rem) {{ h1 {{ font-size: 1.3rem; }} a.button, button {{ display: block; width: 100%; text-align: center; }} }}
</style>
</head>
<body>
<header><p>{logo}</p></header>
<main id="main">
{body}
</main>
</body>
</html>
"#,
        lang = esc(&look.lang),
        title = esc(title),
        clinic = esc(&look.clinic),
        primary = look.primary,
        accent = look.accent,
        logo = esc(&look.logo),
    )
}

fn why(look: &Look, service: &str) -> String {
    format!(
        "<p>Personal and free plans of {s} have no <abbr title=\"Business Associate Agreement\">BAA</abbr> \
         with {c}: nothing obliges the vendor to protect patient information the way the law requires. \
         Patient information must therefore never go there.</p>",
        s = esc(service),
        c = esc(&look.clinic),
    )
}

fn route(steer: Option<&SteerDef>) -> String {
    match steer {
        Some(s) => {
            let link = match safe_url(&s.url) {
                Some(u) => format!(
                    "<p><a class=\"button\" id=\"approved-route\" href=\"{u}\">Open the approved tool</a></p>\
                     <p class=\"url\">{t}</p>",
                    u = esc(u),
                    t = esc(u),
                ),
                None => format!("<p class=\"url\">{}</p>", esc(&s.url)),
            };
            format!(
                "<section class=\"card\" aria-labelledby=\"route-h\"><h2 id=\"route-h\">Use the approved tool instead</h2>\
                 <p>{}</p>{link}</section>",
                esc(&s.instruction)
            )
        }
        None => "<section class=\"card\" aria-labelledby=\"route-h\"><h2 id=\"route-h\">What to use instead</h2>\
                 <p>The clinic has not named an approved tool here yet: ask the contact below.</p></section>"
            .to_string(),
    }
}

fn contact(look: &Look, name: &str) -> String {
    let who = match &look.contact {
        Some(c) => format!("<p>Questions or a good reason to use it? Contact {}.</p>", esc(c)),
        None => "<p>Questions or a good reason to use it? Contact the clinic's IT or privacy officer.</p>"
            .to_string(),
    };
    format!(
        "<section class=\"card\" aria-labelledby=\"help-h\"><h2 id=\"help-h\">Help</h2>{who}\
         <p class=\"small\">You asked for {}. This page comes from the clinic's network gateway; \
         it sends nothing you do here to that site.</p></section>",
        esc(name)
    )
}

/// A stopped service, with the approved route.
pub fn steer(look: &Look, service: &str, name: &str, steer_to: Option<&SteerDef>) -> String {
    let title = format!("{service} is not available on this network");
    let body = format!(
        "<section class=\"card warn\" aria-labelledby=\"title\"><h1 id=\"title\">{t}</h1>{why}</section>{route}{contact}",
        t = esc(&title),
        why = why(look, service),
        route = route(steer_to),
        contact = contact(look, name),
    );
    shell(look, &title, &body)
}

/// What the coach form needs.
pub struct CoachForm<'a> {
    pub token: &'a str,
    pub max_len: usize,
    pub minutes: String,
    pub error: Option<&'a str>,
}

/// A coached service: the warning, the approved route, and the acknowledgement form.
pub fn coach(
    look: &Look,
    service: &str,
    name: &str,
    steer_to: Option<&SteerDef>,
    f: &CoachForm<'_>,
) -> String {
    let title = format!("Think before you use {service}");
    let err = f
        .error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let form = format!(
        r#"<section class="card warn" aria-labelledby="go-h"><h2 id="go-h">Continue to {s} anyway</h2>
{err}<form method="post" action="/.shadowgate/continue">
<input type="hidden" name="token" value="{tok}">
<div class="check"><input type="checkbox" id="ack" name="ack" value="yes" required><label for="ack">I will not enter patient information</label></div>
<label for="why">Why do you need {s}?</label>
<p class="hint" id="why-hint">A few words, at most {max} characters. Do not type patient names or any patient details here.</p>
<textarea id="why" name="justification" maxlength="{max}" required aria-describedby="why-hint"></textarea>
<p class="hint">Your answer is recorded with this device's address. Access is allowed on this device for {min}, then ends by itself.</p>
<p><button type="submit" id="continue">Continue to {s}</button></p>
</form></section>"#,
        s = esc(service),
        tok = esc(f.token),
        max = f.max_len,
        min = esc(&f.minutes),
    );
    let body = format!(
        "<section class=\"card warn\" aria-labelledby=\"title\"><h1 id=\"title\">{t}</h1>{why}</section>{route}{form}{contact}",
        t = esc(&title),
        why = why(look, service),
        route = route(steer_to),
        contact = contact(look, name),
    );
    shell(look, &title, &body)
}

/// A coached service this client has acknowledged: the grant and how long it lasts.
pub fn granted(look: &Look, service: &str, name: &str, scheme: &str, left: &str) -> String {
    let title = format!("{service} is allowed on this device for now");
    let body = format!(
        "<section class=\"card\" aria-labelledby=\"title\"><h1 id=\"title\">{t}</h1>\
         <p class=\"status\" role=\"status\" id=\"grant-status\">Access granted: {left} left.</p>\
         <p>Your acknowledgement was recorded. Remember: no patient information in {s}. \
         The access ends by itself.</p>\
         <p>If this page is still shown, wait a moment and open <a href=\"{scheme}://{n}/\">{n}</a> again.</p></section>{contact}",
        t = esc(&title),
        left = esc(left),
        s = esc(service),
        scheme = if scheme == "https" { "https" } else { "http" },
        n = esc(name),
        contact = contact(look, name),
    );
    shell(look, &title, &body)
}

/// A name the portal has nothing to say about (not steered or coached for this client).
pub fn neutral(look: &Look, name: &str) -> String {
    let title = "Nothing here";
    let body = format!(
        "<section class=\"card\" aria-labelledby=\"title\"><h1 id=\"title\">{t}</h1>\
         <p>The clinic's network gateway has no page for {n}. If a site does not load, try again later \
         or contact IT.</p></section>",
        t = title,
        n = esc(name)
    );
    shell(look, title, &body)
}

/// A short notice (limits, refused forms).
pub fn notice(look: &Look, title: &str, text: &str) -> String {
    let body = format!(
        "<section class=\"card\" aria-labelledby=\"title\"><h1 id=\"title\">{}</h1><p>{}</p></section>",
        esc(title),
        esc(text)
    );
    shell(look, title, &body)
}

/// "12 minutes", "45 seconds".
pub fn duration_words(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{} minutes", s.div_ceil(60))
    } else if s == 1 {
        "1 second".into()
    } else {
        format!("{s} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look() -> Look {
        Look {
            clinic: "Elm <Street> Clinic".into(),
            logo: "ELM".into(),
            primary: "#1d4f7c".into(),
            accent: "#9a5b00".into(),
            contact: Some("privacy@elm.example".into()),
            lang: "en".into(),
        }
    }

    #[test]
    fn pages_escape_and_name_service_and_route() {
        let s = SteerDef {
            url: "https://ai.clinic.example/".into(),
            instruction: "Use <the> approved assistant".into(),
        };
        let h = steer(&look(), "ChatGPT", "chatgpt.com", Some(&s));
        assert!(h.contains("ChatGPT is not available"));
        assert!(h.contains("href=\"https://ai.clinic.example/\""));
        assert!(h.contains("Use &lt;the&gt; approved assistant"));
        assert!(h.contains("Elm &lt;Street&gt; Clinic"));
        assert!(!h.contains("<Street>"));
        assert!(!h.contains("<script"), "no scripts at all");
        let bad = SteerDef {
            url: "javascript:alert(1)".into(),
            instruction: String::new(),
        };
        assert!(!steer(&look(), "X", "x", Some(&bad)).contains("href=\"javascript"));
    }

    #[test]
    fn colours_are_hex_only() {
        assert_eq!(colour(Some("#1D4F7C")), Some("#1d4f7c".into()));
        assert_eq!(colour(Some("#abc")), Some("#abc".into()));
        assert_eq!(colour(Some("red; } body { display:none")), None);
        assert_eq!(colour(Some("#12345")), None);
    }

    #[test]
    fn coach_form_has_ack_and_length_limit() {
        let f = CoachForm {
            token: "ab\"cd",
            max_len: 200,
            minutes: "30 minutes".into(),
            error: Some("Tick the box"),
        };
        let h = coach(&look(), "ChatGPT", "chatgpt.com", None, &f);
        assert!(h.contains("I will not enter patient information"));
        assert!(h.contains("maxlength=\"200\""));
        assert!(h.contains("value=\"ab&quot;cd\""));
        assert!(h.contains("role=\"alert\""));
        assert!(h.contains("method=\"post\""));
    }
}
