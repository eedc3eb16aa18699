//! What the resolver answers for a policy decision: the real answer (TTLs capped under a coach
//! grant, ECH stripped for catalogued names), the portal address, NXDOMAIN, 0.0.0.0/:: or no data.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::svcb::{Mandatory, SvcParamKey, SvcParamValue, SVCB};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::config::BlockAnswer;
use super::metrics::QueryResult;
use crate::enforce::enforcer::Verdict;
use crate::policy::{Action, Decision};
use crate::portal::config::PortalConf;
use crate::record::{DnsAnswer, Outcome};

/// How to answer one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Forward (or serve from the cache) and answer for real. `cap_ttl`: TTLs at most this
    /// (an answer under a coach grant must not outlive it in client caches); `strip_ech`: remove
    /// the `ech` SvcParam from HTTPS/SVCB records (a catalogued name's SNI must stay visible).
    Real {
        cap_ttl: Option<u32>,
        strip_ech: bool,
    },
    /// The portal address (A: `address`, AAAA: `address6`), no data for other types.
    Portal,
    Nxdomain,
    /// 0.0.0.0 for A, :: for AAAA, no data for other types.
    Null,
    /// NOERROR without records.
    Nodata,
}

fn is_svcb(t: RecordType) -> bool {
    matches!(t, RecordType::HTTPS | RecordType::SVCB)
}

/// Decide how to answer a lookup, and what that does to it (`enforcement` in the event).
/// `verdict`: whether the decision stops this client's traffic (`enforce::verdict`).
pub fn plan(
    d: Option<(&Decision, &Verdict)>,
    qtype: RecordType,
    enforcing: bool,
    block: BlockAnswer,
    portal_ttl: u32,
) -> (Plan, Option<Outcome>) {
    let Some((d, verdict)) = d else {
        return (
            Plan::Real {
                cap_ttl: None,
                strip_ech: false,
            },
            None,
        );
    };
    let real = |cap_ttl| Plan::Real {
        cap_ttl,
        strip_ech: d.service.is_some(),
    };
    match verdict {
        Verdict::Pass | Verdict::Exempt => return (real(None), Some(Outcome::Allowed)),
        Verdict::Granted if enforcing => return (real(Some(portal_ttl)), Some(Outcome::Granted)),
        Verdict::Granted => return (real(None), Some(Outcome::Granted)),
        Verdict::Stop(_) if !enforcing => return (real(None), Some(Outcome::WouldStop)),
        Verdict::Stop(_) => {}
    }
    let p = match d.action {
        Action::Block => match block {
            BlockAnswer::Nxdomain => Plan::Nxdomain,
            BlockAnswer::Null if matches!(qtype, RecordType::A | RecordType::AAAA) => Plan::Null,
            BlockAnswer::Null => Plan::Nodata,
        },
        // Steer, coach: HTTPS/SVCB address hints would lead to the real server.
        _ if is_svcb(qtype) => Plan::Nodata,
        _ if matches!(qtype, RecordType::A | RecordType::AAAA) => Plan::Portal,
        _ => Plan::Nodata,
    };
    (p, Some(Outcome::Stopped))
}

/// A synthesised answer: rcode, answer records, authority (a SOA bounding negative caching),
/// the `dns_answer` word of the event and the metrics result.
pub struct Synth {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub word: DnsAnswer,
    pub result: QueryResult,
}

