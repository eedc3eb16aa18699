//! Compiling the policy directory: `Policy::load` reads the catalogue and `policy.toml` and
//! compiles settings, groups and rules against it, collecting every error with its position.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::catalog::{self, pattern};
use super::client::Group;
use super::config;
use super::error::{self, bad_word, read, toml_error};
use super::matcher::DomainTrie;
use super::model::{Rule, ACTIONS, SEVERITIES};
use super::schedule::Schedule;
use super::{Action, Policy, PolicyError, PolicyErrors, Severity};
use crate::flow::Evidence;

impl Policy {
    /// Load and validate `dir` (`policy.toml` and `catalog/*.toml`). All errors are collected.
    pub fn load(dir: &Path) -> Result<Policy, PolicyErrors> {
        let mut errs = Vec::new();
        let catalog::Catalog {
            services,
            catalog,
            patterns,
            pattern_services,
            ids,
            vendors,
            versions,
            overrides,
            addrs,
        } = catalog::load(dir, &mut errs);

        let pfile = dir.join("policy.toml");
        let mut policy = Policy {
            dir: dir.into(),
            services,
            catalog,
            patterns,
            pattern_services,
            vendors,
            catalog_versions: versions,
            overrides,
            groups: Vec::new(),
            rules: Vec::new(),
            default_action: Action::Alert,
            default_severity: Severity::Medium,
            tz: jiff::tz::TimeZone::system(),
            approved: None,
            addrs,
            clinic_resolvers: Vec::new(),
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

    /// Compile a parsed `policy.toml` against the catalogue's service ids: settings, the
    /// approved route, groups, then rules in order (the order is the policy's: first match wins).
    fn compile_rules(
        &mut self,
        f: &Path,
        text: &str,
        pf: config::PolicyFile,
        ids: &HashMap<String, usize>,
        errs: &mut Vec<PolicyError>,
    ) {
        self.compile_settings(f, text, pf.settings, errs);
        self.approved = pf.approved_route;
        let group_ids = self.compile_groups(f, text, pf.group, errs);
        let cx = RuleCx {
            f,
            text,
            services: ids,
            groups: &group_ids,
        };
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
            if r.id == super::UPSTREAM_RULE || r.id == "default" {
                errs.push(
                    PolicyError::new(f, format!("rule id {:?} is reserved", r.id))
                        .at(text, span.start)
                        .hint("decisions without a rule use it (`default`: no rule selected the service; `upstream`: the clinic's own resolver); choose another id"),
                );
            }
            let rule = self.compile_rule(&cx, span.start, r, errs);
            self.rules.push(rule);
        }
        // Groups that let traffic through are placed by network or MAC only (client.rs).
        for r in &self.rules {
            let allow = r.action == Action::Allow;
            for &g in r
                .except_groups
                .iter()
                .chain(r.groups.iter().filter(|_| allow))
            {
                let by = &mut self.groups[g].granted_by;
                if !by.contains(&r.id) {
                    by.push(r.id.clone());
                }
            }
        }
    }

    /// `[settings]`: the default action and severity (for names no rule selects) and the time
    /// zone rule schedules are read in. Each stays at its default when absent or invalid.
    fn compile_settings(
        &mut self,
        f: &Path,
        text: &str,
        s: config::Settings,
        errs: &mut Vec<PolicyError>,
    ) {
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
    }

    /// The `[[group]]` tables, each id once. Returns group id -> index in `self.groups`, for
    /// rules to name them.
    fn compile_groups(
        &mut self,
        f: &Path,
        text: &str,
        defs: Vec<toml::Spanned<config::GroupDef>>,
        errs: &mut Vec<PolicyError>,
    ) -> HashMap<String, usize> {
        let mut group_ids: HashMap<String, usize> = HashMap::new();
        for g in defs {
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
        group_ids
    }

    /// One `[[rule]]` (at byte offset `at`): what it selects, for whom, and what it does. An
    /// invalid part is reported and replaced by a harmless value so the other parts are checked
    /// too (the policy is rejected anyway).
    fn compile_rule(
        &self,
        cx: &RuleCx<'_>,
        at: usize,
        r: config::RuleDef,
        errs: &mut Vec<PolicyError>,
    ) -> Rule {
        let (f, text) = (cx.f, cx.text);
        let services = cx.services(&r.id, &r.services, errs);
        let (domains, domain_patterns) = cx.domains(&r.domains, errs);
        let groups = cx.groups(&r.id, &r.groups, errs);
        let except_groups = cx.groups(&r.id, &r.except_groups, errs);
        if r.services.is_empty()
            && r.categories.is_empty()
            && r.kinds.is_empty()
            && r.domains.is_empty()
        {
            errs.push(
                PolicyError::new(f, format!("rule {:?} selects nothing", r.id))
                    .at(text, at)
                    .hint("give it services, categories, kinds or domains"),
            );
        }
        let action = Action::parse(r.action.get_ref()).unwrap_or_else(|| {
            errs.push(bad_word(f, text, "action", &r.action, &ACTIONS));
            Action::Alert
        });
        let severity = match &r.severity {
            None => self.default_severity,
            Some(v) => Severity::parse(v.get_ref()).unwrap_or_else(|| {
                errs.push(bad_word(f, text, "severity", v, &SEVERITIES));
                Severity::Medium
            }),
        };
        let steer_to = self.steer_target(cx, at, &r.id, r.steer_to, action, errs);
        let schedule = r
            .schedule
            .and_then(|sd| Schedule::compile(sd, f, text, errs));
        let min_evidence = r.min_evidence.as_ref().and_then(|v| {
            Evidence::parse(v.get_ref()).or_else(|| {
                errs.push(bad_word(f, text, "evidence level", v, &Evidence::NAMES));
                None
            })
        });
        Rule {
            id: r.id,
            services,
            categories: r.categories,
            kinds: r.kinds,
            domains,
            domain_patterns,
            groups,
            except_groups,
            action,
            severity,
            steer_to,
            schedule,
            min_evidence,
        }
    }

    /// Where a rule (at byte offset `at`) sends a steered client: its own `{ url, instruction }`,
    /// or `"approved"` (also the default of a steer rule) for `[approved_route]`, which must exist.
    fn steer_target(
        &self,
        cx: &RuleCx<'_>,
        at: usize,
        id: &str,
        steer_to: Option<config::SteerTarget>,
        action: Action,
        errs: &mut Vec<PolicyError>,
    ) -> Option<config::SteerDef> {
        let (f, text) = (cx.f, cx.text);
        // The error if the rule needs [approved_route] and there is none.
        let missing = match steer_to {
            Some(config::SteerTarget::Explicit(s)) => return Some(s),
            Some(config::SteerTarget::Named(n)) if n == "approved" => PolicyError::new(
                f,
                format!("rule {id:?} steers to \"approved\" but there is no [approved_route]"),
            )
            .at(text, at)
            .hint("add [approved_route] with url and instruction"),
            Some(config::SteerTarget::Named(n)) => {
                let m = format!(
                    "rule {id:?}: steer_to {n:?} is neither \"approved\" nor {{ url, instruction }}"
                );
                errs.push(PolicyError::new(f, m).at(text, at));
                return None;
            }
            None if action == Action::Steer => {
                PolicyError::new(f, format!("rule {id:?} steers but names no target"))
                    .at(text, at)
                    .hint("set steer_to, or define [approved_route]")
            }
            None => return None,
        };
        if self.approved.is_none() {
            errs.push(missing);
        }
        self.approved.clone()
    }
}

/// What a rule is compiled against: the file (errors point into it), the catalogue's service
/// ids and the policy's group ids.
struct RuleCx<'a> {
    f: &'a Path,
    text: &'a str,
    services: &'a HashMap<String, usize>,
    groups: &'a HashMap<String, usize>,
}

impl RuleCx<'_> {
    /// The catalogue services rule `rule` names, as indexes. An unknown id is an error with the
    /// closest known id as a hint (a typo is the usual cause).
    fn services(
        &self,
        rule: &str,
        names: &[toml::Spanned<String>],
        errs: &mut Vec<PolicyError>,
    ) -> HashSet<usize> {
        let mut services = HashSet::new();
        for s in names {
            match self.services.get(s.get_ref()) {
                Some(&i) => {
                    services.insert(i);
                }
                None => {
                    let e = PolicyError::new(
                        self.f,
                        format!("rule {rule:?} names unknown service {:?}", s.get_ref()),
                    )
                    .at(self.text, s.span().start);
                    let keys = self.services.keys().map(String::as_str);
                    errs.push(match error::closest(s.get_ref(), keys) {
                        Some(c) => e.hint(format!(
                            "did you mean {c:?}? services are defined in catalog/*.toml"
                        )),
                        None => e.hint("services are defined in catalog/*.toml"),
                    });
                }
            }
        }
        services
    }

