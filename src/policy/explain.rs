//! `policy explain`: the decision for a name (and optionally a client and evidence level) as text
//! for a person: the service and its BAA status, the client's groups, rules skipped and why, the action.

use super::matcher::normalize;
use super::{Action, Client, Policy};
use crate::flow::Evidence;

impl Policy {
    /// A human explanation of the decision for `name` seen on the wire (and optionally a client).
    pub fn explain(&self, raw: &str, client: &Client<'_>, ts_ns: u64) -> String {
        self.explain_on(raw, client, ts_ns, Evidence::Wire)
    }

    /// A human explanation of the decision for `name` shown by `evidence`.
    pub fn explain_on(
        &self,
        raw: &str,
        client: &Client<'_>,
        ts_ns: u64,
        evidence: Evidence,
    ) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let name = match normalize(raw) {
            Ok(n) => n.into_owned(),
            Err(e) => return format!("{raw:?}: {e}\n"),
        };
        let _ = writeln!(
            s,
            "name:      {name}{}",
            if name != raw {
                format!("   (normalised from {raw:?})")
            } else {
                String::new()
            }
        );
        let (cat, groups, trail) = self.evaluate(&name, client, ts_ns, evidence);
        match cat {
            Some(c) => {
                let sv = c.service;
                let _ = writeln!(
                    s,
                    "service:   {} ({}; vendor {})",
                    sv.id, sv.name, sv.vendor
                );
                let _ = writeln!(s, "category:  {} / {}", sv.category.as_str(), sv.kind);
                let _ = writeln!(
                    s,
                    "matched:   catalogue entry {:?} in {} (the most specific entry wins)",
                    c.pattern,
                    sv.file.display()
                );
                let _ = writeln!(s, "BAA:       {}", sv.baa);
                let _ = writeln!(s, "source:    {}", sv.baa_source);
                if let Some(t) = &sv.shared_tenant {
                    let _ = writeln!(s, "LIMIT:     {t}");
                    let _ = writeln!(s, "           shadowgate sees host names, not accounts: it cannot tell a BAA-covered enterprise");
                    let _ = writeln!(s, "           account from a personal one on these hosts. Allow the service only for the client");
                    let _ = writeln!(s, "           groups enrolled in the enterprise plan, and steer or alert for everyone else.");
                }
            }
            None => {
                let _ = writeln!(s, "service:   none: {name:?} is not in the catalogue");
            }
        }
        match client.ip {
            Some(ip) => {
                let g: Vec<&str> = groups.iter().map(|&g| self.groups[g].id.as_str()).collect();
                let _ = writeln!(
                    s,
                    "client:    {ip}, groups: {}",
                    if g.is_empty() {
                        "none".to_string()
                    } else {
                        g.join(", ")
                    }
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "client:    not given (rules limited to groups are skipped; pass --client IP)"
                );
            }
        }
        let _ = writeln!(
            s,
            "evidence:  {}{}",
            evidence.as_str(),
            if evidence == Evidence::Wire {
                "   (the name on the wire; see --evidence)"
            } else {
                ""
            }
        );
        for (i, v) in &trail {
            let r = &self.rules[*i];
            match v {
                Ok(()) => {}
                Err(why) => {
                    let _ = writeln!(
                        s,
                        "skipped:   rule {} would select this name, but {why}",
                        r.id
                    );
                }
            }
        }
        match trail.last() {
            Some((i, Ok(()))) => {
                let r = &self.rules[*i];
                let _ = writeln!(s, "rule:      {} (first rule in policy.toml that selects the name and the client)", r.id);
                let _ = writeln!(
                    s,
                    "action:    {} (severity {})",
                    r.action.as_str(),
                    r.severity.as_str()
                );
                if let Some(t) = &r.steer_to {
                    let _ = writeln!(s, "steer to:  {}  - {}", t.url, t.instruction);
                }
                if matches!(r.action, Action::Steer | Action::Coach) {
                    let _ = writeln!(s, "portal:    the page shows over HTTPS only with a portal CA ([portal] ca_cert, ca_key; `shadowgate portal ca`); without one, {} means stop on HTTPS", r.action.as_str());
                }
                if let Some(m) = r.min_evidence {
                    let _ = writeln!(
                        s,
                        "requires:  min_evidence {} (weaker evidence skips this rule)",
                        m.as_str()
                    );
                }
            }
            _ if cat.is_some() => {
                let _ = writeln!(s, "rule:      default (no rule selects it)");
                let _ = writeln!(
                    s,
                    "action:    {} (severity {})",
                    self.default_action.as_str(),
                    self.default_severity.as_str()
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "action:    none (not a catalogued service and no rule names it)"
                );
            }
        }
        s
    }
}
