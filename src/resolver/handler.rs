//! The resolver's request handler (hickory-server `RequestHandler`): who may ask, the rate
//! limit, the policy decision per question, then the policy answer or the (cached) real one.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::proto::serialize::binary::BinDecoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use ipnet::IpNet;

use super::answer::{self, Plan};
use super::bypass;
use super::cache::{Cache, Key};
use super::config::DnsConf;
use super::events;
use super::forward::Forwarder;
use super::limit::Limiter;
use super::metrics::{DnsMetrics, QueryResult};
use super::DnsCtx;
use crate::enforce::enforcer::verdict;
use crate::flow::Kind;
use crate::portal::config::PortalConf;
use crate::record::{DnsAnswer, Enforced};

/// Largest UDP answer sent, whatever the client advertises.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 4096;

/// State shared by every listener of one `serve`.
pub struct Shared {
    pub conf: DnsConf,
    pub portal: Option<PortalConf>,
    pub ctx: DnsCtx,
    pub cache: Cache,
    pub fwd: Forwarder,
    pub limiter: Limiter,
    pub metrics: DnsMetrics,
    /// Bypass lookups recorded lately (one event per client and name an hour).
    pub bypass_seen: bypass::Seen,
}

impl Shared {
    /// A bypass name: answered here, never forwarded; recorded once an hour per client.
    fn bypass(&self, ip: IpAddr, name: &str, what: &'static str) {
        self.metrics.count(QueryResult::Bypass);
        if !self.bypass_seen.record(ip, what) {
            return;
        }
        let j = &self.ctx.judge;
        let mut e = crate::record::Event::system(
            crate::record::SystemKind::DnsBypass,
            crate::time::now_ns(),
            j.sensor(),
            &format!("{ip} looked up {name} ({what}): answered here, not forwarded"),
            serde_json::json!({ "client": ip.to_string(), "name": name, "what": what }),
        );
        e.client_ip = ip.to_string();
        if let Some(d) = j.devices().and_then(|d| d.lookup(ip)) {
            e.client_mac = d.mac.as_ref().map(crate::flow::observation::mac_string);
            e.client_hostname = d.hostname;
        }
        j.record_event(e);
    }
}

/// An IPv4-mapped IPv6 source (a dual-stack socket) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Shared {
    /// Is `ip` one of the `clients` networks?
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        self.conf.clients.iter().any(|n: &IpNet| n.contains(&ip))
    }
}

/// The handler of one listen address (its address is the `server` of the observations).
#[derive(Clone)]
pub struct Handler {
    pub shared: Arc<Shared>,
    pub listen: SocketAddr,
    /// The source guard's socket for `listen`: every query here came from an address the
    /// gateway binds to another MAC (`[dns] source_guard = "log"`).
    pub guard: bool,
}

/// The one key under which queries the guard caught share a rate limit and forwarder slots:
/// a flood in many addresses' names can use up only its own budget.
const GUARDED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// A header-only answer (REFUSED, FORMERR, SERVFAIL, NOTIMP) echoing the question.
async fn reply_code<R: ResponseHandler>(
    req: &Request,
    mut rh: R,
    code: ResponseCode,
) -> ResponseInfo {
    let mut md = Metadata::response_from_request(&req.metadata);
    md.recursion_available = true;
    md.response_code = code;
    let b = MessageResponseBuilder::from_message_request(req);
    match rh.send_response(b.build_no_records(md)).await {
        Ok(i) => i,
        Err(_) => failed(&md),
    }
}

/// FORMERR without the question: for a question that cannot be echoed as received.
async fn formerr_bare<R: ResponseHandler>(req: &Request, mut rh: R) -> ResponseInfo {
    let mut md = Metadata::response_from_request(&req.metadata);
    md.recursion_available = true;
    md.response_code = ResponseCode::FormErr;
    let Ok(none) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
        return failed(&md);
    };
    let b = MessageResponseBuilder::new(&none, None);
    match rh.send_response(b.build_no_records(md)).await {
        Ok(i) => i,
        Err(_) => failed(&md),
    }
}

