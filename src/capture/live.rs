//! Live capture: an AF_PACKET socket with a TPACKET_V3 ring (no copy, no syscall per frame),
//! PACKET_FANOUT (hash + defrag) to spread flows over threads, and kernel drop counts.
//!
//! Why not `pnet`: its datalink channel reads one frame per `recvfrom` into its own buffer and
//! offers no PACKET_STATISTICS; the ring hands whole blocks of frames to user space, and its
//! drop counters are what tell the compliance officer that coverage had gaps.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::{Csum, Frame};

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;
const TP_STATUS_CSUMNOTREADY: u32 = 0x08;
const TP_STATUS_CSUM_VALID: u32 = 0x80;

/// What the ring's status says of a frame's transport checksum.
fn csum_of(status: u32) -> Csum {
    if status & TP_STATUS_CSUMNOTREADY != 0 {
        Csum::NotReady
    } else if status & TP_STATUS_CSUM_VALID != 0 {
        Csum::Valid
    } else {
        Csum::Unknown
    }
}

/// How a live capture socket is set up.
#[derive(Debug, Clone)]
pub struct LiveOpts {
    /// Ring size in MiB (rounded to whole blocks of `block_kib`).
    pub ring_mib: usize,
    /// Block size in KiB (a power of two, at least a page).
    pub block_kib: usize,
    /// Hand a block to user space after this many milliseconds even if it is not full.
    pub block_timeout_ms: u32,
    /// Join this fanout group (with defrag, so fragments stay together): each socket of the
    /// group on an interface gets its share of the traffic, split by `fanout`.
    pub fanout_group: Option<u16>,
    pub fanout: Fanout,
    pub promiscuous: bool,
}

impl Default for LiveOpts {
    fn default() -> Self {
        LiveOpts {
            ring_mib: 64,
            // Small blocks: a block the timer retires with one frame in it holds little of
            // the ring while the reader is busy (256 blocks in 64 MiB).
            block_kib: 256,
            block_timeout_ms: 10,
            fanout_group: None,
            fanout: Fanout::Client,
            promiscuous: false,
        }
    }
}

/// How a fanout group splits the traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fanout {
    /// By the LAN client's address (a gateway's LAN interface: the source of what arrives, the
    /// destination of what leaves): a client's DNS lookups and connections meet on one
    /// thread, so its own lookups name its encrypted flows there. A classic BPF program.
    #[default]
    Client,
    /// The kernel's symmetric flow hash (PACKET_FANOUT_HASH): both directions of a flow on one
    /// thread, but a client's lookup and its connection may meet on different threads (for a
    /// mirror port, where the client's address is not known from the direction).
    Flow,
}

