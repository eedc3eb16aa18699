//! RELP (rsyslog's Reliable Event Logging Protocol) client: the syslog transport in which the
//! receiver acknowledges every message. A batch counts as delivered only when each of its
//! messages was answered `rsp 200`; a lost connection, any other answer, `serverclose` or a
//! silent server (no acknowledgement for the timeout) fails the batch, and the caller retries.
//!
//! Wire format (librelp's, which rsyslog's imrelp speaks):
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, TXNR 1..=999,999,999, COMMAND 1..=32 letters,
//! DATALEN up to 9 digits and DATA present only when DATALEN > 0. The client opens the session
//! with `1 open` offering `relp_version=0` and `commands=syslog`, sends `syslog` frames with
//! increasing TXNRs and the server answers each with `TXNR rsp LEN CODE [TEXT]`. The server may
//! announce its shutdown with `0 serverclose 0`.
//!
//! Up to `window` messages are outstanding at a time. Acknowledgements are matched to TXNRs;
//! the acknowledged prefix of a failed batch is remembered, so a retry of the same batch resends
//! only the messages that were in flight when it failed (at-least-once: those may arrive twice).
//! Everything read from the server is parsed with bounded lengths and never panics.

mod frame;

pub use frame::*;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Messages sent before waiting for acknowledgements (librelp's default window).
pub const DEFAULT_WINDOW: usize = 128;

/// A byte stream to the server: plain TCP or TLS over it.
pub trait Stream: Read + Write + Send {
    /// Say goodbye at the transport level (TLS close_notify); plain TCP has nothing to say.
    fn close_notify(&mut self) {}
}

impl Stream for TcpStream {}

impl Stream for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
    }
}

/// A connected stream and the TCP socket under it (for read timeouts).
pub struct Connected {
    pub stream: Box<dyn Stream>,
    pub tcp: TcpStream,
}

struct Session {
    stream: Box<dyn Stream>,
    tcp: TcpStream,
    /// TXNR of the next command.
    txnr: u32,
    rbuf: Vec<u8>,
}

impl Session {
    fn open(c: Connected, timeout: Duration) -> Result<Session, String> {
        let mut s = Session {
            stream: c.stream,
            tcp: c.tcp,
            txnr: 1,
            rbuf: Vec::new(),
        };
        let offer = format!(
            "relp_version=0\nrelp_software=shadowgate,{}\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let mut buf = Vec::new();
        encode(1, "open", offer.as_bytes(), &mut buf);
        s.write(&buf)?;
        s.txnr = 2;
        let f = s.read_frame(Instant::now() + timeout)?;
        match (f.txnr, f.command.as_str()) {
            (1, "rsp") => {}
            (_, "serverclose") => return Err("RELP server closed the session at open".into()),
            (t, c) => return Err(format!("RELP server answered open with {t} {c}")),
        }
        rsp_status(&f.data).map_err(|e| format!("open: {e}"))?;
        let offers = offers(&f.data);
        let has = |name: &str, value: &str| {
            offers
                .iter()
                .any(|(n, v)| n == name && v.iter().any(|x| x == value))
        };
        if !has("commands", "syslog") {
            return Err("RELP server does not offer the syslog command".into());
        }
        if offers.iter().any(|(n, _)| n == "relp_version") && !has("relp_version", "0") {
            return Err("RELP server speaks another protocol version".into());
        }
        Ok(s)
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(buf)
            .and_then(|_| self.stream.flush())
            .map_err(|e| format!("RELP send: {e}"))
    }

    /// A frame already in the read buffer, if complete.
    fn buffered_frame(&mut self) -> Result<Option<Frame>, String> {
        match parse(&self.rbuf, MAX_SERVER_DATA).map_err(|e| e.to_string())? {
            Some((f, used)) => {
                self.rbuf.drain(..used);
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// The next frame from the server, waiting until `deadline` at most.
    fn read_frame(&mut self, deadline: Instant) -> Result<Frame, String> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("RELP server did not answer in time".into());
            }
            self.tcp
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("RELP server closed the connection".into()),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err("RELP server did not answer in time".into())
                }
                Err(e) => return Err(format!("RELP receive: {e}")),
            }
        }
    }

    /// Polite end: `close`, wait briefly for its answer, TLS close_notify.
    fn close(mut self, wait: Duration) {
        let mut buf = Vec::new();
        let t = self.txnr;
        encode(t, "close", b"", &mut buf);
        if self.write(&buf).is_ok() {
            let deadline = Instant::now() + wait;
            while let Ok(f) = self.read_frame(deadline) {
                if (f.txnr == t && f.command == "rsp") || f.command == "serverclose" {
                    break;
                }
            }
        }
        self.stream.close_notify();
    }
}

