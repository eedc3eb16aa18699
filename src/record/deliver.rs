//! Delivery: each sink reads the store from its own cursor, in sequence order, and moves the
//! cursor only after the SIEM accepted a batch (at-least-once: a crash between the two repeats
//! that batch). Failures back off exponentially and retry the same events, so a SIEM that is
//! down loses nothing. Optionally repeats of one (client, service, action) within a window are
//! folded into one alert with a count; the store still keeps every event.

use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::event::{Event, SystemKind};
use super::sinks::Sink;
use super::store::{Store, StoreError};
use crate::policy::Action;

/// Alert windows open at once per sink; past it the oldest is closed early.
pub const MAX_OPEN_WINDOWS: usize = 10_000;

/// Folds repeats of (client, service, action) within `window` of event time.
pub struct Aggregator {
    window_ns: u64,
    open: IndexMap<(String, String, Option<Action>), Open>,
}

struct Open {
    ev: Event,
    count: u32,
    /// Event time of the last event folded in (`ev.ts` is the first's).
    last_ts: u64,
    opened: Instant,
}

/// Alerts ready to deliver, in order: each event (a folded one carries its first event's fields
/// and the count) and the time of the last event folded into it.
#[derive(Debug, Default)]
pub struct Ready {
    pub events: Vec<Event>,
    pub last_ts: Vec<u64>,
}

impl Ready {
    pub fn push(&mut self, e: Event, last_ts: u64) {
        self.events.push(e);
        self.last_ts.push(last_ts);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.last_ts.clear();
    }
}

/// Which events a sink takes (a notifier: those at or above a severity, of some actions); the
/// others are passed over (its cursor moves past them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub min_severity: crate::policy::Severity,
    /// `None`: every action; `Some(None)` in the list: the system's own events (`info`).
    pub actions: Option<Vec<Option<Action>>>,
}

impl Filter {
    pub fn keeps(&self, e: &Event) -> bool {
        e.severity >= self.min_severity
            && self.actions.as_ref().is_none_or(|a| a.contains(&e.action))
    }
}

impl Aggregator {
    pub fn new(window: Duration) -> Self {
        Aggregator {
            window_ns: window.as_nanos() as u64,
            open: IndexMap::new(),
        }
    }

    fn key(e: &Event) -> (String, String, Option<Action>) {
        (
            e.client_ip.clone(),
            e.service.clone().unwrap_or_else(|| e.name.clone()),
            e.action,
        )
    }

    /// Add an event; alerts whose window ended before it are appended to `out`.
    pub fn push(&mut self, e: Event, out: &mut Ready) {
        self.close(|o, w| o.ev.ts.saturating_add(w) <= e.ts, out);
        if e.is_system() {
            // The system's own events are never folded: each outage or reload counts.
            let ts = e.ts;
            out.push(e, ts);
            return;
        }
        match self.open.get_mut(&Self::key(&e)) {
            Some(o) => {
                o.count = o.count.saturating_add(e.repeat_count);
                o.last_ts = o.last_ts.max(e.ts);
            }
            None => {
                if self.open.len() >= MAX_OPEN_WINDOWS {
                    // Many distinct keys (spoofed sources): close the oldest window early
                    // rather than hold unbounded state.
                    let mut left = 1;
                    self.close(
                        |_, _| {
                            left -= 1;
                            left >= 0
                        },
                        out,
                    );
                }
                let (count, last_ts) = (e.repeat_count, e.ts);
                self.open.insert(
                    Self::key(&e),
                    Open {
                        ev: e,
                        count,
                        last_ts,
                        opened: Instant::now(),
                    },
                );
            }
        }
    }

    /// Close windows from the oldest while `done` says so. Windows are kept in the order they
    /// opened (store order), so this is linear in what it closes, not in what is open; a window
    /// behind a younger one that is not yet done waits for it (its count stays right).
    fn close(&mut self, mut done: impl FnMut(&Open, u64) -> bool, out: &mut Ready) {
        let w = self.window_ns;
        let n = self.open.values().take_while(|o| done(o, w)).count();
        for (_, mut o) in self.open.drain(..n) {
            o.ev.repeat_count = o.count;
            out.push(o.ev, o.last_ts);
        }
    }

