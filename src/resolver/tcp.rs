//! DNS over TCP for the resolver: hickory's request parsing and handler behind an accept loop
//! that bounds connections (per client and in all, shared fairly: `crate::slots`) and closes
//! idle, slow and old ones: each query must arrive whole within `idle`, and a connection lives
//! at most [`LIFETIME`].

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::handler::{canonical, Handler};
use crate::slots::{ConnLimit, Refused};

/// How long one connection may live, whatever it sends.
pub const LIFETIME: Duration = Duration::from_secs(60);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_client: usize,
    pub idle: Duration,
}

/// Accept and serve connections until `stop` turns true; open connections end with it.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = ConnLimit::new(limits.per_client, limits.total);
    let mut conns = JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of descriptors and the like: wait a little instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let ip = canonical(src.ip());
        let mut slot = match slots.try_enter(ip) {
            Ok(s) => s,
            Err(why) => {
                let reason = match why {
                    Refused::Total => "total",
                    Refused::PerClient => "per_client",
                };
                handler
                    .shared
                    .metrics
                    .tcp_refused
                    .with_label_values(&[reason])
                    .inc();
                continue;
            }
        };
        let h = handler.clone();
        conns.spawn(async move {
            // Done, too old, or its slot given to a fairer share: the connection closes.
            tokio::select! {
                _ = connection(stream, src, h, limits.idle) => {}
                _ = tokio::time::sleep(LIFETIME) => {}
                _ = &mut slot.closed => {}
            }
            drop(slot);
        });
    }
    conns.shutdown().await;
}

/// Serve one connection: length-prefixed queries one after the other (a client cannot make the
/// resolver work on many of its queries at once), each read within `idle`.
async fn connection(mut s: TcpStream, src: SocketAddr, h: Handler, idle: Duration) {
    let _ = s.set_nodelay(true);
    loop {
        // The whole query (length and message) within `idle`: trickling a byte now and then
        // does not keep the connection.
        let read = async {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.ok()?;
            let n = u16::from_be_bytes(len) as usize;
            if n < 12 {
                return None;
            }
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        let Ok(Some(buf)) = tokio::time::timeout(idle, read).await else {
            return;
        };
        let Some(out) = super::wire::answer(&h, buf, src, Protocol::Tcp).await else {
            return;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len().min(u16::MAX as usize) as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        match tokio::time::timeout(idle, s.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
