//! nftables enforcement through netlink (`nftnl` + `nftnl-sys`, never the `nft` program): one
//! table, `inet shadowgate`, owned by a socket a dedicated thread keeps open for the daemon's life.
//!
//! The table carries the owner flag (NFT_TABLE_F_OWNER, Linux >= 5.12): when the owning socket
//! closes, because the daemon stopped or died (`kill -9`), the kernel deletes the table, so a dead
//! daemon leaves no stop rules and no DNS redirect behind (fail-open). Only the owner may change
//! an owned table, which is why every operation goes through the one thread (a bounded queue:
//! the capture thread never waits for the kernel). Element deletes use DESTROYSETELEM (Linux >=
//! 6.3); on older kernels (Debian 12 has 6.1), found out when the table is made, each delete goes
//! alone as DELSETELEM and an absent element counts as deleted. Sets are named, keyed by concatenations and carry per-element timeouts, so the kernel
//! expires stopped flows, QUIC drops and grants alone; `nftnl` cannot build those, `msgs` does
//! through `nftnl-sys`.

mod msgs;
mod netlink;
mod probe;
mod table;

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nftnl::{Batch, MsgType};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::persist::{Book, Entry};
use msgs::{ElemOp, ElemsMsg, FlushChain, TableMsg, TableOp};
use netlink::NlSocket;
pub use probe::{probe, KernelNft};
pub use table::{
    addr_key, bind_key, flow_key, pair_key, Fam, GuardMode, GuardTarget, SetKind, TableSpec,
    FILTER_CHAIN, GUARD_CHAIN, NAT_CHAIN, TABLE,
};

/// Operations waiting for the nft thread at most (past it an operation is dropped and counted
/// as an error: capture never waits).
pub const QUEUE: usize = 65_536;
/// Element operations sent in one kernel transaction at most.
const BATCH_OPS: usize = 1024;

/// Metrics of the nftables side.
#[derive(Clone)]
pub struct NftMetrics {
    /// `shadowgate_nft_ops_total{op}`: operations applied (stop_flow, drop_quic, allow,
    /// remove_quic, enforcing_on, enforcing_off, open, close).
    pub ops: IntCounterVec,
    /// `shadowgate_nft_errors_total`: operations the kernel refused or the full queue dropped.
    pub errors: IntCounter,
}

impl NftMetrics {
    pub fn new(reg: &Registry) -> Result<NftMetrics> {
        let ops = IntCounterVec::new(
            Opts::new("shadowgate_nft_ops_total", "nftables operations applied"),
            &["op"],
        )?;
        let errors = IntCounter::new(
            "shadowgate_nft_errors_total",
            "nftables operations refused by the kernel or dropped because the queue was full",
        )?;
        reg.register(Box::new(ops.clone()))?;
        reg.register(Box::new(errors.clone()))?;
        Ok(NftMetrics { ops, errors })
    }
}

#[derive(Clone)]
struct ElemReq {
    kind: SetKind,
    fam: Fam,
    op: ElemOp,
    key: Vec<u8>,
    timeout_ms: u64,
    name: &'static str,
}

enum Req {
    Elem(ElemReq),
    /// Replace every binding of the DNS source guard (one transaction).
    Bindings(Vec<(IpAddr, [u8; 6])>),
    /// The resolver's guard sockets: the guard's rules point there from now on.
    Guard(Vec<GuardTarget>, mpsc::Sender<Result<()>>),
    Enforcing(bool, mpsc::Sender<Result<()>>),
    Sync(mpsc::Sender<()>),
    Close(mpsc::Sender<Result<()>>),
}

struct Inner {
    metrics: NftMetrics,
    thread: Mutex<Option<JoinHandle<()>>>,
    enforcing: AtomicBool,
    refused: Arc<Refused>,
    /// Where the stop, QUIC and allow entries are kept across a restart (see `persist`).
    book: OnceLock<Arc<Book>>,
    /// Element removals use DESTROYSETELEM (false: one plain delete at a time).
    destroy_ok: bool,
}

/// Additions the kernel refused after their retries: never in force. The enforcer takes them
/// (`Nft::take_refused`) to forget them, so a later flow adds them again, and reports them.
#[derive(Default)]
struct Refused {
    list: Mutex<Vec<RefusedOp>>,
    any: AtomicBool,
}

