//! `report.html`: one self-contained page (inline CSS and SVG charts, no scripts, no external
//! files) with a print stylesheet for A4, rendered from the report's figures.

use std::collections::HashSet;
use std::fmt::Write;

use super::model::*;
use crate::policy::Action;

pub use crate::html::esc;

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_else(|| "–".into())
}

fn change(d: i64) -> String {
    match d {
        0 => "<span class=\"ch\">±0</span>".into(),
        d if d > 0 => format!("<span class=\"ch up\">+{d}</span>"),
        d => format!("<span class=\"ch down\">−{}</span>", -d),
    }
}

fn pct(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "–".into())
}

fn cat_label(c: &str) -> &str {
    match c {
        "consumer_ai" => "consumer AI",
        "enterprise_ai_api" => "enterprise API",
        "approved_route" => "approved route",
        "dns_resolver" => "DNS resolver",
        "ai_coding" => "AI coding",
        "ai_media" => "AI media",
        "ai_meeting" => "AI meeting and voice",
        "ai_clinical" => "clinical AI",
        "general_platform" => "platform with AI features",
        other => other,
    }
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{font-family:"DejaVu Sans","Liberation Sans",Arial,Helvetica,sans-serif;font-size:10.5pt;color:#1c2833;margin:0 auto;padding:12px;max-width:190mm;line-height:1.35}
h1{font-size:17pt;margin:0 0 2px}
h2{font-size:12.5pt;margin:18px 0 6px;padding-bottom:2px;border-bottom:2px solid #2c3e50;break-after:avoid}
p{margin:4px 0}
.sub{color:#566573;font-size:9.5pt}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:6px;margin:8px 0}
.card{border:1px solid #d5d8dc;border-radius:4px;padding:6px 8px}
.card b{display:block;font-size:16pt}
.card span.l{font-size:9pt;color:#566573}
table{width:100%;border-collapse:collapse;margin:4px 0 8px;font-size:9pt;table-layout:auto}
th,td{border-bottom:1px solid #d5d8dc;padding:3px 4px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td:first-child,th:first-child{min-width:7.5em}
td.mac{min-width:9.5em}
.k{white-space:nowrap;overflow-wrap:normal}
td.baa{min-width:10em}
th{background:#eaeded;font-weight:600}
td.n,th.n{text-align:right;white-space:nowrap;overflow-wrap:normal;word-break:normal}
tr{break-inside:avoid}
.ch{font-size:8.5pt;color:#566573}
.ch.up{color:#922b21}.ch.down{color:#1e8449}
.empty{color:#566573;font-style:italic}
svg.chart{display:block;width:100%;max-width:100%;height:auto;margin:4px 0}
.note{background:#f4f6f7;border-left:3px solid #2c3e50;padding:6px 8px;font-size:9pt}
.warn{border-left-color:#c0392b}
@page{size:A4;margin:12mm 10mm}
@media print{body{padding:0;max-width:none;font-size:9.5pt}h2{break-after:avoid-page}.card,svg.chart,figure{break-inside:avoid}a{color:inherit;text-decoration:none}}
"#;

/// The whole page, in the order the compliance officer reads it: the week's headline first,
/// then the trend and what was used (services, groups, devices, new services), then what the
/// people and the policy did (coach, DNS bypass, policy changes), then whether the figures can be
/// trusted (coverage) and how they were counted.
pub fn render(r: &Report, trend_svg: &str, services_svg: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, r);
    headline(&mut h, r);
    trend(&mut h, r, trend_svg);
    services(&mut h, r, services_svg);
    groups(&mut h, r);
    top_devices(&mut h, r);
    first_seen(&mut h, r);
    coach(&mut h, r);
    dns_bypass(&mut h, r);
    policy(&mut h, r);
    coverage(&mut h, r);
    counting(&mut h, r);
    h
}

/// A table with a header row of `head` (`<th>` cells, as HTML) and a row per item written by
/// `row`: the shape of every list in the report.
fn table<T>(h: &mut String, head: &str, items: &[T], mut row: impl FnMut(&mut String, &T)) {
    let _ = write!(h, "<table><thead><tr>{head}</tr></thead><tbody>");
    for it in items {
        row(h, it);
    }
    h.push_str("</tbody></table>");
}

/// The document head (title, inline stylesheet) and the page header with the week, its dates
/// and time zone, and whether the report is pseudonymised: opens the document, so it comes first.
fn head(h: &mut String, r: &Report) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Shadow-AI weekly report {w}</title><style>{CSS}</style></head><body>\n\
         <header><h1>Shadow-AI weekly report · {w}</h1>\
         <p class=\"sub\">{start} to {end} ({tz}) · generated {gen}{ps}</p></header>\n",
        w = esc(&r.week),
        start = esc(&r.start[..r.start.len().min(10)]),
        end = esc(&r.end[..r.end.len().min(10)]),
        tz = esc(&r.timezone),
        gen = esc(&r.generated_at),
        ps = if r.pseudonymised {
            " · <b>pseudonymised</b>: host names, MACs, addresses and owners are keyed pseudonyms; justification texts are left out"
        } else {
            ""
        }
    );
}

/// "This week": the four headline cards, the policy's actions against the previous week and the
/// consumer / approved-route split. The first thing read, so it opens the body.
fn headline(h: &mut String, r: &Report) {
    let t = &r.headline.this_week;
    let c = &r.headline.change;
    h.push_str("<section id=\"headline\"><h2>This week</h2><div class=\"cards\">");
    for (label, v, d) in [
        ("visits to AI services", t.visits, c.visits),
        ("devices", t.devices, c.devices),
        ("services", t.services, c.services),
        ("lookup-only runs (not visits)", t.lookups, c.lookups),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{v}</b><span class=\"l\">{label}</span> {}</div>",
            change(d)
        );
    }
    h.push_str("</div>");
    actions_table(h, r);
    let _ = writeln!(
        h,
        "<p class=\"sub\">Consumer-AI visits {} ({}), approved-route visits {} ({}). Counts are visits and devices, not packets: see <a href=\"#counting\">how this report counts</a>.</p></section>",
        t.consumer_visits,
        change(c.consumer_visits),
        t.approved_visits,
        change(c.approved_visits)
    );
}

/// The headline's table of what the policy did per visit, this week against the previous one,
/// from the most to the least restrictive action.
fn actions_table(h: &mut String, r: &Report) {
    let t = &r.headline.this_week;
    let p = &r.headline.previous_week;
    let c = &r.headline.change;
    h.push_str("<table class=\"actions\"><thead><tr><th>What the policy did (per visit, most restrictive action)</th><th class=\"n\">this week</th><th class=\"n\">previous week</th><th class=\"n\">change</th></tr></thead><tbody>");
    for (label, a, d) in [
        ("blocked", Action::Block, c.block),
        ("steered to the approved route", Action::Steer, c.steer),
        ("coached (warned, then allowed)", Action::Coach, c.coach),
        ("alerted", Action::Alert, c.alert),
        ("allowed", Action::Allow, c.allow),
    ] {
        let _ = write!(
            h,
            "<tr><td>{label}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            t.actions.get(a),
            p.actions.get(a),
            change(d)
        );
    }
    h.push_str("</tbody></table>");
}

/// The five-week trend: the chart, then its numbers as a table (for print and for readers who
/// cannot see the chart). Right after the headline, to show whether this week is unusual.
fn trend(h: &mut String, r: &Report, trend_svg: &str) {
    let _ = write!(
        h,
        "<section id=\"trend\"><h2>Five-week trend</h2><figure>{trend_svg}</figure>"
    );
    table(
        h,
        "<th>week</th><th class=\"n\">visits</th><th class=\"n\">consumer AI</th><th class=\"n\">approved route</th><th class=\"n\">enterprise API</th><th class=\"n\">devices</th><th class=\"n\">lookup-only</th>",
        &r.trend,
        |h, w| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&w.week),
                w.visits,
                w.consumer_visits,
                w.approved_visits,
                w.enterprise_visits,
                w.devices,
                w.lookups
            );
        },
    );
    h.push_str("</section>\n");
}

/// Use by service: the chart (when anything was visited) and a row per AI service with its BAA
/// status and what the policy did. What was used, before who used it.
fn services(h: &mut String, r: &Report, services_svg: &str) {
    let _ = write!(h, "<section id=\"services\"><h2>Use by service</h2>");
    if r.services.iter().any(|s| s.visits > 0) {
        let _ = write!(h, "<figure>{services_svg}</figure>");
    }
    if r.services.is_empty() {
        h.push_str("<p class=\"empty\">No AI service was used this week.</p>");
    } else {
        table(
            h,
            "<th>service</th><th>BAA status (catalogue)</th><th class=\"n\">visits</th><th class=\"n\">devices</th><th class=\"n\">lookup-only</th><th class=\"n\">blocked</th><th class=\"n\">steered</th><th class=\"n\">coached</th><th class=\"n\">alerted</th><th class=\"n\">allowed</th>",
            &r.services,
            |h, s| {
                let _ = write!(
                    h,
                    "<tr><td>{}<br><span class=\"sub\">{}{}</span></td><td class=\"baa\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&s.name),
                    esc(cat_label(&s.category)),
                    if s.first_seen { " · new" } else { "" },
                    esc(&s.baa),
                    s.visits,
                    s.devices,
                    s.lookups,
                    s.actions.block,
                    s.actions.steer,
                    s.actions.coach,
                    s.actions.alert,
                    s.actions.allow
                );
            },
        );
    }
    h.push_str("</section>\n");
}

/// By client group, and approved-route adoption: the adoption figure, the groups table and the
/// devices that moved from consumer AI to the approved route.
fn groups(h: &mut String, r: &Report) {
    h.push_str("<section id=\"groups\"><h2>By client group, and approved-route adoption</h2>");
    let a = &r.adoption;
    let _ = write!(
        h,
        "<p>Approved-route adoption this week: <b>{}</b> ({} approved-route visits against {} consumer-AI visits).</p>",
        pct(a.adoption_pct),
        a.approved_visits,
        a.consumer_visits
    );
    group_table(h, &r.groups);
    moved_devices(h, &a.moved_devices);
    h.push_str("</section>\n");
}

/// A row per client group: its visits, devices and adoption of the approved route.
fn group_table(h: &mut String, groups: &[GroupRow]) {
    if groups.is_empty() {
        h.push_str("<p class=\"empty\">No visits this week.</p>");
        return;
    }
    table(
        h,
        "<th>group</th><th class=\"n\">visits</th><th class=\"n\">devices</th><th class=\"n\">consumer AI</th><th class=\"n\">approved route</th><th class=\"n\">adoption</th>",
        groups,
        |h, g| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&g.group),
                g.visits,
                g.devices,
                g.consumer_visits,
                g.approved_visits,
                pct(g.adoption_pct)
            );
        },
    );
}

/// The devices that used consumer AI in the four weeks before and the approved route this week:
/// adoption shown by name, after the group figures it explains.
fn moved_devices(h: &mut String, moved: &[MovedDevice]) {
    h.push_str("<p class=\"sub\">Devices that used consumer AI in the four weeks before and the approved route this week:</p>");
    if moved.is_empty() {
        h.push_str("<p class=\"empty\">None this week.</p>");
        return;
    }
    table(
        h,
        "<th>device</th><th>owner</th><th>department</th><th class=\"n\">earlier consumer-AI visits</th><th class=\"n\">approved-route visits</th>",
        moved,
        |h, m| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&m.info.device),
                opt(&m.info.owner),
                opt(&m.info.department),
                m.earlier_consumer_visits,
                m.approved_visits
            );
        },
    );
}

