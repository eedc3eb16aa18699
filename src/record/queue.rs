//! The daemon's recorder: a bounded queue in front of the store, written by its own thread, so
//! that capture, DNS and the portal never wait on the disk. Full queue: the event is dropped,
//! counted, and the count is stored as a `capture_gap` system event (never an unbounded queue).
//! A store that cannot be written (disk full, `SQLITE_FULL`, I/O error): the events are held in
//! memory, at most [`HOLD_MAX`], and written in order once it can be again (tried every second);
//! past that bound they are lost and counted (`lost_full`), and when writing works again one
//! `store_full` system event says for how long it failed, why, and how many events were lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use super::event::{Event, SystemKind};
use super::store::Store;
use super::system::SystemLog;

/// Counters of the queue, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Events waiting now.
    pub depth: AtomicU64,
    /// Sum and count of commit latencies (microseconds), for an average.
    pub commit_us_sum: AtomicU64,
    pub commits: AtomicU64,
    /// Latest commit latency (microseconds).
    pub last_commit_us: AtomicU64,
    /// Events lost because the store could not be written and the hold was full.
    pub lost_full: AtomicU64,
    /// Events held now, waiting for the store to be writable again.
    pub held: AtomicU64,
}

/// Events held in memory while the store cannot be written (about 1 KiB each: 20 MiB at most).
pub const HOLD_MAX: usize = 20_000;
/// How often a store that failed is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The events waiting for a store that failed, and what the failure has cost so far.
struct Hold {
    events: VecDeque<Event>,
    /// At most this many held ([`HOLD_MAX`]).
    max: usize,
    /// Since when writes fail (None: the store works).
    failing_since: Option<Instant>,
    last_try: Option<Instant>,
    /// Events lost in this outage.
    lost: u64,
    /// The first error of this outage.
    error: String,
}

