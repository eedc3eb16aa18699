//! Decide: the service catalogue and the clinic's policy, compiled from `policies/` into a
//! matcher (see [`matcher`]) and an ordered rule list. An observation's name (or, failing that,
//! a name inferred from DNS) is matched to a service; the first rule that selects it and the
//! client wins; a catalogued service no rule selects gets the default action.

mod catalog;
mod client;
pub mod config;
pub mod error;
pub mod matcher;
mod model;
pub mod reload;
mod schedule;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use catalog::pattern;
pub use client::Client;
use client::Group;
pub use config::{Category, SteerDef};
use error::{bad_word, read, toml_error};
pub use error::{PolicyError, PolicyErrors};
use matcher::{normalize, DomainTrie};
pub use model::{Action, CatalogMatch, Decision, Service, Severity, Via};
use model::{Rule, ACTIONS, SEVERITIES};
use schedule::Schedule;

use crate::flow::{Kind, Observation};

/// Rules that selected a name, in order, with why each did not apply; the last one may have fired.
type Trail = Vec<(usize, Result<(), String>)>;

/// The compiled policy directory.
#[derive(Debug, Clone)]
pub struct Policy {
    pub dir: PathBuf,
    services: Vec<Service>,
    catalog: DomainTrie<(usize, usize)>,
    patterns: Vec<String>,
    groups: Vec<Group>,
    rules: Vec<Rule>,
    default_action: Action,
    default_severity: Severity,
    tz: jiff::tz::TimeZone,
    approved: Option<SteerDef>,
}

