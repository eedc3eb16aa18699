//! The daemon's recorder: a bounded queue in front of the store, written by its own thread, so
//! that capture, DNS and the portal never wait on the disk. Full queue: the event is dropped,
//! counted, and the count is stored as a `capture_gap` system event (never an unbounded queue).

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
    let mut reported_drops = 0u64;
    let mut last_gap = Instant::now();
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
                commit(&mut store, &mut buf, &stats);
                report_drops(&stats, &mut reported_drops, system.as_deref());
                return;
            }
        }
        commit(&mut store, &mut buf, &stats);
        if last_gap.elapsed() >= GAP_EVERY || stopping {
            report_drops(&stats, &mut reported_drops, system.as_deref());
            last_gap = Instant::now();
        }
        if stopping {
            // Drain what is left, then end.
            while let Ok(e) = rx.try_recv() {
                buf.push(e);
                if buf.len() >= batch {
                    commit(&mut store, &mut buf, &stats);
                }
            }
            commit(&mut store, &mut buf, &stats);
            report_drops(&stats, &mut reported_drops, system.as_deref());
            return;
        }
    }
}

fn commit(store: &mut Store, buf: &mut Vec<Event>, stats: &QueueStats) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len() as u64;
    let t = Instant::now();
    match store.append(buf) {
        Ok(_) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            // The events are lost: count them as dropped so the gap is on record.
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            stats.dropped.fetch_add(n, Ordering::Relaxed);
            eprintln!("shadowgate: cannot write {n} events to the store: {e}");
        }
    }
    let us = t.elapsed().as_micros() as u64;
    stats.commit_us_sum.fetch_add(us, Ordering::Relaxed);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.last_commit_us.store(us, Ordering::Relaxed);
    stats.depth.fetch_sub(
        n.min(stats.depth.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    buf.clear();
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
}
