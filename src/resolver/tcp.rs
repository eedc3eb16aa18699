//! DNS over TCP for the resolver: hickory's request parsing and handler behind an accept loop
//! that bounds connections (per client and in all, shared fairly: `crate::slots`) and closes
//! idle, slow and old ones: each query must arrive whole within `idle`, and a connection lives
//! at most [`LIFETIME`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
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

/// Collects the one response of a request (the connection writes it).
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<Vec<u8>>>>);

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
        enc.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut enc)?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf);
        Ok(info)
    }
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
        let out = match Request::from_bytes(buf.clone(), src, Protocol::Tcp) {
            Ok(req) => {
                if req.metadata.message_type != hickory_server::proto::op::MessageType::Query {
                    return;
                }
                let slot = Slot::default();
                h.handle_request::<_, TokioTime>(&req, slot.clone()).await;
                let r = slot.0.lock().unwrap_or_else(|e| e.into_inner()).take();
                match r {
                    Some(b) => b,
                    None => return,
                }
            }
            Err(_) => formerr(&buf),
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
