//! The SIEM feed: every configured sink drains the store on its own thread, with its own store
//! connection, cursor and backoff, so a dead or slow SIEM never delays another.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::deliver::{Deliverer, Step};
use super::store::Store;
use crate::config::SinkConf;

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

fn deliverer(store: &Store, sc: &SinkConf) -> Result<Deliverer, String> {
    let sink = sc.build()?;
    Deliverer::new(sink, store, sc.batch, sc.aggregate()).map_err(|e| e.to_string())
}

fn drain_one(store_path: &Path, sc: &SinkConf, deadline: Instant) -> Drained {
    let store = match Store::open(store_path) {
        Ok(s) => s,
        Err(e) => return Drained::Failed(e.to_string()),
    };
    let mut d = match deliverer(&store, sc) {
        Ok(d) => d,
        Err(e) => return Drained::Failed(e),
    };
    match d.drain(&store, deadline) {
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

/// Deliver to every sink, concurrently, until each is caught up or `timeout` passes.
pub fn drain(store_path: &Path, sinks: &[SinkConf], timeout: Duration) -> Vec<SinkReport> {
    let deadline = Instant::now() + timeout;
    std::thread::scope(|s| {
        let handles: Vec<_> = sinks
            .iter()
            .map(|sc| (sc, s.spawn(move || drain_one(store_path, sc, deadline))))
            .collect();
        handles
            .into_iter()
            .map(|(sc, h)| SinkReport {
                name: sc.name.clone(),
                result: h
                    .join()
                    .unwrap_or_else(|_| Drained::Failed("delivery thread panicked".into())),
            })
            .collect()
    })
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
pub fn follow(store_path: &Path, sinks: &[SinkConf], stop: &AtomicBool) -> Result<(), String> {
    let mut ds = Vec::new();
    for sc in sinks {
        let store = Store::open(store_path).map_err(|e| e.to_string())?;
        let d = deliverer(&store, sc).map_err(|e| format!("sink {}: {e}", sc.name))?;
        ds.push((store, d));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ds
            .into_iter()
            .map(|(store, mut d)| {
                s.spawn(move || -> Result<(), String> {
                    while !stop.load(Ordering::Relaxed) {
                        let step = d.step(&store, false).map_err(|e| {
                            // One failed store stops the whole feed: it is the same store for all.
                            stop.store(true, Ordering::Relaxed);
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
