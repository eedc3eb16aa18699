//! The policy's data model: actions, severities, catalogued services, compiled rules and the
//! decisions made about names (what `replay --policy` and the event store write out).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use super::config::{Category, SteerDef};
use super::matcher::DomainTrie;
use super::schedule::Schedule;
use crate::flow::Evidence;

/// What the policy says to do about a name. Declared from least to most restrictive: the
/// order compares them ([`Action::rank`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Alert,
    Coach,
    Steer,
    Block,
}

impl Action {
    /// Every action, from least to most restrictive (the order [`Action::rank`] gives).
    pub const BY_RANK: [Action; 5] = [
        Action::Allow,
        Action::Alert,
        Action::Coach,
        Action::Steer,
        Action::Block,
    ];

    /// How restrictive the action is (0: allow .. 4: block): where several names of one message
    /// or several events of one visit meet, the most restrictive wins.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The action of a policy word (`allow`, ...); none for any other word.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "allow" => Action::Allow,
            "alert" => Action::Alert,
            "block" => Action::Block,
            "steer" => Action::Steer,
            "coach" => Action::Coach,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Block => "block",
            Action::Steer => "steer",
            Action::Coach => "coach",
        }
    }
}

pub(super) const ACTIONS: [&str; 5] = ["allow", "alert", "block", "steer", "coach"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

pub(super) const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

impl Severity {
    pub fn as_str(self) -> &'static str {
        SEVERITIES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// A catalogued service.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub category: Category,
    pub kind: String,
    pub baa: String,
    pub baa_source: String,
    /// Date of `baa_source` (`YYYY-MM-DD` or `YYYY-MM`), when given.
    pub source_date: Option<String>,
    /// Exact hosts on shared platforms (see `tenant_hosts` in the catalogue).
    pub tenant_hosts: Vec<String>,
    pub shared_tenant: Option<String>,
    pub file: PathBuf,
    /// The service's catalogue patterns, normalised (`claude.ai`, `*.claude.ai`; templates
    /// expanded over their regions).
    pub patterns: Vec<String>,
    /// The service's own addresses (`addresses` in the catalogue): a connection to one matches
    /// the service when no name decided it.
    pub addresses: Vec<ipnet::IpNet>,
    /// Server ports (`ports`): narrow `addresses`, or alone match any server on the port.
    pub ports: Vec<u16>,
}

/// A vendor of the catalogue and the registrable domains it owns.
#[derive(Debug, Clone)]
pub struct Vendor {
    pub name: String,
    pub domains: Vec<String>,
    pub file: PathBuf,
}

/// Version and date of one catalogue file (`[catalog]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogVersion {
    pub file: PathBuf,
    pub version: String,
    pub date: String,
}

/// How a clinic entry overrides the vendor catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideKind {
    /// A clinic service has the id of a vendor service: the vendor's entry is not loaded.
    Replaces,
    /// A clinic service lists a domain of a vendor service: the name is the clinic's.
    Claims,
}

impl OverrideKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideKind::Replaces => "replaces",
            OverrideKind::Claims => "claims",
        }
    }
}

/// One override of the vendor catalogue by the clinic's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub kind: OverrideKind,
    /// The vendor service overridden.
    pub service: String,
    pub vendor_file: PathBuf,
    /// The clinic service that wins.
    pub by: String,
    /// The clinic file it is in.
    pub file: PathBuf,
    /// The domain pattern taken (`Claims`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.pattern) {
            (OverrideKind::Claims, Some(p)) => write!(
                f,
                "{p} of vendor service {:?} is claimed by the clinic's service {:?} ({})",
                self.service,
                self.by,
                self.file.display()
            ),
            _ => write!(
                f,
                "vendor service {:?} ({}) is replaced by the clinic's entry in {}",
                self.service,
                self.vendor_file.display(),
                self.file.display()
            ),
        }
    }
}