/// Where a failed batch got to: its first `acked` messages were acknowledged.
struct Resume {
    len: usize,
    first_id: String,
    acked: usize,
    last_acked_id: String,
}

/// The RELP client of one sink: a session kept open across batches.
pub struct Client {
    window: usize,
    timeout: Duration,
    session: Option<Session>,
    resume: Option<Resume>,
}

impl Client {
    /// `window`: messages outstanding at most; `timeout`: how long to wait for the server to
    /// answer (connection setup, each acknowledgement).
    pub fn new(window: usize, timeout: Duration) -> Client {
        Client {
            window: window.max(1),
            timeout,
            session: None,
            resume: None,
        }
    }

    /// Deliver `msgs` (event id, syslog message) in order: `Ok` once every one was
    /// acknowledged with `200`. `connect` opens a new stream when there is no session.
    pub fn deliver(
        &mut self,
        msgs: &[(&str, Vec<u8>)],
        connect: impl FnOnce() -> Result<Connected, String>,
    ) -> Result<(), String> {
        // A retry of the batch that failed: skip what was acknowledged then.
        let skip = match &self.resume {
            Some(r)
                if r.len == msgs.len()
                    && r.acked > 0
                    && r.acked <= msgs.len()
                    && msgs[0].0 == r.first_id
                    && msgs[r.acked - 1].0 == r.last_acked_id =>
            {
                r.acked
            }
            _ => {
                self.resume = None;
                0
            }
        };
        let todo = &msgs[skip..];
        if todo.is_empty() {
            return Ok(());
        }
        // Never let the TXNR wrap inside a session: librelp's receiver expects 1,000,000,000
        // after 999,999,999 and rejects both it and 1. A new session starts again at 1.
        if let Some(s) = &self.session {
            if s.txnr as usize + todo.len() + 1 > MAX_TXNR as usize {
                if let Some(s) = self.session.take() {
                    s.close(Duration::from_secs(1));
                }
            }
        }
        if self.session.is_none() {
            self.session = Some(Session::open(connect()?, self.timeout)?);
        }
        let mut acked = 0;
        let r = self.send(todo, &mut acked);
        match &r {
            Ok(()) => self.resume = None,
            Err(_) => {
                // The session's state is unknown (answers may still be on the way): start
                // afresh next time, resending from the first unacknowledged message.
                self.session = None;
                let acked = skip + acked;
                if acked > 0 {
                    self.resume = Some(Resume {
                        len: msgs.len(),
                        first_id: msgs[0].0.to_string(),
                        acked,
                        last_acked_id: msgs[acked - 1].0.to_string(),
                    });
                }
            }
        }
        r
    }

