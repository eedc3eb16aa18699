//! RELP frames: encoding, a bounded parser that never panics on anything a server sends, and
//! the `rsp` status and `open` offer readers. Wire format (librelp's, which rsyslog's imrelp
//! speaks): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, TXNR 1..=999,999,999, COMMAND 1..=32
//! letters, DATALEN up to 9 digits and DATA present only when DATALEN > 0.

/// Highest TXNR; the protocol wraps to 1 after it.
pub const MAX_TXNR: u32 = 999_999_999;
/// Longest command name (librelp's limit).
pub const MAX_COMMAND: usize = 32;
/// Longest DATA we accept from a server: its answers are short (`200 OK`, the open offers).
pub const MAX_SERVER_DATA: usize = 64 * 1024;

/// The TXNR after `t` (1 after 999,999,999).
pub fn next_txnr(t: u32) -> u32 {
    if t >= MAX_TXNR {
        1
    } else {
        t + 1
    }
}

/// One RELP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A byte that cannot stand where it is (what was expected).
    Invalid(&'static str),
    /// A field longer than the protocol allows.
    TooLong(&'static str),
    /// DATALEN above the limit the caller gave.
    DataTooLong(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Invalid(what) => write!(f, "malformed RELP frame: expected {what}"),
            FrameError::TooLong(what) => write!(f, "malformed RELP frame: {what} too long"),
            FrameError::DataTooLong(n) => write!(f, "RELP frame of {n} data bytes is too long"),
        }
    }
}

/// Append the frame `TXNR SP COMMAND SP DATALEN [SP DATA] LF` to `out`.
pub fn encode(txnr: u32, command: &str, data: &[u8], out: &mut Vec<u8>) {
    debug_assert!((1..=MAX_TXNR).contains(&txnr) || command == "serverclose");
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Parse one frame from the start of `buf`. `Ok(None)`: the frame is not complete yet (read
/// more). `Ok(Some((frame, used)))`: a frame and the bytes it took. Errors as soon as a byte is
/// out of place, so an incomplete frame is never longer than its largest possible size.
pub fn parse(buf: &[u8], max_data: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut i = 0;
    // TXNR: 1 to 9 digits.
    let mut txnr: u32 = 0;
    loop {
        let Some(&c) = buf.get(i) else {
            return Ok(None);
        };
        match c {
            b'0'..=b'9' => {
                if i == 9 {
                    return Err(FrameError::TooLong("TXNR"));
                }
                txnr = txnr * 10 + u32::from(c - b'0');
                i += 1;
            }
            b' ' if i > 0 => {
                i += 1;
                break;
            }
            _ => return Err(FrameError::Invalid("a TXNR digit")),
        }
    }
    // COMMAND: 1 to 32 letters.
    let start = i;
    loop {
        let Some(&c) = buf.get(i) else {
            return Ok(None);
        };
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {
                if i - start == MAX_COMMAND {
                    return Err(FrameError::TooLong("command"));
                }
                i += 1;
            }
            b' ' if i > start => {
                i += 1;
                break;
            }
            _ => return Err(FrameError::Invalid("a command letter")),
        }
    }
    let command = String::from_utf8_lossy(&buf[start..i - 1]).into_owned();
    // DATALEN: 1 to 9 digits, then LF (no data) or SP DATA LF.
    let start = i;
    let mut len: usize = 0;
    loop {
        let Some(&c) = buf.get(i) else {
            return Ok(None);
        };
        match c {
            b'0'..=b'9' => {
                if i - start == 9 {
                    return Err(FrameError::TooLong("DATALEN"));
                }
                len = len * 10 + usize::from(c - b'0');
                i += 1;
            }
            _ if i == start => return Err(FrameError::Invalid("a DATALEN digit")),
            b'\n' if len == 0 => {
                let f = Frame {
                    txnr,
                    command,
                    data: Vec::new(),
                };
                return Ok(Some((f, i + 1)));
            }
            b' ' if len > 0 => {
                i += 1;
                break;
            }
            _ => return Err(FrameError::Invalid("SP or LF after DATALEN")),
        }
    }
    if len > max_data {
        return Err(FrameError::DataTooLong(len));
    }
    let end = i + len;
    if buf.len() <= end {
        return Ok(None);
    }
    if buf[end] != b'\n' {
        return Err(FrameError::Invalid("LF after DATA"));
    }
    let f = Frame {
        txnr,
        command,
        data: buf[i..end].to_vec(),
    };
    Ok(Some((f, end + 1)))
}

/// The status of an `rsp`: `Ok(())` for 200, else the server's words (printable, shortened).
pub fn rsp_status(data: &[u8]) -> Result<(), String> {
    let line = data.split(|&c| c == b'\n').next().unwrap_or_default();
    let code_ok = line.len() >= 3
        && line[..3].iter().all(u8::is_ascii_digit)
        && (line.len() == 3 || line[3] == b' ');
    if code_ok && &line[..3] == b"200" {
        return Ok(());
    }
    let text = printable(line);
    if code_ok {
        Err(format!("RELP server answered {text:?}"))
    } else {
        Err(format!("malformed RELP response {text:?}"))
    }
}

/// At most 200 characters of `b`, control and non-ASCII bytes shown as `?`.
fn printable(b: &[u8]) -> String {
    b.iter()
        .take(200)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The offers after the status line of an `open` answer: `name=value[,value...]` lines.
pub fn offers(data: &[u8]) -> Vec<(String, Vec<String>)> {
    data.split(|&c| c == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = String::from_utf8_lossy(l);
            match l.split_once('=') {
                Some((n, v)) => (
                    n.to_string(),
                    v.split(',').map(str::to_string).collect::<Vec<_>>(),
                ),
                None => (l.to_string(), Vec::new()),
            }
        })
        .collect()
}