/// What the catalogue says about a name.
#[derive(Debug, Clone, Copy)]
pub struct CatalogMatch<'a> {
    pub service: &'a Service,
    pub(super) index: usize,
    /// The catalogue pattern that matched (`api.anthropic.com`, `*.claude.ai`).
    pub pattern: &'a str,
}

/// A rule of `policy.toml`, compiled: what it selects, for whom, when, and what it does.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) id: String,
    pub(super) services: HashSet<usize>,
    pub(super) categories: Vec<Category>,
    pub(super) kinds: Vec<String>,
    pub(super) domains: DomainTrie<()>,
    /// The same patterns as a list (normalised), for what the portal CA must cover.
    pub(super) domain_patterns: Vec<String>,
    pub(super) groups: Vec<usize>,
    pub(super) except_groups: Vec<usize>,
    pub(super) action: Action,
    pub(super) severity: Severity,
    pub(super) steer_to: Option<SteerDef>,
    pub(super) schedule: Option<Schedule>,
    /// The weakest evidence the rule acts on (`None`: any).
    pub(super) min_evidence: Option<Evidence>,
}

/// How the name that drove the decision was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Dns,
    Tls,
    Quic,
    Http,
    /// A proxy request's destination (SOCKS, HTTP CONNECT).
    Proxy,
    /// From the DNS name cache (no readable SNI: ECH, bare IP).
    Inferred,
    /// `policy explain` on a name typed by a person.
    Manual,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Dns => "dns",
            Via::Tls => "tls",
            Via::Quic => "quic",
            Via::Http => "http",
            Via::Proxy => "proxy",
            Via::Inferred => "inferred",
            Via::Manual => "manual",
        }
    }

    /// The way of a word written by [`Via::as_str`].
    pub fn parse(s: &str) -> Option<Via> {
        [
            Via::Dns,
            Via::Tls,
            Via::Quic,
            Via::Http,
            Via::Proxy,
            Via::Inferred,
            Via::Manual,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What made a decision's service match (see [`Decision::matched_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    /// A name: on the wire, or inferred from DNS.
    #[default]
    Name,
    /// The server address is one of the service's `addresses` (and the port in its `ports`).
    Address,
    /// The server port is a port-only service's (853).
    Port,
    /// The server is one of the clinic's own configured resolvers (`[dns] upstreams`,
    /// `[sensor] internal_resolvers`): a DNS resolver service there is allowed.
    Upstream,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Name => "name",
            MatchedBy::Address => "address",
            MatchedBy::Port => "port",
            MatchedBy::Upstream => "upstream",
        }
    }

    pub fn is_name(&self) -> bool {
        *self == MatchedBy::Name
    }
}

/// The rule id of a decision made by the clinic's-resolver exception (no rule of policy.toml).
pub const UPSTREAM_RULE: &str = "upstream";

/// A policy decision about one name for one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Catalogued service, if the name is in the catalogue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_kind: Option<String>,
    /// The name matched, and the pattern it matched.
    pub matched_name: String,
    pub pattern: String,
    pub via: Via,
    /// How strongly the traffic shows the name (`wire`, `own_lookup`, ...; see [`Evidence`]).
    pub evidence: Evidence,
    /// What matched: a name (the default, not written), or, for a connection no name decided,
    /// the server's `address` or `port` (then `matched_name` is the server address and `pattern`
    /// the catalogue entry: `1.1.1.1`, `port 853`); `upstream` when the server is one of the
    /// clinic's configured resolvers (decided `allow` by rule `upstream`).
    #[serde(skip_serializing_if = "MatchedBy::is_name")]
    pub matched_by: MatchedBy,
    /// Rule id, or `default` when no rule selected a catalogued service.
    pub rule_id: String,
    pub action: Action,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steer_to: Option<SteerDef>,
    /// Client groups the client belongs to.
    pub groups: Vec<String>,
    /// The service shares host names between personal and enterprise tenants.
    pub shared_tenant: bool,
}