/// Does a question name point (DNS name compression) into the 12-byte header? Answers echo the
/// question section byte for byte, behind a header that differs from the query's: such a pointer
/// would then name something else, or nothing parseable. RFC 1035 lets a pointer name only a
/// prior occurrence of a name, and the header holds none. (Found by fuzzing: `fuzz/` `dnsq`.)
pub fn question_points_into_header(raw: &[u8]) -> bool {
    let Some(qd) = raw.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return false;
    };
    let mut i = 12;
    for _ in 0..qd {
        loop {
            let Some(&l) = raw.get(i) else {
                return false;
            };
            match l & 0xc0 {
                0 if l == 0 => {
                    i += 1;
                    break;
                }
                0 => i += 1 + l as usize,
                0xc0 => {
                    let Some(&lo) = raw.get(i + 1) else {
                        return false;
                    };
                    if ((usize::from(l & 0x3f)) << 8 | usize::from(lo)) < 12 {
                        return true;
                    }
                    i += 2;
                    break;
                }
                // Extended label types: hickory refused the message already.
                _ => return false,
            }
        }
        i += 4;
    }
    false
}

fn failed(md: &Metadata) -> ResponseInfo {
    let mut md = *md;
    md.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata: md,
        counts: HeaderCounts::default(),
    })
}

