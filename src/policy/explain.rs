//! `policy explain`: the decision for a name (and optionally a client and evidence level) as text
//! for a person: the service and its BAA status, the client's groups, rules skipped and why, the action.

use std::fmt::Write;

use super::address::{self, Hit};
use super::matcher::normalize;
use super::model::Rule;
use super::{Action, CatalogMatch, Category, Client, Policy};
use crate::flow::Evidence;

/// Each rule that selected the name, in order, and why it did not fire (`Ok` if it fired).
type Trail = [(usize, Result<(), String>)];

impl Policy {
    /// A human explanation of the decision for `name` seen on the wire (and optionally a client).
    pub fn explain(&self, raw: &str, client: &Client<'_>, ts_ns: u64) -> String {
        self.explain_on(raw, client, ts_ns, Evidence::Wire)
    }

    /// A human explanation of the decision for `name` shown by `evidence`: the name, what the
    /// catalogue says of it, the client, the evidence, the rules skipped, then the decision.
    pub fn explain_on(
        &self,
        raw: &str,
        client: &Client<'_>,
        ts_ns: u64,
        evidence: Evidence,
    ) -> String {
        let name = match normalize(raw) {
            Ok(n) => n.into_owned(),
            Err(e) => return format!("{raw:?}: {e}\n"),
        };
        let mut s = String::new();
        let normalised = if name != raw {
            format!("   (normalised from {raw:?})")
        } else {
            String::new()
        };
        let _ = writeln!(s, "name:      {name}{normalised}");
        let (cat, groups, trail) = self.evaluate(&name, client, ts_ns, evidence);
        match cat {
            Some(c) => explain_service(&mut s, c),
            None => {
                let _ = writeln!(s, "service:   none: {name:?} is not in the catalogue");
            }
        }
        self.explain_client(&mut s, client, &groups);
        explain_evidence(&mut s, evidence);
        self.explain_skipped(&mut s, &trail);
        match trail.last() {
            Some((i, Ok(()))) => explain_rule(&mut s, &self.rules[*i]),
            _ if cat.is_some() => self.explain_default(&mut s),
            _ => {
                let _ = writeln!(
                    s,
                    "action:    none (not a catalogued service and no rule names it)"
                );
            }
        }
        s
    }

    /// A human explanation of the decision for a TLS or QUIC connection to `server` that no name
    /// decided (no SNI, an IP-literal SNI, or an uncatalogued one): the catalogue entry whose
    /// `addresses` or `ports` match, the client, the rules skipped, then the decision.
    pub fn explain_address(
        &self,
        server: std::net::SocketAddr,
        client: &Client<'_>,
        ts_ns: u64,
    ) -> String {
        let mut s = String::new();
        let ip = address::canonical(server.ip());
        let _ = writeln!(
            s,
            "server:    {ip} port {}   (a TLS or QUIC connection no name decided: matched by address or port)",
            server.port()
        );
        let Some((index, hit)) = self.addrs.lookup(ip, server.port()) else {
            let _ = writeln!(
                s,
                "service:   none: no catalogue entry lists this address, or this port alone"
            );
            let _ = writeln!(
                s,
                "action:    none (a name on the wire or from DNS may still decide it)"
            );
            return s;
        };
        let sv = &self.services[index];
        let what = match hit {
            Hit::Address(n) => format!("address {}", address::show(&n)),
            Hit::Port(p) => format!("port {p} (a port-only entry: any server on it)"),
        };
        let _ = writeln!(
            s,
            "service:   {} ({}; vendor {})",
            sv.id, sv.name, sv.vendor
        );
        let _ = writeln!(s, "category:  {} / {}", sv.category.as_str(), sv.kind);
        let _ = writeln!(
            s,
            "matched:   {what} of the catalogue entry in {} (matched_by {}; a name match wins when there is one)",
            sv.file.display(),
            match hit {
                Hit::Address(_) => "address",
                Hit::Port(_) => "port",
            }
        );
        let _ = writeln!(s, "BAA:       {}", sv.baa);
        let cat = CatalogMatch {
            service: sv,
            index,
            pattern: "",
        };
        let (groups, trail) = self.evaluate_match(Some(cat), None, client, ts_ns, Evidence::Wire);
        self.explain_client(&mut s, client, &groups);
        let _ = writeln!(s, "evidence:  wire   (the server address is in the packet)");
        if sv.category == Category::DnsResolver {
            let _ = writeln!(s, "upstream:  the daemon allows this instead if {ip} is one of its own resolvers ([dns] upstreams, [sensor] internal_resolvers)");
        }
        self.explain_skipped(&mut s, &trail);
        match trail.last() {
            Some((i, Ok(()))) => explain_rule(&mut s, &self.rules[*i]),
            _ => self.explain_default(&mut s),
        }
        s
    }

    /// The client's address and the groups it is in (or that no client was given, so rules
    /// limited to groups were skipped).
    fn explain_client(&self, s: &mut String, client: &Client<'_>, groups: &[usize]) {
        let Some(ip) = client.ip else {
            let _ = writeln!(
                s,
                "client:    not given (rules limited to groups are skipped; pass --client IP)"
            );
            return;
        };
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

    /// Rules that select the name but did not fire, and why (group, schedule, evidence).
    fn explain_skipped(&self, s: &mut String, trail: &Trail) {
        for (i, v) in trail {
            if let Err(why) = v {
                let _ = writeln!(
                    s,
                    "skipped:   rule {} would select this name, but {why}",
                    self.rules[*i].id
                );
            }
        }
    }

    /// A catalogued name no rule fires for: `[settings]` default action and severity.
    fn explain_default(&self, s: &mut String) {
        let _ = writeln!(s, "rule:      default (no rule selects it)");
        let _ = writeln!(
            s,
            "action:    {} (severity {})",
            self.default_action.as_str(),
            self.default_severity.as_str()
        );
    }
}

/// The service a name matched: which catalogue entry, its BAA status and source, and, for a
/// service shared by personal and enterprise accounts, what a name cannot tell apart.
fn explain_service(s: &mut String, c: CatalogMatch<'_>) {
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
    if !sv.addresses.is_empty() {
        let a: Vec<String> = sv.addresses.iter().map(address::show).collect();
        let _ = writeln!(s, "addresses: {}", a.join(" "));
    }
    if !sv.ports.is_empty() {
        let p: Vec<String> = sv.ports.iter().map(u16::to_string).collect();
        let _ = writeln!(s, "ports:     {}", p.join(" "));
    }
    let _ = writeln!(s, "BAA:       {}", sv.baa);
    let _ = writeln!(s, "source:    {}", sv.baa_source);
    if let Some(t) = &sv.shared_tenant {
        let _ = writeln!(s, "LIMIT:     {t}");
        let _ = writeln!(s, "           shadowgate sees host names, not accounts: it cannot tell a BAA-covered enterprise");
        let _ = writeln!(s, "           account from a personal one on these hosts. Allow the service only for the client");
        let _ = writeln!(s, "           groups enrolled in the enterprise plan, and steer or alert for everyone else.");
    }
}

/// How the name was seen (the default, the wire, points at `--evidence`).
fn explain_evidence(s: &mut String, evidence: Evidence) {
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
}

/// The rule that fired: its action and severity, where it steers, what a steer or coach needs
/// over HTTPS, and the evidence it requires.
fn explain_rule(s: &mut String, r: &Rule) {
    let _ = writeln!(
        s,
        "rule:      {} (first rule in policy.toml that selects the name and the client)",
        r.id
    );
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
