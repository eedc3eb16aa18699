//! Deciding: which rules select a name, which of them apply to the client at that time and on
//! that evidence, and the decision for an observation (its wire names, most restrictive wins;
//! then DNS-inferred names of the strongest evidence level present).

use super::matcher::normalize;
use super::{Action, CatalogMatch, Client, Decision, Policy, Via};
use crate::flow::{Evidence, Flag, Kind, Observation};

/// Rules that selected a name, in order, with why each did not apply; the last one may have fired.
type Trail = Vec<(usize, Result<(), String>)>;

impl Policy {
    /// Why each rule did or did not fire, in order, ending with the one that fired.
    pub(super) fn evaluate(
        &self,
        name: &str,
        client: &Client<'_>,
        ts_ns: u64,
        evidence: Evidence,
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
            } else if let Some(min) = r.min_evidence.filter(|m| !evidence.meets(*m)) {
                Err(format!(
                    "the evidence ({}) is weaker than its min_evidence ({})",
                    evidence.as_str(),
                    min.as_str()
                ))
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

    /// Decide about one normalised name seen on the wire, for a client at a time.
    pub fn decide(
        &self,
        name: &str,
        client: &Client<'_>,
        ts_ns: u64,
        via: Via,
    ) -> Option<Decision> {
        self.decide_on(name, client, ts_ns, via, Evidence::Wire)
    }

    /// Decide about one normalised name shown by `evidence`, for a client at a time.
    pub fn decide_on(
        &self,
        name: &str,
        client: &Client<'_>,
        ts_ns: u64,
        via: Via,
        evidence: Evidence,
    ) -> Option<Decision> {
        let (cat, groups, trail) = self.evaluate(name, client, ts_ns, evidence);
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
            evidence,
            rule_id,
            action,
            severity,
            steer_to,
            groups: groups.iter().map(|&g| self.groups[g].id.clone()).collect(),
            shared_tenant: cat.is_some_and(|c| c.service.shared_tenant.is_some()),
        })
    }

    /// Decide about an observation: each name it carried on the wire (`name`, then
    /// `wire_names`), keeping the most restrictive decision (the first name on a tie; its
    /// `matched_name` says which name decided; a DNS answer to no seen query is
    /// `unmatched_answer` evidence); if none decides, the names inferred from DNS at the
    /// strongest evidence level present only (most recent first; a weaker level is never tried),
    /// and a `resolver_lookup` level with several names is decided as `other_client`.
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
            Kind::ProxyConnect => Via::Proxy,
        };
        let wire = if o.kind == Kind::DnsAnswer && o.flags.contains(&Flag::Unmatched) {
            Evidence::UnmatchedAnswer
        } else {
            Evidence::Wire
        };
        let mut best: Option<Decision> = None;
        for n in o.name.iter().chain(&o.wire_names) {
            let Ok(n) = normalize(n) else { continue };
            if let Some(d) = self.decide_on(&n, &client, o.ts, via, wire) {
                if best
                    .as_ref()
                    .is_none_or(|b| d.action.rank() > b.action.rank())
                {
                    best = Some(d);
                }
            }
        }
        if best.is_some() {
            return best;
        }
        let ev_of = |i: usize| {
            o.inferred_evidence
                .get(i)
                .copied()
                .unwrap_or(Evidence::UnmatchedAnswer)
        };
        // Only the strongest level present counts: a name the client itself looked up that no
        // rule selects (its EHR on a CDN) must not fall through to another lookup of the address.
        let top = (0..o.inferred_names.len()).map(ev_of).min()?;
        let at_top: Vec<&String> = o
            .inferred_names
            .iter()
            .enumerate()
            .filter(|(i, _)| ev_of(*i) == top)
            .map(|(_, n)| n)
            .collect();
        let ev = ambiguous(top, at_top.len());
        at_top.iter().find_map(|n| {
            normalize(n)
                .ok()
                .and_then(|n| self.decide_on(&n, &client, o.ts, Via::Inferred, ev))
        })
    }
}

/// The evidence an inferred name is decided on when `distinct` names share the strongest level:
/// a resolver's (or another client's) lookups of one address that name several sites do not say
/// which of them this client reached, so a resolver's count as another client's (which the
/// bundled policy only alerts on).
fn ambiguous(top: Evidence, distinct: usize) -> Evidence {
    if top == Evidence::ResolverLookup && distinct > 1 {
        Evidence::OtherClient
    } else {
        top
    }
}