impl Policy {
    /// Load and validate `dir` (`policy.toml` and `catalog/*.toml`). All errors are collected.
    pub fn load(dir: &Path) -> Result<Policy, PolicyErrors> {
        let mut errs = Vec::new();
        let catalog::Catalog {
            services,
            catalog,
            patterns,
            ids,
        } = catalog::load(dir, &mut errs);

        let pfile = dir.join("policy.toml");
        let mut policy = Policy {
            dir: dir.into(),
            services,
            catalog,
            patterns,
            groups: Vec::new(),
            rules: Vec::new(),
            default_action: Action::Alert,
            default_severity: Severity::Medium,
            tz: jiff::tz::TimeZone::system(),
            approved: None,
        };
        match read(&pfile) {
            Err(e) => errs.push(e),
            Ok(text) => match toml::from_str::<config::PolicyFile>(&text) {
                Err(e) => errs.push(toml_error(&pfile, &text, e)),
                Ok(pf) => policy.compile_rules(&pfile, &text, pf, &ids, &mut errs),
            },
        }
        if errs.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyErrors(errs))
        }
    }

    fn compile_rules(
        &mut self,
        f: &Path,
        text: &str,
        pf: config::PolicyFile,
        ids: &HashMap<String, usize>,
        errs: &mut Vec<PolicyError>,
    ) {
        let s = pf.settings;
        if let Some(a) = s.default_action {
            match Action::parse(a.get_ref()) {
                Some(x) => self.default_action = x,
                None => errs.push(bad_word(f, text, "action", &a, &ACTIONS)),
            }
        }
        if let Some(v) = s.default_severity {
            match Severity::parse(v.get_ref()) {
                Some(x) => self.default_severity = x,
                None => errs.push(bad_word(f, text, "severity", &v, &SEVERITIES)),
            }
        }
        if let Some(tz) = s.timezone {
            match jiff::tz::TimeZone::get(tz.get_ref()) {
                Ok(z) => self.tz = z,
                Err(e) => errs.push(
                    PolicyError::new(f, format!("unknown time zone {:?}: {e}", tz.get_ref()))
                        .at(text, tz.span().start)
                        .hint("use an IANA name such as America/New_York"),
                ),
            }
        }
        self.approved = pf.approved_route;
        let mut group_ids: HashMap<String, usize> = HashMap::new();
        for g in pf.group {
            let span = g.span();
            let g = g.into_inner();
            if group_ids.contains_key(&g.id) {
                errs.push(
                    PolicyError::new(f, format!("group id {:?} is defined twice", g.id))
                        .at(text, span.start),
                );
                continue;
            }
            let group = Group::compile(g, f, text, errs);
            group_ids.insert(group.id.clone(), self.groups.len());
            self.groups.push(group);
        }
        let mut rule_ids = HashSet::new();
        for r in pf.rule {
            let span = r.span();
            let r = r.into_inner();
            if !rule_ids.insert(r.id.clone()) {
                errs.push(
                    PolicyError::new(f, format!("rule id {:?} is used twice", r.id))
                        .at(text, span.start)
                        .hint("rule ids are the audit trail's key: keep them unique and stable"),
                );
            }
            let mut services = HashSet::new();
            for s in &r.services {
                match ids.get(s.get_ref()) {
                    Some(&i) => {
                        services.insert(i);
                    }
                    None => {
                        let mut e = PolicyError::new(
                            f,
                            format!("rule {:?} names unknown service {:?}", r.id, s.get_ref()),
                        )
                        .at(text, s.span().start);
                        e = match error::closest(s.get_ref(), ids.keys().map(String::as_str)) {
                            Some(c) => e.hint(format!(
                                "did you mean {c:?}? services are defined in catalog/*.toml"
                            )),
                            None => e.hint("services are defined in catalog/*.toml"),
                        };
                        errs.push(e);
                    }
                }
            }
            let mut domains = DomainTrie::new();
            for d in &r.domains {
                match pattern(d.get_ref()) {
                    Ok(p) => {
                        domains.insert(&p, ());
                    }
                    Err(m) => errs.push(PolicyError::new(f, m).at(text, d.span().start)),
                }
            }
            let resolve = |list: &[toml::Spanned<String>],
                           errs: &mut Vec<PolicyError>|
             -> Vec<usize> {
                let mut out = Vec::new();
                for g in list {
                    match group_ids.get(g.get_ref()) {
                        Some(&i) => out.push(i),
                        None => errs.push(
                            PolicyError::new(
                                f,
                                format!("rule {:?} names unknown group {:?}", r.id, g.get_ref()),
                            )
                            .at(text, g.span().start)
                            .hint("define it with a [[group]] table (id, cidrs, macs, hostnames)"),
                        ),
                    }
                }
                out
            };
            let groups = resolve(&r.groups, errs);
            let except_groups = resolve(&r.except_groups, errs);
            if r.services.is_empty()
                && r.categories.is_empty()
                && r.kinds.is_empty()
                && r.domains.is_empty()
            {
                errs.push(
                    PolicyError::new(f, format!("rule {:?} selects nothing", r.id))
                        .at(text, span.start)
                        .hint("give it services, categories, kinds or domains"),
                );
            }
            let action = match Action::parse(r.action.get_ref()) {
                Some(a) => a,
                None => {
                    errs.push(bad_word(f, text, "action", &r.action, &ACTIONS));
                    Action::Alert
                }
            };
            let severity = match &r.severity {
                None => self.default_severity,
                Some(v) => Severity::parse(v.get_ref()).unwrap_or_else(|| {
                    errs.push(bad_word(f, text, "severity", v, &SEVERITIES));
                    Severity::Medium
                }),
            };
            let steer_to = match r.steer_to {
                Some(config::SteerTarget::Explicit(s)) => Some(s),
                Some(config::SteerTarget::Named(n)) if n == "approved" => match &self.approved {
                    Some(a) => Some(a.clone()),
                    None => {
                        errs.push(PolicyError::new(f, format!("rule {:?} steers to \"approved\" but there is no [approved_route]", r.id)).at(text, span.start).hint("add [approved_route] with url and instruction"));
                        None
                    }
                },
                Some(config::SteerTarget::Named(n)) => {
                    errs.push(PolicyError::new(f, format!("rule {:?}: steer_to {n:?} is neither \"approved\" nor {{ url, instruction }}", r.id)).at(text, span.start));
                    None
                }
                None if action == Action::Steer => match &self.approved {
                    Some(a) => Some(a.clone()),
                    None => {
                        errs.push(
                            PolicyError::new(
                                f,
                                format!("rule {:?} steers but names no target", r.id),
                            )
                            .at(text, span.start)
                            .hint("set steer_to, or define [approved_route]"),
                        );
                        None
                    }
                },
                None => None,
            };
            let schedule = r
                .schedule
                .and_then(|sd| Schedule::compile(sd, f, text, errs));
            self.rules.push(Rule {
                id: r.id,
                services,
                categories: r.categories,
                kinds: r.kinds,
                domains,
                groups,
                except_groups,
                action,
                severity,
                steer_to,
                schedule,
            });
        }
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Why each rule did or did not fire, in order, ending with the one that fired.
    fn evaluate(
        &self,
        name: &str,
        client: &Client<'_>,
        ts_ns: u64,
    ) -> (Option<CatalogMatch<'_>>, Vec<usize>, Trail) {
        let cat = self.classify(name);
        let groups = self.client_groups(client);
        let mut trail = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let selects = cat.is_some_and(|c| {
                r.services.contains(&c.index)
                    || r.categories.contains(&c.service.category)
                    || r.kinds.contains(&c.service.kind)
            }) || r.domains.lookup(name).is_some();
            if !selects {
                continue;
            }
            let verdict = if !r.groups.is_empty() && !r.groups.iter().any(|g| groups.contains(g)) {
                Err(format!(
                    "client is not in {}",
                    r.groups
                        .iter()
                        .map(|&g| self.groups[g].id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else if let Some(g) = r.except_groups.iter().find(|g| groups.contains(g)) {
                Err(format!(
                    "client is in excepted group {}",
                    self.groups[*g].id
                ))
            } else if r.schedule.is_some_and(|s| !self.schedule_active(&s, ts_ns)) {
                Err("outside the rule's schedule".to_string())
            } else {
                Ok(())
            };
            let fired = verdict.is_ok();
            trail.push((i, verdict));
            if fired {
                break;
            }
        }
        (cat, groups, trail)
    }

    /// Decide about one normalised name for a client at a time.
    pub fn decide(
        &self,
        name: &str,
        client: &Client<'_>,
        ts_ns: u64,
        via: Via,
    ) -> Option<Decision> {
        let (cat, groups, trail) = self.evaluate(name, client, ts_ns);
        let fired = trail
            .last()
            .filter(|(_, v)| v.is_ok())
            .map(|(i, _)| &self.rules[*i]);
        if fired.is_none() && cat.is_none() {
            return None;
        }
        let pattern = match (cat, fired) {
            (Some(c), _) => c.pattern.to_string(),
            (None, _) => name.to_string(),
        };
        let (rule_id, action, severity, steer_to) = match fired {
            Some(r) => (r.id.clone(), r.action, r.severity, r.steer_to.clone()),
            None => (
                "default".to_string(),
                self.default_action,
                self.default_severity,
                (self.default_action == Action::Steer)
                    .then(|| self.approved.clone())
                    .flatten(),
            ),
        };
        Some(Decision {
            service: cat.map(|c| c.service.id.clone()),
            service_name: cat.map(|c| c.service.name.clone()),
            category: cat.map(|c| c.service.category),
            service_kind: cat.map(|c| c.service.kind.clone()),
            matched_name: name.to_string(),
            pattern,
            via,
            rule_id,
            action,
            severity,
            steer_to,
            groups: groups.iter().map(|&g| self.groups[g].id.clone()).collect(),
            shared_tenant: cat.is_some_and(|c| c.service.shared_tenant.is_some()),
        })
    }

    /// Decide about an observation: its wire name first, then names inferred from DNS.
    pub fn decide_observation(&self, o: &Observation) -> Option<Decision> {
        let client = Client {
            ip: Some(o.client.ip),
            mac: o.client.mac,
            hostname: o.client.hostname.as_deref(),
        };
        let via = match o.kind {
            Kind::DnsQuery | Kind::DnsAnswer => Via::Dns,
            Kind::TlsClientHello => Via::Tls,
            Kind::QuicInitial => Via::Quic,
            Kind::HttpRequest => Via::Http,
        };
        if let Some(n) = o.name.as_deref() {
            if let Ok(n) = normalize(n) {
                if let Some(d) = self.decide(&n, &client, o.ts, via) {
                    return Some(d);
                }
            }
        }
        o.inferred_names.iter().find_map(|n| {
            normalize(n)
                .ok()
                .and_then(|n| self.decide(&n, &client, o.ts, Via::Inferred))
        })
    }

    /// A human explanation of the decision for `name` (and optionally a client).
    pub fn explain(&self, raw: &str, client: &Client<'_>, ts_ns: u64) -> String {
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
        let (cat, groups, trail) = self.evaluate(&name, client, ts_ns);
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
