//! What the steering portal may ever have to certify under a policy (its CA's scope): the domains
//! of the catalogued services that a steer or coach rule (or a steer or coach default) can
//! select, plus the domains steer and coach rules name themselves, as DNS name-constraint
//! subtrees, never the approved route, enterprise AI APIs or public DNS resolvers; and the
//! subtrees inside them that must stay out (`api.anthropic.com` under `anthropic.com`).
//!
//! `shadowgate portal ca` bounds a new CA by it, the daemon refuses a CA that reaches further
//! ([`PortalScope::overreach`]), and `policy check` prints its [`ScopeWarning`]s.

use std::collections::BTreeSet;
use std::fmt;

use super::model::Rule;
use super::{Action, Category, Policy, Service};

/// Categories the portal never certifies, whatever the rules say: the clinic's approved route,
/// enterprise AI APIs (the approved PHI route, e.g. Bedrock, is one) and public DNS resolvers.
/// A CA that could impersonate them, with its key in the LAN-facing process, would put the
/// clinic's sanctioned PHI traffic and its DNS within reach of whoever takes that process.
pub const NEVER_CERTIFIED: [Category; 3] = [
    Category::ApprovedRoute,
    Category::EnterpriseAiApi,
    Category::DnsResolver,
];

/// The rule id used for `[settings] default_action` (as in decisions).
const DEFAULT_RULE: &str = "default";

/// The DNS names a portal CA may certify under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalScope {
    /// Permitted subtrees (a name and all its subdomains), sorted, none under another.
    pub permitted: Vec<String>,
    /// Subtrees inside `permitted` that must stay outside (X.509 excluded subtrees), sorted,
    /// none under another.
    pub excluded: Vec<Outside>,
    /// Every subtree of a [`NEVER_CERTIFIED`] service, inside `permitted` or not (to say what a
    /// wider CA reaches).
    pub protected: Vec<Outside>,
    pub warnings: Vec<ScopeWarning>,
}

/// A catalogued subtree the portal must not certify, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    pub subtree: String,
    pub service: String,
    pub category: Category,
    /// Its category is one of [`NEVER_CERTIFIED`] (else: no steer or coach rule selects it).
    pub never: bool,
}

impl fmt::Display for Outside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (service {}, {}{})",
            self.subtree,
            self.service,
            self.category.as_str(),
            if self.never {
                ", never certified"
            } else {
                ", not steered or coached"
            }
        )
    }
}

/// Something about the scope a person should know (`shadowgate policy check` prints them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeWarning {
    /// The portal CA covers these domains of `service` because some rules steer or coach it,
    /// and other rules allow it for some clients (or at some times): the CA can certify names
    /// those clients use with permission.
    AlsoAllowed {
        domains: Vec<String>,
        service: String,
        steered_by: Vec<String>,
        allowed_by: Vec<String>,
    },
    /// A steered or coached domain lies inside a subtree the portal never certifies: the portal
    /// cannot serve it over HTTPS (the browser shows a connection error, not the page).
    Uncertifiable {
        domain: String,
        steered_by: Vec<String>,
        inside: Outside,
    },
    /// A steered or coached pattern is a whole top-level domain (`*.com`): no CA is made for it.
    TopLevel {
        domain: String,
        steered_by: Vec<String>,
    },
}

impl fmt::Display for ScopeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeWarning::AlsoAllowed {
                domains,
                service,
                steered_by,
                allowed_by,
            } => write!(
                f,
                "portal CA scope: {} (service {service}) is steered or coached by {} but allowed by {} for some clients or times; the portal CA can certify these names, so keep its key as safe as the service's own (the portal mints a leaf only for a client steered or coached at that moment)",
                domains.join(", "),
                steered_by.join(", "),
                allowed_by.join(", ")
            ),
            ScopeWarning::Uncertifiable {
                domain,
                steered_by,
                inside,
            } => write!(
                f,
                "portal CA scope: {domain} is steered or coached by {} but lies inside {inside}; the portal CA leaves it out, so over HTTPS those clients get a connection error instead of the portal page",
                steered_by.join(", ")
            ),
            ScopeWarning::TopLevel { domain, steered_by } => write!(
                f,
                "portal CA scope: {} (steered or coached by {}) is a whole top-level domain; the portal CA leaves it out: name the sites instead",
                domain,
                steered_by.join(", ")
            ),
        }
    }
}

