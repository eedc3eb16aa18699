//! The portal without listeners: the bytes a client sends on one connection in, the bytes the
//! portal answers out, through the same HTTP/1 server and request handling as a real connection
//! (hyper's parser, the rate limit, Host checks, pages, the coach form and its grant). For tests
//! and the `portal` fuzz target; the daemon never uses it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::config::PortalConf;
use super::http::{serve_conn, Conn};
use super::{PortalCtx, State};
use crate::policy::PortalScope;

/// One portal's state (HTTP only: no CA), served connection by connection in memory.
pub struct Offline {
    st: Arc<State>,
}

impl Offline {
    /// The portal of `conf` and `ctx` without binding anything (`ca_cert`/`ca_key` are ignored;
    /// the portal's metrics are registered in `ctx.registry`).
    pub fn new(conf: PortalConf, ctx: PortalCtx) -> Result<Offline, String> {
        // Without a CA nothing is minted: the scope (costly to work out) is never consulted.
        let scope = PortalScope {
            permitted: Vec::new(),
            excluded: Vec::new(),
            protected: Vec::new(),
            warnings: Vec::new(),
        };
        Ok(Offline {
            st: Arc::new(State::new(conf, ctx, None, scope)?),
        })
    }

    /// Serve one connection from `peer` to `server` that sends `input` and then closes its
    /// sending side; everything the portal wrote back, until it closed the connection (unlike a
    /// real connection, whose answers stop when the client half-closes, every complete request
    /// sent is answered). With
    /// `sni`, the connection is served as if its TLS handshake had named it (HTTPS).
    /// Needs a Tokio runtime with timers (the server's read timeouts).
    pub async fn exchange(
        &self,
        peer: SocketAddr,
        server: SocketAddr,
        sni: Option<String>,
        input: &[u8],
    ) -> Vec<u8> {
        let conn = match sni {
            Some(s) => Conn::tls(peer, server, s),
            None => Conn::plain(peer, server),
        };
        let (client, srv) = tokio::io::duplex(64 * 1024);
        let (mut rd, mut wr) = tokio::io::split(client);
        // Kept until the connection ends: a dropped sender reads as "stop".
        let (_stop, stop_rx) = watch::channel(false);
        let mut out = Vec::new();
        let send = async {
            let _ = wr.write_all(input).await;
            let _ = wr.shutdown().await;
        };
        let recv = async {
            let _ = rd.read_to_end(&mut out).await;
        };
        tokio::join!(
            serve_conn(srv, conn, Arc::clone(&self.st), stop_rx, true),
            send,
            recv
        );
        out
    }

    /// A coach form token for `ip` and `name`, as the coach page would carry it.
    pub fn issue_token(&self, ip: IpAddr, name: &str) -> String {
        self.st.csrf.issue(ip, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Devices;
    use crate::enforce::grants::Grants;
    use crate::pipeline::Judge;
    use crate::policy::reload::PolicyHandle;

    fn portal() -> (Offline, Arc<Grants>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let policy = PolicyHandle::load(&dir).expect("bundled policy");
        let grants = Arc::new(Grants::new());
        let conf: PortalConf = toml::from_str("address = \"10.9.0.1\"\n").unwrap();
        let ctx = PortalCtx {
            judge: Judge::new(policy, "offline").with_devices(Arc::new(Devices::new())),
            grants: Arc::clone(&grants),
            registry: prometheus::Registry::new(),
        };
        (Offline::new(conf, ctx).unwrap(), grants)
    }

    fn run(p: &Offline, input: &[u8]) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let peer: SocketAddr = "10.9.0.20:40000".parse().unwrap();
        let server: SocketAddr = "10.9.0.1:80".parse().unwrap();
        String::from_utf8_lossy(&rt.block_on(p.exchange(peer, server, None, input))).into_owned()
    }

    fn post(token: &str) -> String {
        let body = format!("token={token}&ack=yes&justification=poster");
        format!("POST /.shadowgate/continue HTTP/1.1\r\nHost: sora.com\r\nOrigin: http://sora.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn coach_page_then_grant_once() {
        let (p, grants) = portal();
        let page = run(
            &p,
            b"GET / HTTP/1.1\r\nHost: sora.com\r\nSec-Fetch-Dest: document\r\n\r\n",
        );
        assert!(page.starts_with("HTTP/1.1 403 "), "{page}");
        let i = page.find("name=\"token\" value=\"").expect("form token") + 20;
        let token = page[i..].split('"').next().unwrap().to_string();
        // A token made up by the client grants nothing.
        let forged = run(&p, post(&"ab".repeat(56)).as_bytes());
        assert!(forged.starts_with("HTTP/1.1 403 "), "{forged}");
        assert!(grants.is_empty());
        let ok = run(&p, post(&token).as_bytes());
        assert!(ok.starts_with("HTTP/1.1 303 "), "{ok}");
        assert_eq!(grants.len(), 1);
        let again = run(&p, post(&token).as_bytes());
        assert!(again.starts_with("HTTP/1.1 403 "), "replayed: {again}");
        // Pipelined requests on one connection each get their answer.
        let two = run(
            &p,
            b"GET /a HTTP/1.1\r\nHost: sora.com\r\n\r\nGET /b HTTP/1.1\r\nHost: example.org\r\n\r\n",
        );
        assert_eq!(two.matches("HTTP/1.1 404 ").count(), 2, "{two}");
    }
}
