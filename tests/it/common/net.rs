//! Local ports, and listeners that collect what a sink sends them.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A TCP port of 127.0.0.1 that was free a moment ago (nothing listens on it now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// When a [`tcp_collector`] adds what a connection sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collect {
    /// As it arrives, for a test that watches a connection that is still open.
    AsItArrives,
    /// When the connection has ended, all of it at once.
    WholeConnections,
}

/// Collect everything sent to `listener` (one connection at a time) on a thread of its own.
pub fn tcp_collector(listener: TcpListener, collect: Collect) -> Arc<Mutex<Vec<u8>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            match collect {
                Collect::AsItArrives => {
                    let mut buf = [0u8; 1 << 16];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        g.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
                Collect::WholeConnections => {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf);
                    g.lock().unwrap().extend_from_slice(&buf);
                }
            }
        }
    });
    got
}
