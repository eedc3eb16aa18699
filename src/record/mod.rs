//! Record: decisions become events in the embedded store, and sinks deliver them to the SIEM
//! from their own cursors (at-least-once, in order).

pub mod config;
pub mod deliver;
pub mod ecs;
pub mod event;
pub mod feed;
pub mod notify;
pub mod queue;
pub mod recorder;
pub mod relp;
pub mod retention;
pub mod sinks;
pub mod store;
pub mod system;
pub mod words;

pub use event::{Event, SystemKind};
pub use store::{Query, Retained, Store, StoreError, StoreSize};
pub use words::{DnsAnswer, Enforced, EventKind, How, Outcome, PortalKind};
