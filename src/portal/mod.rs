//! The steering and coaching portal: HTTP and HTTPS on the portal address, a page per requested
//! name that says why the service stopped and where the approved route is, and the coach form.
//!
//! Never a proxy: it answers from what it holds and fetches nothing for a client. HTTPS leaves are
//! minted per name from the portal CA ([`ca`]), only for names steered or coached for that client.

pub mod ca;
pub mod config;
pub mod csrf;
pub mod events;
mod http;
mod metrics;
pub mod offline;
pub mod page;
pub mod rate;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::enforce::grants::Grants;
use crate::flow::Observation;
use crate::pipeline::Judge;
use crate::policy::reload::ReloadOutcome;
use crate::policy::{Action, Decision, PortalScope, Via};
use crate::portal::config::PortalConf;
use crate::record::PortalKind;

pub use events::{expiry_events, Peer};

/// Connections served at once (all clients), shared fairly between addresses (`rate::ConnLimit`:
/// when full, a newcomer takes the oldest connection of the biggest holder).
const MAX_CONNECTIONS: usize = 512;
/// Open connections per client address (browsers open about six per host); more are closed.
const CONNECTIONS_PER_CLIENT: usize = 32;
/// How long one connection may live, whatever it does (a client that sends slowly or never
/// reads its answers keeps a slot no longer than this).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a coach form stays valid.
const FORM_TTL: Duration = Duration::from_secs(15 * 60);

/// What the portal shares with the rest of the daemon.
pub struct PortalCtx {
    /// Decides each page request with the policy in force (completed with the client's device)
    /// and records what the portal did.
    pub judge: Judge,
    pub grants: Arc<Grants>,
    pub registry: prometheus::Registry,
}

/// The running portal.
pub struct PortalHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    alive: Arc<AtomicBool>,
    /// Where it listens: plain HTTP, and HTTPS (empty without a CA).
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    /// The CA's permitted and excluded DNS subtrees (`None`: HTTP only).
    pub ca_constraints: Option<(Vec<String>, Vec<String>)>,
}

impl PortalHandle {
    /// Stop accepting, let open connections end, stop the expiry task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// The steered or coached names of `policy` the portal CA cannot certify (`None`: no CA).
    pub fn uncertifiable(&self, policy: &crate::policy::Policy) -> Option<Vec<String>> {
        let (permitted, excluded) = self.ca_constraints.as_ref()?;
        Some(policy.uncertifiable(&policy.portal_scope(), permitted, excluded))
    }

    /// Every listener and the expiry task are running.
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && self.tasks.iter().all(|t| !t.is_finished())
    }
}

/// Shared by every connection.
pub(crate) struct State {
    pub conf: PortalConf,
    pub ctx: PortalCtx,
    pub look: page::Look,
    pub ca: Option<ca::PortalCa>,
    /// What the policy in force lets the portal certify (checked before every leaf; renewed on
    /// each policy reload).
    pub scope: arc_swap::ArcSwap<PortalScope>,
    pub csrf: csrf::Csrf,
    pub rate: rate::RateLimit,
    pub tls_rate: rate::RateLimit,
    pub conns: crate::slots::ConnLimit,
    pub m: metrics::Metrics,
}

impl State {
    /// The state every connection shares (registers the portal's metrics in `ctx.registry`).
    fn new(
        conf: PortalConf,
        ctx: PortalCtx,
        ca: Option<ca::PortalCa>,
        scope: PortalScope,
    ) -> Result<State, String> {
        let m = metrics::Metrics::register(&ctx.registry)?;
        Ok(State {
            look: page::Look::from_conf(&conf),
            csrf: csrf::Csrf::new(FORM_TTL)?,
            rate: rate::RateLimit::new(conf.rate_per_client),
            tls_rate: rate::RateLimit::new(conf.rate_per_client),
            conns: crate::slots::ConnLimit::new(CONNECTIONS_PER_CLIENT, MAX_CONNECTIONS),
            ca,
            scope: arc_swap::ArcSwap::from_pointee(scope),
            m,
            conf,
            ctx,
        })
    }

    /// The grant length (`grant_seconds` for tests, else `grant_minutes`).
    pub fn grant_ttl(&self) -> Duration {
        match self.conf.grant_seconds {
            Some(s) => Duration::from_secs(s.max(1)),
            None => Duration::from_secs(self.conf.grant_minutes.max(1) * 60),
        }
    }

    /// The request for `name` from `peer` and its decision, if the name is steered or coached
    /// for that client right now.
    pub fn decide(&self, name: &str, peer: Peer, via: Via) -> Option<(Observation, Decision)> {
        let mut o = events::observation(name, peer, via);
        let d = self.ctx.judge.decide(&mut o)?;
        matches!(d.action, Action::Steer | Action::Coach).then_some((o, d))
    }

