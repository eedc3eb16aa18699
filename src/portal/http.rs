//! HTTP handling of the portal (over plain TCP or TLS): page views for navigations only, the coach
//! form POST (origin checks, single-use token, grant for the connection's peer), rate limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::events::Peer;
use super::{client_ip, host_name, page, State};
use crate::enforce::enforcer::grant_key;
use crate::policy::{Action, Decision, Via};
use crate::record::PortalKind;

/// Where the coach form posts.
pub const CONTINUE_PATH: &str = "/.shadowgate/continue";
const MAX_FORM: usize = 4096;

/// One connection: who, where, and the TLS name if any.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    peer: SocketAddr,
    server: SocketAddr,
    sni: Option<String>,
}

impl Conn {
    pub fn plain(peer: SocketAddr, server: SocketAddr) -> Conn {
        Conn {
            peer,
            server,
            sni: None,
        }
    }
    pub fn tls(peer: SocketAddr, server: SocketAddr, sni: String) -> Conn {
        Conn {
            peer,
            server,
            sni: Some(sni),
        }
    }
    fn scheme(&self) -> &'static str {
        if self.sni.is_some() {
            "https"
        } else {
            "http"
        }
    }
    fn via(&self) -> Via {
        if self.sni.is_some() {
            Via::Tls
        } else {
            Via::Http
        }
    }
    fn peer(&self) -> Peer {
        Peer {
            client: SocketAddr::new(client_ip(self.peer), self.peer.port()),
            server: self.server,
        }
    }
}