/// The devices with the most visits, with their owner (from the inventory), MAC and addresses,
/// groups and most used service.
fn top_devices(h: &mut String, r: &Report) {
    h.push_str("<section id=\"devices\"><h2>Top devices</h2>");
    if r.top_devices.is_empty() {
        h.push_str("<p class=\"empty\">No visits this week.</p>");
    } else {
        table(
            h,
            "<th>device</th><th>owner · department · location</th><th>MAC · addresses</th><th>groups</th><th class=\"n\">visits</th><th class=\"n\">consumer</th><th class=\"n\">approved</th><th>most used</th>",
            &r.top_devices,
            device_row,
        );
    }
    h.push_str("</section>\n");
}

/// One row of the top-devices table; owner, department and location share a cell ("–" when the
/// inventory knows none of them).
fn device_row(h: &mut String, d: &DeviceRow) {
    let owner = [&d.info.owner, &d.info.department, &d.info.location]
        .iter()
        .filter_map(|v| v.as_deref())
        .map(esc)
        .collect::<Vec<_>>()
        .join(" · ");
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class=\"mac\">{}<br><span class=\"sub\">{}</span></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
        esc(&d.info.device),
        if owner.is_empty() { "–".into() } else { owner },
        opt(&d.info.mac),
        esc(&d.info.ips.join(" ")),
        esc(&d.groups.replace(',', ", ")),
        d.visits,
        d.consumer_visits,
        d.approved_visits,
        esc(&d.top_service)
    );
}