    /// Close windows open longer than the window in wall-clock time (a quiet live feed).
    pub fn flush_idle(&mut self, out: &mut Ready) {
        let w = Duration::from_nanos(self.window_ns);
        self.close(|o, _| o.opened.elapsed() >= w, out);
    }

    pub fn flush_all(&mut self, out: &mut Ready) {
        self.close(|_, _| true, out);
    }

    /// Lowest store sequence still held in an open window (the oldest window's).
    pub fn min_open_seq(&self) -> Option<i64> {
        self.open.first().map(|(_, o)| o.ev.seq)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// What one step of a sink's delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Delivered(usize),
    Idle,
    /// The sink failed; it will retry after the backoff.
    Failed(String),
    Waiting,
}

pub struct Deliverer {
    sink: Box<dyn Sink>,
    agg: Option<Aggregator>,
    filter: Option<Filter>,
    batch: usize,
    /// Last sequence pulled from the store (into `pending` or the aggregator).
    fetched: i64,
    pending: Ready,
    /// Cursor to record once `pending` is delivered.
    pending_cursor: i64,
    backoff: Duration,
    max_backoff: Duration,
    next_try: Instant,
    pub delivered: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Sensor id for the sink's own outage and recovery events.
    sensor: String,
    /// Since when (ns) the sink has been failing, as recorded in the store.
    down_since: Option<i64>,
    /// When the last recovery was recorded (flap damping).
    last_up: Option<Instant>,
    /// The current outage started while flapping and was not recorded.
    quiet_outage: bool,
    /// Outages not recorded because the sink was flapping.
    pub flaps: u64,
}

/// A sink that fails again this soon after a recorded recovery is flapping (see `note_health`).
pub const FLAP_WINDOW: Duration = Duration::from_secs(60);

const MIN_BACKOFF: Duration = Duration::from_millis(200);

impl Deliverer {
    pub fn new(
        sink: Box<dyn Sink>,
        store: &Store,
        batch: usize,
        aggregate: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let cursor = store.cursor(sink.name())?;
        let down_since = store.sink_down_since(sink.name())?;
        Ok(Deliverer {
            sink,
            agg: aggregate.filter(|w| !w.is_zero()).map(Aggregator::new),
            filter: None,
            batch: batch.max(1),
            fetched: cursor,
            pending: Ready::default(),
            pending_cursor: cursor,
            backoff: MIN_BACKOFF,
            max_backoff: Duration::from_secs(30),
            next_try: Instant::now(),
            delivered: 0,
            failures: 0,
            last_error: None,
            sensor: String::new(),
            down_since,
            last_up: None,
            quiet_outage: false,
            flaps: 0,
        })
    }

    /// The sensor id that the sink's outage and recovery events carry.
    pub fn with_sensor(mut self, sensor: &str) -> Self {
        self.sensor = sensor.to_string();
        self
    }

    /// Take only the events `filter` keeps (the others count as delivered).
    pub fn with_filter(mut self, filter: Option<Filter>) -> Self {
        self.filter = filter;
        self
    }

    pub fn name(&self) -> &str {
        self.sink.name()
    }

