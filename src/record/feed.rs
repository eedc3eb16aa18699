//! The SIEM feed: every configured sink drains the store on its own thread, with its own store
//! connection, cursor and backoff, so a dead or slow SIEM never delays another.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::SinkConf;
use super::deliver::{Deliverer, Step};
use super::event::{Event, SystemKind};
use super::store::Store;

/// How one sink's drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// Every stored event was delivered.
    CaughtUp { delivered: u64 },
    /// Time ran out (or the SIEM is down): `waiting` events stay in the store for the next run.
    Behind {
        delivered: u64,
        waiting: i64,
        error: Option<String>,
    },
    /// The sink could not be set up or the store failed.
    Failed(String),
}

/// One sink's result, in configuration order.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub name: String,
    pub result: Drained,
}

fn deliverer(store: &Store, sc: &SinkConf, sensor: &str) -> Result<Deliverer, String> {
    let sink = sc.build()?;
    Deliverer::new(sink, store, sc.batch, sc.aggregate())
        .map(|d| d.with_sensor(sensor).with_filter(sc.filter()))
        .map_err(|e| e.to_string())
}

fn drain_one(store_path: &Path, sc: &SinkConf, deadline: Instant, sensor: &str) -> Drained {
    let mut store = match Store::open(store_path) {
        Ok(s) => s,
        Err(e) => return Drained::Failed(e.to_string()),
    };
    let mut d = match deliverer(&store, sc, sensor) {
        Ok(d) => d,
        Err(e) => return Drained::Failed(e),
    };
    match d.drain(&mut store, deadline) {
        Ok(true) => Drained::CaughtUp {
            delivered: d.delivered,
        },
        Ok(false) => Drained::Behind {
            delivered: d.delivered,
            waiting: store.last_seq().unwrap_or(0) - store.cursor(&sc.name).unwrap_or(0),
            error: d.last_error.clone(),
        },
        Err(e) => Drained::Failed(e.to_string()),
    }
}

/// Deliver to every sink, concurrently, until each is caught up or `timeout` passes. `sensor`
/// is the id that the sinks' outage and recovery events carry. Returns at the deadline even if
/// a sink is stuck in a write to a SIEM that does not read: that sink is reported behind and its
/// thread is left to its own write timeout (its cursor only moves on an acknowledged batch).
pub fn drain(
    store_path: &Path,
    sinks: &[SinkConf],
    timeout: Duration,
    sensor: &str,
) -> Vec<SinkReport> {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Drained)>();
    for (i, sc) in sinks.iter().enumerate() {
        let (tx_thread, sc, path, sensor) = (
            tx.clone(),
            sc.clone(),
            store_path.to_path_buf(),
            sensor.to_string(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("sink-{}", sc.name))
            .spawn(move || {
                let _ = tx_thread.send((i, drain_one(&path, &sc, deadline, &sensor)));
            });
        if let Err(e) = spawned {
            let _ = tx.send((i, Drained::Failed(format!("cannot start its thread: {e}"))));
        }
    }
    drop(tx);
    let mut results: Vec<Option<Drained>> = vec![None; sinks.len()];
    // A little grace past the deadline for a sink that is between two batches.
    let until = deadline + Duration::from_millis(500);
    while results.iter().any(Option::is_none) {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, r)) => results[i] = Some(r),
            Err(_) => break,
        }
    }
    // A sink still stuck in a write is down as far as the record is concerned.
    let stuck = |name: &str| -> Result<i64, crate::record::StoreError> {
        let mut st = Store::open(store_path)?;
        if st.sink_down_since(name)?.is_none() {
            let now = crate::time::now_ns();
            st.set_sink_down(name, Some(now.min(i64::MAX as u64) as i64))?;
            st.append(&mut [Event::system(
                SystemKind::SinkDown,
                now,
                sensor,
                &format!("sink {name} is stuck: the SIEM does not take what is sent; events wait in the store"),
                serde_json::json!({ "sink": name, "error": "stuck in a write" }),
            )])?;
        }
        Ok(st.last_seq()? - st.cursor(name)?)
    };
    sinks
        .iter()
        .zip(results)
        .map(|(sc, r)| SinkReport {
            name: sc.name.clone(),
            result: r.unwrap_or_else(|| Drained::Behind {
                delivered: 0,
                waiting: stuck(&sc.name).unwrap_or(0),
                error: Some("still writing: the SIEM does not take what is sent".into()),
            }),
        })
        .collect()
}

