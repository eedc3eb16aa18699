//! HTTPS accept: read the ClientHello first (`LazyConfigAcceptor`), decide on its SNI for the
//! connection's peer, and only for a steered or coached name finish the handshake with a leaf.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use super::{client_ip, host_name, http, State};
use crate::policy::Via;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Always the one leaf minted for this connection's name.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

pub(super) async fn serve_tls(
    sock: TcpStream,
    peer: SocketAddr,
    server: SocketAddr,
    st: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let Some(ca) = st.ca.as_ref() else { return };
    let ip = client_ip(peer);
    let start = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        LazyConfigAcceptor::new(Acceptor::default(), sock),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let sni = start.client_hello().server_name().and_then(host_name);
    // No name, a name nobody steers for this client, outside the CA or the policy's portal
    // scope, or a client over its limit: no certificate at all (the connection closes).
    let Some(name) = sni else {
        st.m.tls_refused.inc();
        return;
    };
    if !ca.permits(&name)
        || !st.scope.load().permits(&name)
        || st
            .decide(
                &name,
                super::Peer {
                    client: SocketAddr::new(ip, peer.port()),
                    server,
                },
                Via::Tls,
            )
            .is_none()
        || !st.tls_rate.allow(ip)
    {
        st.m.tls_refused.inc();
        return;
    }
    let leaf = match ca.leaf(&name) {
        Ok((l, minted)) => {
            if minted {
                st.m.certs_minted.inc();
            }
            l
        }
        Err(e) => {
            eprintln!("shadowgate: portal: no leaf for {name}: {e}");
            st.m.tls_refused.inc();
            return;
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg =
        match ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => b,
            Err(_) => return,
        };
    let mut cfg = cfg
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCert(Arc::clone(&leaf.key))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(Arc::new(cfg))).await
    {
        Ok(Ok(s)) => s,
        // A client that does not trust the portal CA ends here (certificate alert).
        _ => return,
    };
    http::serve_conn(tls, http::Conn::tls(peer, server, name), st, stop, false).await;
}