    /// The first failure after success records a `sink_down` event; the first success after
    /// a failure (in this process or an earlier one) a `sink_up` event with the outage's length.
    /// A sink that fails again within [`FLAP_WINDOW`] of its recovery is flapping: its outages
    /// are then kept in the store's state silently, so a flapping SIEM cannot flood the record
    /// (at most one down/up pair per window).
    fn note_health(&mut self, store: &mut Store, error: Option<&str>) -> Result<(), StoreError> {
        let now = crate::time::now_ns();
        let name = self.sink.name().to_string();
        if error.is_some() && self.down_since.is_none() {
            // Another process (or a drain that gave up on this sink) may have recorded it.
            self.down_since = store.sink_down_since(&name)?;
        }
        let flapping = self.last_up.is_some_and(|t| t.elapsed() < FLAP_WINDOW);
        let ev = match (error, self.down_since) {
            (Some(_), None) if flapping => {
                self.down_since = Some(now.min(i64::MAX as u64) as i64);
                self.quiet_outage = true;
                self.flaps += 1;
                return store.set_sink_down(&name, self.down_since);
            }
            (None, Some(_)) if self.quiet_outage => {
                self.down_since = None;
                self.quiet_outage = false;
                return store.set_sink_down(&name, None);
            }
            (Some(e), None) => {
                self.down_since = Some(now.min(i64::MAX as u64) as i64);
                Event::system(
                    SystemKind::SinkDown,
                    now,
                    &self.sensor,
                    &format!("sink {name} is failing: {e}; events wait in the store"),
                    serde_json::json!({ "sink": name, "error": e }),
                )
            }
            (None, Some(since)) => {
                self.down_since = None;
                self.last_up = Some(Instant::now());
                let secs = now.saturating_sub(since.max(0) as u64) / 1_000_000_000;
                Event::system(
                    SystemKind::SinkUp,
                    now,
                    &self.sensor,
                    &format!("sink {name} delivers again after {secs} s"),
                    serde_json::json!({ "sink": name, "down_since": crate::time::rfc3339_micros(since.max(0) as u64), "down_seconds": secs }),
                )
            }
            _ => return Ok(()),
        };
        store.set_sink_down(&name, self.down_since)?;
        store.append(&mut [ev])?;
        Ok(())
    }

    /// Has every stored event been delivered (and no alert is held in a window)?
    pub fn caught_up(&self, store: &Store) -> Result<bool, StoreError> {
        Ok(self.pending.is_empty()
            && self.agg.as_ref().is_none_or(|a| a.is_empty())
            && store.cursor(self.sink.name())? >= store.last_seq()?)
    }

    fn cursor_after_fetch(&self) -> i64 {
        match self.agg.as_ref().and_then(|a| a.min_open_seq()) {
            Some(s) => s - 1,
            None => self.fetched,
        }
    }

    /// Fetch what is new, then try to deliver. `draining`: close every aggregation window
    /// (end of input).
    pub fn step(&mut self, store: &mut Store, draining: bool) -> Result<Step, StoreError> {
        if self.pending.is_empty() {
            let events = store.after(self.fetched, self.batch)?;
            let got = events.len();
            for e in events {
                self.fetched = e.seq;
                if self.filter.as_ref().is_some_and(|f| !f.keeps(&e)) {
                    continue;
                }
                match &mut self.agg {
                    Some(a) => a.push(e, &mut self.pending),
                    None => {
                        let ts = e.ts;
                        self.pending.push(e, ts)
                    }
                }
            }
            if let Some(a) = &mut self.agg {
                if draining {
                    a.flush_all(&mut self.pending);
                } else if got == 0 {
                    a.flush_idle(&mut self.pending);
                }
            }
            self.pending_cursor = self.cursor_after_fetch();
            if self.pending.is_empty() {
                if got > 0 {
                    store.set_cursor(self.sink.name(), self.pending_cursor)?;
                }
                return Ok(Step::Idle);
            }
        }
        let now = Instant::now();
        if now < self.next_try || self.sink.hold_until().is_some_and(|t| now < t) {
            return Ok(Step::Waiting);
        }
        match self
            .sink
            .deliver_folded(&self.pending.events, &self.pending.last_ts)
        {
            Ok(()) => {
                let n = self.pending.len();
                self.pending.clear();
                store.set_cursor(self.sink.name(), self.pending_cursor)?;
                self.delivered += n as u64;
                self.backoff = MIN_BACKOFF;
                self.last_error = None;
                self.note_health(store, None)?;
                Ok(Step::Delivered(n))
            }
            Err(e) => {
                self.note_health(store, Some(&e))?;
                self.failures += 1;
                self.next_try = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.max_backoff);
                self.last_error = Some(e.clone());
                Ok(Step::Failed(e))
            }
        }
    }

