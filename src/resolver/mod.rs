//! DNS mode: shadowgate as the clinic's LAN resolver (hickory-server in front of a caching
//! forwarder) answering each lookup per policy: portal address, NXDOMAIN, null or the real answer.
//!
//! `serve` binds UDP and TCP on every `[dns] listen` address and returns a [`DnsHandle`]. Per
//! query: clients outside `clients` get REFUSED, a client past `rate_per_client` too (both only
//! counted); the question becomes a `dns_query` observation decided by the policy; block answers
//! NXDOMAIN or 0.0.0.0/:: (`block_answer`), steer and coach (without a grant) the portal address
//! with TTL `portal_ttl_s` and no data for HTTPS/SVCB; coach under a grant gets the real answer
//! with TTLs capped at `portal_ttl_s`; HTTPS/SVCB answers of catalogued names lose their ECH
//! config; whether a decision stops the lookup is `enforce::verdict`'s answer, the same the
//! enforcer acts on. While `enforcing` is false every answer is the real one. Each decided lookup
//! is one event through the judge (`detail`: `dns_answer`, `enforcement`).

pub mod answer;
pub mod bypass;
pub mod cache;
pub mod config;
pub mod events;
pub mod forward;
pub mod handler;
pub mod limit;
pub mod metrics;
pub mod tcp;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::enforce::grants::Grants;
use crate::pipeline::Judge;
use crate::portal::config::PortalConf;
use config::DnsConf;

pub use metrics::{DnsMetrics, QueryResult};

/// What the resolver shares with the rest of the daemon.
#[derive(Clone)]
pub struct DnsCtx {
    /// Decides each lookup with the policy in force, completes it with the client's device
    /// and records it (one event per decided lookup; a judge without a recorder records none).
    pub judge: Judge,
    pub grants: Arc<Grants>,
    /// false: monitor mode or break glass: answer everything for real, record "would stop".
    pub enforcing: Arc<AtomicBool>,
    pub registry: prometheus::Registry,
}

/// The running resolver.
pub struct DnsHandle {
    servers: Vec<hickory_server::Server<handler::Handler>>,
    stop: watch::Sender<bool>,
    tcp: Vec<JoinHandle<()>>,
    shared: Arc<handler::Shared>,
    addrs: Vec<SocketAddr>,
    guards: Vec<(SocketAddr, SocketAddr)>,
}

impl DnsHandle {
    /// Stop answering: UDP sockets and TCP listeners close, open connections end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for s in &mut self.servers {
            let _ = s.shutdown_gracefully().await;
        }
        for t in self.tcp.drain(..) {
            let _ = t.await;
        }
    }

    /// Whether DNS works: an upstream answered recently, or no query needed one yet.
    pub fn healthy(&self) -> bool {
        self.shared.fwd.healthy()
    }

    /// The addresses bound (as `listen`, with the port the system chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `[dns] source_guard = "log"`: each listen address with its guard socket (the nftables
    /// table sends a query there when its address is bound to another MAC).
    pub fn guards(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.guards
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.shared.metrics
    }

    /// Answers in the cache now.
    pub fn cache_len(&self) -> usize {
        self.shared.cache.len()
    }
}

/// What to do about a bind error.
fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE"
        }
        std::io::ErrorKind::AddrInUse => {
            "another resolver (dnsmasq, systemd-resolved, bind) listens there: stop it or change [dns] listen"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is on no interface of this machine: fix [dns] listen or add the address"
        }
        _ => "check [dns] listen",
    }
}

