//! Deciding: which rules select a name, which of them apply to the client at that time and on
//! that evidence, and the decision for an observation (its wire names, most restrictive wins;
//! then DNS-inferred names of the strongest evidence level present).

use super::address::{self, Hit};
use super::matcher::normalize;
use super::{
    Action, CatalogMatch, Category, Client, Decision, MatchedBy, Policy, Severity, Via,
    UPSTREAM_RULE,
};
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
        let (groups, trail) = self.evaluate_match(cat, Some(name), client, ts_ns, evidence);
        (cat, groups, trail)
    }

    /// [`Policy::evaluate`] for a catalogue match (by name, or by address or port: then no
    /// name, and rules' `domains` select nothing).
    pub(super) fn evaluate_match(
        &self,
        cat: Option<CatalogMatch<'_>>,
        name: Option<&str>,
        client: &Client<'_>,
        ts_ns: u64,
        evidence: Evidence,
    ) -> (Vec<usize>, Trail) {
        let groups = self.client_groups(client);
        let mut trail = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let selects = cat.is_some_and(|c| {
                r.services.contains(&c.index)
                    || r.categories.contains(&c.service.category)
                    || r.kinds.contains(&c.service.kind)
            }) || name.is_some_and(|n| r.domains.lookup(n).is_some());
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
        (groups, trail)
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
        let pattern = match cat {
            Some(c) => c.pattern.to_string(),
            None => name.to_string(),
        };
        let found = Found {
            cat,
            matched_name: name.to_string(),
            pattern,
            matched_by: MatchedBy::Name,
        };
        self.decision(found, &groups, &trail, via, evidence)
    }

    /// The decision for what was found (a catalogue match or a rule's domain) after the rules'
    /// `trail`: the rule that fired, or the default action for a catalogued service; none for
    /// an uncatalogued name no rule fired for.
    fn decision(
        &self,
        found: Found<'_>,
        groups: &[usize],
        trail: &Trail,
        via: Via,
        evidence: Evidence,
    ) -> Option<Decision> {
        let Found {
            cat,
            matched_name,
            pattern,
            matched_by,
        } = found;
        let fired = trail
            .last()
            .filter(|(_, v)| v.is_ok())
            .map(|(i, _)| &self.rules[*i]);
        if fired.is_none() && cat.is_none() {
            return None;
        }
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
            matched_name,
            pattern,
            via,
            evidence,
            matched_by,
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
    ///
    /// A TLS or QUIC connection that no name decides is then matched by its server address and
    /// port (catalogue `addresses` and `ports`: a DoT client to 1.1.1.1:853 often sends no SNI).
    /// Last, a DNS resolver service reached at one of the clinic's own resolvers is allowed
    /// ([`Policy::with_clinic_resolvers`]).
    pub fn decide_observation(&self, o: &Observation) -> Option<Decision> {
        let client = Client {
            ip: Some(o.client.ip),
            mac: o.client.mac,
            hostname: o.client.hostname.as_deref(),
        };
        let d = self
            .decide_names(o, &client)
            .or_else(|| self.decide_address(o, &client));
        self.clinic_resolver(o, d)
    }

    /// A connection (TLS or QUIC hello) by its server address and port alone: the service whose
    /// `addresses` hold the address (most specific prefix; its `ports`, if any, hold the port),
    /// else a port-only service of the port. The address is in the packet: `wire` evidence.
    fn decide_address(&self, o: &Observation, client: &Client<'_>) -> Option<Decision> {
        let via = match o.kind {
            Kind::TlsClientHello => Via::Tls,
            Kind::QuicInitial => Via::Quic,
            _ => return None,
        };
        if self.addrs.is_empty() {
            return None;
        }
        let (index, hit) = self.addrs.lookup(o.server.ip, o.server.port)?;
        let service = &self.services[index];
        let (matched_by, pattern) = match hit {
            Hit::Address(net) => (MatchedBy::Address, address::show(&net)),
            Hit::Port(p) => (MatchedBy::Port, format!("port {p}")),
        };
        let cat = CatalogMatch {
            service,
            index,
            pattern: "",
        };
        let evidence = Evidence::Wire;
        let (groups, trail) = self.evaluate_match(Some(cat), None, client, o.ts, evidence);
        let found = Found {
            cat: Some(cat),
            matched_name: address::canonical(o.server.ip).to_string(),
            pattern,
            matched_by,
        };
        self.decision(found, &groups, &trail, via, evidence)
    }

    /// A DNS resolver service reached over a connection (TLS, QUIC, HTTP) at one of the clinic's
    /// own resolvers is allowed, whatever the rules say: rule `upstream`, `matched_by` `upstream`
    /// (its name or address stays in `matched_name` and `pattern`).
    fn clinic_resolver(&self, o: &Observation, d: Option<Decision>) -> Option<Decision> {
        let mut d = d?;
        let connection = matches!(
            o.kind,
            Kind::TlsClientHello | Kind::QuicInitial | Kind::HttpRequest
        );
        if connection
            && d.category == Some(Category::DnsResolver)
            && self
                .clinic_resolvers
                .binary_search(&address::canonical(o.server.ip))
                .is_ok()
        {
            d.action = Action::Allow;
            d.severity = Severity::Info;
            d.rule_id = UPSTREAM_RULE.to_string();
            d.steer_to = None;
            d.matched_by = MatchedBy::Upstream;
        }
        Some(d)
    }

    /// [`Policy::decide_observation`] by the names alone: wire names, then inferred names.
    fn decide_names(&self, o: &Observation, client: &Client<'_>) -> Option<Decision> {
        let client = *client;
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

/// What a decision is about, before the rules: the catalogue match (if any), the name matched
/// (or the server address), the pattern or address entry, and what matched.
struct Found<'a> {
    cat: Option<CatalogMatch<'a>>,
    matched_name: String,
    pattern: String,
    matched_by: MatchedBy,
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;
    use crate::flow::observation::{Endpoint, Transport};

    const RULES: &str = r#"
[[group]]
id = "it"
cidrs = ["10.99.0.0/24"]

[[rule]]
id = "R-stop"
categories = ["dns_resolver"]
except_groups = ["it"]
action = "block"

[[rule]]
id = "R-alert"
categories = ["dns_resolver"]
action = "alert"
"#;

    const CATALOG: &str = r#"
[[service]]
id = "res"
name = "Resolver"
vendor = "v"
category = "dns_resolver"
kind = "doh"
domains = ["dns.example"]
addresses = ["192.0.2.53", "2001:db8:53::/48"]
baa = "none"
baa_source = "test"

[[service]]
id = "res-dot"
name = "Resolver, DoT only"
vendor = "v"
category = "dns_resolver"
kind = "dot"
addresses = ["198.51.100.53"]
ports = [853]
baa = "none"
baa_source = "test"

[[service]]
id = "port-853"
name = "DoT/DoQ"
vendor = "v"
category = "dns_resolver"
kind = "dot"
ports = [853]
baa = "none"
baa_source = "test"

[[service]]
id = "chat"
name = "Chat"
vendor = "v"
category = "consumer_ai"
kind = "chat"
domains = ["chat.example"]
baa = "none"
baa_source = "test"
"#;

    /// A policy directory `tag` from a catalogue file and a policy.toml, loaded (or its errors).
    fn load(tag: &str, catalog: &str, rules: &str) -> Result<Policy, String> {
        let d = std::env::temp_dir().join(format!("sg-addr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("catalog")).unwrap();
        std::fs::write(d.join("catalog/c.toml"), catalog).unwrap();
        std::fs::write(d.join("policy.toml"), rules).unwrap();
        let p = Policy::load(&d).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&d);
        p
    }

    fn hello(kind: Kind, client: &str, server: &str, port: u16, name: Option<&str>) -> Observation {
        let ep = |ip: &str, port| Endpoint {
            ip: ip.parse::<IpAddr>().unwrap(),
            port,
            mac: None,
            hostname: None,
        };
        Observation {
            ts: 0,
            kind,
            name: name.map(str::to_string),
            wire_names: Vec::new(),
            inferred_names: Vec::new(),
            inferred_evidence: Vec::new(),
            transport: if kind == Kind::QuicInitial {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            client: ep(client, 50000),
            server: ep(server, port),
            flags: Vec::new(),
            dns: None,
            tls: None,
            quic: None,
            http: None,
            proxy: None,
            frame: 1,
            tcp: None,
            unanswered: false,
        }
    }

    fn policy(tag: &str) -> Policy {
        load(tag, CATALOG, RULES).unwrap()
    }

    #[test]
    fn address_only_matches_a_nameless_hello_on_any_port() {
        let p = policy("addr");
        let tls = Kind::TlsClientHello;
        let d = p
            .decide_observation(&hello(tls, "10.20.0.5", "192.0.2.53", 853, None))
            .unwrap();
        assert_eq!(d.service.as_deref(), Some("res"));
        assert_eq!(d.matched_by, MatchedBy::Address);
        assert_eq!(
            (d.matched_name.as_str(), d.pattern.as_str()),
            ("192.0.2.53", "192.0.2.53")
        );
        assert_eq!((d.action, d.rule_id.as_str()), (Action::Block, "R-stop"));
        assert_eq!((d.via, d.evidence), (Via::Tls, Evidence::Wire));
        // A prefix, over QUIC, an IP-literal SNI (not a catalogued name) on 443.
        let o = hello(
            Kind::QuicInitial,
            "10.20.0.5",
            "2001:db8:53::7",
            443,
            Some("2001:db8:53::7"),
        );
        let d = p.decide_observation(&o).unwrap();
        assert_eq!(
            (d.matched_by, d.pattern.as_str(), d.via),
            (MatchedBy::Address, "2001:db8:53::/48", Via::Quic)
        );
        // IT gets the next rule: alert.
        let d = p
            .decide_observation(&hello(tls, "10.99.0.5", "192.0.2.53", 853, None))
            .unwrap();
        assert_eq!((d.action, d.rule_id.as_str()), (Action::Alert, "R-alert"));
        // Only connections: a DNS query sent to the address is about its question, not the server.
        let q = hello(
            Kind::DnsQuery,
            "10.20.0.5",
            "192.0.2.53",
            53,
            Some("www.example.org"),
        );
        assert!(p.decide_observation(&q).is_none());
        assert!(p
            .decide_observation(&hello(tls, "10.20.0.5", "192.0.2.54", 443, None))
            .is_none());
    }

    #[test]
    fn address_with_ports_matches_only_those_ports() {
        let p = policy("ports");
        let tls = Kind::TlsClientHello;
        let d = p
            .decide_observation(&hello(tls, "10.20.0.5", "198.51.100.53", 853, None))
            .unwrap();
        assert_eq!(
            (d.service.as_deref(), d.matched_by),
            (Some("res-dot"), MatchedBy::Address)
        );
        assert!(p
            .decide_observation(&hello(tls, "10.20.0.5", "198.51.100.53", 443, None))
            .is_none());
    }

    #[test]
    fn port_only_matches_any_server_on_the_port() {
        let p = policy("portonly");
        let o = hello(Kind::QuicInitial, "10.20.0.5", "203.0.113.9", 853, None);
        let d = p.decide_observation(&o).unwrap();
        assert_eq!(d.service.as_deref(), Some("port-853"));
        assert_eq!(
            (d.matched_by, d.pattern.as_str()),
            (MatchedBy::Port, "port 853")
        );
        assert_eq!(d.matched_name, "203.0.113.9");
        assert_eq!(d.action, Action::Block);
        // An uncatalogued SNI on 853 decides nothing by name: the port decides.
        let o = hello(
            Kind::TlsClientHello,
            "10.20.0.5",
            "203.0.113.9",
            853,
            Some("dot.example.org"),
        );
        assert_eq!(
            p.decide_observation(&o).unwrap().matched_by,
            MatchedBy::Port
        );
    }

    #[test]
    fn a_name_match_wins_over_address_and_port() {
        let p = policy("namewins");
        let o = hello(
            Kind::TlsClientHello,
            "10.20.0.5",
            "192.0.2.53",
            853,
            Some("chat.example"),
        );
        let d = p.decide_observation(&o).unwrap();
        assert_eq!(
            (d.service.as_deref(), d.matched_by),
            (Some("chat"), MatchedBy::Name)
        );
        assert_eq!(d.matched_name, "chat.example");
        // Serialised, a name match writes no matched_by (the JSON stays as it was).
        let j = serde_json::to_string(&d).unwrap();
        assert!(!j.contains("matched_by"), "{j}");
        let o = hello(
            Kind::TlsClientHello,
            "10.20.0.5",
            "203.0.113.9",
            853,
            Some("dns.example"),
        );
        let d = p.decide_observation(&o).unwrap();
        assert_eq!(
            (d.service.as_deref(), d.matched_by),
            (Some("res"), MatchedBy::Name)
        );
        let o = hello(Kind::TlsClientHello, "10.20.0.5", "192.0.2.53", 853, None);
        let j = serde_json::to_string(&p.decide_observation(&o).unwrap()).unwrap();
        assert!(
            j.contains(r#""evidence":"wire","matched_by":"address""#),
            "{j}"
        );
    }

    #[test]
    fn the_clinics_own_resolvers_are_allowed() {
        let up: IpAddr = "192.0.2.53".parse().unwrap();
        let p = policy("upstream").with_clinic_resolvers(&[up, "203.0.113.9".parse().unwrap()]);
        for o in [
            hello(Kind::TlsClientHello, "10.20.0.5", "192.0.2.53", 853, None),
            hello(
                Kind::TlsClientHello,
                "10.20.0.5",
                "192.0.2.53",
                443,
                Some("dns.example"),
            ),
            hello(
                Kind::QuicInitial,
                "10.20.0.5",
                "::ffff:192.0.2.53",
                853,
                None,
            ),
            hello(Kind::QuicInitial, "10.20.0.5", "203.0.113.9", 853, None),
        ] {
            let d = p.decide_observation(&o).unwrap();
            assert_eq!(
                (d.action, d.rule_id.as_str(), d.matched_by),
                (Action::Allow, UPSTREAM_RULE, MatchedBy::Upstream),
                "{o:?}"
            );
        }
        // Another service at that address is decided as usual (domain fronting is no upstream).
        let o = hello(
            Kind::TlsClientHello,
            "10.20.0.5",
            "192.0.2.53",
            443,
            Some("chat.example"),
        );
        assert_eq!(
            p.decide_observation(&o).unwrap().service.as_deref(),
            Some("chat")
        );
        assert_ne!(p.decide_observation(&o).unwrap().action, Action::Allow);
        // Another resolver address is still stopped.
        let o = hello(
            Kind::TlsClientHello,
            "10.20.0.5",
            "198.51.100.53",
            853,
            None,
        );
        assert_eq!(p.decide_observation(&o).unwrap().action, Action::Block);
        // Without resolvers (replay without a configuration) nothing is excepted.
        let o = hello(Kind::TlsClientHello, "10.20.0.5", "192.0.2.53", 853, None);
        assert_eq!(
            policy("noupstream").decide_observation(&o).unwrap().action,
            Action::Block
        );
    }

    #[test]
    fn catalogue_addresses_and_ports_are_checked() {
        let svc = |id: &str, extra: &str| {
            format!("[[service]]\nid = \"{id}\"\nname = \"{id}\"\nvendor = \"v\"\ncategory = \"dns_resolver\"\nkind = \"doh\"\n{extra}\nbaa = \"none\"\nbaa_source = \"test\"\n\n")
        };
        let rules = "[[rule]]\nid = \"R\"\ncategories = [\"dns_resolver\"]\naction = \"alert\"\n";
        for (tag, cat, want) in [
            (
                "broad4",
                svc("a", "addresses = [\"104.16.0.0/12\"]"),
                "too broad",
            ),
            (
                "broad6",
                svc("a", "addresses = [\"2606:4700::/24\"]"),
                "too broad",
            ),
            (
                "hostbits",
                svc("a", "addresses = [\"1.1.1.1/24\"]"),
                "host bits",
            ),
            (
                "notip",
                svc("a", "addresses = [\"dns.google\"]"),
                "neither an IP",
            ),
            ("port0", svc("a", "ports = [0]"), "port 0"),
            (
                "twice",
                svc("a", "addresses = [\"1.1.1.1\"]") + &svc("b", "addresses = [\"1.1.1.1\"]"),
                "already listed by service \"a\"",
            ),
            (
                "porttwice",
                svc("a", "ports = [853]") + &svc("b", "ports = [853]"),
                "already the port of service \"a\"",
            ),
            (
                "namedport",
                svc("a", "domains = [\"dns.example\"]\nports = [853]"),
                "has ports but no addresses",
            ),
            ("nothing", svc("a", ""), "has no domains"),
        ] {
            let e = load(tag, &cat, rules)
                .err()
                .unwrap_or_else(|| panic!("{tag}: accepted"));
            assert!(e.contains(want), "{tag}: {e}");
            assert!(e.contains("c.toml:"), "{tag}: no position in {e}");
        }
        let e = load(
            "broadhint",
            &svc("a", "addresses = [\"104.16.0.0/12\"]"),
            rules,
        )
        .unwrap_err();
        assert!(
            e.contains("never a provider's, CDN's or cloud's range"),
            "{e}"
        );
        let e = load(
            "reserved",
            CATALOG,
            "[[rule]]\nid = \"upstream\"\ncategories = [\"dns_resolver\"]\naction = \"alert\"\n",
        )
        .unwrap_err();
        assert!(e.contains("rule id \"upstream\" is reserved"), "{e}");
        // The bundled catalogue loads with its addresses.
        let b = Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        let g = b.services().iter().find(|s| s.id == "google-dns").unwrap();
        assert!(g.addresses.iter().any(|a| a.to_string() == "8.8.8.8/32"));
    }
}