    /// Step until caught up or `deadline`. Returns whether it caught up.
    pub fn drain(&mut self, store: &mut Store, deadline: Instant) -> Result<bool, StoreError> {
        loop {
            if self.caught_up(store)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            match self.step(store, true)? {
                Step::Delivered(_) => {}
                Step::Idle => {}
                Step::Failed(_) | Step::Waiting => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, ts_s: u64, client: &str, service: &str) -> Event {
        Event {
            id: format!("id{seq}"),
            seq,
            ts: ts_s * 1_000_000_000,
            sensor: "t".into(),
            client_ip: client.into(),
            client_port: 1,
            client_mac: None,
            client_hostname: None,
            client_groups: String::new(),
            server_ip: "192.0.2.1".into(),
            server_port: 443,
            transport: Some(crate::flow::observation::Transport::Tcp),
            kind: crate::flow::Kind::TlsClientHello.into(),
            name: format!("{service}.example"),
            seen_via: "tls".into(),
            evidence: Some(crate::flow::Evidence::Wire),
            service: Some(service.into()),
            service_name: None,
            category: None,
            action: Some(Action::Steer),
            severity: crate::policy::Severity::Medium,
            rule_id: "r".into(),
            steer_url: None,
            shared_tenant: false,
            repeat_count: 1,
            detail: None,
        }
    }

    #[test]
    fn folds_repeats_within_the_window() {
        let mut a = Aggregator::new(Duration::from_secs(60));
        let mut out = Ready::default();
        for (i, t) in [0u64, 10, 20, 59].iter().enumerate() {
            a.push(ev(i as i64 + 1, *t, "10.0.0.1", "claude"), &mut out);
        }
        a.push(ev(5, 30, "10.0.0.2", "claude"), &mut out);
        assert!(out.is_empty());
        assert_eq!(a.min_open_seq(), Some(1));
        // An event a window later closes the first window.
        a.push(ev(6, 61, "10.0.0.1", "claude"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out.events[0].seq, out.events[0].repeat_count), (1, 4));
        assert_eq!(
            out.last_ts[0],
            59 * 1_000_000_000,
            "the last folded event's time"
        );
        a.flush_all(&mut out);
        assert_eq!(
            out.events
                .iter()
                .map(|e| e.repeat_count)
                .collect::<Vec<_>>(),
            [4, 1, 1]
        );
        assert!(a.is_empty());
    }
    #[test]
    fn many_distinct_keys_cannot_grow_the_open_windows_without_bound() {
        let mut a = Aggregator::new(Duration::from_secs(3600));
        let mut out = Ready::default();
        let n = MAX_OPEN_WINDOWS + 5;
        for i in 0..n {
            a.push(
                ev(
                    i as i64 + 1,
                    10,
                    &format!("10.{}.{}.1", i / 256, i % 256),
                    "claude",
                ),
                &mut out,
            );
        }
        assert_eq!(out.len(), 5, "the oldest windows closed early");
        assert_eq!(out.events[0].seq, 1);
        assert_eq!(a.min_open_seq(), Some(6));
        a.flush_all(&mut out);
        assert_eq!(out.len(), n, "nothing lost");
    }

    /// A sink that fails every other batch.
    struct Flaky(u32);

    impl Sink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn deliver(&mut self, _: &[Event]) -> Result<(), String> {
            self.0 += 1;
            if self.0 % 2 == 1 {
                Err("connection reset".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_flapping_sink_records_one_outage_not_one_per_flap() {
        let dir = std::env::temp_dir().join(format!("sg-flap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut st = Store::open(&dir.join("events.db")).unwrap();
        let mut batch: Vec<Event> = (1..=40)
            .map(|i| ev(i, i as u64, "10.0.0.1", "claude"))
            .collect();
        st.append(&mut batch).unwrap();
        let mut d = Deliverer::new(Box::new(Flaky(0)), &st, 1, None).unwrap();
        for _ in 0..200 {
            d.step(&mut st, false).unwrap();
            d.next_try = Instant::now();
        }
        let kinds: Vec<&str> = st
            .after(40, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(kinds, ["sink_down", "sink_up"], "then damped");
        assert!(d.flaps > 10, "{}", d.flaps);
        assert!(d.caught_up(&st).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
