//! The forwarder behind the resolver: one question to the upstreams over UDP from a fresh random
//! port with a random id (TCP when truncated), failover on timeout, identical questions coalesced.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use super::cache::Key;
use super::metrics::DnsMetrics;

/// EDNS buffer size advertised upstream (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// An upstream answer over TCP larger than this is refused (the protocol's own maximum).
const MAX_TCP_ANSWER: usize = 65_535;

/// Why no upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwdError {
    /// Every upstream timed out or failed.
    NoAnswer,
    /// Too many questions already wait on upstreams.
    Overloaded,
}

/// An upstream's answer and its size on the wire.
#[derive(Debug)]
pub struct Upstream {
    pub msg: Message,
    pub wire_len: usize,
}

type Shared = Option<Result<Arc<Upstream>, FwdError>>;

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    preferred: AtomicUsize,
    inflight: Mutex<HashMap<Key, watch::Receiver<Shared>>>,
    slots: Semaphore,
    /// Slots each client holds now (a client may hold at most `share` of them: one host, or a
    /// flood in one address's name, cannot take every slot).
    held: Mutex<HashMap<IpAddr, usize>>,
    share: usize,
    metrics: DnsMetrics,
    epoch: Instant,
    attempted: AtomicBool,
    /// Milliseconds since `epoch` (+1) of the last upstream answer and the last failure (0: never).
    last_ok: AtomicU64,
    last_err: AtomicU64,
}

/// A client's hold on a forwarder slot, given back when dropped.
struct Held<'a> {
    f: &'a Forwarder,
    client: IpAddr,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut h = self.f.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = h.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                h.remove(&self.client);
            }
        }
    }
}

/// Removes a question from the in-flight table when its leader finishes or is dropped.
struct Leader<'a> {
    f: &'a Forwarder,
    key: Option<Key>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.f
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&k);
        }
    }
}