/// Services seen for the first time this week, with their category and BAA status: what is new
/// and may need a policy decision.
fn first_seen(h: &mut String, r: &Report) {
    h.push_str("<section id=\"first-seen\"><h2>Services seen for the first time</h2>");
    if r.first_seen.is_empty() {
        h.push_str(
            "<p class=\"empty\">None: every service used this week had been seen before.</p>",
        );
    } else {
        table(
            h,
            "<th>service</th><th class=\"k\">category</th><th>BAA status</th><th class=\"n\">visits</th><th class=\"n\">devices</th><th class=\"n\">lookup-only</th>",
            &r.first_seen,
            |h, s| {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"k\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&s.name),
                    esc(cat_label(&s.category)),
                    esc(&s.baa),
                    s.visits,
                    s.devices,
                    s.lookups
                );
            },
        );
    }
    h.push_str("</section>\n");
}

/// Coach justifications: portal views, acknowledgements and expired grants, then what people
/// wrote (left out of a pseudonymised report).
fn coach(h: &mut String, r: &Report) {
    let _ = write!(
        h,
        "<section id=\"coach\"><h2>Coach justifications</h2><p class=\"sub\">{} portal page views, {} coach acknowledgements, {} grants expired.{}</p>",
        r.portal_views,
        r.justifications.len(),
        r.grants_expired,
        if r.justifications_withheld {
            " Justification texts are left out of a pseudonymised report."
        } else {
            ""
        }
    );
    if r.justifications.is_empty() {
        h.push_str("<p class=\"empty\">No justifications were given.</p>");
    } else {
        table(
            h,
            "<th>time</th><th>device</th><th>owner</th><th>service</th><th>justification</th>",
            &r.justifications,
            |h, j| {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&j.time),
                    esc(&j.device),
                    opt(&j.owner),
                    esc(&j.service),
                    j.text
                        .as_deref()
                        .map(esc)
                        .unwrap_or_else(|| "<span class=\"empty\">left out</span>".into())
                );
            },
        );
    }
    h.push_str("</section>\n");
}