/// Serve one connection. `half_close`: a client that closes its sending side still gets the
/// answers to what it sent (in-memory exchanges, `offline`); real connections close at once.
pub(super) async fn serve_conn<S>(
    io: S,
    conn: Conn,
    st: Arc<State>,
    mut stop: watch::Receiver<bool>,
    half_close: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let st2 = Arc::clone(&st);
    let svc = hyper::service::service_fn(move |req| {
        let (c, s) = (Arc::clone(&conn), Arc::clone(&st2));
        async move { Ok::<_, Infallible>(handle(req, &c, &s).await) }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(15))
        .max_buf_size(16 * 1024)
        .half_close(half_close);
    let c = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(c);
    tokio::select! {
        _ = c.as_mut() => {}
        _ = stop.changed() => {
            c.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        }
    }
}

fn respond(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(ctype));
    h.insert(header::CACHE_CONTROL, hv("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        hv("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, hv("nosniff"));
    // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on the form post.
    h.insert(header::REFERRER_POLICY, hv("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, hv("DENY"));
    r
}

fn hv(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", body)
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", String::new())
}

fn hdr<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

/// A top-level navigation (what counts as a page view), not a sub-resource, prefetch, service
/// worker, beacon or fetch: `Sec-Fetch-Dest: document` (or, from old clients without Fetch
/// metadata, a request that accepts HTML).
pub fn is_navigation(h: &HeaderMap, path: &str) -> bool {
    if hdr(h, "sec-purpose").is_some_and(|p| p.contains("prefetch"))
        || hdr(h, "purpose").is_some_and(|p| p.contains("prefetch"))
        || h.contains_key("service-worker")
    {
        return false;
    }
    match hdr(h, "sec-fetch-dest") {
        Some(d) => d.eq_ignore_ascii_case("document"),
        None => path != "/favicon.ico" && hdr(h, "accept").is_some_and(|a| a.contains("text/html")),
    }
}

async fn handle(req: Request<Incoming>, conn: &Conn, st: &State) -> Response<Full<Bytes>> {
    let ip = client_ip(conn.peer);
    let count = |k: &str| st.m.requests.with_label_values(&[k]).inc();
    if !st.rate.allow(ip) {
        count("limited");
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            page::notice(
                &st.look,
                "Please wait a moment",
                "Too many requests from this device; try again in a minute.",
            ),
        );
        r.headers_mut().insert(header::RETRY_AFTER, hv("60"));
        return r;
    }
    let raw_host = hdr(req.headers(), "host")
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(name) = raw_host.as_deref().and_then(host_name) else {
        count("bad_request");
        return html(
            StatusCode::BAD_REQUEST,
            page::notice(&st.look, "Bad request", "The request named no site."),
        );
    };
    if conn.sni.as_deref().is_some_and(|s| s != name) {
        // A certificate was minted for the SNI only; another Host on this connection is not ours.
        count("bad_request");
        return html(
            StatusCode::MISDIRECTED_REQUEST,
            page::neutral(&st.look, &name),
        );
    }
    let path = req.uri().path().to_string();
    match *req.method() {
        Method::POST if path == CONTINUE_PATH => {
            coach_post(req, conn, st, &name, raw_host.as_deref().unwrap_or("")).await
        }
        Method::GET | Method::HEAD => view(req.headers(), &path, conn, st, &name),
        _ => {
            count("bad_request");
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(header::ALLOW, hv("GET, HEAD, POST"));
            r
        }
    }
}

fn view(h: &HeaderMap, path: &str, conn: &Conn, st: &State, name: &str) -> Response<Full<Bytes>> {
    let count = |k: &str| st.m.requests.with_label_values(&[k]).inc();
    if !is_navigation(h, path) {
        count("subresource");
        return empty(StatusCode::NOT_FOUND);
    }
    let ip = client_ip(conn.peer);
    let Some((o, d)) = st.decide(name, conn.peer(), conn.via()) else {
        count("neutral");
        return html(StatusCode::NOT_FOUND, page::neutral(&st.look, name));
    };
    let service_name = d.service_name.clone().unwrap_or_else(|| name.to_string());
    let (kind, status, body) = match d.action {
        Action::Coach => match st.ctx.grants.remaining(ip, &grant_key(&d)) {
            Some(left) => (
                "granted",
                StatusCode::OK,
                page::granted(
                    &st.look,
                    &service_name,
                    name,
                    conn.scheme(),
                    &page::duration_words(left),
                ),
            ),
            None => (
                "coach",
                StatusCode::FORBIDDEN,
                coach_page(st, &d, &service_name, name, ip, None),
            ),
        },
        _ => (
            "steer",
            StatusCode::FORBIDDEN,
            page::steer(&st.look, &service_name, name, d.steer_to.as_ref()),
        ),
    };
    count(kind);
    st.record(
        PortalKind::View,
        &o,
        &d,
        json!({ "page": kind, "scheme": conn.scheme() }),
    );
    html(status, body)
}

fn coach_page(
    st: &State,
    d: &Decision,
    service_name: &str,
    name: &str,
    ip: std::net::IpAddr,
    error: Option<&str>,
) -> String {
    let token = st.csrf.issue(ip, name);
    page::coach(
        &st.look,
        service_name,
        name,
        d.steer_to.as_ref(),
        &page::CoachForm {
            token: &token,
            max_len: st.conf.justification_max,
            minutes: page::duration_words(st.grant_ttl()),
            error,
        },
    )
}

/// Is this POST from the portal's own page? The Origin must be this scheme and host; Fetch
/// metadata, when sent, must say same-origin; a request with neither is refused.
pub fn same_origin(h: &HeaderMap, scheme: &str, host: &str) -> Result<(), &'static str> {
    let site = hdr(h, "sec-fetch-site");
    if site.is_some_and(|s| !s.eq_ignore_ascii_case("same-origin")) {
        return Err("cross-site request");
    }
    match hdr(h, "origin") {
        Some(o) => {
            let want_default = format!("{scheme}://{}", strip_default_port(host, scheme));
            let got = o.trim_end_matches('/').to_ascii_lowercase();
            let got = match got.split_once("://") {
                Some((s, rest)) => format!("{s}://{}", strip_default_port(rest, s)),
                None => return Err("bad Origin"),
            };
            if got == want_default.to_ascii_lowercase() {
                Ok(())
            } else {
                Err("Origin is another site")
            }
        }
        None if site.is_some() => Ok(()),
        None => Err("no Origin"),
    }
}

fn strip_default_port<'a>(host: &'a str, scheme: &str) -> &'a str {
    let port = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(port)
        .unwrap_or(host)
        .trim_end_matches('.')
}