/// The classic BPF fanout program of [`Fanout::Client`]: 32 bits of the client's address
/// (IPv4, or the low word of IPv6), mixed; other frames to member 0. Loads are relative to the
/// network header (`SKF_NET_OFF`), which holds in both directions.
fn client_fanout_program() -> Vec<libc::sock_filter> {
    const NET: u32 = (-0x100000i32) as u32;
    const AD: u32 = libc::SKF_AD_OFF as u32;
    let ld_abs_w = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ja = (libc::BPF_JMP | libc::BPF_JA) as u16;
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    let ret_a = (libc::BPF_RET | libc::BPF_A) as u16;
    let st = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jmp = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    vec![
        /* 0 */ st(ld_abs_w, AD + libc::SKF_AD_PROTOCOL as u32),
        /* 1 */ jmp(jeq, 0x0800, 2, 0),
        /* 2 */ jmp(jeq, 0x86dd, 7, 0),
        /* 3 */ st(ret_k, 0),
        // IPv4: outgoing (to the client) -> destination, else source.
        /* 4 */
        st(ld_abs_w, AD + libc::SKF_AD_PKTTYPE as u32),
        /* 5 */ jmp(jeq, libc::PACKET_OUTGOING as u32, 0, 2),
        /* 6 */ st(ld_abs_w, NET + 16),
        /* 7 */ jmp(ja, 8, 0, 0),
        /* 8 */ st(ld_abs_w, NET + 12),
        /* 9 */ jmp(ja, 6, 0, 0),
        // IPv6: the low 32 bits of the destination or source address.
        /* 10 */
        st(ld_abs_w, AD + libc::SKF_AD_PKTTYPE as u32),
        /* 11 */ jmp(jeq, libc::PACKET_OUTGOING as u32, 0, 2),
        /* 12 */ st(ld_abs_w, NET + 36),
        /* 13 */ jmp(ja, 2, 0, 0),
        /* 14 */ st(ld_abs_w, NET + 20),
        /* 15 */ jmp(ja, 0, 0, 0),
        // Mix: A ^= A >> 16; A *= 0x45d9f3b; A ^= A >> 16.
        /* 16 */
        st((libc::BPF_MISC | libc::BPF_TAX) as u16, 0),
        /* 17 */ st((libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16, 16),
        /* 18 */ st((libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16, 0),
        /* 19 */
        st(
            (libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K) as u16,
            0x045d_9f3b,
        ),
        /* 20 */ st((libc::BPF_MISC | libc::BPF_TAX) as u16, 0),
        /* 21 */ st((libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16, 16),
        /* 22 */ st((libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16, 0),
        /* 23 */ st(ret_a, 0),
    ]
}

/// Kernel counters of one socket since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames the socket received (including those dropped).
    pub packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub drops: u64,
    /// Times the ring was frozen (all blocks in user space).
    pub freezes: u64,
}

/// One AF_PACKET socket with its mapped ring.
pub struct LiveCapture {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    blocks: usize,
    next: usize,
    iface: String,
    totals: KernelStats,
    scratch: Vec<u8>,
}

// SAFETY: the ring is owned by this value alone: its raw pointers point into this socket's own
// mmap, which moves with the value and is used by one thread at a time (`&mut self` everywhere);
// the kernel writes only blocks it owns (TP_STATUS_KERNEL).
unsafe impl Send for LiveCapture {}

fn err(iface: &str, what: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (capture needs CAP_NET_RAW: run as root or give the binary the capability)"
        }
        Some(libc::ENODEV) => " (no such interface: check [capture] interfaces and `ip link`)",
        Some(libc::ENOMEM) => " (lower [capture] ring_mib or raise the memlock limit)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("capture on {iface}: {what}: {e}{hint}"))
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of its own size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The index of interface `name`.
/// The networks of the addresses configured on these interfaces (their connected subnets):
/// `[enforce] lan`'s default. Link-local IPv6 networks are left out.
pub fn interface_networks(names: &[String]) -> io::Result<Vec<ipnet::IpNet>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates (freed below with
    // freeifaddrs) or returns -1 and leaves it untouched.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut nets = Vec::new();
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if !names.iter().any(|n| n.as_bytes() == name.to_bytes()) {
            continue;
        }
        // SAFETY: ifa_addr and ifa_netmask point to sockaddrs of the family in sa_family:
        // sockaddr_in for AF_INET, sockaddr_in6 for AF_INET6 (read only for those).
        let net = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    let len = u32::from_be(m.sin_addr.s_addr).leading_ones() as u8;
                    ipnet::Ipv4Net::new(ip, len)
                        .ok()
                        .map(|n| ipnet::IpNet::V4(n.trunc()))
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let len = u128::from_be_bytes(m.sin6_addr.s6_addr).leading_ones() as u8;
                    let unicast_link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                    (!unicast_link_local)
                        .then(|| ipnet::Ipv6Net::new(ip, len).ok())
                        .flatten()
                        .map(|n| ipnet::IpNet::V6(n.trunc()))
                }
                _ => None,
            }
        };
        if let Some(n) = net {
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(nets)
}

pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(err(name, "interface", io::Error::last_os_error()))
    } else {
        Ok(i)
    }
}