    /// The domain patterns a rule names, normalised: a matcher and the patterns as written
    /// out (for the portal scope and `policy explain`).
    fn domains(
        &self,
        list: &[toml::Spanned<String>],
        errs: &mut Vec<PolicyError>,
    ) -> (DomainTrie<()>, Vec<String>) {
        let mut domains = DomainTrie::new();
        let mut domain_patterns = Vec::new();
        for d in list {
            match pattern(d.get_ref()) {
                Ok(p) => {
                    domains.insert(&p, ());
                    domain_patterns.push(p);
                }
                Err(m) => errs.push(PolicyError::new(self.f, m).at(self.text, d.span().start)),
            }
        }
        (domains, domain_patterns)
    }

    /// The groups (or except groups) rule `rule` names, as indexes into the policy's groups.
    fn groups(
        &self,
        rule: &str,
        list: &[toml::Spanned<String>],
        errs: &mut Vec<PolicyError>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for g in list {
            match self.groups.get(g.get_ref()) {
                Some(&i) => out.push(i),
                None => errs.push(
                    PolicyError::new(
                        self.f,
                        format!("rule {rule:?} names unknown group {:?}", g.get_ref()),
                    )
                    .at(self.text, g.span().start)
                    .hint("define it with a [[group]] table (id, cidrs, macs, hostnames)"),
                ),
            }
        }
        out
    }
}