/// Build the answer of a non-`Real` plan for `qname`/`qtype`.
pub fn synthesize(
    p: Plan,
    qname: &Name,
    qtype: RecordType,
    portal: Option<&PortalConf>,
    ttl: u32,
) -> Synth {
    let rec = |ip: IpAddr| {
        let data = match ip {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        Record::from_rdata(qname.clone(), ttl, data)
    };
    let soa = || {
        let m = Name::from_ascii("shadowgate.invalid.").unwrap_or_else(|_| Name::root());
        vec![Record::from_rdata(
            qname.clone(),
            ttl,
            RData::SOA(SOA::new(
                m.clone(),
                m,
                1,
                ttl as i32,
                ttl as i32,
                ttl as i32,
                ttl,
            )),
        )]
    };
    let nodata = || Synth {
        rcode: ResponseCode::NoError,
        answers: Vec::new(),
        authorities: soa(),
        word: DnsAnswer::Nodata,
        result: QueryResult::Nodata,
    };
    match p {
        Plan::Portal => {
            let addr = portal.and_then(|pc| match qtype {
                RecordType::A => [Some(pc.address), pc.address6]
                    .into_iter()
                    .flatten()
                    .find(IpAddr::is_ipv4),
                RecordType::AAAA => [pc.address6, Some(pc.address)]
                    .into_iter()
                    .flatten()
                    .find(IpAddr::is_ipv6),
                _ => None,
            });
            match addr {
                Some(a) => Synth {
                    rcode: ResponseCode::NoError,
                    answers: vec![rec(a)],
                    authorities: Vec::new(),
                    word: DnsAnswer::Portal,
                    result: QueryResult::Portal,
                },
                None => nodata(),
            }
        }
        Plan::Nxdomain => Synth {
            rcode: ResponseCode::NXDomain,
            answers: Vec::new(),
            authorities: soa(),
            word: DnsAnswer::Nxdomain,
            result: QueryResult::Blocked,
        },
        Plan::Null => {
            let a = match qtype {
                RecordType::AAAA => IpAddr::from([0u16; 8]),
                _ => IpAddr::from([0u8; 4]),
            };
            Synth {
                rcode: ResponseCode::NoError,
                answers: vec![rec(a)],
                authorities: Vec::new(),
                word: DnsAnswer::Null,
                result: QueryResult::Blocked,
            }
        }
        Plan::Nodata | Plan::Real { .. } => nodata(),
    }
}

/// Remove the `ech` SvcParam (and its mention in `mandatory`) from one SVCB body.
fn strip_svcb(s: &mut SVCB) -> usize {
    let before = s.svc_params.len();
    s.svc_params
        .retain(|(k, _)| *k != SvcParamKey::EchConfigList);
    let removed = before - s.svc_params.len();
    if removed > 0 {
        for (_, v) in s.svc_params.iter_mut() {
            if let SvcParamValue::Mandatory(Mandatory(keys)) = v {
                keys.retain(|k| *k != SvcParamKey::EchConfigList);
            }
        }
        // An empty mandatory list is not allowed on the wire (RFC 9460 §8).
        s.svc_params.retain(
            |(_, v)| !matches!(v, SvcParamValue::Mandatory(Mandatory(keys)) if keys.is_empty()),
        );
    }
    removed
}

/// Remove ECH configs from every HTTPS/SVCB record; returns how many were removed.
pub fn strip_ech(records: &mut [Record]) -> usize {
    records
        .iter_mut()
        .map(|r| match &mut r.data {
            RData::HTTPS(h) => strip_svcb(&mut h.0),
            RData::SVCB(s) => strip_svcb(s),
            _ => 0,
        })
        .sum()
}

/// Cap every TTL at `cap`.
pub fn cap_ttl(records: &mut [Record], cap: u32) {
    for r in records {
        r.ttl = r.ttl.min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Evidence;
    use crate::policy::{Severity, Via};
    use hickory_proto::rr::rdata::svcb::{Alpn, EchConfigList};
    use hickory_proto::rr::rdata::HTTPS;

    fn decision(action: Action, catalogued: bool) -> Decision {
        Decision {
            service: catalogued.then(|| "claude".to_string()),
            service_name: None,
            category: None,
            service_kind: None,
            matched_name: "claude.ai".into(),
            pattern: "claude.ai".into(),
            via: Via::Dns,
            evidence: Evidence::Wire,
            matched_by: Default::default(),
            rule_id: "R".into(),
            action,
            severity: Severity::Medium,
            steer_to: None,
            groups: vec![],
            shared_tenant: false,
        }
    }

    fn portal() -> PortalConf {
        toml::from_str("address = \"10.0.0.1\"\naddress6 = \"fd00::1\"").unwrap()
    }

    #[test]
    fn plans_per_action() {
        use RecordType::*;
        let nx = BlockAnswer::Nxdomain;
        let d = |a| decision(a, true);
        let real = |cap| Plan::Real {
            cap_ttl: cap,
            strip_ech: true,
        };
        // The verdict the enforcer would give (a grant held or not).
        let pl = |d: &Decision, q, enforcing, granted: bool, block| {
            let g = crate::enforce::grants::Grants::new();
            let ip: IpAddr = "10.0.0.9".parse().unwrap();
            if granted {
                g.grant(
                    ip,
                    &crate::enforce::enforcer::grant_key(d),
                    std::time::Duration::from_secs(60),
                );
            }
            let v = crate::enforce::enforcer::verdict(d, ip, &g);
            plan(Some((d, &v)), q, enforcing, block, 30)
        };
        // Undecided names: forwarded, no event, nothing stripped.
        assert_eq!(
            plan(None, A, true, nx, 30),
            (
                Plan::Real {
                    cap_ttl: None,
                    strip_ech: false
                },
                None
            )
        );
        let s = Some(Outcome::Stopped);
        assert_eq!(pl(&d(Action::Steer), A, true, false, nx), (Plan::Portal, s));
        assert_eq!(
            pl(&d(Action::Steer), AAAA, true, false, nx),
            (Plan::Portal, s)
        );
        assert_eq!(
            pl(&d(Action::Steer), HTTPS, true, false, nx),
            (Plan::Nodata, s)
        );
        assert_eq!(
            pl(&d(Action::Coach), SVCB, true, false, nx),
            (Plan::Nodata, s)
        );
        assert_eq!(
            pl(&d(Action::Steer), MX, true, false, nx),
            (Plan::Nodata, s)
        );
        assert_eq!(
            pl(&d(Action::Block), A, true, false, nx),
            (Plan::Nxdomain, s)
        );
        assert_eq!(
            pl(&d(Action::Block), HTTPS, true, false, nx),
            (Plan::Nxdomain, s)
        );
        let null = BlockAnswer::Null;
        assert_eq!(
            pl(&d(Action::Block), AAAA, true, false, null),
            (Plan::Null, s)
        );
        assert_eq!(
            pl(&d(Action::Block), TXT, true, false, null),
            (Plan::Nodata, s)
        );
        // Coach under a grant: real, TTL capped.
        assert_eq!(
            pl(&d(Action::Coach), A, true, true, nx),
            (real(Some(30)), Some(Outcome::Granted))
        );
        assert_eq!(pl(&d(Action::Coach), A, true, false, nx), (Plan::Portal, s));
        assert_eq!(
            pl(&d(Action::Alert), HTTPS, true, false, nx),
            (real(None), Some(Outcome::Allowed))
        );
        // Monitor mode: always real, the event says what would have happened.
        assert_eq!(
            pl(&d(Action::Block), A, false, false, nx),
            (real(None), Some(Outcome::WouldStop))
        );
        assert_eq!(
            pl(&d(Action::Steer), HTTPS, false, false, nx),
            (real(None), Some(Outcome::WouldStop))
        );
        // An uncatalogued name decided by a domain rule keeps its ECH.
        assert_eq!(
            pl(&decision(Action::Allow, false), HTTPS, true, false, nx).0,
            Plan::Real {
                cap_ttl: None,
                strip_ech: false
            }
        );
    }

    #[test]
    fn synthesised_answers() {
        let n = Name::from_ascii("claude.ai.").unwrap();
        let pc = portal();
        let s = synthesize(Plan::Portal, &n, RecordType::A, Some(&pc), 30);
        assert_eq!(s.answers[0].data, RData::A(A::new(10, 0, 0, 1)));
        assert_eq!(s.answers[0].ttl, 30);
        assert_eq!((s.word, s.result), (DnsAnswer::Portal, QueryResult::Portal));
        let s = synthesize(Plan::Portal, &n, RecordType::AAAA, Some(&pc), 30);
        assert_eq!(
            s.answers[0].data,
            RData::AAAA(AAAA("fd00::1".parse().unwrap()))
        );
        // No IPv6 portal: AAAA gets no data, never a v4 address in disguise.
        let v4only: PortalConf = toml::from_str("address = \"10.0.0.1\"").unwrap();
        let s = synthesize(Plan::Portal, &n, RecordType::AAAA, Some(&v4only), 30);
        assert!(s.answers.is_empty());
        assert_eq!(
            (s.rcode, s.word),
            (ResponseCode::NoError, DnsAnswer::Nodata)
        );
        let s = synthesize(Plan::Nxdomain, &n, RecordType::A, None, 30);
        assert_eq!(s.rcode, ResponseCode::NXDomain);
        assert!(matches!(s.authorities[0].data, RData::SOA(_)));
        let s = synthesize(Plan::Null, &n, RecordType::AAAA, None, 30);
        assert_eq!(s.answers[0].data, RData::AAAA(AAAA("::".parse().unwrap())));
        assert_eq!(s.result, QueryResult::Blocked);
    }

    #[test]
    fn ech_is_stripped_with_its_mandatory_mention() {
        let n = Name::from_ascii("chatgpt.com.").unwrap();
        let svcb = SVCB::new(
            1,
            Name::root(),
            vec![
                (
                    SvcParamKey::Mandatory,
                    SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::EchConfigList])),
                ),
                (
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                ),
                (
                    SvcParamKey::EchConfigList,
                    SvcParamValue::EchConfigList(EchConfigList(vec![0, 1, 2, 3])),
                ),
            ],
        );
        let mut rs = vec![
            Record::from_rdata(n.clone(), 300, RData::HTTPS(HTTPS(svcb))),
            Record::from_rdata(n, 300, RData::A(A::new(192, 0, 2, 1))),
        ];
        assert_eq!(strip_ech(&mut rs), 1);
        let RData::HTTPS(h) = &rs[0].data else {
            panic!()
        };
        assert_eq!(h.svc_params.len(), 1, "{:?}", h.svc_params);
        assert_eq!(h.svc_params[0].0, SvcParamKey::Alpn);
        // The record still encodes.
        let mut m = hickory_proto::op::Message::query();
        m.add_answers(rs.clone());
        assert!(m.to_vec().is_ok());
        assert_eq!(strip_ech(&mut rs), 0);
        cap_ttl(&mut rs, 30);
        assert!(rs.iter().all(|r| r.ttl == 30));
    }
}