/// Why an existing CA reaches beyond a policy's [`PortalScope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overreach {
    /// A permitted subtree of the CA that no steer or coach rule needs, and the catalogued
    /// never-certified subtrees it covers.
    NotSteered {
        subtree: String,
        reaches: Vec<Outside>,
    },
    /// The CA covers (and does not exclude) a subtree the scope keeps outside.
    Covers(Outside),
}

impl fmt::Display for Overreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overreach::NotSteered { subtree, reaches } => {
                write!(f, "{subtree}: no steer or coach rule selects it")?;
                // One entry per service: the aws-bedrock templates alone are 140 subtrees.
                let mut by_service: Vec<(&Outside, usize)> = Vec::new();
                for o in reaches {
                    match by_service.iter_mut().find(|(x, _)| x.service == o.service) {
                        Some((_, n)) => *n += 1,
                        None => by_service.push((o, 1)),
                    }
                }
                for (i, (o, n)) in by_service.iter().enumerate() {
                    write!(
                        f,
                        "{} {} ({}: {}{})",
                        if i == 0 { "; it covers" } else { "," },
                        o.service,
                        o.category.as_str(),
                        o.subtree,
                        if *n > 1 {
                            format!(" and {} more", n - 1)
                        } else {
                            String::new()
                        }
                    )?;
                }
                Ok(())
            }
            Overreach::Covers(o) => write!(f, "{o}: the CA covers it"),
        }
    }
}

/// Does a DNS name constraint `base` cover `name` (the name itself or a subdomain)?
pub fn covers(base: &str, name: &str) -> bool {
    let (b, n) = (base.trim_end_matches('.'), name.trim_end_matches('.'));
    n.eq_ignore_ascii_case(b)
        || (n.len() > b.len()
            && n.as_bytes()[n.len() - b.len() - 1] == b'.'
            && n[n.len() - b.len()..].eq_ignore_ascii_case(b))
}

/// The subtree of a normalised catalogue pattern (`*.claude.ai` and `claude.ai`: `claude.ai`).
fn subtree(pattern: &str) -> &str {
    pattern.strip_prefix("*.").unwrap_or(pattern)
}

/// Do two subtrees overlap (one covers the other)?
fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

/// A subtree some steer or coach rule can select, and which rules.
struct Candidate {
    subtree: String,
    steered_by: Vec<String>,
}

impl Rule {
    /// Does the rule select every name of this service (by service, category or kind)?
    fn selects_service(&self, index: usize, s: &Service) -> bool {
        self.services.contains(&index)
            || self.categories.contains(&s.category)
            || self.kinds.contains(&s.kind)
    }

    /// Does the rule fire whenever it selects a name (no group, schedule or evidence condition)?
    /// Rules after it never see the names it selects.
    fn always_fires(&self) -> bool {
        self.groups.is_empty()
            && self.except_groups.is_empty()
            && self.schedule.is_none()
            && self.min_evidence.is_none()
    }
}

/// Does a rule with this action put up a portal page (the portal CA must certify its names)?
fn shows_page(a: Action) -> bool {
    matches!(a, Action::Steer | Action::Coach)
}

impl Policy {
    /// The rules that can steer or coach, and those that can allow, a catalogued service: the
    /// rules selecting it in order up to the first that always fires, then the default action
    /// if no rule always fires. Allow rules that name one of its domains count too.
    fn reach(&self, index: usize, s: &Service) -> (Vec<String>, Vec<String>) {
        let (mut steered, mut allowed) = (Vec::new(), Vec::new());
        let mut open = true;
        for r in &self.rules {
            if !r.selects_service(index, s) {
                continue;
            }
            if shows_page(r.action) {
                steered.push(r.id.clone());
            } else if r.action == Action::Allow {
                allowed.push(r.id.clone());
            }
            if r.always_fires() {
                open = false;
                break;
            }
        }
        if open {
            if shows_page(self.default_action) {
                steered.push(DEFAULT_RULE.to_string());
            } else if self.default_action == Action::Allow {
                allowed.push(DEFAULT_RULE.to_string());
            }
        }
        for r in self.rules.iter().filter(|r| r.action == Action::Allow) {
            let names_it = r
                .domain_patterns
                .iter()
                .any(|d| s.patterns.iter().any(|p| overlap(subtree(d), subtree(p))));
            if names_it && !allowed.contains(&r.id) {
                allowed.push(r.id.clone());
            }
        }
        (steered, allowed)
    }