impl LiveCapture {
    /// Open a ring on interface `iface`.
    pub fn open(iface: &str, opts: &LiveOpts) -> io::Result<LiveCapture> {
        let index = ifindex(iface)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket receives nothing until `bind` names the interface and the
        // protocol. Opened with ETH_P_ALL it would take every interface's frames (lo, the WAN
        // side) into the ring while the ring is set up, uncounted by PACKET_STATISTICS.
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err(iface, "socket", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_VERSION, &v3)
            .map_err(|e| err(iface, "TPACKET_V3", e))?;

        let page = 4096usize;
        let block_size = (opts.block_kib.max(4) * 1024).next_power_of_two().max(page);
        let blocks = ((opts.ring_mib.max(1) << 20) / block_size).max(2);
        let frame_size = 2048usize;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: (block_size / frame_size * blocks) as u32,
            tp_retire_blk_tov: opts.block_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|e| err(iface, "PACKET_RX_RING", e))?;
        let ring_len = block_size * blocks;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                s,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(err(iface, "mmap ring", io::Error::last_os_error()));
        }
        let mut cap = LiveCapture {
            fd,
            ring: ring as *mut u8,
            ring_len,
            block_size,
            blocks,
            next: 0,
            iface: iface.to_string(),
            totals: KernelStats::default(),
            scratch: Vec::with_capacity(frame_size * 32),
        };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                s,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(err(iface, "bind", io::Error::last_os_error()));
        }
        if opts.promiscuous {
            // SAFETY: zeroed packet_mreq is valid.
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = index as i32;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
                .map_err(|e| err(iface, "promiscuous mode", e))?;
        }
        if let Some(g) = opts.fanout_group {
            let kind = match opts.fanout {
                Fanout::Client => libc::PACKET_FANOUT_CBPF,
                Fanout::Flow => libc::PACKET_FANOUT_HASH,
            };
            let mode = kind | libc::PACKET_FANOUT_FLAG_DEFRAG;
            let v: u32 = (g as u32) | (mode << 16);
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_FANOUT, &v)
                .map_err(|e| err(iface, "PACKET_FANOUT", e))?;
            if opts.fanout == Fanout::Client {
                let prog = client_fanout_program();
                let fprog = libc::sock_fprog {
                    len: prog.len() as u16,
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                setsockopt(s, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, &fprog)
                    .map_err(|e| err(iface, "PACKET_FANOUT_DATA (client fanout program)", e))?;
            }
        }
        // Counters start now (opening counted nothing useful).
        let _ = cap.read_stats();
        cap.totals = KernelStats::default();
        Ok(cap)
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    fn block(&self, i: usize) -> *mut u8 {
        // SAFETY: i < blocks, so the offset stays inside the mapping.
        unsafe { self.ring.add(i * self.block_size) }
    }

    fn status(&self, b: *mut u8) -> &AtomicU32 {
        // block_status is the first field of tpacket_hdr_v1 at offset 8 of the block descriptor.
        // SAFETY: aligned u32 inside the mapping, shared with the kernel.
        unsafe { &*(b.add(8) as *const AtomicU32) }
    }

    /// Wait up to `timeout_ms` for a block, and hand each of its frames to `f`. Returns the
    /// number of frames handled (0 on timeout or interruption).
    pub fn poll(&mut self, timeout_ms: i32, f: &mut dyn FnMut(&Frame<'_>)) -> io::Result<usize> {
        let b = self.block(self.next);
        if self.status(b).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(0);
                }
                return Err(err(&self.iface, "poll", e));
            }
            if self.status(b).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return Ok(0);
            }
        }
        let n = self.walk_block(b, f);
        fence(Ordering::Release);
        self.status(b).store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.blocks;
        Ok(n)
    }

    /// The frames of one block in user space; every offset is checked against the block.
    fn walk_block(&mut self, b: *mut u8, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let bs = self.block_size;
        // SAFETY: the block is ours until handed back; read as bytes.
        let block = unsafe { std::slice::from_raw_parts(b as *const u8, bs) };
        let rd = |o: usize| -> u32 {
            block
                .get(o..o + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
                .unwrap_or(0)
        };
        let rd16 = |o: usize| -> u16 {
            block
                .get(o..o + 2)
                .map(|s| u16::from_ne_bytes([s[0], s[1]]))
                .unwrap_or(0)
        };
        let num = rd(12) as usize;
        let mut off = rd(16) as usize;
        let mut done = 0;
        for _ in 0..num {
            if off == 0 || off + 48 > bs {
                break;
            }
            // tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac u16, net u16,
            // hv1 { rxhash, vlan_tci, vlan_tpid u16, pad u16 }.
            let next = rd(off) as usize;
            let sec = rd(off + 4) as u64;
            let nsec = rd(off + 8) as u64;
            let snap = rd(off + 12) as usize;
            let len = rd(off + 16);
            let status = rd(off + 20);
            let mac = rd16(off + 24) as usize;
            let net = rd16(off + 26) as usize;
            let tci = rd(off + 32);
            let tpid = rd16(off + 36);
            let start = off + mac;
            if let Some(data) = block.get(start..start + snap) {
                let linktype = if mac == net {
                    LINKTYPE_RAW
                } else {
                    LINKTYPE_ETHERNET
                };
                let ts_ns = sec * 1_000_000_000 + nsec;
                if status & TP_STATUS_VLAN_VALID != 0
                    && linktype == LINKTYPE_ETHERNET
                    && data.len() >= 12
                {
                    // The kernel took the 802.1Q tag off: put it back so the decoder sees it.
                    let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                        tpid
                    } else {
                        0x8100
                    };
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&data[..12]);
                    self.scratch.extend_from_slice(&tpid.to_be_bytes());
                    self.scratch.extend_from_slice(&(tci as u16).to_be_bytes());
                    self.scratch.extend_from_slice(&data[12..]);
                    let fr = Frame {
                        ts_ns,
                        linktype,
                        data: &self.scratch,
                        orig_len: len + 4,
                        offset: 0,
                        csum: csum_of(status),
                    };
                    f(&fr);
                } else {
                    f(&Frame {
                        ts_ns,
                        linktype,
                        data,
                        orig_len: len,
                        offset: 0,
                        csum: csum_of(status),
                    });
                }
                done += 1;
            }
            if next == 0 {
                break;
            }
            off += next;
        }
        done
    }

    /// Read (and reset) the kernel's counters; add them to the totals. Returns this interval's.
    pub fn read_stats(&mut self) -> io::Result<KernelStats> {
        // SAFETY: zeroed stats struct is valid; the kernel fills it.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for the call.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(err(
                &self.iface,
                "PACKET_STATISTICS",
                io::Error::last_os_error(),
            ));
        }
        // tp_packets counts received frames including drops.
        let now = KernelStats {
            packets: st.tp_packets as u64,
            drops: st.tp_drops as u64,
            freezes: st.tp_freeze_q_cnt as u64,
        };
        self.totals.packets += now.packets;
        self.totals.drops += now.drops;
        self.totals.freezes += now.freezes;
        Ok(now)
    }

    /// Counters since the socket was opened (as of the last `read_stats`).
    pub fn totals(&self) -> KernelStats {
        self.totals
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `open`, once.
        unsafe {
            libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
        }
    }
}
