//! Test peers for the namespace testbed: a TLS server that answers 20 ms late (like a server on
//! the internet) and counts the application bytes it receives, and a TLS client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What the server saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    pub handshake_done: bool,
    /// Application bytes received after the handshake.
    pub app_bytes: usize,
    /// How the connection ended (`eof`, `reset`, an error).
    pub end: String,
}

/// A TLS server for `names` on `addr`, in whatever namespace the calling thread is in.
pub struct TlsServer {
    pub conns: Arc<Mutex<Vec<Conn>>>,
    stop: Arc<AtomicBool>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsServer {
    /// Bind now (on the caller's thread, so in its namespace); serve on new threads.
    pub fn start(addr: SocketAddr, names: &[&str], delay: Duration) -> TlsServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let cfg = Arc::new(cfg);
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (Arc::clone(&conns), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (cfg, conns) = (Arc::clone(&cfg), Arc::clone(&c2));
                        std::thread::spawn(move || {
                            let c = serve(s, cfg, delay);
                            conns.lock().unwrap().push(c);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsServer { conns, stop }
    }

    /// Wait for `n` finished connections (up to 5 s) and return them.
    pub fn wait(&self, n: usize) -> Vec<Conn> {
        for _ in 0..500 {
            if self.conns.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.conns.lock().unwrap().clone()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut s: TcpStream, cfg: Arc<rustls::ServerConfig>, delay: Duration) -> Conn {
    let mut c = Conn::default();
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut tls = rustls::ServerConnection::new(cfg).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read_tls(&mut s) {
            Ok(0) => {
                c.end = "eof".into();
                return c;
            }
            Ok(_) => {}
            Err(e) => {
                c.end = if e.kind() == std::io::ErrorKind::ConnectionReset {
                    "reset".into()
                } else {
                    e.to_string()
                };
                return c;
            }
        }
        if let Err(e) = tls.process_new_packets() {
            c.end = format!("tls: {e}");
            return c;
        }
        if tls.wants_write() {
            // The internet is far away: answer late.
            std::thread::sleep(delay);
            while tls.wants_write() {
                if tls.write_tls(&mut s).is_err() {
                    c.end = "write failed".into();
                    return c;
                }
            }
        }
        if !tls.is_handshaking() {
            c.handshake_done = true;
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.app_bytes += n;
                        let _ = tls
                            .writer()
                            .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
                        let _ = tls.write_tls(&mut s);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connect to `addr` with SNI `name` (from `bind`, if given), finish the handshake, send a
/// request and read the answer. Err: what stopped it (e.g. "connection reset").
pub fn tls_get(
    bind: Option<std::net::IpAddr>,
    addr: SocketAddr,
    name: &str,
) -> Result<String, String> {
    let s = match bind {
        Some(ip) => socket2_connect(ip, addr).map_err(|e| e.to_string())?,
        None => {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?
        }
    };
    tls_over(s, name)
}

/// Over the connected `s`: the TLS handshake with SNI `name`, a request, the answer.
pub fn tls_over(mut s: TcpStream, name: &str) -> Result<String, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let mut tls = rustls::ClientConnection::new(
        Arc::new(cfg),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut stream = rustls::Stream::new(&mut tls, &mut s);
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    match stream.read_to_string(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if !out.is_empty() => Ok(format!("{out} ({e})")),
        Err(e) => Err(e.to_string()),
    }
}

/// A TCP connection from a chosen local address.
pub fn socket2_connect(ip: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let fam = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let fd = libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let (sa, len) = sockaddr(SocketAddr::new(ip, 0));
        if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (da, dlen) = sockaddr(addr);
        if libc::connect(fd, &da as *const _ as *const libc::sockaddr, dlen) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed storage is valid; filled per family below.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v) => {
            let sin = &mut st as *mut _ as *mut libc::sockaddr_in;
            // SAFETY: storage is large enough for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as u16;
                (*sin).sin_port = v.port().to_be();
                (*sin).sin_addr.s_addr = u32::from(*v.ip()).to_be();
            }
            (st, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v) => {
            let sin = &mut st as *mut _ as *mut libc::sockaddr_in6;
            // SAFETY: storage is large enough for sockaddr_in6.
            unsafe {
                (*sin).sin6_family = libc::AF_INET6 as u16;
                (*sin).sin6_port = v.port().to_be();
                (*sin).sin6_addr.s6_addr = v.ip().octets();
            }
            (st, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// A DNS server for the tests' zone: A records from `zone`, NXDOMAIN otherwise, each answer
/// `delay` late (the internet is far away). Binds now, in the caller's namespace.
pub fn dns_server(
    addr: SocketAddr,
    zone: Vec<(&'static str, std::net::Ipv4Addr)>,
    delay: Duration,
) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record};
    let sock = std::net::UdpSocket::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            let mut found = false;
            for question in &q.queries {
                r.add_query(question.clone());
                let name = question.name().to_ascii();
                let name = name.trim_end_matches('.');
                for (zn, ip) in &zone {
                    if *zn == name && question.query_type() == hickory_proto::rr::RecordType::A {
                        r.add_answer(Record::from_rdata(
                            question.name().clone(),
                            60,
                            RData::A(A(*ip)),
                        ));
                        found = true;
                    }
                }
                if !found && !zone.iter().any(|(zn, _)| *zn == name) {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
            }
            std::thread::sleep(delay);
            if let Ok(b) = r.to_vec() {
                let _ = sock.send_to(&b, peer);
            }
        }
    });
}

/// Look `name` up (type A) at `server` from `bind`; the addresses, or the response code.
pub fn dns_lookup(
    bind: std::net::IpAddr,
    server: SocketAddr,
    name: &str,
) -> Result<Vec<std::net::Ipv4Addr>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let sock = std::net::UdpSocket::bind(SocketAddr::new(bind, 0)).map_err(|e| e.to_string())?;
    // A stub resolver's own wait (glibc: 5 s): a daemon that has just started on a loaded 2-core
    // machine may take more than 2 s for its first answer.
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    sock.send_to(&m.to_vec().unwrap(), server)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
    let r = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    if r.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
        return Err(format!("{:?}", r.metadata.response_code));
    }
    Ok(r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

/// A DNS message id that differs between calls (the clock's nanoseconds).
pub fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}