    /// What the portal did about a decision, as its event.
    pub fn record(
        &self,
        kind: PortalKind,
        o: &Observation,
        d: &Decision,
        detail: serde_json::Value,
    ) {
        let extra = match detail {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        };
        if !self.ctx.judge.record(kind.into(), o, d, None, extra) && self.ctx.judge.records() {
            self.m.events_dropped.inc();
        }
    }
}

/// A peer address as the policy sees it (IPv4-mapped IPv6 as IPv4).
pub(crate) fn client_ip(a: SocketAddr) -> IpAddr {
    a.ip().to_canonical()
}

/// Normalise a Host header or SNI value into a lower-case name without port or trailing dot.
pub fn host_name(h: &str) -> Option<String> {
    let h = h.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port -- an address literal, never a steered name.
        rest.split(']').next()?
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => h,
        }
    };
    let n = crate::policy::matcher::normalize(h).ok()?;
    (!n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' || b == b':'))
    .then(|| n.into_owned())
}

fn listen_error(addr: SocketAddr, what: &str, e: &std::io::Error) -> String {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "start shadowgate as root (it keeps CAP_NET_BIND_SERVICE) or choose a port above 1023".to_string()
        }
        std::io::ErrorKind::AddrInUse => format!(
            "another program listens there (see `ss -ltnp 'sport = :{}'`); stop it or set [portal] {what} = \"IP:PORT\"",
            addr.port()
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this gateway; set [portal] address to one of its LAN addresses (or [portal] {what})",
            addr.ip()
        ),
        _ => format!("check [portal] address / {what}"),
    };
    format!("portal: cannot listen on {addr} for {what}: {e}; {hint}")
}

/// Start the portal: HTTP on `http` (default `address:80`, and `address6:80`), HTTPS on `https`
/// (default port 443) when `ca_cert` and `ca_key` are set, plus the task that records grant
/// expiries. Binds everything before returning, so errors come back here.
pub async fn serve(conf: PortalConf, ctx: PortalCtx) -> Result<PortalHandle, String> {
    let ca = match (&conf.ca_cert, &conf.ca_key) {
        (Some(c), Some(k)) => Some(ca::PortalCa::load(
            c,
            k,
            Duration::from_secs(conf.leaf_hours.max(1) * 3600),
            conf.cert_cache,
        )?),
        (None, None) => None,
        _ => {
            return Err(
                "portal: set both [portal] ca_cert and ca_key (or neither: then HTTP only)".into(),
            )
        }
    };
    // A CA that reaches beyond what the policy steers or coaches (an older, wider CA, or one for
    // another policy) is refused: its key sits in this LAN-facing process.
    let scope = ctx.judge.policy().current().portal_scope();
    if let (Some(ca), Some(cert), Some(key)) = (&ca, &conf.ca_cert, &conf.ca_key) {
        let fix = ca::new_ca_command(ctx.judge.policy().dir(), cert, key, &conf.clinic_name);
        ca.fits(&scope, cert, &fix)
            .map_err(|e| format!("portal: {e}"))?;
    }
    let defaults = |port: u16| -> Vec<SocketAddr> {
        let mut v = vec![SocketAddr::new(conf.address, port)];
        if let Some(a6) = conf.address6 {
            v.push(SocketAddr::new(a6, port));
        }
        v
    };
    let http_addrs = conf.http.map(|a| vec![a]).unwrap_or_else(|| defaults(80));
    let https_addrs = if ca.is_some() {
        conf.https.map(|a| vec![a]).unwrap_or_else(|| defaults(443))
    } else {
        Vec::new()
    };
    let mut http_l = Vec::new();
    for a in &http_addrs {
        http_l.push(
            TcpListener::bind(a)
                .await
                .map_err(|e| listen_error(*a, "http", &e))?,
        );
    }
    let mut https_l = Vec::new();
    for a in &https_addrs {
        https_l.push(
            TcpListener::bind(a)
                .await
                .map_err(|e| listen_error(*a, "https", &e))?,
        );
    }
    // Registered once everything is bound (a failed start leaves the registry untouched).
    let state = Arc::new(State::new(conf, ctx, ca, scope)?);
    report_uncertifiable(&state, "at start");
    watch_scope(&state);
    let (stop, stop_rx) = watch::channel(false);
    let alive = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    let mut http = Vec::new();
    let mut https = Vec::new();
    for (l, tls) in http_l
        .into_iter()
        .map(|l| (l, false))
        .chain(https_l.into_iter().map(|l| (l, true)))
    {
        let local = l.local_addr().map_err(|e| e.to_string())?;
        if tls { &mut https } else { &mut http }.push(local);
        tasks.push(tokio::spawn(accept_loop(
            l,
            tls,
            Arc::clone(&state),
            stop_rx.clone(),
            Arc::clone(&alive),
        )));
    }
    tasks.push(tokio::spawn(expiry_task(Arc::clone(&state), stop_rx)));
    // Requests to the portal's addresses (where the resolver sends steered names) are the
    // portal's to decide: capture must not decide them again as the service.
    state.ctx.judge.claim(|c| {
        c.addresses.push(state.conf.address);
        c.addresses.extend(state.conf.address6);
    });
    Ok(PortalHandle {
        stop,
        tasks,
        alive,
        http,
        https,
        ca_constraints: state.ca.as_ref().map(|c| {
            let (p, x) = c.constraints();
            (p.to_vec(), x.to_vec())
        }),
    })
}

