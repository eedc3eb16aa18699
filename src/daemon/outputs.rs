//! What the daemon adds to each capture pipeline: the device table learns from every
//! observation and completes it before the policy decides; a frame that claims an address the
//! gateway binds to another MAC is marked and reported instead (`spoofed`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::devices::Devices;
use crate::flow::observation::{mac_string, Transport};
use crate::flow::{Flag, Observation};
use crate::pipeline::Judge;
use crate::record::{Event, SystemKind};

/// (address, MAC) pairs remembered for the once-a-minute `spoofed` event; cleared when full.
const MAX_SPOOFERS: usize = 4096;
const SPOOFED_EVERY: Duration = Duration::from_secs(60);

/// Frames in another device's name: counted, and a `spoofed` system event per address and MAC
/// at most once a minute (shared by every capture thread).
pub struct Spoofs {
    judge: Judge,
    seen: Mutex<HashMap<(IpAddr, [u8; 6]), Instant>>,
    counter: prometheus::IntCounter,
}

impl Spoofs {
    pub fn new(judge: Judge, counter: prometheus::IntCounter) -> Spoofs {
        Spoofs {
            judge,
            seen: Mutex::new(HashMap::new()),
            counter,
        }
    }

    fn note(&self, o: &Observation, mac: [u8; 6], bound: [u8; 6]) {
        self.counter.inc();
        let now = Instant::now();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen
                .get(&(o.client.ip, mac))
                .is_some_and(|t| now.duration_since(*t) < SPOOFED_EVERY)
            {
                return;
            }
            if seen.len() >= MAX_SPOOFERS {
                seen.clear();
            }
            seen.insert((o.client.ip, mac), now);
        }
        let (m, b) = (mac_string(&mac), mac_string(&bound));
        let ip = o.client.ip;
        let what = o.kind.as_str();
        let name = o.name.as_deref().unwrap_or("");
        let mut e = Event::system(
            SystemKind::Spoofed,
            crate::time::now_ns(),
            self.judge.sensor(),
            &format!(
                "{m} sent a {what} for {name} as {ip}, which the gateway binds to {b}: recorded as unverified, not acted on"
            ),
            serde_json::json!({
                "claimed_ip": ip.to_string(),
                "mac": m,
                "bound_mac": b,
                "kind": what,
                "name": name,
            }),
        );
        // The event names the device that sent the frame, never the one whose address it used.
        e.client_mac = Some(m);
        e.client_hostname = self.judge.devices().and_then(|d| d.hostname_of_mac(mac));
        self.judge.record_event(e);
    }
}

/// Learn the client's MAC and DHCP host name from an observation into the device table, and
/// complete what the observation lacks from it (neighbour table, leases file). A frame whose MAC
/// contradicts the gateway's own binding of its source address teaches nothing, is flagged
/// `unverified_source` (so nothing acts on it and the report does not count it) and keeps the
/// MAC it came from.
pub fn enricher(devices: Arc<Devices>, spoofs: Option<Arc<Spoofs>>) -> crate::pipeline::Enrich {
    Box::new(move |o: &mut Observation| {
        // A TCP connection whose handshake the sensor verified came from whoever receives the
        // address's traffic: a device that changed its MAC, not a forger. It is acted on as
        // usual (a new MAC must not escape a stop) and named by the MAC it came from.
        let verified_tcp =
            o.transport == Transport::Tcp && !o.flags.contains(&Flag::UnverifiedSource);
        if let Some(mac) = o.client.mac.filter(|_| !verified_tcp) {
            if let Some(bound) = devices.bound_mac(o.client.ip).filter(|b| *b != mac) {
                if !o.flags.contains(&Flag::UnverifiedSource) {
                    o.flags.push(Flag::UnverifiedSource);
                }
                if o.client.hostname.is_none() {
                    o.client.hostname = devices.hostname_of_mac(mac);
                }
                if let Some(s) = &spoofs {
                    s.note(o, mac, bound);
                }
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Kind;

    fn obs(kind: Kind, transport: Transport, mac: [u8; 6]) -> Observation {
        let mut o = Observation::between(
            1,
            kind,
            Some("claude.ai".into()),
            transport,
            "10.0.0.7:50000".parse().unwrap(),
            "104.18.0.1:443".parse().unwrap(),
        );
        o.client.mac = Some(mac);
        o
    }

    #[test]
    fn a_frame_in_anothers_name_is_unverified_a_verified_connection_is_not() {
        let devices = Arc::new(Devices::new());
        let (nurse, other) = ([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 0, 0x66]);
        devices.bind("10.0.0.7".parse().unwrap(), nurse, Some("nurse-pc"));
        let mut enrich = enricher(Arc::clone(&devices), None);
        // A lookup (or QUIC hello) from another MAC: unverified, teaches nothing.
        let mut q = obs(Kind::DnsQuery, Transport::Udp, other);
        enrich(&mut q);
        assert!(q.flags.contains(&Flag::UnverifiedSource));
        assert_eq!(q.client.mac, Some(other));
        assert_eq!(
            devices.lookup("10.0.0.7".parse().unwrap()).unwrap().mac,
            Some(nurse)
        );
        // A TCP connection with a verified handshake from a new MAC: the device changed its
        // MAC; it is not flagged (and so is stopped like any other).
        let mut hello = obs(Kind::TlsClientHello, Transport::Tcp, other);
        enrich(&mut hello);
        assert!(!hello.flags.contains(&Flag::UnverifiedSource));
        // The bound MAC: nothing to say.
        let mut own = obs(Kind::DnsQuery, Transport::Udp, nurse);
        enrich(&mut own);
        assert!(!own.flags.contains(&Flag::UnverifiedSource));
        assert_eq!(own.client.hostname.as_deref(), Some("nurse-pc"));
    }
}