    /// What a portal CA for this policy may certify (see the module documentation).
    pub fn portal_scope(&self) -> PortalScope {
        let mut warnings = Vec::new();
        let Subtrees {
            mut candidates,
            mut outside,
            also_allowed,
        } = self.service_subtrees();
        candidates.extend(self.rule_subtrees());
        outside.sort_by(|a, b| (&a.subtree, &a.service).cmp(&(&b.subtree, &b.service)));
        outside.dedup();
        let protected: Vec<Outside> = outside.iter().filter(|o| o.never).cloned().collect();
        let certifiable = certifiable(&candidates, &protected, &mut warnings);
        let permitted = outermost(&certifiable);
        let excluded = excluded(&outside, &permitted, &certifiable);
        warnings.extend(self.also_allowed_warnings(also_allowed, &permitted));
        PortalScope {
            permitted,
            excluded,
            protected,
            warnings,
        }
    }

    /// Every catalogued service's subtrees, sorted by what a steer or coach rule can do to it:
    /// candidates for the CA (steered or coached, and not [`NEVER_CERTIFIED`]), or kept outside.
    fn service_subtrees(&self) -> Subtrees {
        let mut out = Subtrees::default();
        for (i, s) in self.services.iter().enumerate() {
            let (steered_by, allowed_by) = self.reach(i, s);
            let never = NEVER_CERTIFIED.contains(&s.category);
            let keep = !steered_by.is_empty() && !never;
            for p in &s.patterns {
                let t = subtree(p).to_string();
                if keep {
                    out.candidates.push(Candidate {
                        subtree: t,
                        steered_by: steered_by.clone(),
                    });
                } else {
                    out.outside.push(Outside {
                        subtree: t,
                        service: s.id.clone(),
                        category: s.category,
                        never,
                    });
                }
            }
            if keep && !allowed_by.is_empty() {
                out.also_allowed.push(AlsoAllowed {
                    index: i,
                    steered_by,
                    allowed_by,
                });
            }
        }
        out
    }

    /// The domains steer and coach rules name themselves: candidates too, whatever the catalogue.
    fn rule_subtrees(&self) -> impl Iterator<Item = Candidate> + '_ {
        self.rules
            .iter()
            .filter(|r| shows_page(r.action))
            .flat_map(|r| {
                r.domain_patterns.iter().map(|d| Candidate {
                    subtree: subtree(d).to_string(),
                    steered_by: vec![r.id.clone()],
                })
            })
    }

    /// [`ScopeWarning::AlsoAllowed`] for each steered service some rule also allows, naming its
    /// subtrees the CA permits (none: no warning).
    fn also_allowed_warnings(
        &self,
        also_allowed: Vec<AlsoAllowed>,
        permitted: &[String],
    ) -> Vec<ScopeWarning> {
        let mut warnings = Vec::new();
        for a in also_allowed {
            let s = &self.services[a.index];
            let mut domains: Vec<String> = s
                .patterns
                .iter()
                .map(|p| subtree(p).to_string())
                .filter(|d| permitted.iter().any(|p| covers(p, d)))
                .collect();
            domains.sort();
            domains.dedup();
            if !domains.is_empty() {
                warnings.push(ScopeWarning::AlsoAllowed {
                    domains,
                    service: s.id.clone(),
                    steered_by: a.steered_by,
                    allowed_by: a.allowed_by,
                });
            }
        }
        warnings
    }
}