    /// Send `msgs` with up to `window` outstanding; `acked` counts the acknowledged prefix.
    fn send(&mut self, msgs: &[(&str, Vec<u8>)], acked: &mut usize) -> Result<(), String> {
        let Some(s) = self.session.as_mut() else {
            return Err("RELP: not connected".into());
        };
        let mut outstanding: VecDeque<(u32, usize)> = VecDeque::new();
        let mut done = vec![false; msgs.len()];
        let mut next = 0;
        let mut buf = Vec::new();
        let mut deadline = Instant::now() + self.timeout;
        while *acked < msgs.len() {
            buf.clear();
            while next < msgs.len() && outstanding.len() < self.window {
                encode(s.txnr, "syslog", &msgs[next].1, &mut buf);
                outstanding.push_back((s.txnr, next));
                s.txnr = next_txnr(s.txnr);
                next += 1;
            }
            if !buf.is_empty() {
                s.write(&buf)?;
            }
            // Wait for one frame, then take every other one already received.
            let mut frame = Some(s.read_frame(deadline)?);
            while let Some(f) = frame {
                match f.command.as_str() {
                    "rsp" => {
                        let Some(pos) = outstanding.iter().position(|&(t, _)| t == f.txnr) else {
                            return Err(format!(
                                "RELP server acknowledged TXNR {} that is not outstanding",
                                f.txnr
                            ));
                        };
                        let (_, idx) = outstanding.remove(pos).unwrap_or_default();
                        rsp_status(&f.data)
                            .map_err(|e| format!("event {}: {e} (not delivered)", msgs[idx].0))?;
                        done[idx] = true;
                        while *acked < msgs.len() && done[*acked] {
                            *acked += 1;
                        }
                        deadline = Instant::now() + self.timeout;
                    }
                    "serverclose" => {
                        return Err(format!(
                            "RELP server closed the session with {} messages unacknowledged",
                            outstanding.len()
                        ))
                    }
                    c => return Err(format!("RELP server sent unexpected command {c:?}")),
                }
                frame = s.buffered_frame()?;
            }
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            s.close(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn frame(t: u32, c: &str, d: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode(t, c, d, &mut b);
        b
    }

    #[test]
    fn encodes_as_librelp_does() {
        assert_eq!(frame(7, "syslog", b"<165>1 x"), b"7 syslog 8 <165>1 x\n");
        assert_eq!(frame(3, "close", b""), b"3 close 0\n");
    }

    #[test]
    fn parses_server_frames() {
        let open = b"1 rsp 93 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n";
        let (f, n) = parse(open, MAX_SERVER_DATA).unwrap().unwrap();
        assert_eq!((f.txnr, f.command.as_str(), n), (1, "rsp", open.len()));
        assert!(rsp_status(&f.data).is_ok());
        let o = offers(&f.data);
        assert!(o
            .iter()
            .any(|(n, v)| n == "commands" && v == &["syslog".to_string()]));
        assert!(o.iter().any(|(n, v)| n == "relp_software" && v.len() == 3));
        let two = b"2 rsp 6 200 OK\n0 serverclose 0\n";
        let (f, n) = parse(two, 1024).unwrap().unwrap();
        assert_eq!((f.txnr, f.data.as_slice()), (2, &b"200 OK"[..]));
        let (f, m) = parse(&two[n..], 1024).unwrap().unwrap();
        assert_eq!(
            (f.txnr, f.command.as_str(), f.data.len()),
            (0, "serverclose", 0)
        );
        assert_eq!(n + m, two.len());
        // The answer to close has no data at all.
        let (f, _) = parse(b"6 rsp 0\n", 1024).unwrap().unwrap();
        assert!(f.data.is_empty());
        // Every proper prefix is incomplete, never an error.
        for k in 0..open.len() {
            assert_eq!(parse(&open[..k], MAX_SERVER_DATA), Ok(None), "{k}");
        }
    }

    #[test]
    fn rejects_hostile_frames() {
        use FrameError::*;
        let bad: &[(&[u8], FrameError)] = &[
            (b" 1 rsp 0\n", Invalid("a TXNR digit")),
            (b"x", Invalid("a TXNR digit")),
            (b"1234567890 rsp 0\n", TooLong("TXNR")),
            (b"1  0\n", Invalid("a command letter")),
            (b"1 r5p 0\n", Invalid("a command letter")),
            (
                b"1 abcdefghijklmnopqrstuvwxyzabcdefg 0\n",
                TooLong("command"),
            ),
            (b"1 rsp \n", Invalid("a DATALEN digit")),
            (b"1 rsp -1 x\n", Invalid("a DATALEN digit")),
            (b"1 rsp 1234567890 x", TooLong("DATALEN")),
            (b"1 rsp 0 \n", Invalid("SP or LF after DATALEN")),
            (b"1 rsp 3\n", Invalid("SP or LF after DATALEN")),
            (b"1 rsp 3 200X", Invalid("LF after DATA")),
            (b"1 rsp 999999999 ", DataTooLong(999_999_999)),
            (b"1 rsp 65537 ", DataTooLong(65537)),
        ];
        for (b, e) in bad {
            assert_eq!(
                parse(b, MAX_SERVER_DATA).as_ref().map(|_| ()),
                Err(e),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        assert!(rsp_status(b"500 command disabled").is_err());
        assert!(rsp_status(b"").is_err());
        assert!(rsp_status(b"20").is_err());
        assert!(rsp_status(b"2000").is_err());
        assert!(rsp_status(b"\xff\x00\x01").is_err());
        assert!(rsp_status(b"200").is_ok());
        assert!(rsp_status(b"200 OK\nrelp_version=0").is_ok());
        let e = rsp_status(&[b'5'; 10_000]).unwrap_err();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn txnr_wraps_to_one() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
        assert_eq!(next_txnr(MAX_TXNR), 1);
        let b = frame(MAX_TXNR, "syslog", b"x");
        assert_eq!(parse(&b, 10).unwrap().unwrap().0.txnr, MAX_TXNR);
    }

    /// xorshift64*: a deterministic stream of test bytes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Property: any bytes parse to a frame, "incomplete" or an error, never a panic; a frame
    /// re-encodes to exactly the bytes it took; "incomplete" stays bounded by the largest frame;
    /// valid streams split anywhere parse to the same frames.
    #[test]
    fn parser_properties_on_random_input() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let alphabet = b"0123456789 rspsyslogserverclose\n\x00\xffAZ";
        let max = 100;
        for _ in 0..200_000 {
            let len = rng.below(40);
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            match parse(&b, max) {
                Ok(Some((f, used))) => {
                    assert!(used <= b.len());
                    // Leading zeros are accepted, so compare on the canonical form.
                    let canon = frame(f.txnr, &f.command, &f.data);
                    let (g, _) = parse(&canon, max).unwrap().unwrap();
                    assert_eq!(f, g);
                }
                Ok(None) => assert!(b.len() < 10 + 1 + MAX_COMMAND + 1 + 9 + 1 + max + 1),
                Err(_) => {}
            }
        }
        // Valid frame streams, cut into random pieces, give the same frames.
        for _ in 0..2_000 {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let t = 1 + rng.below(MAX_TXNR as usize) as u32;
                let cmd = ["rsp", "serverclose", "syslog", "x"][rng.below(4)];
                let data: Vec<u8> = (0..rng.below(max + 1)).map(|_| rng.next() as u8).collect();
                stream.extend(frame(t, cmd, &data));
                want.push(Frame {
                    txnr: t,
                    command: cmd.into(),
                    data,
                });
            }
            let mut got = Vec::new();
            let mut rbuf = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                rbuf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some((f, used)) = parse(&rbuf, max).unwrap() {
                    rbuf.drain(..used);
                    got.push(f);
                }
            }
            assert!(rbuf.is_empty());
            assert_eq!(got, want);
        }
    }

    /// A scripted RELP server on 127.0.0.1: `answer(txnr, msg_index) -> bytes to send back`
    /// for each syslog frame. Reports the syslog messages it saw.
    fn fake_server(
        answer: impl Fn(u32, usize) -> Option<Vec<u8>> + Send + 'static,
    ) -> (String, mpsc::Receiver<(u32, Vec<u8>)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = 0;
            for s in l.incoming().flatten() {
                let mut s = s;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                'conn: loop {
                    while let Ok(Some((f, used))) = parse(&buf, 1 << 20) {
                        buf.drain(..used);
                        let out = match f.command.as_str() {
                            "open" => {
                                frame(f.txnr, "rsp", b"200 OK\nrelp_version=0\ncommands=syslog")
                            }
                            "close" => frame(f.txnr, "rsp", b""),
                            _ => {
                                let _ = tx.send((f.txnr, f.data));
                                seen += 1;
                                match answer(f.txnr, seen - 1) {
                                    Some(b) => b,
                                    None => break 'conn,
                                }
                            }
                        };
                        if s.write_all(&out).is_err() {
                            break 'conn;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        });
        (addr, rx)
    }

    fn plain(addr: &str) -> Result<Connected, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        Ok(Connected {
            stream: Box::new(tcp.try_clone().unwrap()),
            tcp,
        })
    }

    fn msgs(n: usize) -> (Vec<String>, Vec<Vec<u8>>) {
        (
            (0..n).map(|i| format!("id{i}")).collect(),
            (0..n)
                .map(|i| format!("<165>1 - - t - - - m{i}").into_bytes())
                .collect(),
        )
    }

    fn batch<'a>(ids: &'a [String], lines: &[Vec<u8>]) -> Vec<(&'a str, Vec<u8>)> {
        ids.iter()
            .map(String::as_str)
            .zip(lines.iter().cloned())
            .collect()
    }

    #[test]
    fn delivers_with_a_window_and_matches_out_of_order_acks() {
        // Each even message is answered after the odd one that follows it.
        let (addr, rx) = fake_server(|t, i| {
            Some(if i % 2 == 0 {
                Vec::new()
            } else {
                [frame(t, "rsp", b"200 OK"), frame(t - 1, "rsp", b"200 OK")].concat()
            })
        });
        let (ids, lines) = msgs(1000);
        let mut c = Client::new(16, Duration::from_secs(5));
        c.deliver(&batch(&ids, &lines), || plain(&addr)).unwrap();
        c.deliver(&batch(&ids[..2], &lines[..2]), || {
            panic!("keeps its session")
        })
        .unwrap();
        let got: Vec<(u32, Vec<u8>)> = rx.try_iter().collect();
        assert_eq!(got.len(), 1002);
        // TXNR 1 was the open.
        assert!(got.iter().enumerate().all(|(i, (t, _))| *t == i as u32 + 2));
        assert_eq!(got[999].1, lines[999]);
    }

    #[test]
    fn a_refusal_fails_the_batch_and_the_retry_resends_only_what_was_in_flight() {
        // The 10th message is refused once.
        let (addr, rx) = fake_server(|t, i| {
            Some(frame(
                t,
                "rsp",
                if i == 9 { b"500 queue full" } else { b"200 OK" },
            ))
        });
        let (ids, lines) = msgs(40);
        let b = batch(&ids, &lines);
        let mut c = Client::new(4, Duration::from_secs(5));
        let e = c.deliver(&b, || plain(&addr)).unwrap_err();
        assert!(e.contains("id9") && e.contains("500 queue full"), "{e}");
        // The server is unreachable for a while: the acknowledged prefix is still remembered.
        assert_eq!(c.deliver(&b, || Err("down".into())), Err("down".into()));
        c.deliver(&b, || plain(&addr)).unwrap();
        let got: Vec<Vec<u8>> = rx.try_iter().map(|(_, m)| m).collect();
        // First try: messages 0..=9 answered, up to 3 more in flight; the retry starts at 9.
        let retry = got.iter().rposition(|m| *m == lines[9]).unwrap();
        assert_eq!(got[retry..], lines[9..]);
        assert!(
            got[..retry].starts_with(&lines[..9]) && retry <= 9 + 4,
            "{retry}"
        );
    }

    #[test]
    fn serverclose_garbage_and_silence_fail_the_batch() {
        let (ids, lines) = msgs(5);
        let b = batch(&ids, &lines);
        for (answer, want) in [
            (b"0 serverclose 0\n".to_vec(), "closed the session"),
            (b"\xff\xfe garbage\n".to_vec(), "malformed"),
            (b"77 rsp 6 200 OK\n".to_vec(), "not outstanding"),
            (b"2 hint 0\n".to_vec(), "unexpected command"),
            (b"2 rsp 100000000 ".to_vec(), "too long"),
        ] {
            let (addr, _rx) = fake_server(move |_, _| Some(answer.clone()));
            let mut c = Client::new(8, Duration::from_secs(5));
            let e = c.deliver(&b, || plain(&addr)).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        // A server that takes the messages and never answers: the timeout fails the batch.
        let (addr, _rx) = fake_server(|_, _| Some(Vec::new()));
        let mut c = Client::new(8, Duration::from_millis(300));
        let t = Instant::now();
        let e = c.deliver(&b, || plain(&addr)).unwrap_err();
        assert!(e.contains("did not answer in time"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        // One that accepts the connection and never answers the open.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c = Client::new(8, Duration::from_millis(300));
        let e = c.deliver(&b, || plain(&addr)).unwrap_err();
        assert!(e.contains("did not answer in time"), "{e}");
        drop(l);
        // One that drops the connection.
        let (addr, _rx) = fake_server(|_, _| None);
        let mut c = Client::new(8, Duration::from_secs(5));
        let e = c.deliver(&b, || plain(&addr)).unwrap_err();
        assert!(
            e.contains("closed the connection") || e.contains("RELP"),
            "{e}"
        );
    }

    #[test]
    fn a_new_session_starts_before_the_txnr_would_wrap() {
        let (addr, rx) = fake_server(|t, _| Some(frame(t, "rsp", b"200 OK")));
        let (ids, lines) = msgs(10);
        let b = batch(&ids, &lines);
        let mut c = Client::new(4, Duration::from_secs(5));
        c.deliver(&b, || plain(&addr)).unwrap();
        c.session.as_mut().unwrap().txnr = MAX_TXNR - 5;
        c.deliver(&b, || plain(&addr)).unwrap();
        let t: Vec<u32> = rx.try_iter().map(|(t, _)| t).collect();
        // The second batch went over a fresh session (TXNRs 2..=11 again), not across the wrap.
        assert_eq!(t, (2..12).chain(2..12).collect::<Vec<_>>());
    }
}