/// The question as the policy and the cache see it: lower-case, no trailing dot ("" for the root).
fn policy_name(n: &hickory_server::proto::rr::Name) -> String {
    let mut s = n.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        req: &Request,
        rh: R,
    ) -> ResponseInfo {
        let s = &*self.shared;
        let ip = canonical(req.src().ip());
        if question_points_into_header(req.as_slice()) {
            s.metrics.count(QueryResult::Refused);
            return formerr_bare(req, rh).await;
        }
        if !s.client_allowed(ip) {
            s.metrics.count(QueryResult::Refused);
            return reply_code(req, rh, ResponseCode::Refused).await;
        }
        // Whose budget the query spends: its own, or for a query in another device's name the
        // one shared by all such queries.
        let who = if self.guard {
            s.metrics.spoofed.inc();
            GUARDED
        } else {
            ip
        };
        if !s.limiter.allow(who) {
            s.metrics.count(QueryResult::Ratelimited);
            return reply_code(req, rh, ResponseCode::Refused).await;
        }
        if req.metadata.message_type != MessageType::Query || req.metadata.op_code != OpCode::Query
        {
            s.metrics.count(QueryResult::Refused);
            return reply_code(req, rh, ResponseCode::NotImp).await;
        }
        let Ok(info) = req.request_info() else {
            // Not exactly one question (RFC 9619).
            s.metrics.count(QueryResult::Refused);
            return reply_code(req, rh, ResponseCode::FormErr).await;
        };
        let q = info.query.original();
        let (qname, qtype, qclass) = (q.name().clone(), q.query_type(), q.query_class());
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
            s.metrics.count(QueryResult::Refused);
            return reply_code(req, rh, ResponseCode::Refused).await;
        }
        let name = policy_name(&qname);
        let tcp = req.protocol() == Protocol::Tcp;
        if let Some((a, what)) = bypass::answer(&name).filter(|_| s.conf.block_bypass) {
            if self.guard {
                s.metrics.count(QueryResult::Bypass);
            } else {
                s.bypass(ip, &name, what);
            }
            let plan = match a {
                bypass::Answer::Nxdomain => Plan::Nxdomain,
                bypass::Answer::Nodata => Plan::Nodata,
            };
            let sy = answer::synthesize(plan, &qname, qtype, None, s.conf.portal_ttl_s);
            return respond(req, rh, sy.rcode, &sy.answers, &sy.authorities).await;
        }

        // The policy decides on questions of class IN.
        let mut obs = None;
        let mut decision = None;
        if qclass == DNSClass::IN && !name.is_empty() {
            let mut o = events::observation(
                name.clone(),
                qtype,
                req.metadata.id,
                SocketAddr::new(ip, req.src().port()),
                self.listen,
                tcp,
            );
            decision = s.ctx.judge.decide(&mut o);
            if decision.is_some() {
                obs = Some(o);
            }
        }
        let verdict = decision.as_ref().map(|d| verdict(d, ip, &s.ctx.grants));
        let enforcing = s.ctx.enforcing.load(Ordering::Relaxed);
        let ttl = s.conf.portal_ttl_s;
        let (plan, outcome) = answer::plan(
            decision.as_ref().zip(verdict.as_ref()),
            qtype,
            enforcing,
            s.conf.block_answer,
            ttl,
        );

        let (rcode, answers, authorities, word, result) = match plan {
            Plan::Real { cap_ttl, strip_ech } => {
                let key = Key {
                    name,
                    qtype: u16::from(qtype),
                    qclass: u16::from(qclass),
                };
                let now = Instant::now();
                let (rcode, mut ans, mut auth, result) = match s.cache.get(&key, now) {
                    Some(a) => (a.rcode, a.answers, a.authorities, QueryResult::Cached),
                    None => match s.fwd.resolve(who, &key, &qname, qtype, qclass).await {
                        Ok(u) => {
                            if s.cache.insert(key, &u.msg, u.wire_len, now) {
                                s.metrics.cache_entries.set(s.cache.len() as i64);
                            }
                            let rc = u.msg.metadata.response_code;
                            let r = if rc == ResponseCode::ServFail {
                                QueryResult::Servfail
                            } else {
                                QueryResult::Forwarded
                            };
                            (rc, u.msg.answers.clone(), u.msg.authorities.clone(), r)
                        }
                        Err(_) => (
                            ResponseCode::ServFail,
                            Vec::new(),
                            Vec::new(),
                            QueryResult::Servfail,
                        ),
                    },
                };
                if let Some(c) = cap_ttl {
                    answer::cap_ttl(&mut ans, c);
                    answer::cap_ttl(&mut auth, c);
                }
                if strip_ech {
                    answer::strip_ech(&mut ans);
                }
                let word = if result == QueryResult::Servfail {
                    DnsAnswer::Servfail
                } else {
                    DnsAnswer::Real
                };
                (rcode, ans, auth, word, result)
            }
            p => {
                let sy = answer::synthesize(p, &qname, qtype, s.portal.as_ref(), ttl);
                (sy.rcode, sy.answers, sy.authorities, sy.word, sy.result)
            }
        };
        s.metrics.count(result);

        // A guarded query is answered as asked but recorded in nobody's name: the capture
        // reports the frame that carried it (`spoofed`, naming the MAC that sent it).
        let obs = obs.filter(|_| !self.guard);
        if let (Some(mut o), Some(d), Some(outcome)) = (obs, decision.as_ref(), outcome) {
            events::set_answer(&mut o, rcode, &answers);
            let enforced = Enforced::Lookup {
                outcome,
                answer: word,
            };
            s.ctx
                .judge
                .record(Kind::DnsQuery.into(), &o, d, Some(enforced), None);
        }

        respond(req, rh, rcode, &answers, &authorities).await
    }
}

async fn respond<R: ResponseHandler>(
    req: &Request,
    mut rh: R,
    rcode: ResponseCode,
    answers: &[Record],
    authorities: &[Record],
) -> ResponseInfo {
    let mut md = Metadata::response_from_request(&req.metadata);
    md.recursion_available = true;
    md.response_code = rcode;
    let edns = req.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().min(MAX_UDP_PAYLOAD));
        e
    });
    let mut b = MessageResponseBuilder::from_message_request(req);
    if let Some(e) = &edns {
        b.edns(e);
    }
    let resp = b.build(
        md,
        answers.iter(),
        authorities.iter(),
        std::iter::empty(),
        std::iter::empty(),
    );
    match rh.send_response(resp).await {
        Ok(i) => i,
        Err(_) => failed(&md),
    }
}