/// Print a drain's outcome the way the CLI reports it; returns whether every sink caught up.
pub fn report(reports: &[SinkReport], quiet: bool) -> bool {
    let mut all = true;
    for r in reports {
        match &r.result {
            Drained::CaughtUp { delivered } => {
                if !quiet {
                    eprintln!(
                        "shadowgate: sink {}: delivered {delivered} events, caught up",
                        r.name
                    );
                }
            }
            Drained::Behind { waiting, error, .. } => {
                all = false;
                eprintln!(
                    "shadowgate: warning: sink {}: {waiting} events wait in the store ({}); `shadowgate deliver` sends them when the SIEM is back",
                    r.name,
                    error.as_deref().unwrap_or("timed out")
                );
            }
            Drained::Failed(e) => {
                all = false;
                eprintln!("shadowgate: sink {}: {e}", r.name);
            }
        }
    }
    all
}

/// Deliver new events as they are recorded, each sink on its own thread, until `stop` is set.
/// Every sink is set up first: a sink that cannot be built is an error before anything runs.
pub fn follow(
    store_path: &Path,
    sinks: &[SinkConf],
    stop: &AtomicBool,
    sensor: &str,
) -> Result<(), String> {
    let mut ds = Vec::new();
    for sc in sinks {
        let store = Store::open(store_path).map_err(|e| e.to_string())?;
        let d = deliverer(&store, sc, sensor).map_err(|e| format!("sink {}: {e}", sc.name))?;
        ds.push((store, d));
    }
    // One failed store stops the whole feed (it is the same store for all sinks), never the
    // caller's `stop`: in the daemon that flag ends capture too.
    let failed = AtomicBool::new(false);
    let failed = &failed;
    std::thread::scope(|s| {
        let handles: Vec<_> = ds
            .into_iter()
            .map(|(mut store, mut d)| {
                s.spawn(move || -> Result<(), String> {
                    while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
                        let step = d.step(&mut store, false).map_err(|e| {
                            failed.store(true, Ordering::Relaxed);
                            e.to_string()
                        })?;
                        match step {
                            Step::Delivered(_) => continue,
                            Step::Failed(e) => {
                                eprintln!("shadowgate: sink {}: {e}; retrying", d.name())
                            }
                            Step::Idle | Step::Waiting => {}
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Ok(())
                })
            })
            .collect();
        let mut first_err = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("delivery thread panicked".into()));
            if let (Err(e), Ok(())) = (r, &first_err) {
                first_err = Err(e);
            }
        }
        first_err
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that fails under the feed ends the feed with an error, and leaves the caller's
    /// `stop` alone (the daemon's flag: setting it ended every capture thread).
    #[test]
    fn a_failing_store_ends_the_feed_not_the_callers_stop() {
        let dir = std::env::temp_dir().join(format!("sg-feed-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        drop(Store::open(&path).unwrap());
        let sinks: Vec<SinkConf> =
            toml::from_str::<std::collections::HashMap<String, Vec<SinkConf>>>(&format!(
                "[[sink]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n",
                dir.join("out.jsonl").display()
            ))
            .unwrap()
            .remove("sink")
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| follow(&path, &sinks, &stop, "test"));
            std::thread::sleep(Duration::from_millis(300));
            // Break the store under the running feed.
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch("DROP TABLE events").unwrap();
            let t = std::time::Instant::now();
            while !h.is_finished() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(h.is_finished(), "the feed went on over a broken store");
            assert!(h.join().unwrap().is_err());
        });
        assert!(
            !stop.load(Ordering::Relaxed),
            "the caller's stop flag was set"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
