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
            let mut domain_patterns = Vec::new();
            for d in &r.domains {
                match pattern(d.get_ref()) {
                    Ok(p) => {
                        domains.insert(&p, ());
                        domain_patterns.push(p);
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
            let min_evidence = r.min_evidence.as_ref().and_then(|v| {
                Evidence::parse(v.get_ref()).or_else(|| {
                    errs.push(bad_word(f, text, "evidence level", v, &Evidence::NAMES));
                    None
                })
            });
            self.rules.push(Rule {
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
            });
        }
    }
}