/// The catalogue's subtrees as [`Policy::portal_scope`] starts from them.
#[derive(Default)]
struct Subtrees {
    /// Subtrees some steer or coach rule can select (a CA may have to certify them).
    candidates: Vec<Candidate>,
    /// Subtrees of services that stay outside: never certified, or not steered or coached.
    outside: Vec<Outside>,
    /// Steered services that some rule also allows (for the warning).
    also_allowed: Vec<AlsoAllowed>,
}

/// A steered or coached service that other rules allow for some clients or times.
struct AlsoAllowed {
    /// Index of the service in the policy.
    index: usize,
    steered_by: Vec<String>,
    allowed_by: Vec<String>,
}

/// The candidate subtrees a CA can certify. Whole top-level domains cannot, nor can those inside
/// a never-certified subtree (an excluded subtree wins over a permitted one in X.509): each of
/// those gets one warning instead.
fn certifiable<'c>(
    candidates: &'c [Candidate],
    protected: &[Outside],
    warnings: &mut Vec<ScopeWarning>,
) -> BTreeSet<&'c str> {
    let mut usable = BTreeSet::new();
    for c in candidates {
        let w = if !c.subtree.contains('.') {
            ScopeWarning::TopLevel {
                domain: c.subtree.clone(),
                steered_by: c.steered_by.clone(),
            }
        } else if let Some(o) = protected.iter().find(|o| covers(&o.subtree, &c.subtree)) {
            ScopeWarning::Uncertifiable {
                domain: c.subtree.clone(),
                steered_by: c.steered_by.clone(),
                inside: o.clone(),
            }
        } else {
            usable.insert(c.subtree.as_str());
            continue;
        };
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    usable
}

/// The permitted subtrees: the certifiable ones not under another (sorted, as the set is).
fn outermost(certifiable: &BTreeSet<&str>) -> Vec<String> {
    certifiable
        .iter()
        .filter(|d| !certifiable.iter().any(|p| p != *d && covers(p, d)))
        .map(|d| d.to_string())
        .collect()
}

/// The excluded subtrees: inside a permitted subtree, every never-certified subtree, and every
/// unsteered service's subtree that would not also take away a steered one; only the outermost
/// of them, sorted (on a tie, the never-certified entry is kept).
fn excluded(
    outside: &[Outside],
    permitted: &[String],
    certifiable: &BTreeSet<&str>,
) -> Vec<Outside> {
    let inside: Vec<&Outside> = outside
        .iter()
        .filter(|o| permitted.iter().any(|p| covers(p, &o.subtree)))
        .filter(|o| o.never || !certifiable.iter().any(|c| covers(&o.subtree, c)))
        .collect();
    let mut excluded: Vec<Outside> = inside
        .iter()
        .filter(|o| {
            !inside
                .iter()
                .any(|x| x.subtree != o.subtree && covers(&x.subtree, &o.subtree))
        })
        .map(|o| (*o).clone())
        .collect();
    excluded.sort_by(|a, b| a.subtree.cmp(&b.subtree).then(b.never.cmp(&a.never)));
    excluded.dedup_by(|a, b| a.subtree == b.subtree);
    excluded
}