/// On every accepted policy reload, renew the scope the portal mints within, and say loudly if
/// the CA now reaches beyond it (the daemon would refuse it at the next start): the new policy
/// no longer steers or coaches some of what the CA covers. Leaves stay limited to the new scope.
fn watch_scope(state: &Arc<State>) {
    let weak: Weak<State> = Arc::downgrade(state);
    state.ctx.judge.policy().on_reload(Box::new(move |o| {
        let (ReloadOutcome::Accepted { .. }, Some(st)) = (o, weak.upgrade()) else {
            return;
        };
        let scope = st.ctx.judge.policy().current().portal_scope();
        if let (Some(ca), Some(cert), Some(key)) = (&st.ca, &st.conf.ca_cert, &st.conf.ca_key) {
            let fix = ca::new_ca_command(st.ctx.judge.policy().dir(), cert, key, &st.conf.clinic_name);
            match ca.fits(&scope, cert, &fix) {
                Ok(()) => st.m.ca_too_wide.set(0),
                Err(e) => {
                    st.m.ca_too_wide.set(1);
                    eprintln!(
                        "shadowgate: WARNING: portal: after the policy reload, {e}\nshadowgate: the portal keeps running but mints leaves only within the new policy; the daemon will refuse this CA at its next start"
                    );
                }
            }
        }
        st.scope.store(Arc::new(scope));
        report_uncertifiable(&st, "after the policy reload");
    }));
}

/// Set `shadowgate_portal_uncertifiable_names` and warn in the journal when steered or coached
/// names of the policy in force lie outside the CA (the catalogue grew after the CA was made).
/// The portal still answers them over HTTP; over HTTPS it gives no certificate (the browser
/// shows a certificate error), and it never mints outside its CA.
fn report_uncertifiable(st: &State, when: &str) {
    let (Some(ca), Some(cert), Some(key)) = (&st.ca, &st.conf.ca_cert, &st.conf.ca_key) else {
        return;
    };
    let policy = st.ctx.judge.policy().current();
    let (permitted, excluded) = ca.constraints();
    let names = policy.uncertifiable(&st.scope.load(), permitted, excluded);
    st.m.uncertifiable.set(names.len() as i64);
    if names.is_empty() {
        return;
    }
    let fix = ca::new_ca_command(st.ctx.judge.policy().dir(), cert, key, &st.conf.clinic_name);
    eprintln!(
        "shadowgate: WARNING: portal: {when}, {}",
        uncertifiable_warning(cert, &names, &fix)
    );
}

/// The warning for steered names outside the CA: which, what browsers see, what to do.
pub fn uncertifiable_warning(cert: &Path, names: &[String], fix: &str) -> String {
    const SHOWN: usize = 8;
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    format!(
        "the portal CA {} cannot certify {} steered or coached name{} of the catalogue ({list}): DNS steering still sends them to the portal, where browsers show a certificate error instead of the page; make a new CA and install it on the clinic's devices: {fix}",
        cert.display(),
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    )
}

async fn accept_loop(
    l: TcpListener,
    tls: bool,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    alive: Arc<AtomicBool>,
) {
    let local = l.local_addr().ok();
    loop {
        let (sock, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait and go on.
                    eprintln!("shadowgate: portal accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Some(mut slot) = state.conns.enter(client_ip(peer)) else {
            state.m.requests.with_label_values(&["limited"]).inc();
            drop(sock);
            continue;
        };
        let server = sock.local_addr().ok().or(local).unwrap_or(peer);
        let st = Arc::clone(&state);
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            let serve = async {
                if tls {
                    tls::serve_tls(sock, peer, server, st, stop2).await;
                } else {
                    http::serve_conn(sock, http::Conn::plain(peer, server), st, stop2, false).await;
                }
            };
            // A connection ends when it is done, when its lifetime is up, or when a fairer
            // share needs its slot; the slot is freed as the task ends.
            tokio::select! {
                _ = serve => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = &mut slot.closed => {}
            }
            drop(slot);
        });
    }
    if !*stop.borrow() {
        alive.store(false, Ordering::Relaxed);
    }
}

async fn expiry_task(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let policy = state.ctx.judge.policy().current();
        for e in expiry_events(&state.ctx.grants, &state.ctx.judge, &policy) {
            state.m.grants_expired.inc();
            if !state.ctx.judge.record_event(e) && state.ctx.judge.records() {
                state.m.events_dropped.inc();
            }
        }
        state.m.grants_active.set(state.ctx.grants.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(host_name("ChatGPT.com:443").as_deref(), Some("chatgpt.com"));
        assert_eq!(host_name("claude.ai.").as_deref(), Some("claude.ai"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("bad name"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("a<b"), None);
    }
}
