//! Batches events into store transactions (an event is recorded once its batch committed).

use super::event::Event;
use super::store::{Store, StoreError};
use crate::flow::Observation;
use crate::policy::Decision;

pub struct Recorder {
    pub store: Store,
    buf: Vec<Event>,
    batch: usize,
    sensor: String,
    pub recorded: u64,
    /// Print "committed through seq N" on stderr after each commit (used by crash tests).
    pub print_commits: bool,
}

impl Recorder {
    pub fn new(store: Store, batch: usize, sensor: &str) -> Self {
        Recorder {
            store,
            buf: Vec::with_capacity(batch.max(1)),
            batch: batch.max(1),
            sensor: sensor.into(),
            recorded: 0,
            print_commits: false,
        }
    }

    pub fn record(&mut self, o: &Observation, d: &Decision) -> Result<(), StoreError> {
        self.buf.push(Event::decided(
            o.kind.into(),
            o,
            d,
            &self.sensor,
            None,
            None,
        ));
        if self.buf.len() >= self.batch {
            self.commit()?;
        }
        Ok(())
    }

    /// The sensor id its events carry.
    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// Record an event made elsewhere (a `blind_spot` system event of the capture).
    pub fn record_event(&mut self, e: Event) -> Result<(), StoreError> {
        self.buf.push(e);
        if self.buf.len() >= self.batch {
            self.commit()?;
        }
        Ok(())
    }

    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let last = self.store.append(&mut self.buf)?;
        self.recorded += self.buf.len() as u64;
        self.buf.clear();
        if self.print_commits {
            eprintln!("shadowgate: committed through seq {last}");
        }
        Ok(())
    }
}