async fn coach_post(
    req: Request<Incoming>,
    conn: &Conn,
    st: &State,
    name: &str,
    raw_host: &str,
) -> Response<Full<Bytes>> {
    let count = |k: &str| st.m.requests.with_label_values(&[k]).inc();
    let refuse = |why: &str| {
        count("coach_refused");
        html(
            StatusCode::FORBIDDEN,
            page::notice(
                &st.look,
                "This form was not accepted",
                &format!("{why}. Open the site again and use the form on the page."),
            ),
        )
    };
    let ip = client_ip(conn.peer);
    if let Err(e) = same_origin(req.headers(), conn.scheme(), &raw_host.to_ascii_lowercase()) {
        return refuse(e);
    }
    if !hdr(req.headers(), "content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return refuse("Not a form");
    }
    let body = match tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(req.into_body(), MAX_FORM).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return refuse("The form is too large"),
        Err(_) => return refuse("The form arrived too slowly"),
    };
    let form = parse_form(&body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some((o, d)) = st
        .decide(name, conn.peer(), conn.via())
        .filter(|(_, d)| d.action == Action::Coach)
    else {
        return refuse("This site is not one you can continue to from here");
    };
    if let Err(e) = st.csrf.redeem(get("token").unwrap_or(""), ip, name) {
        return refuse(match e {
            super::csrf::CsrfError::Expired => "The form has expired",
            super::csrf::CsrfError::Replayed => "The form was already sent once",
            _ => "The form does not belong to this device",
        });
    }
    let service_name = d.service_name.clone().unwrap_or_else(|| name.to_string());
    let just: String = get("justification")
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    let max = st.conf.justification_max;
    let error = if get("ack") != Some("yes") {
        Some("Tick “I will not enter patient information” to continue.".to_string())
    } else if just.is_empty() {
        Some("Say in a few words why you need it.".to_string())
    } else if just.chars().count() > max {
        Some(format!("Keep the reason to {max} characters or fewer."))
    } else {
        None
    };
    if let Some(e) = error {
        count("coach_refused");
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            coach_page(st, &d, &service_name, name, ip, Some(&e)),
        );
    }
    let service = grant_key(&d);
    let ttl = st.grant_ttl();
    // The grant is for the address this connection came from, never one named in the form.
    if st.ctx.grants.grant(ip, &service, ttl).is_none() {
        count("coach_refused");
        let e = "This device already holds as many acknowledgements as it may; try again when one ends.";
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            coach_page(st, &d, &service_name, name, ip, Some(e)),
        );
    }
    st.m.grants.inc();
    st.m.grants_active.set(st.ctx.grants.len() as i64);
    count("coach_ack");
    st.record(
        PortalKind::CoachAck,
        &o,
        &d,
        json!({
            "justification": just,
            "acknowledged": "I will not enter patient information",
            "grant_seconds": ttl.as_secs(),
            "scheme": conn.scheme(),
        }),
    );
    let mut r = empty(StatusCode::SEE_OTHER);
    r.headers_mut().insert(header::LOCATION, hv("/"));
    r
}

/// `application/x-www-form-urlencoded` pairs (invalid UTF-8 replaced).
pub fn parse_form(b: &[u8]) -> Vec<(String, String)> {
    b.split(|&c| c == b'&')
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| {
            let mut it = p.splitn(2, |&c| c == b'=');
            let k = it.next().unwrap_or(&[]);
            let v = it.next().unwrap_or(&[]);
            (pct(k), pct(v))
        })
        .collect()
}

fn pct(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let h = |x: u8| (x as char).to_digit(16);
                match (h(s[i + 1]), h(s[i + 2])) {
                    (Some(a), Some(b)) => {
                        out.push((a * 16 + b) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn navigations_only_count_as_views() {
        assert!(is_navigation(&h(&[("sec-fetch-dest", "document")]), "/"));
        assert!(!is_navigation(
            &h(&[("sec-fetch-dest", "image")]),
            "/favicon.ico"
        ));
        assert!(!is_navigation(
            &h(&[("sec-fetch-dest", "serviceworker")]),
            "/sw.js"
        ));
        assert!(!is_navigation(
            &h(&[("sec-fetch-dest", "empty")]),
            "/telemetry"
        ));
        assert!(!is_navigation(
            &h(&[("sec-fetch-dest", "document"), ("sec-purpose", "prefetch")]),
            "/"
        ));
        assert!(is_navigation(&h(&[("accept", "text/html,*/*")]), "/"));
        assert!(!is_navigation(
            &h(&[("accept", "text/html,*/*")]),
            "/favicon.ico"
        ));
        assert!(!is_navigation(&h(&[("accept", "*/*")]), "/"));
    }

    #[test]
    fn origin_checks() {
        let ok = h(&[
            ("origin", "https://chatgpt.com"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(same_origin(&ok, "https", "chatgpt.com"), Ok(()));
        assert_eq!(same_origin(&ok, "https", "chatgpt.com:443"), Ok(()));
        assert!(
            same_origin(&ok, "http", "chatgpt.com").is_err(),
            "scheme differs"
        );
        let evil = h(&[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(same_origin(&evil, "https", "chatgpt.com").is_err());
        let spoof_site = h(&[("origin", "https://evil.example")]);
        assert!(same_origin(&spoof_site, "https", "chatgpt.com").is_err());
        let sibling = h(&[
            ("origin", "https://chatgpt.com"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert!(same_origin(&sibling, "https", "chatgpt.com").is_err());
        assert!(
            same_origin(&h(&[]), "https", "chatgpt.com").is_err(),
            "no Origin at all"
        );
        assert!(same_origin(&h(&[("origin", "null")]), "https", "chatgpt.com").is_err());
    }

    #[test]
    fn form_decoding() {
        let f =
            parse_form(b"token=ab12&ack=yes&justification=Drafting+a+poster%21+%E2%9C%93&x=%zz");
        assert_eq!(f[0], ("token".into(), "ab12".into()));
        assert_eq!(f[1], ("ack".into(), "yes".into()));
        assert_eq!(f[2].1, "Drafting a poster! ✓");
        assert_eq!(f[3].1, "%zz");
        assert_eq!(parse_form(b"a=%4").pop().unwrap().1, "%4");
    }
}