/// Devices that reached public DNS-over-HTTPS or DNS-over-TLS resolvers, which would hide their
/// lookups from the sensor: kept apart from the AI services above.
fn dns_bypass(h: &mut String, r: &Report) {
    h.push_str("<section id=\"dns-bypass\"><h2>DNS bypass (DoH / DoT) attempts</h2>");
    if r.dns_bypass.is_empty() {
        h.push_str("<p class=\"empty\">No device reached a public DNS-over-HTTPS or DNS-over-TLS resolver.</p>");
    } else {
        table(
            h,
            "<th>resolver</th><th class=\"n\">connections (visits)</th><th class=\"n\">of them DoT (port 853)</th><th class=\"n\">lookup-only</th><th class=\"n\">devices</th>",
            &r.dns_bypass,
            |h, b| {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&b.name),
                    b.visits,
                    b.dot_visits,
                    b.lookups,
                    b.devices
                );
            },
        );
    }
    bypass_tries(h, r);
    h.push_str("</section>\n");
}

/// The device cell of a table: its name, with MAC and addresses below.
fn device_cell(d: &DeviceInfo) -> String {
    format!(
        "{}<br><span class=\"sub mac\">{} {}</span>",
        esc(&d.device),
        opt(&d.mac),
        esc(&d.ips.join(" "))
    )
}