/// One addition the kernel refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedOp {
    pub kind: SetKind,
    pub fam: Fam,
    pub key: Vec<u8>,
    /// The kernel's reason (`errno` text).
    pub why: String,
}

/// Refused additions kept for the enforcer at most (older ones are counted only).
const MAX_REFUSED: usize = 1024;
/// Tries of an addition the kernel refused, a second apart.
const TRIES: u8 = 3;

/// A handle on the table (cheap to clone; every clone talks to the same owner thread).
#[derive(Clone)]
pub struct Nft {
    tx: SyncSender<Req>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Nft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nft")
            .field("enforcing", &self.inner.enforcing.load(Ordering::Relaxed))
            .finish()
    }
}

impl Nft {
    /// Replace any stale `inet shadowgate` table with a fresh one (rules in force) owned by a new
    /// thread's netlink socket. Needs CAP_NET_ADMIN.
    pub fn open(spec: &TableSpec, registry: &Registry) -> Result<Nft> {
        let metrics = NftMetrics::new(registry)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (ready_tx, ready_rx) = mpsc::channel();
        let spec2 = spec.clone();
        let m2 = metrics.clone();
        let refused = Arc::new(Refused::default());
        let r2 = Arc::clone(&refused);
        let thread = std::thread::Builder::new()
            .name("shadowgate-nft".into())
            .spawn(move || {
                let mut owner = match Owner::start(spec2, m2, r2) {
                    Ok(o) => {
                        let _ = ready_tx.send(Ok(o.destroy_ok));
                        o
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                owner.serve(rx);
            })
            .context("cannot start the nftables thread")?;
        let destroy_ok = match ready_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => bail!("the nftables thread ended before creating the table"),
        };
        metrics.ops.with_label_values(&["open"]).inc();
        Ok(Nft {
            tx,
            inner: Arc::new(Inner {
                metrics,
                thread: Mutex::new(Some(thread)),
                enforcing: AtomicBool::new(true),
                refused,
                book: OnceLock::new(),
                destroy_ok,
            }),
        })
    }

    fn queue(&self, r: ElemReq) -> bool {
        match self.tx.try_send(Req::Elem(r)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.metrics.errors.inc();
                false
            }
        }
    }

    /// Reject the client's later packets of this TCP flow with a reset, and drop the server's,
    /// for `ttl`. Queued; false if the queue was full (counted as an error).
    pub fn stop_flow(&self, client: SocketAddr, server: SocketAddr, ttl: Duration) -> bool {
        let Some((fam, key)) = flow_key(client, server) else {
            return false;
        };
        if let Some(b) = self.book() {
            b.put(Entry::Stop { client, server }, ttl);
        }
        self.queue(ElemReq {
            kind: SetKind::Stop,
            fam,
            op: ElemOp::Add,
            key,
            timeout_ms: ms(ttl),
            name: "stop_flow",
        })
    }

    /// Drop QUIC (UDP 443) from `client` to `server` for `ttl`.
    pub fn drop_quic(&self, client: IpAddr, server: IpAddr, ttl: Duration) -> bool {
        let Some((fam, key)) = pair_key(client, server) else {
            return false;
        };
        self.queue(ElemReq {
            kind: SetKind::Quic,
            fam,
            op: ElemOp::Add,
            key,
            timeout_ms: ms(ttl),
            name: "drop_quic",
        })
    }

    /// Accept everything between `client` and `server` for `ttl` (a coach grant), before any
    /// stop or drop.
    pub fn allow(&self, client: IpAddr, server: IpAddr, ttl: Duration) -> bool {
        let Some((fam, key)) = pair_key(client, server) else {
            return false;
        };
        if let Some(b) = self.book() {
            b.put(Entry::Allow { client, server }, ttl);
        }
        self.queue(ElemReq {
            kind: SetKind::Allow,
            fam,
            op: ElemOp::Add,
            key,
            timeout_ms: ms(ttl),
            name: "allow",
        })
    }

