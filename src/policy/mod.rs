//! Decide: the service catalogue and the clinic's policy, compiled from `policies/` into a
//! matcher (see [`matcher`]) and an ordered rule list. An observation's name (or, failing that,
//! a name inferred from DNS) is matched to a service; the first rule that selects it and the
//! client wins; a catalogued service no rule selects gets the default action. [`scope`] says
//! what the steering portal's CA may certify under the policy.

mod address;
mod catalog;
pub mod change;
mod client;
mod compile;
pub mod config;
mod decide;
pub mod error;
mod explain;
pub mod matcher;
mod model;
pub mod reload;
mod schedule;
pub mod scope;

use std::path::PathBuf;

pub use catalog::{load_catalog, CatalogView, LOCAL_DIR, LOCAL_FILE};
use client::Group;
pub use client::{parse_mac, Client};
pub use config::{Category, SteerDef};
pub use error::{PolicyError, PolicyErrors};
use matcher::DomainTrie;
use model::Rule;
pub use model::{
    Action, CatalogMatch, CatalogVersion, Decision, MatchedBy, Override, OverrideKind, Service,
    Severity, Vendor, Via, UPSTREAM_RULE,
};
pub use scope::{Overreach, PortalScope, ScopeWarning};

/// The compiled policy directory.
#[derive(Debug, Clone)]
pub struct Policy {
    pub dir: PathBuf,
    services: Vec<Service>,
    catalog: DomainTrie<(usize, usize)>,
    patterns: Vec<String>,
    pattern_services: Vec<usize>,
    vendors: Vec<Vendor>,
    catalog_versions: Vec<CatalogVersion>,
    overrides: Vec<Override>,
    groups: Vec<Group>,
    rules: Vec<Rule>,
    default_action: Action,
    default_severity: Severity,
    tz: jiff::tz::TimeZone,
    approved: Option<SteerDef>,
    /// Catalogue `addresses` and port-only services.
    addrs: address::AddrMatcher,
    /// The clinic's own resolvers (`[dns] upstreams`, `[sensor] internal_resolvers`): a DNS
    /// resolver service reached there is allowed. None in replay without a configuration.
    clinic_resolvers: Vec<std::net::IpAddr>,
}

impl Policy {
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The catalogue's vendors and the domains each owns.
    pub fn vendors(&self) -> &[Vendor] {
        &self.vendors
    }

    /// `[catalog]` version and date of each catalogue file that has one.
    pub fn catalog_versions(&self) -> &[CatalogVersion] {
        &self.catalog_versions
    }

    /// Where the clinic's files override the vendor catalogue.
    pub fn catalog_overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Every catalogue pattern (`claude.ai`, `*.claude.ai`) with its service.
    pub fn catalog_patterns(&self) -> Vec<(&str, &Service)> {
        self.patterns
            .iter()
            .zip(&self.pattern_services)
            .filter_map(|(p, &s)| Some((p.as_str(), self.services.get(s)?)))
            .collect()
    }

    /// This policy with the clinic's own resolvers (the addresses of `[dns] upstreams` and
    /// `[sensor] internal_resolvers`): a connection to one that would be decided as a DNS
    /// resolver service is decided `allow` (rule `upstream`, `matched_by` `upstream`).
    pub fn with_clinic_resolvers(mut self, resolvers: &[std::net::IpAddr]) -> Policy {
        self.clinic_resolvers = resolvers.iter().map(|&a| address::canonical(a)).collect();
        self.clinic_resolvers.sort_unstable();
        self.clinic_resolvers.dedup();
        self
    }

    /// The clinic's own resolvers this policy excepts (see [`Policy::with_clinic_resolvers`]).
    pub fn clinic_resolvers(&self) -> &[std::net::IpAddr] {
        &self.clinic_resolvers
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Each rule's id with a fingerprint of what it does (selection, groups, action, schedule),
    /// in rule order: what a reload summary compares.
    pub fn rule_fingerprints(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .map(|r| {
                let mut services: Vec<&str> = r
                    .services
                    .iter()
                    .filter_map(|&i| self.services.get(i).map(|s| s.id.as_str()))
                    .collect();
                services.sort_unstable();
                let fp = format!(
                    "{services:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    r.categories,
                    r.kinds,
                    r.groups,
                    r.except_groups,
                    r.action,
                    r.severity,
                    r.steer_to.as_ref().map(|s| &s.url),
                    r.schedule
                );
                (r.id.clone(), fp)
            })
            .collect()
    }
}