/// Larger socket buffers ride out bursts (best effort: the kernel caps them at rmem_max).
fn grow_buffers(s: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid socket descriptor and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Start the resolver on every `conf.listen` address (UDP and TCP). Must run inside a tokio
/// runtime. Errors say which address failed and what to do.
pub async fn serve(
    conf: DnsConf,
    portal: Option<PortalConf>,
    ctx: DnsCtx,
) -> Result<DnsHandle, String> {
    if conf.listen.is_empty() {
        return Err("[dns] listen is empty: give the LAN address(es) to answer on, e.g. listen = [\"10.0.0.1:53\"]".into());
    }
    if conf.upstreams.is_empty() {
        return Err("[dns] upstreams is empty: give the resolver(s) to forward to, e.g. upstreams = [\"192.0.2.53:53\"]".into());
    }
    if conf.clients.is_empty() {
        return Err("[dns] clients is empty: every query would be REFUSED; list the LAN networks, e.g. clients = [\"10.0.0.0/16\"]".into());
    }
    let metrics = DnsMetrics::register(&ctx.registry)?;
    let shared = Arc::new(handler::Shared {
        cache: cache::Cache::new(conf.cache_size),
        fwd: forward::Forwarder::new(
            conf.upstreams.clone(),
            Duration::from_millis(conf.upstream_timeout_ms.max(1)),
            conf.max_inflight,
            metrics.clone(),
        ),
        limiter: limit::Limiter::new(conf.rate_per_client),
        bypass_seen: bypass::Seen::default(),
        metrics,
        portal,
        ctx,
        conf,
    });
    let limits = tcp::Limits {
        total: shared.conf.tcp_max_connections.max(1),
        per_client: shared.conf.tcp_max_per_client.max(1),
        idle: Duration::from_millis(shared.conf.tcp_idle_ms.max(100)),
    };
    let (stop, stop_rx) = watch::channel(false);
    let mut bound = Vec::new();
    for addr in &shared.conf.listen {
        let udp = std::net::UdpSocket::bind(addr)
            .map_err(|e| format!("cannot bind DNS (UDP) on {addr}: {e}; {}", bind_hint(&e)))?;
        let local = udp.local_addr().unwrap_or(*addr);
        // Port 0 (tests): TCP takes the port UDP got.
        let tcp = TcpListener::bind(local)
            .await
            .map_err(|e| format!("cannot bind DNS (TCP) on {local}: {e}; {}", bind_hint(&e)))?;
        grow_buffers(&udp);
        udp.set_nonblocking(true)
            .map_err(|e| format!("cannot use the DNS socket on {addr}: {e}"))?;
        let udp = UdpSocket::from_std(udp)
            .map_err(|e| format!("cannot use the DNS socket on {addr}: {e}"))?;
        bound.push((local, udp, tcp));
    }
    let mut servers = Vec::new();
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    let mut guards = Vec::new();
    for (local, udp, tcpl) in bound {
        let h = handler::Handler {
            shared: Arc::clone(&shared),
            listen: local,
            guard: false,
        };
        let mut server = hickory_server::Server::new(h.clone());
        server.register_socket(udp);
        servers.push(server);
        tasks.push(tokio::spawn(tcp::serve(tcpl, h, limits, stop_rx.clone())));
        addrs.push(local);
        // The source guard's socket beside it (a wildcard listen address has no one address
        // to send guarded queries to: the capture still reports them).
        if shared.conf.source_guard == config::SourceGuard::Log && !local.ip().is_unspecified() {
            let g = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))
                .and_then(|g| g.set_nonblocking(true).map(|_| g))
                .and_then(|g| {
                    grow_buffers(&g);
                    UdpSocket::from_std(g)
                })
                .map_err(|e| {
                    format!(
                        "cannot bind the DNS source guard's socket on {}: {e}",
                        local.ip()
                    )
                })?;
            let gaddr = g.local_addr().map_err(|e| e.to_string())?;
            let gh = handler::Handler {
                shared: Arc::clone(&shared),
                listen: local,
                guard: true,
            };
            let mut server = hickory_server::Server::new(gh);
            server.register_socket(g);
            servers.push(server);
            guards.push((local, gaddr));
        }
    }
    // DNS to these sockets is the resolver's to decide: capture must not decide it again.
    shared
        .ctx
        .judge
        .claim(|c| c.dns.extend(addrs.iter().copied()));
    Ok(DnsHandle {
        servers,
        stop,
        tcp: tasks,
        shared,
        addrs,
        guards,
    })
}