impl Hold {
    fn new(max: usize) -> Hold {
        Hold {
            events: VecDeque::new(),
            max,
            failing_since: None,
            last_try: None,
            lost: 0,
            error: String::new(),
        }
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventTx {
    tx: SyncSender<Event>,
    stats: Arc<QueueStats>,
}

impl EventTx {
    /// Queue an event; false (and counted) when the recorder is behind.
    pub fn send(&self, e: Event) -> bool {
        match self.tx.try_send(e) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                self.stats.depth.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn stats(&self) -> &Arc<QueueStats> {
        &self.stats
    }
}

/// The writer thread; `stop` drains what is queued and joins it.
pub struct RecorderThread {
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<QueueStats>,
}

/// Start the recorder: `capacity` queued events at most, `batch` per transaction. Drops are
/// reported through `system` as a `capture_gap` at most every `gap_every`.
pub fn start(
    store: Store,
    capacity: usize,
    batch: usize,
    system: Option<Arc<SystemLog>>,
) -> (EventTx, RecorderThread) {
    let (tx, rx) = sync_channel(capacity.max(1));
    let stats = Arc::new(QueueStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stats);
    let stop2 = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("sg-recorder".into())
        .spawn(move || run(store, rx, batch.max(1), s2, stop2, system))
        .expect("spawn recorder thread");
    (
        EventTx {
            tx,
            stats: Arc::clone(&stats),
        },
        RecorderThread {
            handle: Some(handle),
            stop,
            stats,
        },
    )
}

impl RecorderThread {
    /// Write what is queued, report any drops, and end the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RecorderThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

const GAP_EVERY: Duration = Duration::from_secs(10);

fn run(
    mut store: Store,
    rx: Receiver<Event>,
    batch: usize,
    stats: Arc<QueueStats>,
    stop: Arc<AtomicBool>,
    system: Option<Arc<SystemLog>>,
) {
    let mut buf: Vec<Event> = Vec::with_capacity(batch);
    let mut hold = Hold::new(HOLD_MAX);
    let mut reported_drops = 0u64;
    let mut last_gap = Instant::now();
    let sys = system.as_deref();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => {
                buf.push(e);
                while buf.len() < batch {
                    match rx.try_recv() {
                        Ok(e) => buf.push(e),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write(&mut store, &mut buf, &mut hold, batch, &stats, sys, true);
                give_up(&mut hold, &stats);
                report_drops(&stats, &mut reported_drops, sys);
                return;
            }
        }
        write(&mut store, &mut buf, &mut hold, batch, &stats, sys, false);
        if last_gap.elapsed() >= GAP_EVERY || stopping {
            report_drops(&stats, &mut reported_drops, sys);
            last_gap = Instant::now();
        }
        if stopping {
            // Drain what is left, then end.
            while let Ok(e) = rx.try_recv() {
                buf.push(e);
                if buf.len() >= batch {
                    write(&mut store, &mut buf, &mut hold, batch, &stats, sys, false);
                }
            }
            write(&mut store, &mut buf, &mut hold, batch, &stats, sys, true);
            give_up(&mut hold, &stats);
            report_drops(&stats, &mut reported_drops, sys);
            return;
        }
    }
}

/// Write `buf` (taken from the queue), after what is held from a failed store. While the store
/// fails, `buf` joins the hold (bounded; the rest is lost and counted) and the hold is tried
/// again every [`RETRY_EVERY`] (`now`: at once). When it works again, one `store_full` event.
fn write(
    store: &mut Store,
    buf: &mut Vec<Event>,
    hold: &mut Hold,
    batch: usize,
    stats: &QueueStats,
    system: Option<&SystemLog>,
    now: bool,
) {
    let n = buf.len() as u64;
    stats.depth.fetch_sub(
        n.min(stats.depth.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    if hold.failing_since.is_none() {
        match commit(store, buf, stats) {
            Ok(()) => return,
            Err(e) => {
                eprintln!(
                    "shadowgate: cannot write {n} events to the store: {e}; holding up to {} events in memory and trying again every second",
                    hold.max
                );
                hold.failing_since = Some(Instant::now());
                hold.last_try = Some(Instant::now());
                hold.error = e;
            }
        }
    }
    // The store fails: hold what came, bounded.
    for e in buf.drain(..) {
        if hold.events.len() < hold.max {
            hold.events.push_back(e);
        } else {
            hold.lost += 1;
            stats.lost_full.fetch_add(1, Ordering::Relaxed);
        }
    }
    stats
        .held
        .store(hold.events.len() as u64, Ordering::Relaxed);
    if !now && hold.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
        return;
    }
    hold.last_try = Some(Instant::now());
    while !hold.events.is_empty() {
        let k = hold.events.len().min(batch.max(1));
        let mut chunk: Vec<Event> = hold.events.drain(..k).collect();
        if commit(store, &mut chunk, stats).is_err() {
            for e in chunk.into_iter().rev() {
                hold.events.push_front(e);
            }
            stats
                .held
                .store(hold.events.len() as u64, Ordering::Relaxed);
            return;
        }
    }
    stats.held.store(0, Ordering::Relaxed);
    // Give the hold's memory back: the queue's room, and the pages its events' strings held
    // (glibc keeps freed memory in its arenas: in the soak a 6,600-event hold left about 7 MiB
    // in the daemon's memory after it was written).
    hold.events = VecDeque::new();
    crate::mem::release_freed_memory();
    // Writable again: say what the outage cost.
    let secs = hold
        .failing_since
        .take()
        .map(|t| t.elapsed().as_secs())
        .unwrap_or(0);
    let lost = std::mem::take(&mut hold.lost);
    let error = std::mem::take(&mut hold.error);
    eprintln!("shadowgate: the store is writable again after {secs} s; {lost} events were lost");
    if let Some(s) = system {
        let _ = s.record(
            SystemKind::StoreFull,
            &format!(
                "event store could not be written for {secs} s ({error}): {lost} events lost; free disk space (`df` on the store's file system)"
            ),
            json!({
                "reason": "write_failed",
                "error": error,
                "seconds": secs,
                "events_lost": lost,
                "hold_max": hold.max,
                "total_lost": stats.lost_full.load(Ordering::Relaxed),
            }),
        );
    }
}

/// The store still fails as the recorder ends: what is held is lost (counted and said).
fn give_up(hold: &mut Hold, stats: &QueueStats) {
    let n = hold.events.len() as u64;
    if n > 0 {
        stats.lost_full.fetch_add(n, Ordering::Relaxed);
        stats.held.store(0, Ordering::Relaxed);
        hold.events.clear();
        eprintln!(
            "shadowgate: {n} held events lost: the store still cannot be written ({})",
            hold.error
        );
    }
}

/// One transaction of `buf` (cleared when written; kept on error).
fn commit(store: &mut Store, buf: &mut Vec<Event>, stats: &QueueStats) -> Result<(), String> {
    if buf.is_empty() {
        return Ok(());
    }
    let n = buf.len() as u64;
    let t = Instant::now();
    let r = store.append(buf);
    let us = t.elapsed().as_micros() as u64;
    stats.commit_us_sum.fetch_add(us, Ordering::Relaxed);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.last_commit_us.store(us, Ordering::Relaxed);
    match r {
        Ok(_) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
            buf.clear();
            Ok(())
        }
        Err(e) => {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            Err(e.to_string())
        }
    }
}

fn report_drops(stats: &QueueStats, reported: &mut u64, system: Option<&SystemLog>) {
    let dropped = stats.dropped.load(Ordering::Relaxed);
    if dropped > *reported {
        let n = dropped - *reported;
        if let Some(s) = system {
            let _ = s.record(
                SystemKind::CaptureGap,
                &format!("recorder behind: {n} events not stored"),
                json!({ "reason": "recorder_behind", "events_dropped": n, "total_dropped": dropped }),
            );
        }
        *reported = dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event {
        Event::system(
            SystemKind::SensorStart,
            i + 1,
            "test",
            &format!("e{i}"),
            json!({}),
        )
    }

    #[test]
    fn full_queue_drops_and_counts_and_the_gap_is_stored() {
        let dir = std::env::temp_dir().join(format!("sg-queue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let store = Store::open(&path).unwrap();
        let system = SystemLog::open(&path, "test").unwrap();
        let (tx, rec) = start(store, 4, 2, Some(system));
        let sent = (0..10_000).filter(|i| tx.send(ev(*i))).count() as u64;
        rec.stop();
        let st = Store::open(&path).unwrap();
        let all = st.after(0, 100_000).unwrap();
        let gaps: Vec<_> = all
            .iter()
            .filter(|e| e.kind == SystemKind::CaptureGap.into())
            .collect();
        let dropped = 10_000 - sent;
        assert!(dropped > 0, "a 4-slot queue must drop under 10,000 sends");
        assert_eq!(all.len() as u64 - gaps.len() as u64, sent);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(&format!("\"events_dropped\":{dropped}")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_store_holds_events_bounded_then_writes_them_and_says_what_was_lost() {
        let dir = std::env::temp_dir().join(format!("sg-queue-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let mut store = Store::open(&path).unwrap();
        let system = SystemLog::open(&path, "test").unwrap();
        let stats = QueueStats::default();
        let mut hold = Hold::new(50);
        let mut next = 0u64;
        let mut batch = |n: u64| -> Vec<Event> {
            let v = (next..next + n).map(ev).collect();
            next += n;
            v
        };
        // Works: 10 events written.
        write(
            &mut store,
            &mut batch(10),
            &mut hold,
            10,
            &stats,
            Some(&system),
            false,
        );
        assert_eq!(stats.written.load(Ordering::Relaxed), 10);
        // The file may not grow any more: the next writes fail once its free room is used.
        let size = store.size().unwrap();
        let pages = size.pages;
        store.cap_pages(pages).unwrap();
        let mut sent = 10u64;
        while hold.failing_since.is_none() {
            write(
                &mut store,
                &mut batch(10),
                &mut hold,
                10,
                &stats,
                Some(&system),
                false,
            );
            sent += 10;
            assert!(sent < 10_000, "a capped store never failed");
        }
        let written_before = stats.written.load(Ordering::Relaxed);
        let held = hold.events.len() as u64;
        assert_eq!(held, 10, "the failed batch is held");
        // 60 more while it fails: 40 fit the hold of 50, 20 are lost; retries still fail.
        for _ in 0..6 {
            write(
                &mut store,
                &mut batch(10),
                &mut hold,
                10,
                &stats,
                Some(&system),
                true,
            );
        }
        assert_eq!(hold.events.len(), 50);
        assert_eq!(stats.lost_full.load(Ordering::Relaxed), 20);
        assert_eq!(stats.held.load(Ordering::Relaxed), 50);
        // Room again: the held events are written in order, then one store_full event.
        store.cap_pages(1 << 30).unwrap();
        write(
            &mut store,
            &mut Vec::new(),
            &mut hold,
            10,
            &stats,
            Some(&system),
            true,
        );
        assert!(hold.failing_since.is_none() && hold.events.is_empty());
        assert_eq!(stats.written.load(Ordering::Relaxed), written_before + 50);
        let all = store.after(0, 100_000).unwrap();
        let summaries: Vec<String> = all
            .iter()
            .filter(|e| e.kind == SystemKind::SensorStart.into())
            .map(|e| e.name.clone())
            .collect();
        let expect: Vec<String> = (0..next)
            .filter(|i| *i < written_before + 50)
            .map(|i| format!("e{i}"))
            .collect();
        assert_eq!(
            summaries, expect,
            "held events written in order, the lost ones are the last"
        );
        let full: Vec<_> = all
            .iter()
            .filter(|e| e.kind == SystemKind::StoreFull.into())
            .collect();
        assert_eq!(full.len(), 1, "{full:?}");
        let d = full[0].detail.as_deref().unwrap();
        assert!(d.contains("\"events_lost\":20"), "{d}");
        assert!(d.contains("\"reason\":\"write_failed\""), "{d}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
