//! What the daemon adds to each capture pipeline: the device table learns from every
//! observation and completes it before the policy decides.

use std::sync::Arc;

use crate::devices::Devices;
use crate::flow::Observation;

/// Learn the client's MAC and DHCP host name from an observation into the device table, and
/// complete what the observation lacks from it (neighbour table, leases file).
pub fn enricher(devices: Arc<Devices>) -> crate::pipeline::Enrich {
    Box::new(move |o: &mut Observation| {
        crate::devices::learn_from_observation(&devices, o);
        let c = &mut o.client;
        if c.mac.is_none() || c.hostname.is_none() {
            if let Some(d) = devices.lookup(c.ip) {
                if c.mac.is_none() {
                    c.mac = d.mac;
                }
                if c.hostname.is_none() {
                    c.hostname = d.hostname;
                }
            }
        }
    })
}