impl Forwarder {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        max_inflight: usize,
        metrics: DnsMetrics,
    ) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            preferred: AtomicUsize::new(0),
            inflight: Mutex::new(HashMap::new()),
            slots: Semaphore::new(max_inflight.max(1)),
            held: Mutex::new(HashMap::new()),
            share: fair_share(max_inflight),
            metrics,
            epoch: Instant::now(),
            attempted: AtomicBool::new(false),
            last_ok: AtomicU64::new(0),
            last_err: AtomicU64::new(0),
        }
    }

    /// Whether the upstreams work: no question yet, an answer within the last minute, or the
    /// latest exchange answered.
    pub fn healthy(&self) -> bool {
        if !self.attempted.load(Ordering::Relaxed) {
            return true;
        }
        let ok = self.last_ok.load(Ordering::Relaxed);
        let err = self.last_err.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        ok > 0 && (now.saturating_sub(ok) < 60_000 || ok >= err)
    }

    fn mark(&self, ok: bool) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        if ok {
            self.last_ok.store(now, Ordering::Relaxed);
        } else {
            self.last_err.store(now, Ordering::Relaxed);
        }
    }

    /// Take one of `client`'s share of the slots; none when it holds its share already.
    fn hold(&self, client: IpAddr) -> Option<Held<'_>> {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = h.entry(client).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(Held { f: self, client })
    }

    /// Ask the upstreams `name`/`qtype`/`qclass` for `client`; a question already on its way is
    /// waited for instead of being asked again.
    pub async fn resolve(
        &self,
        client: IpAddr,
        key: &Key,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Arc<Upstream>, FwdError> {
        enum Role {
            Leader(watch::Sender<Shared>),
            Follower(watch::Receiver<Shared>),
        }
        let role = {
            let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(key) {
                Some(rx) => Role::Follower(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    m.insert(key.clone(), rx);
                    Role::Leader(tx)
                }
            }
        };
        let tx = match role {
            Role::Leader(tx) => tx,
            Role::Follower(mut rx) => {
                let limit = self.timeout * (self.upstreams.len() as u32 + 1);
                let r = tokio::time::timeout(limit, rx.wait_for(|v| v.is_some()))
                    .await
                    .ok()
                    .and_then(|r| r.ok().and_then(|v| v.clone()));
                return r.unwrap_or(Err(FwdError::NoAnswer));
            }
        };
        let _leader = Leader {
            f: self,
            key: Some(key.clone()),
        };
        let r = match (self.hold(client), self.slots.try_acquire()) {
            (Some(_held), Ok(_permit)) => {
                self.exchange_any(name, qtype, qclass).await.map(Arc::new)
            }
            (None, _) => {
                self.metrics.fair_share.inc();
                Err(FwdError::Overloaded)
            }
            (_, Err(_)) => Err(FwdError::Overloaded),
        };
        let _ = tx.send(Some(r.clone()));
        r
    }

    /// Try each upstream in turn, starting with the one that answered last.
    async fn exchange_any(
        &self,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Upstream, FwdError> {
        self.attempted.store(true, Ordering::Relaxed);
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last_bad: Option<Upstream> = None;
        for i in 0..n {
            let idx = (first + i) % n;
            let up = self.upstreams[idx];
            let t = Instant::now();
            match self.exchange(up, name, qtype, qclass).await {
                Ok(u) => {
                    let rc = u.msg.metadata.response_code;
                    if matches!(
                        rc,
                        ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
                    ) {
                        // This upstream cannot answer it: another may.
                        self.metrics
                            .upstream_errors
                            .with_label_values(&["servfail"])
                            .inc();
                        last_bad = Some(u);
                        continue;
                    }
                    self.metrics
                        .upstream_seconds
                        .observe(t.elapsed().as_secs_f64());
                    self.preferred.store(idx, Ordering::Relaxed);
                    self.mark(true);
                    return Ok(u);
                }
                Err(kind) => {
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[kind])
                        .inc();
                }
            }
        }
        match last_bad {
            // An upstream answered, if only to say it cannot: it is alive.
            Some(u) => {
                self.mark(true);
                Ok(u)
            }
            None => {
                self.mark(false);
                Err(FwdError::NoAnswer)
            }
        }
    }

    /// One exchange with one upstream: UDP, then TCP if the answer was truncated.
    async fn exchange(
        &self,
        up: SocketAddr,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Upstream, &'static str> {
        let id: u16 = rand::random();
        let wire = query_bytes(id, name, qtype, qclass).map_err(|_| "bad_response")?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let u = tokio::time::timeout_at(deadline, udp_exchange(up, &wire, id, name, qtype, qclass))
            .await
            .map_err(|_| "timeout")??;
        if !u.msg.metadata.truncation {
            return Ok(u);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::time::timeout_at(deadline, tcp_exchange(up, &wire, id, name, qtype, qclass))
            .await
            .map_err(|_| "timeout")?
    }
}

/// The slots one client may hold: an eighth of them, at least 8 (a busy NAT'd subnet behind one
/// address still resolves; one host cannot take the rest).
fn fair_share(max_inflight: usize) -> usize {
    (max_inflight / 8).max(8)
}

/// The query sent upstream: recursion desired, EDNS with a 1232-byte buffer.
pub fn query_bytes(
    id: u16,
    name: &Name,
    qtype: RecordType,
    qclass: DNSClass,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(name.clone(), qtype);
    q.set_query_class(qclass);
    m.add_query(q);
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(e);
    m.to_vec()
}

/// Is `m` the answer to our question (id, response, same question)? Anything else is ignored:
/// a spoofed or stray datagram must guess the random port, the id and the question.
fn matches(m: &Message, id: u16, name: &Name, qtype: RecordType, qclass: DNSClass) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type() == qtype
        && m.queries[0].query_class() == qclass
        // Name equality is case-insensitive.
        && m.queries[0].name() == name
}

async fn udp_exchange(
    up: SocketAddr,
    wire: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
    qclass: DNSClass,
) -> Result<Upstream, &'static str> {
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(up)
    } else {
        "[::]:0".parse().unwrap_or(up)
    };
    let s = UdpSocket::bind(bind).await.map_err(|_| "io")?;
    s.connect(up).await.map_err(|_| "io")?;
    s.send(wire).await.map_err(|_| "io")?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match s.recv(&mut buf).await {
            Ok(n) => n,
            // ICMP port unreachable and the like: this upstream is down.
            Err(_) => return Err("io"),
        };
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if matches(&m, id, name, qtype, qclass) {
            return Ok(Upstream {
                msg: m,
                wire_len: n,
            });
        }
    }
}

async fn tcp_exchange(
    up: SocketAddr,
    wire: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
    qclass: DNSClass,
) -> Result<Upstream, &'static str> {
    let mut s = TcpStream::connect(up).await.map_err(|_| "io")?;
    let _ = s.set_nodelay(true);
    let mut out = Vec::with_capacity(wire.len() + 2);
    out.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    out.extend_from_slice(wire);
    s.write_all(&out).await.map_err(|_| "io")?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(|_| "io")?;
        let n = u16::from_be_bytes(len) as usize;
        if !(12..=MAX_TCP_ANSWER).contains(&n) {
            return Err("bad_response");
        }
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).await.map_err(|_| "io")?;
        let m = Message::from_vec(&buf).map_err(|_| "bad_response")?;
        if matches(&m, id, name, qtype, qclass) {
            return Ok(Upstream {
                msg: m,
                wire_len: n,
            });
        }
    }
}
