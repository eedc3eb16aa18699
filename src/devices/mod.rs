//! Device attribution: which MAC and host name an address belongs to, learnt from frames, DHCP
//! on the wire, the kernel's neighbour table and a DHCP server's leases file.

pub mod config;
mod isc;
mod lease;
pub mod leases;
pub mod metrics;
pub mod neighbour;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use leases::{load_leases, LeaseFormat, LeaseStats};
pub use metrics::DeviceMetrics;
pub use neighbour::{refresh_neighbours, NeighbourSource, NeighbourStats};

use crate::devices::config::DevicesConf;
use crate::flow::Observation;

/// At most this many addresses (and as many MAC -> host name bindings) are remembered: a clinic
/// LAN has far fewer. Past it new ones are refused (counted) until a refresh forgets stale ones.
pub const MAX_DEVICES: usize = 65_536;

/// Host names longer than a DNS name are cut (a leases file or a DHCP client may send anything).
const MAX_HOSTNAME: usize = 253;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
}

#[derive(Debug)]
struct Entry {
    mac: Option<[u8; 6]>,
    hostname: Option<String>,
    /// [`now_ms`] when last seen (atomic: a repeat sighting only needs the read lock).
    seen: AtomicU64,
}

#[derive(Debug)]
struct Bound {
    mac: [u8; 6],
    seen: AtomicU64,
}

#[derive(Debug)]
struct Named {
    hostname: String,
    seen: AtomicU64,
}

/// Milliseconds since the first use of the table in this process (monotonic).
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug, Default)]
struct Inner {
    by_ip: HashMap<IpAddr, Entry>,
    /// The address's MAC as the gateway itself knows it (the DHCP server's leases file, the
    /// kernel's neighbour table), never from a frame's claim: attribution and the DNS source
    /// guard trust this over what a frame says.
    bound: HashMap<IpAddr, Bound>,
    /// A device's host name by its MAC: an IPv6 address whose neighbour entry gives only the
    /// MAC is named by the DHCPv4 lease of the same MAC.
    by_mac: HashMap<[u8; 6], Named>,
}

/// The shared device table (read by DNS and the portal, written by capture and refreshes).
#[derive(Debug, Default)]
pub struct Devices {
    inner: RwLock<Inner>,
    refused: AtomicU64,
}

impl Devices {
    pub fn new() -> Devices {
        Devices::default()
    }

