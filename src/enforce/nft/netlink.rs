//! The nf_tables netlink socket: sends one nftnl batch (a kernel transaction) and collects the
//! kernel's acknowledgement of every message in it, with the error of each one that failed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nftnl::FinalizedBatch;

/// How long the kernel may take to answer a batch before we call it failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest batch we send in one `sendmsg` (the socket's send buffer is raised to hold it).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// A netlink message the kernel refused: its sequence number and errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgError {
    pub seq: u32,
    pub errno: i32,
}

/// A `NETLINK_NETFILTER` socket. The table created through it is owned by its port id.
pub struct NlSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl NlSocket {
    pub fn open() -> io::Result<NlSocket> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `sockaddr_nl` is plain old data; all-zero is valid (pid 0: the kernel, no
        // groups).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: sa is a valid sockaddr_nl of `len` bytes.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                len,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: ACK_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        let big: libc::c_int = (MAX_BATCH_BYTES * 2) as libc::c_int;
        // SAFETY: valid option values of the right sizes. SO_SNDBUFFORCE needs CAP_NET_ADMIN,
        // which the daemon keeps; SO_SNDBUF is the fallback.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
                if libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &big as *const _ as *const libc::c_void,
                    4,
                ) < 0
                {
                    let fallback = if opt == libc::SO_SNDBUFFORCE {
                        libc::SO_SNDBUF
                    } else {
                        libc::SO_RCVBUF
                    };
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        fallback,
                        &big as *const _ as *const libc::c_void,
                        4,
                    );
                }
            }
        }
        Ok(NlSocket {
            fd,
            buf: vec![0; 1 << 16],
        })
    }

    /// Send `batch` and wait for the acknowledgement of every message in it. `Ok` holds the
    /// messages the kernel refused (then the whole transaction was rolled back); `Err` means
    /// the socket itself failed or the kernel did not answer.
    pub fn run(&mut self, batch: &FinalizedBatch) -> io::Result<Vec<MsgError>> {
        let seqs = batch.sequence_numbers();
        let mut iov: Vec<libc::iovec> = batch
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: `sockaddr_nl` is plain old data; all-zero is valid (pid 0: the kernel, no
        // groups).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msghdr` is plain old data; all-zero means no name, no iovecs and no control data
        // until set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: msg points at live iovecs over the batch's buffers.
        if unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut pending = seqs.len();
        let mut errors = Vec::new();
        while pending > 0 {
            // An aborted transaction does not acknowledge every message: once the kernel has
            // said why, what else it has to say arrives at once; do not wait out the timeout
            // (that would hold every later operation for seconds).
            if !errors.is_empty() {
                let mut pfd = libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                    break;
                }
            }
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("nf_tables did not acknowledge the batch: {e}"),
                ));
            }
            for (seq, errno) in parse_acks(&self.buf[..n as usize]) {
                if !seqs.contains(&seq) {
                    continue;
                }
                pending = pending.saturating_sub(1);
                if errno != 0 {
                    errors.push(MsgError { seq, errno });
                }
            }
        }
        Ok(errors)
    }
}

/// (sequence number, errno) of each NLMSG_ERROR (an ack when errno is 0) in a datagram.
fn parse_acks(mut b: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    const HDR: usize = 16;
    while b.len() >= HDR {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        if len < HDR || len > b.len() {
            break;
        }
        if ty == libc::NLMSG_ERROR as u16 && len >= HDR + 4 {
            let err = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            out.push((seq, -err));
        }
        let adv = (len + 3) & !3;
        b = &b[adv.min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_parsed_and_garbage_is_not_a_panic() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-2i32).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        assert_eq!(parse_acks(&m), vec![(7, 2)]);
        assert!(parse_acks(&m[..10]).is_empty());
        let mut bad = m.clone();
        bad[0] = 200;
        assert!(parse_acks(&bad).is_empty());
    }
}
