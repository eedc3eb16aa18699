//! The `pnet` baseline of `bench/capture.sh`: a pnet datalink channel per thread (PACKET_FANOUT
//! hash + defrag when more than one) that only counts frames, for comparison with the ring.
//!
//! `pnet_capture IFACE [THREADS] [RCVBUF_MIB]` runs until SIGINT or SIGTERM, then prints one line:
//! `frames N bytes B kernel_packets P kernel_drops D threads T rcvbuf_mib M`.
//!
//! pnet reads one frame per `poll` + `recvfrom` and reports no drops. To compare like with like
//! the socket is created here (pnet's `socket_fd` option) so that its receive buffer can be as
//! large as the ring (SO_RCVBUFFORCE, default 64 MiB) and the kernel's PACKET_STATISTICS can be
//! read on it; pnet itself does the bind, the fanout and every read.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pnet_datalink::{Channel, FanoutOption, FanoutType};

fn usage() -> ! {
    eprintln!("usage: pnet_capture IFACE [THREADS] [RCVBUF_MIB]  (runs until SIGINT/SIGTERM)");
    std::process::exit(2)
}

/// An AF_PACKET socket with a receive buffer of `rcvbuf` bytes (root may exceed rmem_max).
fn socket(rcvbuf: usize) -> io::Result<i32> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let v = rcvbuf.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: `v` is a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closes the descriptor opened above, once.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// The kernel's counters of a (ring-less) packet socket since the last call: (packets, drops).
fn kernel_stats(fd: i32) -> (u64, u64) {
    // SAFETY: zeroed tpacket_stats is valid; the kernel fills it.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return (0, 0);
    }
    (st.tp_packets as u64, st.tp_drops as u64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iface_name = args.next().unwrap_or_else(|| usage());
    let threads: usize = args
        .next()
        .map_or(1, |s| s.parse().unwrap_or_else(|_| usage()));
    let rcvbuf_mib: usize = args
        .next()
        .map_or(64, |s| s.parse().unwrap_or_else(|_| usage()));
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface_name)
        .unwrap_or_else(|| {
            eprintln!("pnet_capture: no interface {iface_name} (see `ip link`)");
            std::process::exit(1)
        });

    let stop = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(s, Arc::clone(&stop)).expect("signal handler");
    }
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let group = (std::process::id() & 0xffff) as u16;

    let mut handles = Vec::new();
    let kpackets = Arc::new(AtomicU64::new(0));
    let kdrops = Arc::new(AtomicU64::new(0));
    for _ in 0..threads.max(1) {
        let fd = socket(rcvbuf_mib << 20).unwrap_or_else(|e| {
            eprintln!("pnet_capture: socket: {e} (needs CAP_NET_RAW and CAP_NET_ADMIN)");
            std::process::exit(1)
        });
        let _ = kernel_stats(fd); // counters start now
        let cfg = pnet_datalink::Config {
            read_buffer_size: 65_536,
            read_timeout: Some(Duration::from_millis(100)),
            promiscuous: false,
            socket_fd: Some(fd),
            linux_fanout: (threads > 1).then_some(FanoutOption {
                group_id: group,
                fanout_type: FanoutType::HASH,
                defrag: true,
                rollover: false,
            }),
            ..Default::default()
        };
        let mut rx = match pnet_datalink::channel(&iface, cfg) {
            Ok(Channel::Ethernet(_tx, rx)) => rx,
            Ok(_) => {
                eprintln!("pnet_capture: not an Ethernet channel");
                std::process::exit(1)
            }
            Err(e) => {
                eprintln!("pnet_capture: channel on {iface_name}: {e}");
                std::process::exit(1)
            }
        };
        let (stop, frames, bytes) = (Arc::clone(&stop), Arc::clone(&frames), Arc::clone(&bytes));
        let (kpackets, kdrops) = (Arc::clone(&kpackets), Arc::clone(&kdrops));
        handles.push(std::thread::spawn(move || {
            let (mut n, mut b) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match rx.next() {
                    Ok(f) => {
                        n += 1;
                        b += f.len() as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        eprintln!("pnet_capture: read: {e}");
                        break;
                    }
                }
            }
            // Read while pnet's receiver (which closes the descriptor on drop) is alive.
            let (p, d) = kernel_stats(fd);
            drop(rx);
            frames.fetch_add(n, Ordering::Relaxed);
            bytes.fetch_add(b, Ordering::Relaxed);
            kpackets.fetch_add(p, Ordering::Relaxed);
            kdrops.fetch_add(d, Ordering::Relaxed);
        }));
    }
    eprintln!("pnet_capture: counting on {iface_name} with {threads} thread(s)");
    for h in handles {
        let _ = h.join();
    }
    let (kp, kd) = (
        kpackets.load(Ordering::Relaxed),
        kdrops.load(Ordering::Relaxed),
    );
    println!(
        "frames {} bytes {} kernel_packets {kp} kernel_drops {kd} threads {threads} rcvbuf_mib {rcvbuf_mib}",
        frames.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed)
    );
}