impl Policy {
    /// The steered or coached catalogue patterns (those `scope` permits) that a CA with these
    /// DNS name constraints cannot certify: its constraints were fixed when it was made, and the
    /// catalogue or the rules have grown since. DNS steering still answers them with the portal,
    /// where the browser shows a certificate error. Sorted, without duplicates.
    pub fn uncertifiable(
        &self,
        scope: &PortalScope,
        ca_permitted: &[String],
        ca_excluded: &[String],
    ) -> Vec<String> {
        let ca_permits = |name: &str| {
            ca_permitted.iter().any(|b| covers(b, name))
                && !ca_excluded.iter().any(|b| covers(b, name))
        };
        let mut out: Vec<String> = self
            .catalog_patterns()
            .into_iter()
            .map(|(p, _)| p)
            .chain(
                self.rules
                    .iter()
                    .filter(|r| matches!(r.action, Action::Steer | Action::Coach))
                    .flat_map(|r| r.domain_patterns.iter().map(String::as_str)),
            )
            .filter(|p| scope.permits(subtree(p)) && !ca_permits(subtree(p)))
            .map(str::to_string)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl PortalScope {
    /// May a portal CA for this scope certify `name`?
    pub fn permits(&self, name: &str) -> bool {
        self.permitted.iter().any(|p| covers(p, name))
            && !self.excluded.iter().any(|x| covers(&x.subtree, name))
    }

    /// The excluded subtrees as names (what goes into the certificate).
    pub fn excluded_subtrees(&self) -> Vec<String> {
        self.excluded.iter().map(|x| x.subtree.clone()).collect()
    }

    /// Where a CA with these DNS name constraints reaches beyond the scope: permitted subtrees
    /// the scope does not cover, and subtrees the scope keeps outside that the CA covers without
    /// excluding them. Empty: the CA fits (it may cover less than the scope).
    pub fn overreach(&self, ca_permitted: &[String], ca_excluded: &[String]) -> Vec<Overreach> {
        let ca_excludes = |n: &str| ca_excluded.iter().any(|e| covers(e, n));
        let mut out = Vec::new();
        for p in ca_permitted {
            if ca_excludes(p) {
                continue;
            }
            if !self.permitted.iter().any(|q| covers(q, p)) {
                let reaches = self
                    .protected
                    .iter()
                    .filter(|o| covers(p, &o.subtree) && !ca_excludes(&o.subtree))
                    .cloned()
                    .collect();
                out.push(Overreach::NotSteered {
                    subtree: p.clone(),
                    reaches,
                });
            }
        }
        let mut seen = BTreeSet::new();
        for x in &self.excluded {
            for p in ca_permitted {
                if !self.permitted.iter().any(|q| covers(q, p)) {
                    continue; // said above
                }
                let narrow = if covers(p, &x.subtree) {
                    &x.subtree
                } else if covers(&x.subtree, p) {
                    p
                } else {
                    continue;
                };
                if !ca_excludes(narrow) && seen.insert(narrow.clone()) {
                    out.push(Overreach::Covers(Outside {
                        subtree: narrow.clone(),
                        ..x.clone()
                    }));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bundled() -> Policy {
        Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    /// A policy directory from a catalogue and a policy.toml.
    fn policy(tag: &str, catalog: &str, rules: &str) -> Policy {
        let d = std::env::temp_dir().join(format!("sg-scope-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("catalog")).unwrap();
        std::fs::write(d.join("catalog/c.toml"), catalog).unwrap();
        std::fs::write(d.join("policy.toml"), rules).unwrap();
        let p = Policy::load(&d).unwrap();
        let _ = std::fs::remove_dir_all(&d);
        p
    }

    fn svc(id: &str, cat: &str, domains: &str) -> String {
        format!("[[service]]\nid = \"{id}\"\nname = \"{id}\"\nvendor = \"v\"\ncategory = \"{cat}\"\nkind = \"chat\"\ndomains = [{domains}]\nbaa = \"none\"\nbaa_source = \"test\"\n\n")
    }

    #[test]
    fn bundled_scope_leaves_out_apis_resolvers_and_the_approved_route() {
        let p = bundled();
        let s = p.portal_scope();
        for n in [
            "claude.ai",
            "www.claude.ai",
            "chatgpt.com",
            "chat.openai.com",
            "anthropic.com",
        ] {
            assert!(s.permits(n), "{n} should be certifiable: {:?}", s.permitted);
        }
        for n in [
            "bedrock-runtime.us-east-1.amazonaws.com",
            "api.anthropic.com",
            "api.openai.com",
            "ai.clinic.example",
            "x.openai.azure.com",
            "us-central1-aiplatform.googleapis.com",
        ] {
            assert!(!s.permits(n), "{n} must not be certifiable");
        }
        // Every catalogued service of a never-certified category stays out, pattern by pattern.
        for sv in p.services() {
            if NEVER_CERTIFIED.contains(&sv.category) {
                for pat in &sv.patterns {
                    assert!(!s.permits(subtree(pat)), "{pat} ({})", sv.id);
                }
            }
        }
        // No permitted subtree contains an API host without excluding it.
        assert!(s
            .excluded
            .iter()
            .any(|x| x.subtree == "api.anthropic.com" && x.never));
        assert!(s
            .excluded
            .iter()
            .any(|x| x.subtree == "api.openai.com" && x.never));
        assert!(s
            .permitted
            .iter()
            .all(|d| d.contains('.') && !d.starts_with("*.")));
        // Reduced: nothing under another.
        assert!(!s.permitted.contains(&"chat.openai.com".to_string()));
        assert!(s.overreach(&s.permitted, &s.excluded_subtrees()).is_empty());
    }

    #[test]
    fn claude_is_kept_with_a_warning_naming_both_rules() {
        let s = bundled().portal_scope();
        let w = s
            .warnings
            .iter()
            .find_map(|w| match w {
                ScopeWarning::AlsoAllowed {
                    domains,
                    service,
                    steered_by,
                    allowed_by,
                } if service == "claude" => Some((domains, steered_by, allowed_by)),
                _ => None,
            })
            .expect("a warning for claude");
        assert!(w.0.contains(&"claude.ai".to_string()));
        assert_eq!(w.1, &vec!["SG-300-consumer-ai".to_string()]);
        assert_eq!(w.2, &vec!["SG-110-claude-enterprise".to_string()]);
        let text = s.warnings.iter().map(|w| w.to_string()).collect::<String>();
        assert!(text.contains("claude.ai") && text.contains("SG-110-claude-enterprise"));
        // Only claude is both steered and allowed in the bundled policy.
        assert_eq!(
            s.warnings
                .iter()
                .filter(|w| matches!(w, ScopeWarning::AlsoAllowed { .. }))
                .count(),
            1,
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn shadowed_and_conditional_rules() {
        let cat = [
            svc("a", "consumer_ai", "\"a.example\", \"*.a.example\""),
            svc("b", "consumer_ai", "\"b.example\""),
            svc("c", "consumer_ai", "\"c.example\""),
            svc("api", "enterprise_ai_api", "\"api.a.example\""),
            svc("r", "dns_resolver", "\"dns.example\""),
        ]
        .concat();
        // b: allowed for everyone first, so the steer rule never reaches it.
        // c: coached only at some times.
        // a rule steering the resolver and the API: never certified anyway.
        let rules = r#"
[settings]
default_action = "alert"
[approved_route]
url = "https://ai.example/"
instruction = "use it"
[[rule]]
id = "allow-b"
services = ["b"]
action = "allow"
[[rule]]
id = "coach-c"
services = ["c"]
action = "coach"
schedule = { days = ["mon"], from = "09:00", to = "17:00" }
[[rule]]
id = "steer-all"
categories = ["consumer_ai", "dns_resolver", "enterprise_ai_api"]
action = "steer"
"#;
        let s = policy("shadow", &cat, rules).portal_scope();
        assert_eq!(s.permitted, vec!["a.example", "c.example"]);
        assert_eq!(s.excluded_subtrees(), vec!["api.a.example"]);
        assert!(!s.permits("api.a.example") && s.permits("x.a.example"));
        // A default of steer reaches whatever no rule always takes.
        let rules2 = rules.replace("default_action = \"alert\"", "default_action = \"steer\"");
        let rules2 = rules2.replace(
            "categories = [\"consumer_ai\", \"dns_resolver\", \"enterprise_ai_api\"]",
            "services = [\"a\"]",
        );
        let s2 = policy("default", &cat, &rules2).portal_scope();
        assert_eq!(s2.permitted, vec!["a.example", "c.example"]);
        assert!(!s2.permits("dns.example") && !s2.permits("api.a.example"));
    }

    /// A CA made before the catalogue grew: the steered names it cannot certify are listed
    /// (its excluded subtrees and names outside its permitted ones), those it can are not, and
    /// names no steer or coach rule selects never are.
    #[test]
    fn uncertifiable_lists_steered_names_outside_an_older_ca() {
        let cat = [
            svc("a", "consumer_ai", "\"a.example\", \"*.a.example\""),
            svc("new", "consumer_ai", "\"new.example\", \"*.new.example\""),
            svc("b", "consumer_ai", "\"b.example\""),
            svc("api", "enterprise_ai_api", "\"api.a.example\""),
        ]
        .concat();
        let rules = r#"
[settings]
default_action = "alert"
[approved_route]
url = "https://ai.example/"
instruction = "use it"
[[rule]]
id = "allow-b"
services = ["b"]
action = "allow"
[[rule]]
id = "steer"
categories = ["consumer_ai"]
action = "steer"
"#;
        let p = policy("uncert", &cat, rules);
        let s = p.portal_scope();
        // The CA of today certifies everything steered.
        assert!(p
            .uncertifiable(&s, &s.permitted, &s.excluded_subtrees())
            .is_empty());
        // An older CA that knew only a.example: new.example and its subdomains are outside it.
        let old = vec!["a.example".to_string()];
        assert_eq!(
            p.uncertifiable(&s, &old, &s.excluded_subtrees()),
            vec!["*.new.example", "new.example"]
        );
        // One that excluded a steered host is missing it too; the enterprise API and the allowed
        // b.example are never counted.
        let excl = vec!["x.a.example".to_string(), "api.a.example".to_string()];
        let wide = vec!["example".to_string()];
        assert!(p.uncertifiable(&s, &wide, &excl).is_empty());
        let excl2 = vec!["a.example".to_string()];
        assert_eq!(
            p.uncertifiable(&s, &wide, &excl2),
            vec!["*.a.example", "a.example"]
        );
    }

    #[test]
    fn rule_domains_count_and_never_certified_wins() {
        let cat = [
            svc(
                "bedrock",
                "enterprise_ai_api",
                "\"bedrock.us-east-1.amazonaws.com\"",
            ),
            svc("c", "consumer_ai", "\"c.example\""),
        ]
        .concat();
        let rules = r#"
[approved_route]
url = "https://ai.example/"
instruction = "use it"
[[rule]]
id = "steer-aws"
domains = ["*.amazonaws.com", "bedrock.us-east-1.amazonaws.com", "*.com"]
action = "steer"
"#;
        let s = policy("domains", &cat, rules).portal_scope();
        assert_eq!(s.permitted, vec!["amazonaws.com"]);
        assert_eq!(
            s.excluded_subtrees(),
            vec!["bedrock.us-east-1.amazonaws.com"]
        );
        assert!(s
            .warnings
            .iter()
            .any(|w| matches!(w, ScopeWarning::TopLevel { domain, .. } if domain == "com")));
        assert!(s.warnings.iter().any(|w| matches!(
            w,
            ScopeWarning::Uncertifiable { domain, .. } if domain == "bedrock.us-east-1.amazonaws.com"
        )));
    }

    #[test]
    fn overreach_names_what_a_wider_ca_reaches() {
        let s = bundled().portal_scope();
        let wide: Vec<String> = ["claude.ai", "anthropic.com", "amazonaws.com", "dns.google"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        let o = s.overreach(&wide, &[]);
        let text: Vec<String> = o.iter().map(|x| x.to_string()).collect();
        let has = |n: &str| text.iter().any(|t| t.starts_with(n));
        assert!(has("amazonaws.com"), "{text:?}");
        assert!(has("dns.google"), "{text:?}");
        assert!(has("api.anthropic.com"), "{text:?}");
        assert!(!has("claude.ai"), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("enterprise_ai_api")),
            "{text:?}"
        );
        // Narrower is fine; excluding the API host makes anthropic.com fine.
        assert!(s.overreach(&["claude.ai".into()], &[]).is_empty());
        assert!(s
            .overreach(&["anthropic.com".into()], &["api.anthropic.com".into()])
            .is_empty());
    }

    #[test]
    fn covers_is_label_wise() {
        assert!(covers("openai.com", "chat.openai.com"));
        assert!(covers("openai.com", "openai.com."));
        assert!(!covers("openai.com", "notopenai.com"));
        assert!(!covers("chat.openai.com", "openai.com"));
    }
}
