//! One query's bytes in, the answer's bytes out: what the servers do between the socket and the
//! handler (hickory's parsing, FORMERR for a message whose header reads but not the rest, no
//! answer to responses or to fewer than 12 bytes, the handler, the encoding), without a socket.
//! DNS over TCP (`tcp.rs`) answers through it; tests and the `dnsq` fuzz target call it directly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use super::handler::Handler;

/// Collects the one response of a request, encoded at most `max` bytes long.
#[derive(Clone)]
struct Slot {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Slot {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(self.max);
        let info = response.destructive_emit(&mut enc)?;
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf);
        Ok(info)
    }
}

/// The answer to the DNS message `raw` from `src` over `protocol` (UDP answers at most as large
/// as the query's EDNS buffer, 512 bytes without EDNS; TCP up to 65,535), or none: fewer than 12
/// bytes, a response, or a handler that sent nothing.
pub async fn answer(
    h: &Handler,
    raw: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    if raw.len() < 12 {
        return None;
    }
    match Request::from_bytes(raw.clone(), src, protocol) {
        Ok(req) => {
            if req.metadata.message_type != MessageType::Query {
                return None;
            }
            let max = match protocol {
                Protocol::Udp => req.edns.as_ref().map_or(512, |e| {
                    e.max_payload().clamp(512, super::handler::MAX_UDP_PAYLOAD)
                }),
                _ => u16::MAX,
            };
            let slot = Slot {
                out: Arc::default(),
                max,
            };
            h.handle_request::<_, TokioTime>(&req, slot.clone()).await;
            let r = slot.out.lock().unwrap_or_else(|e| e.into_inner()).take();
            r
        }
        Err(_) => Some(formerr(&raw)),
    }
}

/// FORMERR for a message whose header could be read but not the rest (id and opcode echoed).
fn formerr(q: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 12];
    r[0] = q[0];
    r[1] = q[1];
    // QR, the query's opcode and RD; RA; rcode 1.
    r[2] = 0x80 | (q[2] & 0x79);
    r[3] = 0x80 | 1;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Devices;
    use crate::enforce::grants::Grants;
    use crate::pipeline::Judge;
    use crate::policy::reload::PolicyHandle;
    use crate::resolver::config::DnsConf;
    use crate::resolver::{bypass, cache, forward, handler, limit, DnsCtx, DnsMetrics};
    use hickory_server::proto::op::{Message, ResponseCode};
    use hickory_server::proto::serialize::binary::BinDecodable;
    use std::sync::atomic::AtomicBool;

    /// A handler with the bundled policy and an upstream nobody answers on (these queries are
    /// all answered without one).
    fn handler() -> Handler {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let judge = Judge::new(PolicyHandle::load(&dir).unwrap(), "wire")
            .with_devices(Arc::new(Devices::new()));
        let conf: DnsConf = toml::from_str(
            "listen = [\"10.9.0.1:53\"]\nupstreams = [\"127.0.0.1:9\"]\nclients = [\"10.9.0.0/24\"]\n",
        )
        .unwrap();
        let registry = prometheus::Registry::new();
        let metrics = DnsMetrics::register(&registry).unwrap();
        let shared = handler::Shared {
            cache: cache::Cache::new(16),
            fwd: forward::Forwarder::new(
                conf.upstreams.clone(),
                std::time::Duration::from_millis(100),
                4,
                metrics.clone(),
            ),
            limiter: limit::Limiter::new(conf.rate_per_client),
            bypass_seen: bypass::Seen::default(),
            metrics,
            portal: None,
            ctx: DnsCtx {
                judge,
                grants: Arc::new(Grants::new()),
                enforcing: Arc::new(AtomicBool::new(true)),
                registry,
            },
            conf,
        };
        Handler {
            shared: Arc::new(shared),
            listen: "10.9.0.1:53".parse().unwrap(),
            guard: false,
        }
    }

    fn ask(h: &Handler, q: &[u8], from: &str) -> Option<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(answer(h, q.to_vec(), from.parse().unwrap(), Protocol::Udp))
    }

    /// The `dnsq` fuzz target's first find: the question's name ends in a pointer into the
    /// header; echoed behind the answer's header it read as a label of length 0x81 and then an
    /// unknown label type, so the answer did not parse.
    const POINTS_INTO_HEADER: &[u8] = &[
        0x20, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x2d,
        0x2d, 0x2d, 0x2d, 0x2d, 0x2d, 0xc0, 0x01, 0x01, 0x01, 0x01, 0x63, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x63, 0x00, 0x00, 0x04, 0x6d, 0x61, 0x73, 0x6b, 0x06, 0x69, 0x63,
        0x6c, 0x6f, 0x19, 0x19, 0x19, 0x19, 0x19, 0x19, 0x19, 0x72, 0x6f, 0x73, 0x6f, 0x66, 0x74,
        0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x19, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x4c, 0x00,
    ];

    #[test]
    fn a_question_pointing_into_the_header_gets_a_parseable_formerr() {
        let h = handler();
        assert!(handler::question_points_into_header(POINTS_INTO_HEADER));
        for from in ["10.9.0.20:5300", "192.0.2.9:5300"] {
            let out = ask(&h, POINTS_INTO_HEADER, from).expect("an answer");
            let m = Message::from_bytes(&out).expect("the answer parses");
            assert_eq!(m.metadata.id, 0x2001);
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
            assert!(m.queries.is_empty());
        }
    }

    #[test]
    fn pointers_between_questions_and_plain_queries_pass() {
        // Two questions, the second's name a pointer to the first's (offset 12).
        let mut q = vec![0, 7, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01\xc0\x0c\x00\x1c\x00\x01");
        assert!(!handler::question_points_into_header(&q));
        let mut one = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        one.extend_from_slice(b"\x13use-application-dns\x03net\x00\x00\x01\x00\x01");
        assert!(!handler::question_points_into_header(&one));
        let out = ask(&handler(), &one, "10.9.0.20:5300").expect("an answer");
        let m = Message::from_bytes(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.queries.len(), 1);
        // A runt gets nothing.
        assert!(ask(&handler(), &one[..11], "10.9.0.20:5300").is_none());
    }
}