    /// Lift the QUIC drops of `client` towards these addresses.
    pub fn remove_quic_for(&self, client: IpAddr, servers: &[IpAddr]) -> bool {
        if let Some(b) = self.book() {
            b.remove_quic(client, servers);
        }
        let mut ok = true;
        for s in servers {
            if let Some((fam, key)) = pair_key(client, *s) {
                ok &= self.queue(ElemReq {
                    kind: SetKind::Quic,
                    fam,
                    op: ElemOp::Destroy,
                    key,
                    timeout_ms: 0,
                    name: "remove_quic",
                });
            }
        }
        ok
    }

    /// The gateway's bindings of addresses to MACs (leases file, neighbour table) for the DNS
    /// source guard, replacing the previous ones in one transaction. Queued; false if the queue
    /// was full.
    pub fn set_bindings(&self, bindings: Vec<(IpAddr, [u8; 6])>) -> bool {
        match self.tx.try_send(Req::Bindings(bindings)) {
            Ok(()) => true,
            Err(_) => {
                self.inner.metrics.errors.inc();
                false
            }
        }
    }

    /// Point the DNS source guard (`Log`) at the resolver's guard sockets. Waits for the kernel.
    pub fn set_guard_targets(&self, targets: Vec<GuardTarget>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Req::Guard(targets, tx))
            .map_err(|_| anyhow!("the nftables thread has stopped"))?;
        rx.recv()
            .map_err(|_| anyhow!("the nftables thread has stopped"))?
    }

    /// Break glass (`false`): flush the stop and QUIC sets and remove every rule (filter and
    /// DNS intercept) in one transaction; `true` puts the rules back. Waits for the kernel.
    pub fn set_enforcing(&self, on: bool) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Req::Enforcing(on, tx))
            .map_err(|_| anyhow!("the nftables thread has stopped"))?;
        let r = rx
            .recv()
            .map_err(|_| anyhow!("the nftables thread has stopped"))?;
        if r.is_ok() {
            self.inner.enforcing.store(on, Ordering::SeqCst);
            if !on {
                // The stop and QUIC sets were flushed: a restart must not bring them back.
                if let Some(b) = self.book() {
                    b.clear_stops();
                }
            }
        }
        r
    }

    /// Keep every stop and allow entry from now on in `book` (once; later calls do nothing).
    /// QUIC drops are kept by the enforcer, which knows their service.
    pub fn keep_in(&self, book: Arc<Book>) {
        let _ = self.inner.book.set(book);
    }

    /// The book entries are kept in, if any.
    pub fn book(&self) -> Option<&Arc<Book>> {
        self.inner.book.get()
    }

    /// Whether the rules are in force (false after break glass).
    pub fn enforcing(&self) -> bool {
        self.inner.enforcing.load(Ordering::SeqCst)
    }

    /// Wait until everything queued so far is in the kernel (or refused).
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Req::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Delete the table and end the thread (clean stop). Later calls on any clone fail quietly
    /// (counted as errors).
    pub fn close(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        let r = match self.tx.send(Req::Close(tx)) {
            Ok(()) => rx
                .recv()
                .unwrap_or_else(|_| Err(anyhow!("the nftables thread has stopped"))),
            Err(_) => Ok(()),
        };
        if let Some(t) = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
        r
    }

    /// Does the table remove elements with DESTROYSETELEM (delete if present, Linux >= 6.3)?
    /// False: the kernel lacks it (or [`TableSpec::plain_deletes`] asked so) and each removal
    /// goes alone as a plain delete.
    pub fn element_destroy(&self) -> bool {
        self.inner.destroy_ok
    }

    pub fn metrics(&self) -> &NftMetrics {
        &self.inner.metrics
    }

    /// Additions the kernel refused after their retries since the last call (never in force).
    pub fn take_refused(&self) -> Vec<RefusedOp> {
        let r = &self.inner.refused;
        // A plain load first: every observation asks, and a write would bounce the cache line
        // between capture threads.
        if !r.any.load(Ordering::Relaxed) || !r.any.swap(false, Ordering::Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *r.list.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// Delete a table `inet shadowgate` left behind (`shadowgate break-glass --cleanup`, systemd's
/// `ExecStopPost`). Returns whether one was there. A table a live daemon owns is not touched
/// (the kernel refuses: that daemon is still running).
pub fn remove_stale_table() -> Result<bool> {
    let mut sock = NlSocket::open()
        .context("cannot open a netfilter netlink socket (needs CAP_NET_ADMIN: run as root)")?;
    let mut b = Batch::new();
    b.add(
        &TableMsg {
            name: table::table_name(),
            family: table::inet(),
            flags: 0,
            op: TableOp::Delete,
        },
        MsgType::Del,
    );
    let errs = sock.run(&b.finalize()).context("nftables netlink socket")?;
    match errs.first().map(|e| e.errno) {
        None => Ok(true),
        Some(libc::ENOENT) => Ok(false),
        Some(libc::EPERM) | Some(libc::EBUSY) => bail!(
            "table inet {} belongs to a running shadowgate; stop it (or use `break-glass on`)",
            table::TABLE
        ),
        Some(e) => bail!(
            "cannot delete table inet {}: {}",
            table::TABLE,
            errno_text(e)
        ),
    }
}

/// The thread that owns the socket (and with it the table).
struct Owner {
    sock: NlSocket,
    spec: TableSpec,
    metrics: NftMetrics,
    enforcing: bool,
    table: CString,
    refused: Arc<Refused>,
    /// Additions the kernel refused, with their next try and tries so far.
    retry: Vec<(Instant, u8, ElemReq, i32)>,
    /// When the journal last heard of a refusal (at most once a minute).
    said: Option<Instant>,
    /// The kernel has DESTROYSETELEM (Linux >= 6.3); older ones delete one element at a time
    /// with DELSETELEM, an absent element being no error.
    destroy_ok: bool,
}

impl Owner {
    fn start(spec: TableSpec, metrics: NftMetrics, refused: Arc<Refused>) -> Result<Owner> {
        let sock = NlSocket::open()
            .context("cannot open a netfilter netlink socket (the daemon needs CAP_NET_ADMIN)")?;
        let mut o = Owner {
            sock,
            spec,
            metrics,
            enforcing: true,
            table: table::table_name(),
            refused,
            retry: Vec::new(),
            said: None,
            destroy_ok: true,
        };
        // A stale table (a crash of a version without the owner flag, or a hand-made one).
        let mut b = Batch::new();
        b.add(
            &TableMsg {
                name: o.table.clone(),
                family: table::inet(),
                flags: 0,
                op: TableOp::Destroy,
            },
            MsgType::Del,
        );
        match o.run(b)? {
            Ok(()) => {}
            Err(libc::EPERM) | Err(libc::EBUSY) => bail!(
                "table inet {} is owned by another running process (a second shadowgate?); \
                 stop it first",
                table::TABLE
            ),
            Err(libc::EINVAL) | Err(libc::EOPNOTSUPP) => {
                // Linux < 6.3 has no DESTROYTABLE: delete, absent is fine.
                let mut b = Batch::new();
                b.add(
                    &TableMsg {
                        name: o.table.clone(),
                        family: table::inet(),
                        flags: 0,
                        op: TableOp::Delete,
                    },
                    MsgType::Del,
                );
                match o.run(b)? {
                    Ok(()) | Err(libc::ENOENT) => {}
                    Err(e) => bail!("cannot delete the stale table: {}", errno_text(e)),
                }
            }
            Err(e) => bail!("cannot delete the stale table: {}", errno_text(e)),
        }
        let mut b = Batch::new();
        table::build(&mut b, &o.spec);
        if let Err(e) = o.run(b)? {
            bail!(
                "the kernel refused table inet {}: {} (needs nf_tables with owned tables, \
                 Linux >= 5.12, and the nft_reject, nft_nat and nft_lookup modules)",
                table::TABLE,
                errno_text(e)
            );
        }
        // Does this kernel destroy elements (delete if present)? Ask for an absent one.
        let probe = ElemReq {
            kind: SetKind::Quic,
            fam: Fam::V4,
            op: ElemOp::Destroy,
            key: vec![0; 8],
            timeout_ms: 0,
            name: "probe",
        };
        o.destroy_ok = !o.spec.plain_deletes && matches!(o.send_elems(&[probe]), Ok(Ok(())));
        Ok(o)
    }

    /// Send one transaction: Ok(Ok) applied, Ok(Err(errno)) refused (rolled back).
    fn run(&mut self, b: Batch) -> Result<std::result::Result<(), i32>> {
        let fb = b.finalize();
        let errs = self.sock.run(&fb).context("nftables netlink socket")?;
        Ok(match errs.first() {
            None => Ok(()),
            Some(e) => Err(e.errno),
        })
    }

    fn serve(&mut self, rx: Receiver<Req>) {
        let mut pending: Vec<ElemReq> = Vec::new();
        loop {
            // Wake at least once a second while refused additions wait for another try.
            let first = if self.retry.is_empty() {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.retry_due();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut next = Some(first);
            while let Some(r) = next.take() {
                match r {
                    Req::Elem(e) => {
                        pending.push(e);
                        if pending.len() < BATCH_OPS {
                            next = rx.try_recv().ok();
                        }
                    }
                    control => {
                        self.apply(&mut pending);
                        if self.control(control) {
                            return;
                        }
                    }
                }
            }
            self.apply(&mut pending);
            self.retry_due();
        }
        // Every handle dropped without close: delete the table (closing the socket would too).
        let _ = self.delete_table();
    }

    /// Handle a control request; true when the thread must end.
    fn control(&mut self, r: Req) -> bool {
        match r {
            Req::Elem(_) => false,
            Req::Bindings(list) => {
                match self.replace_bindings(&list) {
                    Ok(()) => self.metrics.ops.with_label_values(&["bindings"]).inc(),
                    Err(e) => {
                        self.metrics.errors.inc();
                        eprintln!("shadowgate: nftables: DNS source guard bindings: {e:#}");
                    }
                }
                false
            }
            Req::Guard(targets, tx) => {
                self.spec.guard_targets = targets;
                let r = self.reload_guard();
                if r.is_err() {
                    self.metrics.errors.inc();
                }
                let _ = tx.send(r);
                false
            }
            Req::Sync(tx) => {
                let _ = tx.send(());
                false
            }
            Req::Enforcing(on, tx) => {
                let r = self.set_enforcing(on);
                if r.is_err() {
                    self.metrics.errors.inc();
                } else {
                    let op = if on { "enforcing_on" } else { "enforcing_off" };
                    self.metrics.ops.with_label_values(&[op]).inc();
                }
                let _ = tx.send(r);
                false
            }
            Req::Close(tx) => {
                let r = self.delete_table();
                if r.is_ok() {
                    self.metrics.ops.with_label_values(&["close"]).inc();
                }
                let _ = tx.send(r);
                true
            }
        }
    }

    /// Flush the guard's address sets and fill them with `list`, in one transaction.
    fn replace_bindings(&mut self, list: &[(IpAddr, [u8; 6])]) -> Result<()> {
        let mut known: [Vec<(Vec<u8>, u64)>; 2] = [Vec::new(), Vec::new()];
        let mut bind: [Vec<(Vec<u8>, u64)>; 2] = [Vec::new(), Vec::new()];
        for (ip, mac) in list {
            let (f, k) = table::addr_key(*ip);
            let i = (f == Fam::V6) as usize;
            known[i].push((k, 0));
            bind[i].push((table::bind_key(*ip, *mac).1, 0));
        }
        let mut b = Batch::new();
        for (kind, lists) in [(SetKind::Known, &known), (SetKind::Bind, &bind)] {
            for (i, fam) in [Fam::V4, Fam::V6].into_iter().enumerate() {
                let set = kind.name(fam);
                b.add(
                    &ElemsMsg {
                        table: &self.table,
                        family: table::inet(),
                        set: &set,
                        op: ElemOp::Flush,
                        elems: &[],
                    },
                    MsgType::Del,
                );
                for chunk in lists[i].chunks(256) {
                    b.add(
                        &ElemsMsg {
                            table: &self.table,
                            family: table::inet(),
                            set: &set,
                            op: ElemOp::Add,
                            elems: chunk,
                        },
                        MsgType::Add,
                    );
                }
            }
        }
        match self.run(b)? {
            Ok(()) => Ok(()),
            Err(e) => bail!("the kernel refused the bindings: {}", errno_text(e)),
        }
    }

    /// Put the guard chain's rules back from the spec (new guard targets).
    fn reload_guard(&mut self) -> Result<()> {
        if self.spec.guard == GuardMode::Off || !self.enforcing {
            return Ok(());
        }
        let chain = CString::new(GUARD_CHAIN).unwrap_or_default();
        let mut b = Batch::new();
        b.add(
            &FlushChain {
                table: &self.table,
                family: table::inet(),
                chain: &chain,
            },
            MsgType::Del,
        );
        table::guard_rules(&mut b, &self.spec);
        match self.run(b)? {
            Ok(()) => Ok(()),
            Err(e) => bail!(
                "the kernel refused the DNS source guard's rules: {}",
                errno_text(e)
            ),
        }
    }

    fn delete_table(&mut self) -> Result<()> {
        let mut b = Batch::new();
        b.add(
            &TableMsg {
                name: self.table.clone(),
                family: table::inet(),
                flags: 0,
                op: TableOp::Delete,
            },
            MsgType::Del,
        );
        match self.run(b)? {
            Ok(()) | Err(libc::ENOENT) => Ok(()),
            Err(e) => bail!(
                "cannot delete table inet {}: {}",
                table::TABLE,
                errno_text(e)
            ),
        }
    }

    fn set_enforcing(&mut self, on: bool) -> Result<()> {
        if on == self.enforcing {
            return Ok(());
        }
        let mut b = Batch::new();
        if on {
            table::add_rules(&mut b, &self.spec);
        } else {
            let filter = CString::new(FILTER_CHAIN).unwrap_or_default();
            let nat = CString::new(NAT_CHAIN).unwrap_or_default();
            b.add(
                &FlushChain {
                    table: &self.table,
                    family: table::inet(),
                    chain: &filter,
                },
                MsgType::Del,
            );
            if !self.spec.intercept.is_empty() {
                b.add(
                    &FlushChain {
                        table: &self.table,
                        family: table::inet(),
                        chain: &nat,
                    },
                    MsgType::Del,
                );
            }
            if self.spec.guard != GuardMode::Off {
                let guard = CString::new(GUARD_CHAIN).unwrap_or_default();
                b.add(
                    &FlushChain {
                        table: &self.table,
                        family: table::inet(),
                        chain: &guard,
                    },
                    MsgType::Del,
                );
            }
            for kind in [SetKind::Stop, SetKind::Quic] {
                for fam in [Fam::V4, Fam::V6] {
                    let set = kind.name(fam);
                    b.add(
                        &ElemsMsg {
                            table: &self.table,
                            family: table::inet(),
                            set: &set,
                            op: ElemOp::Flush,
                            elems: &[],
                        },
                        MsgType::Del,
                    );
                }
            }
        }
        match self.run(b)? {
            Ok(()) => {
                self.enforcing = on;
                Ok(())
            }
            Err(e) => bail!(
                "cannot turn enforcement {}: {}",
                if on { "on" } else { "off" },
                errno_text(e)
            ),
        }
    }

    /// Apply queued element operations: consecutive ones on the same set and of the same kind go
    /// in one message, all in one transaction; if the kernel refuses it, each goes alone so only
    /// the faulty ones are lost (and counted).
    fn apply(&mut self, pending: &mut Vec<ElemReq>) {
        if pending.is_empty() {
            return;
        }
        if !self.enforcing {
            // Break glass: nothing is added (removals are moot, the sets were flushed).
            pending.clear();
            return;
        }
        if !self.destroy_ok && pending.iter().any(|e| e.op == ElemOp::Destroy) {
            // Linux < 6.3: each removal alone, as a plain delete; absent is done.
            let (del, rest): (Vec<_>, Vec<_>) = std::mem::take(pending)
                .into_iter()
                .partition(|e| e.op == ElemOp::Destroy);
            *pending = rest;
            for mut e in del {
                e.op = ElemOp::Delete;
                let one = vec![e];
                match self.send_elems(&one) {
                    Ok(Ok(())) | Ok(Err(libc::ENOENT)) => self.count(&one),
                    _ => self.metrics.errors.inc(),
                }
            }
            if pending.is_empty() {
                return;
            }
        }
        let ok = match self.send_elems(pending) {
            Ok(Ok(())) => true,
            Ok(Err(_)) if pending.len() > 1 => {
                let all = std::mem::take(pending);
                for e in all {
                    let one = vec![e];
                    match self.send_elems(&one) {
                        Ok(Ok(())) => self.count(&one),
                        Ok(Err(errno)) => self.refused_now(one, errno, 0),
                        Err(_) => self.refused_now(one, libc::EIO, 0),
                    }
                }
                false
            }
            Ok(Err(errno)) => {
                self.refused_now(std::mem::take(pending), errno, 0);
                false
            }
            Err(_) => {
                self.refused_now(std::mem::take(pending), libc::EIO, 0);
                false
            }
        };
        if ok {
            self.count(pending);
        }
        pending.clear();
    }

    /// Operations the kernel refused: additions are tried again a second later, up to
    /// [`TRIES`] times, then handed to the enforcer as never in force; removals are counted.
    fn refused_now(&mut self, ops: Vec<ElemReq>, errno: i32, tries: u8) {
        let next = Instant::now() + Duration::from_secs(1);
        for e in ops {
            self.metrics.errors.inc();
            if e.op == ElemOp::Add && tries + 1 < TRIES {
                self.retry.push((next, tries + 1, e, errno));
                continue;
            }
            if e.op != ElemOp::Add {
                continue;
            }
            let why = errno_text(errno);
            if self
                .said
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                self.said = Some(Instant::now());
                eprintln!(
                    "shadowgate: nftables refused an addition to {} {TRIES} times ({why}): it is not in force \
                     (a full set? see [enforce] set_size and shadowgate_nft_errors_total)",
                    e.kind.name(e.fam).to_string_lossy()
                );
            }
            let mut l = self.refused.list.lock().unwrap_or_else(|e| e.into_inner());
            if l.len() < MAX_REFUSED {
                l.push(RefusedOp {
                    kind: e.kind,
                    fam: e.fam,
                    key: e.key,
                    why,
                });
            }
            self.refused.any.store(true, Ordering::Relaxed);
        }
    }

    /// Try again the refused additions whose second has passed (one at a time).
    fn retry_due(&mut self) {
        if self.retry.is_empty() || !self.enforcing {
            self.retry.clear();
            return;
        }
        let now = Instant::now();
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.retry = wait;
        for (_, tries, e, _) in due {
            let one = vec![e];
            match self.send_elems(&one) {
                Ok(Ok(())) => self.count(&one),
                Ok(Err(errno)) => self.refused_now(one, errno, tries),
                Err(_) => self.refused_now(one, libc::EIO, tries),
            }
        }
    }

    fn count(&self, done: &[ElemReq]) {
        for e in done {
            self.metrics.ops.with_label_values(&[e.name]).inc();
        }
    }

    fn send_elems(&mut self, ops: &[ElemReq]) -> Result<std::result::Result<(), i32>> {
        let mut b = Batch::new();
        let mut i = 0;
        while i < ops.len() {
            let (kind, fam, op) = (ops[i].kind, ops[i].fam, ops[i].op);
            let mut j = i;
            let mut elems = Vec::new();
            while j < ops.len() && (ops[j].kind, ops[j].fam, ops[j].op) == (kind, fam, op) {
                elems.push((ops[j].key.clone(), ops[j].timeout_ms));
                j += 1;
                // Keep each message well under the 64 KiB netlink attribute limit.
                if elems.len() >= 256 {
                    break;
                }
            }
            let set = kind.name(fam);
            b.add(
                &ElemsMsg {
                    table: &self.table,
                    family: table::inet(),
                    set: &set,
                    op,
                    elems: &elems,
                },
                MsgType::Add,
            );
            i = j;
        }
        self.run(b)
    }
}

fn errno_text(e: i32) -> String {
    if e == libc::ENFILE {
        // What nf_tables says for a set at its size.
        return format!("the set is full (ENFILE, errno {e})");
    }
    format!("{} (errno {e})", std::io::Error::from_raw_os_error(e))
}
