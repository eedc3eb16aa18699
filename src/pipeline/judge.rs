//! The one decision path for every source. Captured frames (through the [`Pipeline`]), the
//! resolver's queries and the portal's page requests all become an [`Observation`] with its
//! evidence, are completed from the device table, decided by the one policy in force, and each
//! decision becomes one [`Event`] built by [`Event::decided`]. What a source then does with the
//! decision (a reset, an answer, a page) is its own; whether that stops traffic is
//! `enforce::verdict`'s answer, and what it did is the event's [`Enforced`].
//!
//! [`Pipeline`]: super::Pipeline

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::devices::Devices;
use crate::flow::Observation;
use crate::policy::reload::PolicyHandle;
use crate::policy::Decision;
use crate::record::queue::EventTx;
use crate::record::{Enforced, Event, EventKind};

/// Decides observations and records decisions. Cheap to clone (one per source).
#[derive(Clone)]
pub struct Judge {
    policy: Arc<PolicyHandle>,
    sensor: Arc<str>,
    events: Option<EventTx>,
    devices: Option<Arc<Devices>>,
    claims: Arc<ArcSwap<Claims>>,
    /// The once-a-minute limit of `blind_spot` events, shared by every pipeline of this judge.
    blind: super::blind::SharedBlindLimit,
}

/// Traffic another source decides itself: captured packets to these are not decided again.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// The resolver's listen sockets: DNS to them is decided by the resolver.
    pub dns: Vec<SocketAddr>,
    /// The portal's addresses: a steered browser's requests to them are the portal's.
    pub addresses: Vec<IpAddr>,
}

impl Claims {
    /// Is this observation of traffic to a source that decides it itself?
    pub fn own(&self, o: &Observation) -> bool {
        use crate::flow::Kind;
        if matches!(o.kind, Kind::DnsQuery | Kind::DnsAnswer) {
            self.dns
                .iter()
                .any(|a| a.ip() == o.server.ip && a.port() == o.server.port)
        } else {
            self.addresses.contains(&o.server.ip)
        }
    }
}

impl Judge {
    /// Decides with `policy`; records nothing until [`Judge::recording`].
    pub fn new(policy: Arc<PolicyHandle>, sensor: &str) -> Judge {
        Judge {
            policy,
            sensor: sensor.into(),
            events: None,
            devices: None,
            claims: Arc::default(),
            blind: Arc::default(),
        }
    }

    /// The `blind_spot` event limit every pipeline of this judge shares.
    pub fn blind_limit(&self) -> super::blind::SharedBlindLimit {
        Arc::clone(&self.blind)
    }

    /// A source (the resolver, the portal) says which traffic it decides itself.
    pub fn claim(&self, f: impl FnOnce(&mut Claims)) {
        let mut c = Claims::clone(&self.claims.load());
        f(&mut c);
        self.claims.store(Arc::new(c));
    }

    /// What the sources claimed so far (the capture pipeline consults it per observation).
    pub fn claims(&self) -> Arc<ArcSwap<Claims>> {
        Arc::clone(&self.claims)
    }

    /// Decisions become events on `tx` (the daemon's recorder queue).
    pub fn recording(mut self, tx: EventTx) -> Judge {
        self.events = Some(tx);
        self
    }

    /// Observations are completed from the device table (MAC, DHCP host name) before the
    /// policy decides, so groups and events name the device.
    pub fn with_devices(mut self, devices: Arc<Devices>) -> Judge {
        self.devices = Some(devices);
        self
    }

    /// The recorder queue, for a source's own system events (`set_full`).
    pub fn events(&self) -> Option<&EventTx> {
        self.events.as_ref()
    }

    /// Does it record (is there a recorder queue)?
    pub fn records(&self) -> bool {
        self.events.is_some()
    }

    pub fn policy(&self) -> &Arc<PolicyHandle> {
        &self.policy
    }

    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    pub fn devices(&self) -> Option<&Arc<Devices>> {
        self.devices.as_ref()
    }

    /// Complete what the observation lacks of its client from the device table.
    pub fn complete(&self, o: &mut Observation) {
        let Some(devices) = &self.devices else { return };
        let c = &mut o.client;
        if c.mac.is_none() || c.hostname.is_none() {
            if let Some(d) = devices.lookup(c.ip) {
                c.mac = c.mac.or(d.mac);
                if c.hostname.is_none() {
                    c.hostname = d.hostname;
                }
            }
        }
    }

    /// Complete the observation, then decide it with the policy in force.
    pub fn decide(&self, o: &mut Observation) -> Option<Decision> {
        self.complete(o);
        self.policy.current().decide_observation(o)
    }

    /// The decision's one event (`kind`: the observation's, or what the portal did about it),
    /// with what enforcement did and further `detail` fields. False when it could not be
    /// queued (no recorder, or the queue is full: the queue counts that as a gap).
    pub fn record(
        &self,
        kind: EventKind,
        o: &Observation,
        d: &Decision,
        enforced: Option<Enforced>,
        extra: Option<Map<String, Value>>,
    ) -> bool {
        let Some(tx) = &self.events else { return false };
        tx.send(Event::decided(kind, o, d, &self.sensor, enforced, extra))
    }

    /// An event that is no decision (a grant that ended) to the same recorder.
    pub fn record_event(&self, e: Event) -> bool {
        self.events.as_ref().is_some_and(|tx| tx.send(e))
    }
}