/// DNS mode's bypass names (`dns_bypass` events): which devices tried each kind, and how often.
fn bypass_tries(h: &mut String, r: &Report) {
    h.push_str("<h3>Bypass names looked up (DNS mode answered them itself)</h3>");
    if r.dns_bypass_tries.is_empty() {
        h.push_str("<p class=\"empty\">No device looked up a bypass name (Firefox's DoH canary, iCloud Private Relay, designated resolvers), or DNS mode did not run.</p>");
        return;
    }
    let mut kinds: Vec<(&str, u64, u64)> = Vec::new();
    for t in &r.dns_bypass_tries {
        match kinds.last_mut() {
            Some((w, d, e)) if *w == t.what => {
                *d += 1;
                *e += t.events;
            }
            _ => kinds.push((&t.what, 1, t.events)),
        }
    }
    let summary = kinds
        .iter()
        .map(|(w, d, e)| {
            format!(
                "{}: {d} device{}, {e} lookup{}",
                esc(w),
                if *d == 1 { "" } else { "s" },
                if *e == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let _ = write!(
        h,
        "<p class=\"note\">{summary} (at most one recorded an hour per device and name).</p>"
    );
    table(
        h,
        "<th>bypass</th><th>device</th><th>names</th><th class=\"n\">lookups</th><th>first</th><th>last</th>",
        &r.dns_bypass_tries,
        |h, t| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.what),
                device_cell(&t.info),
                esc(&t.names.join(", ")),
                t.events,
                esc(&t.first),
                esc(&t.last)
            );
        },
    );
}

/// Policy reloads accepted this week, and any rejected (the previous policy stayed in force).
fn policy(h: &mut String, r: &Report) {
    h.push_str("<section id=\"policy\"><h2>Policy changes</h2>");
    sys_table(
        h,
        &r.policy.reloads,
        "No policy change was accepted this week.",
    );
    if !r.policy.rejected.is_empty() {
        h.push_str("<p class=\"note warn\">Rejected policy reloads (the previous policy stayed in force):</p>");
        sys_table(h, &r.policy.rejected, "");
    } else {
        h.push_str("<p class=\"sub\">No policy reload failed.</p>");
    }
    h.push_str("</section>\n");
}

/// Coverage: whether the sensor saw the whole week (starts, stops, downtime, capture gaps, drops,
/// sink outages), the catalogue in force and names the portal CA cannot certify. Near the end:
/// it qualifies every figure above.
fn coverage(h: &mut String, r: &Report) {
    let cv = &r.coverage;
    h.push_str("<section id=\"coverage\"><h2>Coverage</h2>");
    if !cv.lifecycle_known {
        h.push_str("<p class=\"note warn\">No sensor start or stop was recorded in or before this week: whether the sensor ran all week is unknown.</p>");
    }
    coverage_counts(h, cv);
    if let Some(c) = &cv.catalogue {
        let _ = write!(h, "<p class=\"note\">Catalogue in force: {}.</p>", esc(c));
    }
    portal_uncertifiable(h, cv);
    if !cv.down.is_empty() {
        table(
            h,
            "<th>down from</th><th>to</th><th class=\"n\">for</th>",
            &cv.down,
            |h, d| {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                    esc(&d.from),
                    esc(&d.to),
                    duration(d.seconds)
                );
            },
        );
    }
    if !cv.incidents.is_empty() {
        sys_table(h, &cv.incidents, "");
    }
    blind(h, cv);
    h.push_str("</section>\n");
}

/// Devices whose traffic the gateway could not name (VPN handshakes, iCloud Private Relay, ECH
/// with no name from DNS): what they used, and for how long.
fn blind(h: &mut String, cv: &Coverage) {
    h.push_str("<h3>Blind spots</h3>");
    if cv.blind.is_empty() {
        h.push_str("<p class=\"empty\">No device used a VPN (other than the clinic's own), iCloud Private Relay or an encrypted hello the sensor could not name.</p>");
        return;
    }
    let devices = cv
        .blind
        .iter()
        .map(|b| &b.info.device)
        .collect::<HashSet<_>>()
        .len();
    let _ = write!(
        h,
        "<p class=\"note warn\">{devices} device{} sent traffic the gateway cannot name: where it went, AI services included, is not in the figures above.</p>",
        if devices == 1 { "" } else { "s" }
    );
    table(
        h,
        "<th>device</th><th>kind</th><th class=\"n\">minutes</th><th class=\"n\">hours</th><th>first</th><th>last</th>",
        &cv.blind,
        |h, b| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                device_cell(&b.info),
                esc(blind_label(&b.kind)),
                b.minutes,
                b.hours,
                esc(&b.first),
                esc(&b.last)
            );
        },
    );
}