    /// What is known of `ip`: its MAC, and its host name (by address, else by that MAC).
    pub fn lookup(&self, ip: IpAddr) -> Option<Device> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let bound = g.bound.get(&ip).map(|b| b.mac);
        let e = g.by_ip.get(&ip)?;
        // The gateway's own binding names the device; a frame's claim only where it has none.
        let mac = bound.or(e.mac);
        let entry_ok = e.mac.is_none() || e.mac == mac;
        let hostname = e.hostname.clone().filter(|_| entry_ok).or_else(|| {
            mac.and_then(|m| g.by_mac.get(&m))
                .map(|n| n.hostname.clone())
        });
        Some(Device { mac, hostname })
    }

    /// The MAC the gateway itself binds to `ip` (leases file or neighbour table), if any.
    pub fn bound_mac(&self, ip: IpAddr) -> Option<[u8; 6]> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.bound.get(&ip).map(|b| b.mac)
    }

    /// Does a frame from `mac` claiming `ip` contradict the gateway's own binding of `ip`?
    pub fn contradicts(&self, ip: IpAddr, mac: [u8; 6]) -> bool {
        self.bound_mac(ip).is_some_and(|b| b != mac)
    }

    /// Every binding the gateway knows (for the DNS source guard's table).
    pub fn bindings(&self) -> Vec<(IpAddr, [u8; 6])> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.bound.iter().map(|(ip, b)| (*ip, b.mac)).collect()
    }

    /// Bind `ip` to `mac` as the gateway knows it (a lease of its DHCP server, its neighbour
    /// table), and learn it like [`Devices::learn`]. A later binding replaces an earlier one.
    pub fn bind(&self, ip: IpAddr, mac: [u8; 6], hostname: Option<&str>) {
        if !usable_mac(&mac) || ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return;
        }
        {
            let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            let full = g.bound.len() >= MAX_DEVICES;
            match g.bound.get_mut(&ip) {
                Some(b) => {
                    b.mac = mac;
                    b.seen.store(now, Ordering::Relaxed);
                }
                None if full => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    g.bound.insert(
                        ip,
                        Bound {
                            mac,
                            seen: AtomicU64::new(now),
                        },
                    );
                }
            }
        }
        self.learn(ip, Some(mac), hostname);
    }

    /// The host name last bound to a MAC address (DHCP on the wire or a lease).
    pub fn hostname_of_mac(&self, mac: [u8; 6]) -> Option<String> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.by_mac.get(&mac).map(|n| n.hostname.clone())
    }

    /// Note what is known of `ip` (a `None` keeps what was known). Empty, all-zero, broadcast
    /// and multicast MACs are ignored; unspecified, loopback and multicast addresses too.
    pub fn learn(&self, ip: IpAddr, mac: Option<[u8; 6]>, hostname: Option<&str>) {
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return;
        }
        if let IpAddr::V4(v4) = ip {
            if v4.is_broadcast() {
                return;
            }
        }
        let mac = mac.filter(usable_mac);
        let hostname = hostname.and_then(clean_hostname);
        let now = now_ms();
        {
            // The common case, a device seen again as it was: a read lock and two stores.
            let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = g.by_ip.get(&ip) {
                let same = (mac.is_none() || e.mac == mac)
                    && (hostname.is_none() || e.hostname == hostname);
                if same {
                    match (e.mac, &e.hostname) {
                        (Some(m), Some(h)) => {
                            if let Some(n) = g.by_mac.get(&m).filter(|n| &n.hostname == h) {
                                e.seen.store(now, Ordering::Relaxed);
                                n.seen.store(now, Ordering::Relaxed);
                                return;
                            }
                        }
                        _ => {
                            e.seen.store(now, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let full = g.by_ip.len() >= MAX_DEVICES;
        // What the entry says after this update: a MAC and host name seen together bind.
        let bound = match g.by_ip.get_mut(&ip) {
            Some(e) => {
                if mac.is_some() {
                    // A new MAC on the address: the old host name belonged to the old device.
                    if e.mac.is_some() && e.mac != mac && hostname.is_none() {
                        e.hostname = None;
                    }
                    e.mac = mac;
                }
                if hostname.is_some() {
                    e.hostname.clone_from(&hostname);
                }
                e.seen.store(now, Ordering::Relaxed);
                e.mac.zip(e.hostname.clone())
            }
            None if full => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                mac.zip(hostname)
            }
            None => {
                g.by_ip.insert(
                    ip,
                    Entry {
                        mac,
                        hostname: hostname.clone(),
                        seen: AtomicU64::new(now),
                    },
                );
                mac.zip(hostname)
            }
        };
        if let Some((m, h)) = bound {
            let full = g.by_mac.len() >= MAX_DEVICES;
            match g.by_mac.get_mut(&m) {
                Some(n) => {
                    n.hostname = h;
                    n.seen.store(now, Ordering::Relaxed);
                }
                None if full => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    g.by_mac.insert(
                        m,
                        Named {
                            hostname: h,
                            seen: AtomicU64::new(now),
                        },
                    );
                }
            }
        }
    }

    /// Forget addresses and MAC bindings not seen for `max_age`; returns how many were removed.
    pub fn forget_older_than(&self, max_age: Duration) -> usize {
        let Some(cut) = now_ms().checked_sub(max_age.as_millis() as u64) else {
            return 0; // the table is younger than that
        };
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = g.by_ip.len() + g.by_mac.len();
        g.by_ip.retain(|_, e| e.seen.load(Ordering::Relaxed) >= cut);
        g.by_mac
            .retain(|_, n| n.seen.load(Ordering::Relaxed) >= cut);
        g.bound.retain(|_, b| b.seen.load(Ordering::Relaxed) >= cut);
        before - g.by_ip.len() - g.by_mac.len()
    }

    /// Addresses known.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_ip
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Additions refused because the table was full (a metric for the daemon).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn usable_mac(m: &[u8; 6]) -> bool {
    *m != [0; 6] && m[0] & 1 == 0 // not zero, not multicast or broadcast
}

/// A host name as the policy matches it: rendered like a DNS name (lower-case, odd bytes
/// escaped, no trailing dot), at most 253 bytes; `None` when empty.
fn clean_hostname(h: &str) -> Option<String> {
    let h = h.trim();
    if h.is_empty() || h == "*" {
        return None;
    }
    let mut s = crate::decode::render_name(h.as_bytes());
    if s.len() > MAX_HOSTNAME {
        let mut cut = MAX_HOSTNAME;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    (!s.is_empty()).then_some(s)
}

/// Learn the client of an observation: its address with the MAC the frame showed and the DHCP
/// host name the sensor knows for it. The daemon calls this for every observation.
pub fn learn_from_observation(devices: &Devices, o: &Observation) {
    let c = &o.client;
    if c.mac.is_none() && c.hostname.is_none() {
        return;
    }
    // A frame whose MAC contradicts the gateway's own binding of its address teaches nothing.
    if c.mac.is_some_and(|m| devices.contradicts(c.ip, m)) {
        return;
    }
    devices.learn(c.ip, c.mac, c.hostname.as_deref());
}

/// Learn from one DHCP message the sensor parsed (`decode::dhcp::parse`): MAC -> host name, and
/// the address when the message carries one.
pub fn learn_from_dhcp(devices: &Devices, l: &crate::decode::dhcp::Lease) {
    match l.ip {
        Some(ip) => devices.learn(IpAddr::V4(ip), Some(l.mac), l.hostname.as_deref()),
        None => {
            if let Some(h) = l.hostname.as_deref().and_then(clean_hostname) {
                if usable_mac(&l.mac) {
                    let mut g = devices.inner.write().unwrap_or_else(|e| e.into_inner());
                    let full = g.by_mac.len() >= MAX_DEVICES;
                    if full && !g.by_mac.contains_key(&l.mac) {
                        devices.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    g.by_mac.insert(
                        l.mac,
                        Named {
                            hostname: h,
                            seen: AtomicU64::new(now_ms()),
                        },
                    );
                }
            }
        }
    }
}

/// What one refresh found (logged by the refresh thread, and returned by [`refresh_once`]).
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    pub neighbours: Option<Result<NeighbourStats, String>>,
    pub leases: Option<Result<LeaseStats, String>>,
    pub forgotten: usize,
}

/// One refresh: the neighbour table (if enabled), the leases file (if configured), then forget
/// what was not seen for `forget_after_s`.
pub fn refresh_once(conf: &DevicesConf, devices: &Devices) -> RefreshReport {
    let neighbours = conf.neighbours.then(|| refresh_neighbours(devices));
    let leases = conf.leases_file.as_deref().map(|p| load_leases(p, devices));
    let forgotten = devices.forget_older_than(Duration::from_secs(conf.forget_after_s.max(1)));
    RefreshReport {
        neighbours,
        leases,
        forgotten,
    }
}

/// The refresh thread [`spawn_refresh`] starts; dropping it (or [`Refresher::stop`]) stops it.
pub struct Refresher {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    handle: Option<JoinHandle<()>>,
    /// Refreshes done so far.
    pub rounds: Arc<AtomicU64>,
    /// Whether the last refresh had an error (the neighbour table or the leases file).
    pub failing: Arc<AtomicBool>,
}

impl Refresher {
    /// Stop the thread and wait for it (returns at once: the wait is interruptible).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start a std thread (`shadowgate-devices`) that refreshes `devices` at once and then every
/// `conf.refresh_s` seconds: neighbour table, leases file, forgetting stale entries. Errors are
/// logged to stderr once per change (a leases file that vanished, a netlink failure) and keep
/// the thread going.
pub fn spawn_refresh(conf: DevicesConf, devices: Arc<Devices>) -> Refresher {
    spawn_refresh_metered(conf, devices, None)
}

/// [`spawn_refresh`] that also updates the `shadowgate_devices_*` metrics after every refresh.
pub fn spawn_refresh_metered(
    conf: DevicesConf,
    devices: Arc<Devices>,
    metrics: Option<DeviceMetrics>,
) -> Refresher {
    spawn_refresh_then(conf, devices, metrics, None)
}

/// What runs after each refresh (the DNS source guard copies the bindings to its table).
pub type AfterRefresh = Box<dyn FnMut(&Devices) + Send>;

/// [`spawn_refresh_metered`] that also calls `after` after every refresh.
pub fn spawn_refresh_then(
    conf: DevicesConf,
    devices: Arc<Devices>,
    metrics: Option<DeviceMetrics>,
    mut after: Option<AfterRefresh>,
) -> Refresher {
    let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let rounds = Arc::new(AtomicU64::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let (s, r, f) = (stop.clone(), rounds.clone(), failing.clone());
    let period = Duration::from_secs(conf.refresh_s.max(1));
    let handle = std::thread::Builder::new()
        .name("shadowgate-devices".into())
        .spawn(move || {
            let mut last_err = String::new();
            loop {
                let rep = refresh_once(&conf, &devices);
                if let Some(m) = &metrics {
                    m.observe(&devices, &rep);
                }
                if let Some(f) = after.as_mut() {
                    f(&devices);
                }
                let mut errs = Vec::new();
                if let Some(Err(e)) = &rep.neighbours {
                    errs.push(format!("neighbour table: {e}"));
                }
                if let Some(Err(e)) = &rep.leases {
                    errs.push(e.clone());
                }
                let err = errs.join("; ");
                if err != last_err && !err.is_empty() {
                    eprintln!("shadowgate: devices: {err}");
                }
                f.store(!err.is_empty(), Ordering::Relaxed);
                last_err = err;
                r.fetch_add(1, Ordering::Relaxed);
                let (m, cv) = &*s;
                let g = m.lock().unwrap_or_else(|e| e.into_inner());
                let (g, _) = cv
                    .wait_timeout_while(g, period, |stopped| !*stopped)
                    .unwrap_or_else(|e| e.into_inner());
                if *g {
                    return;
                }
            }
        })
        .expect("spawning a thread");
    Refresher {
        stop,
        handle: Some(handle),
        rounds,
        failing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_lookup_and_mac_fallback() {
        let d = Devices::new();
        let v4: IpAddr = "10.0.0.5".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 5];
        d.learn(v4, Some(mac), Some("Reception-PC"));
        d.learn(v6, Some(mac), None);
        assert_eq!(
            d.lookup(v6),
            Some(Device {
                mac: Some(mac),
                hostname: Some("reception-pc".into())
            })
        );
        // Junk is ignored: multicast MAC, loopback, a "*" host name.
        d.learn(v4, Some([1, 0, 0x5e, 0, 0, 1]), Some("*"));
        assert_eq!(d.lookup(v4).unwrap().mac, Some(mac));
        d.learn("127.0.0.1".parse().unwrap(), Some(mac), None);
        assert_eq!(d.len(), 2);
        // A new device on the address does not inherit the old name.
        d.learn(v4, Some([2, 0, 0, 0, 0, 6]), None);
        assert_eq!(d.lookup(v4).unwrap().hostname, None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(d.forget_older_than(Duration::from_millis(10)), 3);
        assert!(d.is_empty());
    }

    #[test]
    fn the_gateways_binding_names_the_device_not_a_frames_claim() {
        let d = Devices::new();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let (nurse, attacker) = ([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 0, 0x66]);
        d.bind(ip, nurse, Some("nurse-pc"));
        assert!(d.contradicts(ip, attacker));
        assert!(!d.contradicts(ip, nurse));
        assert!(!d.contradicts("10.0.0.8".parse().unwrap(), attacker));
        // A frame from another MAC claiming the address: learnt as the frame says, but the
        // device the address names is still the bound one.
        d.learn(ip, Some(attacker), Some("ai-pilot-x"));
        let dev = d.lookup(ip).unwrap();
        assert_eq!(dev.mac, Some(nurse));
        assert_eq!(dev.hostname.as_deref(), Some("nurse-pc"));
        assert_eq!(d.bindings(), vec![(ip, nurse)]);
    }

    #[test]
    fn a_repeat_sighting_keeps_the_device() {
        let d = Devices::new();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let mac = Some([2, 0, 0, 0, 0, 9]);
        d.learn(ip, mac, Some("lab"));
        std::thread::sleep(Duration::from_millis(40));
        d.learn(ip, mac, Some("lab")); // unchanged: the read-lock path
        d.learn(ip, None, None);
        assert_eq!(d.forget_older_than(Duration::from_millis(30)), 0);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(d.forget_older_than(Duration::from_millis(30)), 2);
    }

    #[test]
    fn bounded() {
        let d = Devices::new();
        for i in 0..MAX_DEVICES as u32 + 10 {
            d.learn(IpAddr::V4((0x0a00_0000 + i).into()), None, None);
        }
        assert_eq!(d.len(), MAX_DEVICES);
        assert_eq!(d.refused(), 10);
        let long = "a".repeat(400);
        d.learn("10.0.0.1".parse().unwrap(), None, Some(&long));
        assert_eq!(
            d.lookup("10.0.0.1".parse().unwrap())
                .unwrap()
                .hostname
                .unwrap()
                .len(),
            253
        );
    }
}