/// A blind-spot kind as the report says it.
fn blind_label(kind: &str) -> &str {
    match kind {
        "wireguard" => "WireGuard VPN",
        "openvpn" => "OpenVPN",
        "ike" => "IPsec VPN (IKE)",
        "private_relay" => "iCloud Private Relay",
        "ech_no_dns" => "encrypted hello, no name from DNS",
        other => other,
    }
}

/// The coverage counts: sensor starts and stops, unclean restarts, downtime, capture gaps, kernel
/// drops and SIEM sink outages.
fn coverage_counts(h: &mut String, cv: &Coverage) {
    let _ = write!(
        h,
        "<table><tbody><tr><td>sensor starts / stops</td><td class=\"n\">{} / {}</td></tr><tr><td>restarts without a recorded stop (crash, power loss)</td><td class=\"n\">{}</td></tr><tr><td>time the sensor was down</td><td class=\"n\">{}</td></tr><tr><td>capture gaps (bytes skipped, events not stored)</td><td class=\"n\">{} ({} B, {})</td></tr><tr><td>kernel drop reports (packets dropped)</td><td class=\"n\">{} ({})</td></tr><tr><td>SIEM sink outages</td><td class=\"n\">{}</td></tr></tbody></table>",
        cv.starts,
        cv.stops,
        cv.unclean_restarts,
        duration(cv.down_seconds),
        cv.capture_gaps,
        cv.capture_gap_bytes,
        cv.events_not_stored,
        cv.kernel_drop_reports,
        cv.kernel_dropped_packets,
        cv.sink_outages
    );
}

/// Steered names the portal CA cannot certify (the first 20), with what to do about them; a
/// quiet zero when the catalogue said so, nothing when it did not say.
fn portal_uncertifiable(h: &mut String, cv: &Coverage) {
    match cv.portal_uncertifiable {
        Some(n) if n > 0 => {
            let mut names = cv
                .portal_uncertifiable_names
                .iter()
                .take(20)
                .map(|s| esc(s))
                .collect::<Vec<_>>()
                .join(", ");
            if cv.portal_uncertifiable_names.len() > 20 {
                names.push_str(", ...");
            }
            let _ = write!(
                h,
                "<p class=\"note warn\">Steered names the portal CA cannot certify: {n} ({names}). The catalogue grew after the CA was made: these names are still steered by DNS, but browsers show a certificate error instead of the portal page. Make a new CA (<code>shadowgate portal ca ... --force</code>) and install it on the clinic's devices.</p>"
            );
        }
        Some(_) => {
            h.push_str("<p class=\"note\">Steered names the portal CA cannot certify: 0.</p>")
        }
        None => {}
    }
}

/// How this report counts (the sensor note, visit gap, weeks, missing catalogue or inventory),
/// the events read and the version; closes the document.
fn counting(h: &mut String, r: &Report) {
    let _ = write!(
        h,
        "<section id=\"counting\"><h2>How this report counts</h2><p class=\"note\">{} Visit gap: {} minutes. Weeks are ISO weeks (Monday to Sunday) in {}.{}{}</p><p class=\"sub\">{} events read. shadowgate {}.</p></section>\n</body></html>\n",
        esc(&r.sensor_note),
        r.visit_gap_minutes,
        esc(&r.timezone),
        if r.catalogue { "" } else { " No policy catalogue was given: BAA status is unknown." },
        if r.inventory { " Owners come from the device inventory." } else { "" },
        r.events_read,
        env!("CARGO_PKG_VERSION")
    );
}

/// A table of system events (time, kind, summary), or the `empty` sentence when there are none
/// (nothing at all when that is empty too).
fn sys_table(h: &mut String, rows: &[SysRow], empty: &str) {
    if rows.is_empty() {
        if !empty.is_empty() {
            let _ = write!(h, "<p class=\"empty\">{}</p>", esc(empty));
        }
        return;
    }
    table(
        h,
        "<th>time</th><th>what</th><th>summary</th>",
        rows,
        |h, s| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.time),
                esc(&s.kind),
                esc(&s.summary)
            );
        },
    );
}

/// A length of time as minutes (rounded up) under an hour, else hours and minutes.
fn duration(s: u64) -> String {
    if s == 0 {
        "0".into()
    } else if s < 3600 {
        format!("{} min", s.div_ceil(60))
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}
