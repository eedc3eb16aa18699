//! Turns the scan's runs and notes into the report's figures: headline and previous-week change,
//! the 5-week trend, services with BAA status, groups, top devices, first-seen services,
//! approved-route adoption, coach justifications, DNS bypass, policy changes and coverage.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;

use super::inventory::Inventory;
use super::model::*;
use super::pseudo::Pseudonymiser;
use super::scan::{Note, Run, Scan};
use super::week::{local, Week};
use crate::policy::Action;
use crate::record::{EventKind, PortalKind, SystemKind};

/// What the catalogue says about a service.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub name: String,
    pub category: String,
    pub baa: String,
    pub baa_source: String,
}

pub struct Inputs<'a> {
    pub scan: &'a Scan,
    /// Five weeks, oldest first; the last is the report's week.
    pub weeks: &'a [Week],
    pub tz: &'a TimeZone,
    pub tz_name: String,
    pub catalogue: Option<&'a HashMap<String, CatalogEntry>>,
    pub inventory: Option<&'a Inventory>,
    /// Per service index: seen before the report week.
    pub seen_before: &'a [bool],
    pub pseudo: Option<&'a Pseudonymiser>,
    pub gap_minutes: u64,
    pub top_devices: usize,
    pub now_ns: u64,
}

pub const RESOLVER: &str = "dns_resolver";
pub const CONSUMER: &str = "consumer_ai";
pub const APPROVED: &str = "approved_route";
pub const ENTERPRISE: &str = "enterprise_ai_api";

/// Counted as consumer use: consumer AI and the categories split from it (coding, media,
/// meeting and voice, clinical), all used on accounts without the clinic's BAA.
pub fn is_consumer(category: &str) -> bool {
    crate::policy::Category::parse(category).is_some_and(|c| c.is_unapproved_ai())
}

fn pct(a: u64, b: u64) -> Option<f64> {
    (a + b > 0).then(|| (a as f64 * 1000.0 / (a + b) as f64).round() / 10.0)
}

fn rfc(t_ns: u64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_nanosecond(t_ns as i128)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

/// One week's AI use, as the runs are counted (DNS resolvers left out).
#[derive(Default)]
struct Acc {
    visits: u64,
    lookups: u64,
    consumer: u64,
    approved: u64,
    enterprise: u64,
    devices: HashSet<u32>,
    services: HashSet<u32>,
    actions: Actions,
}

impl Acc {
    /// Count one visit of category `cat` (`consumer`: of the consumer categories).
    fn add_visit(&mut self, r: &Run, cat: &str, consumer: bool) {
        self.visits += 1;
        self.devices.insert(r.dev);
        self.services.insert(r.svc);
        self.actions.add(r.action, 1);
        self.consumer += consumer as u64;
        match cat {
            APPROVED => self.approved += 1,
            ENTERPRISE => self.enterprise += 1,
            _ => {}
        }
    }

    /// The week's headline numbers.
    fn numbers(&self) -> Numbers {
        Numbers {
            visits: self.visits,
            lookups: self.lookups,
            devices: self.devices.len() as u64,
            services: self.services.len() as u64,
            consumer_visits: self.consumer,
            approved_visits: self.approved,
            enterprise_visits: self.enterprise,
            actions: self.actions,
        }
    }
}

/// One service's use in the report week (DNS resolvers too: they make the bypass table).
#[derive(Default)]
struct SvcAcc {
    visits: u64,
    lookups: u64,
    dot: u64,
    devices: HashSet<u32>,
    actions: Actions,
}

/// One device's visits to AI services in the report week.
#[derive(Default)]
struct DevAcc {
    visits: u64,
    consumer: u64,
    approved: u64,
    per_service: BTreeMap<u32, u64>,
    /// The interned groups of its last visit.
    groups: u32,
}

/// One client group's visits to AI services in the report week.
#[derive(Default)]
struct GroupAcc {
    visits: u64,
    devices: HashSet<u32>,
    consumer: u64,
    approved: u64,
}

/// The counts behind one CSV row (device x service x action) of the report week.
struct RowAcc {
    visits: u64,
    lookups: u64,
    events: u64,
    /// The interned groups of the row's first run.
    groups: u32,
}

/// Everything counted from the runs, in one pass over them.
#[derive(Default)]
struct Tally {
    /// Per week of `Inputs::weeks`, oldest first.
    weeks: Vec<Acc>,
    services: BTreeMap<u32, SvcAcc>,
    groups: BTreeMap<String, GroupAcc>,
    devices: HashMap<u32, DevAcc>,
    /// Consumer-AI visits per device in the four weeks before the report week.
    earlier_consumer: HashMap<u32, u64>,
    rows: BTreeMap<(u32, u32, Action), RowAcc>,
}

impl Inputs<'_> {
    /// The report's week: the last of the five.
    fn week(&self) -> &Week {
        &self.weeks[self.weeks.len() - 1]
    }

    /// Which of the five weeks `t_ns` falls in.
    fn week_of(&self, t_ns: u64) -> Option<usize> {
        self.weeks
            .iter()
            .position(|w| t_ns >= w.start_ns && t_ns < w.end_ns)
    }

    /// A service's name: the catalogue's, else the one the events recorded, else its id.
    fn service_name(&self, svc: u32) -> String {
        let sv = &self.scan.services[svc as usize];
        self.catalogue
            .and_then(|c| c.get(&sv.id))
            .map(|e| e.name.clone())
            .or_else(|| sv.name.clone())
            .unwrap_or_else(|| sv.id.clone())
    }

    /// A service's BAA status and its source, from the catalogue.
    fn baa(&self, svc: u32) -> (String, String) {
        self.catalogue
            .and_then(|c| c.get(&self.scan.services[svc as usize].id))
            .map(|e| (e.baa.clone(), e.baa_source.clone()))
            .unwrap_or_else(|| ("unknown (no catalogue given)".into(), String::new()))
    }

    /// A device as the report shows it (inventory owner, pseudonyms).
    fn device(&self, dev: u32) -> DeviceInfo {
        device_info(self.scan, dev, self.inventory, self.pseudo)
    }
}

/// The report's outline as figures: count the runs once, then derive each table from the counts
/// (headline and trend, services, groups, devices and adoption, CSV rows) and read the week's
/// system and coach events for the notes.
pub fn build(i: &Inputs<'_>) -> Report {
    let week = i.week();
    let cats = categories(i);
    let t = tally(i, &cats);
    let nums: Vec<Numbers> = t.weeks.iter().map(Acc::numbers).collect();
    let (cur, prev) = this_and_previous(&nums);
    let change = change(&cur, &prev);
    let trend = trend(i.weeks, &nums);
    let svc = service_tables(i, &cats, &t.services);
    let groups = group_rows(t.groups);
    let devs = ranked_devices(&t.devices);
    let top_devices = top_devices(i, &devs);
    let adoption = adoption(i, &cur, &devs, &t.earlier_consumer);
    let rows = csv_rows(i, &cats, t.rows);
    let notes = notes(i, week);

    Report {
        schema: 1,
        week: week.label(),
        timezone: i.tz_name.clone(),
        start: rfc(week.start_ns, i.tz),
        end: rfc(week.end_ns, i.tz),
        generated_at: rfc(i.now_ns, i.tz),
        sensor_note: COUNTING.to_string(),
        visit_gap_minutes: i.gap_minutes,
        pseudonymised: i.pseudo.is_some(),
        catalogue: i.catalogue.is_some(),
        inventory: i.inventory.is_some(),
        headline: Headline {
            this_week: cur,
            previous_week: prev,
            change,
        },
        trend,
        services: svc.services,
        groups,
        top_devices,
        first_seen: svc.first_seen,
        adoption,
        justifications: notes.justifications,
        justifications_withheld: i.pseudo.is_some(),
        portal_views: notes.portal_views,
        grants_expired: notes.grants_expired,
        dns_bypass: svc.dns_bypass,
        dns_bypass_tries: notes.bypass_tries,
        policy: notes.policy,
        coverage: notes.coverage,
        rows,
        events_read: i.scan.rows_read,
    }
}

/// Each scanned service's category (by index): the catalogue's, else the one the events
/// recorded, else "unknown". First, as every count below depends on it.
fn categories(i: &Inputs<'_>) -> Vec<String> {
    let s = i.scan;
    (0..s.services.len())
        .map(|svc| {
            let sv = &s.services[svc];
            i.catalogue
                .and_then(|c| c.get(&sv.id))
                .map(|e| e.category.clone())
                .or_else(|| sv.category.clone())
                .unwrap_or_else(|| "unknown".into())
        })
        .collect()
}

/// Count every run of the five weeks: the report week's per service and per CSV row (DNS
/// resolvers too), each week's AI use, the report week's per group and per device, and the
/// earlier weeks' consumer-AI visits per device (for adoption).
fn tally(i: &Inputs<'_>, cats: &[String]) -> Tally {
    let this = i.weeks.len() - 1;
    let mut t = Tally {
        weeks: (0..i.weeks.len()).map(|_| Acc::default()).collect(),
        ..Tally::default()
    };
    for r in &i.scan.runs {
        let Some(w) = i.week_of(r.start_ns) else {
            continue;
        };
        let cat = cats[r.svc as usize].as_str();
        if w == this {
            t.service_run(r);
        }
        if cat == RESOLVER {
            continue;
        }
        if !r.visit {
            t.weeks[w].lookups += 1;
            continue;
        }
        let consumer = is_consumer(cat);
        let approved = cat == APPROVED;
        t.weeks[w].add_visit(r, cat, consumer);
        if w < this {
            if consumer {
                *t.earlier_consumer.entry(r.dev).or_default() += 1;
            }
            continue;
        }
        t.group_visit(&i.scan.groups[r.groups as usize], r.dev, consumer, approved);
        t.device_visit(r, consumer, approved);
    }
    t
}

impl Tally {
    /// A run of the report week, for its service's figures and its CSV row.
    fn service_run(&mut self, r: &Run) {
        let sa = self.services.entry(r.svc).or_default();
        let row = self.rows.entry((r.dev, r.svc, r.action)).or_insert(RowAcc {
            visits: 0,
            lookups: 0,
            events: 0,
            groups: r.groups,
        });
        row.events += r.events as u64;
        if r.visit {
            sa.visits += 1;
            sa.dot += r.dot as u64;
            sa.devices.insert(r.dev);
            sa.actions.add(r.action, 1);
            row.visits += 1;
        } else {
            sa.lookups += 1;
            row.lookups += 1;
        }
    }

    /// A report-week visit, for each of its client groups (`groups` comma-separated; none
    /// counts as "(no group)").
    fn group_visit(&mut self, groups: &str, dev: u32, consumer: bool, approved: bool) {
        let names: Vec<&str> = if groups.is_empty() {
            vec!["(no group)"]
        } else {
            groups.split(',').collect()
        };
        for g in names {
            let e = self.groups.entry(g.to_string()).or_default();
            e.visits += 1;
            e.devices.insert(dev);
            e.consumer += consumer as u64;
            e.approved += approved as u64;
        }
    }

    /// A report-week visit, for its device.
    fn device_visit(&mut self, r: &Run, consumer: bool, approved: bool) {
        let d = self.devices.entry(r.dev).or_default();
        d.visits += 1;
        d.consumer += consumer as u64;
        d.approved += approved as u64;
        *d.per_service.entry(r.svc).or_default() += 1;
        d.groups = r.groups;
    }
}

/// The report week's numbers and the previous week's (zero when there is none).
fn this_and_previous(nums: &[Numbers]) -> (Numbers, Numbers) {
    let this = nums.len() - 1;
    (
        nums[this].clone(),
        nums.get(this.wrapping_sub(1)).cloned().unwrap_or_default(),
    )
}

/// The headline's change on the previous week.
fn change(cur: &Numbers, prev: &Numbers) -> Change {
    let d = |a: u64, b: u64| a as i64 - b as i64;
    Change {
        visits: d(cur.visits, prev.visits),
        lookups: d(cur.lookups, prev.lookups),
        devices: d(cur.devices, prev.devices),
        services: d(cur.services, prev.services),
        consumer_visits: d(cur.consumer_visits, prev.consumer_visits),
        approved_visits: d(cur.approved_visits, prev.approved_visits),
        block: d(cur.actions.block, prev.actions.block),
        steer: d(cur.actions.steer, prev.actions.steer),
        coach: d(cur.actions.coach, prev.actions.coach),
        alert: d(cur.actions.alert, prev.actions.alert),
        allow: d(cur.actions.allow, prev.actions.allow),
    }
}

/// The five-week trend, oldest week first.
fn trend(weeks: &[Week], nums: &[Numbers]) -> Vec<TrendWeek> {
    weeks
        .iter()
        .zip(nums)
        .map(|(w, n)| TrendWeek {
            week: w.label(),
            visits: n.visits,
            consumer_visits: n.consumer_visits,
            approved_visits: n.approved_visits,
            enterprise_visits: n.enterprise_visits,
            devices: n.devices,
            lookups: n.lookups,
        })
        .collect()
}

/// The report week's service tables: AI services, DNS resolvers reached (bypass) and services
/// never seen before (either kind).
struct ServiceTables {
    services: Vec<ServiceRow>,
    first_seen: Vec<ServiceRow>,
    dns_bypass: Vec<Bypass>,
}

/// Split the report week's services into the AI services, the DNS bypass and the first-seen
/// tables, each most used first.
fn service_tables(i: &Inputs<'_>, cats: &[String], acc: &BTreeMap<u32, SvcAcc>) -> ServiceTables {
    let mut t = ServiceTables {
        services: Vec::new(),
        first_seen: Vec::new(),
        dns_bypass: Vec::new(),
    };
    for (&svc, a) in acc {
        let row = service_row(i, cats, svc, a);
        if row.first_seen {
            t.first_seen.push(row.clone());
        }
        if cats[svc as usize] == RESOLVER {
            t.dns_bypass.push(Bypass {
                service: row.service.clone(),
                name: row.name.clone(),
                visits: a.visits,
                dot_visits: a.dot,
                lookups: a.lookups,
                devices: a.devices.len() as u64,
            });
        } else {
            t.services.push(row);
        }
    }
    t.services.sort_by(most_used);
    t.first_seen.sort_by(most_used);
    t.dns_bypass.sort_by(|a, b| {
        (b.visits, b.lookups)
            .cmp(&(a.visits, a.lookups))
            .then(a.service.cmp(&b.service))
    });
    t
}

/// One service's row: name, category and BAA status with its week's use.
fn service_row(i: &Inputs<'_>, cats: &[String], svc: u32, a: &SvcAcc) -> ServiceRow {
    let (baa, baa_source) = i.baa(svc);
    ServiceRow {
        service: i.scan.services[svc as usize].id.clone(),
        name: i.service_name(svc),
        category: cats[svc as usize].clone(),
        baa,
        baa_source,
        visits: a.visits,
        lookups: a.lookups,
        devices: a.devices.len() as u64,
        actions: a.actions,
        first_seen: !i.seen_before.get(svc as usize).copied().unwrap_or(true),
    }
}

/// Most visits first, then most lookups, then by id.
fn most_used(a: &ServiceRow, b: &ServiceRow) -> Ordering {
    (b.visits, b.lookups)
        .cmp(&(a.visits, a.lookups))
        .then(a.service.cmp(&b.service))
}

/// A row per client group, by name, with its adoption of the approved route.
fn group_rows(groups: BTreeMap<String, GroupAcc>) -> Vec<GroupRow> {
    groups
        .into_iter()
        .map(|(g, a)| GroupRow {
            group: g,
            visits: a.visits,
            devices: a.devices.len() as u64,
            consumer_visits: a.consumer,
            approved_visits: a.approved,
            adoption_pct: pct(a.approved, a.consumer),
        })
        .collect()
}

/// The report week's devices, most visits first (then by index, so the order is stable).
fn ranked_devices(devices: &HashMap<u32, DevAcc>) -> Vec<(u32, &DevAcc)> {
    let mut devs: Vec<(u32, &DevAcc)> = devices.iter().map(|(&d, a)| (d, a)).collect();
    devs.sort_by(|a, b| b.1.visits.cmp(&a.1.visits).then(a.0.cmp(&b.0)));
    devs
}

/// The `top_devices` devices with the most visits, each with its most used service.
fn top_devices(i: &Inputs<'_>, devs: &[(u32, &DevAcc)]) -> Vec<DeviceRow> {
    devs.iter()
        .take(i.top_devices)
        .map(|&(dev, a)| {
            let top = a
                .per_service
                .iter()
                .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
                .map(|(&svc, _)| i.service_name(svc))
                .unwrap_or_default();
            DeviceRow {
                info: i.device(dev),
                groups: i.scan.groups[a.groups as usize].clone(),
                visits: a.visits,
                consumer_visits: a.consumer,
                approved_visits: a.approved,
                services: a.per_service.len() as u64,
                top_service: top,
            }
        })
        .collect()
}

/// Approved-route adoption: the week's share, and the devices that used consumer AI in the four
/// weeks before and the approved route this week (by name).
fn adoption(
    i: &Inputs<'_>,
    cur: &Numbers,
    devs: &[(u32, &DevAcc)],
    earlier_consumer: &HashMap<u32, u64>,
) -> Adoption {
    let mut moved: Vec<MovedDevice> = devs
        .iter()
        .filter(|(dev, a)| a.approved > 0 && earlier_consumer.contains_key(dev))
        .map(|&(dev, a)| MovedDevice {
            info: i.device(dev),
            earlier_consumer_visits: earlier_consumer[&dev],
            approved_visits: a.approved,
        })
        .collect();
    moved.sort_by(|a, b| a.info.device.cmp(&b.info.device));
    Adoption {
        approved_visits: cur.approved_visits,
        consumer_visits: cur.consumer_visits,
        adoption_pct: pct(cur.approved_visits, cur.consumer_visits),
        moved_devices: moved,
    }
}

/// `report.csv`'s rows: one per device x service x action of the report week, in that order.
fn csv_rows(
    i: &Inputs<'_>,
    cats: &[String],
    rows: BTreeMap<(u32, u32, Action), RowAcc>,
) -> Vec<Row> {
    let week = i.week().label();
    rows.into_iter()
        .map(|((dev, svc, act), a)| {
            let d = i.device(dev);
            Row {
                week: week.clone(),
                device: d.device,
                hostname: d.hostname.unwrap_or_default(),
                mac: d.mac.unwrap_or_default(),
                ips: d.ips.join(" "),
                owner: d.owner.unwrap_or_default(),
                department: d.department.unwrap_or_default(),
                location: d.location.unwrap_or_default(),
                groups: i.scan.groups[a.groups as usize].clone(),
                service: i.scan.services[svc as usize].id.clone(),
                service_name: i.service_name(svc),
                category: cats[svc as usize].clone(),
                baa: i.baa(svc).0,
                action: act.as_str().to_string(),
                visits: a.visits,
                lookups: a.lookups,
                events: a.events,
            }
        })
        .collect()
}

/// A device as the report shows it: the inventory's owner, department and location (by MAC,
/// else host name), pseudonyms when asked, and a display name (host name, else MAC, else
/// address).
fn device_info(
    s: &Scan,
    dev: u32,
    inv: Option<&Inventory>,
    pseudo: Option<&Pseudonymiser>,
) -> DeviceInfo {
    let d = &s.devices[dev as usize];
    let o = inv
        .and_then(|v| v.lookup(d.mac.as_deref(), d.hostname.as_deref()))
        .cloned()
        .unwrap_or_default();
    let mut info = DeviceInfo {
        device: String::new(),
        hostname: d.hostname.clone(),
        mac: d.mac.clone(),
        ips: d.ips.clone(),
        owner: o.owner,
        department: o.department,
        location: o.location,
    };
    if let Some(p) = pseudo {
        info.hostname = p.opt("host", &info.hostname);
        info.mac = p.opt("mac", &info.mac);
        info.ips = info.ips.iter().map(|ip| p.name("ip", ip)).collect();
        info.owner = p.opt("owner", &info.owner);
    }
    info.device = info
        .hostname
        .clone()
        .or_else(|| info.mac.clone())
        .or_else(|| info.ips.first().cloned())
        .unwrap_or_else(|| "?".into());
    info
}

struct Notes {
    justifications: Vec<Justification>,
    bypass_tries: Vec<BypassTry>,
    portal_views: u64,
    grants_expired: u64,
    policy: PolicyChanges,
    coverage: Coverage,
}

/// The first numeric field among `keys` of a detail object.
fn num(d: &serde_json::Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| d.get(*k).and_then(|v| v.as_u64()))
}

/// A system event as a table row.
fn sys_row(n: &Note, tz: &TimeZone) -> SysRow {
    SysRow {
        time: local(n.ts, tz),
        kind: n.kind.as_str().to_string(),
        summary: n.summary.clone(),
    }
}

/// Read the report week's system, coach and portal events in time order: sensor starts and
/// stops (downtime), policy reloads, the catalogue in force, capture gaps, drops and outages,
/// coach justifications, expired grants and portal views.
fn notes(i: &Inputs<'_>, week: &Week) -> Notes {
    let tz = i.tz;
    let mut out = Notes {
        justifications: Vec::new(),
        bypass_tries: Vec::new(),
        portal_views: 0,
        grants_expired: 0,
        policy: PolicyChanges::default(),
        coverage: Coverage::default(),
    };
    let mut life = Lifecycle::before(i.scan, week);
    let mut bypass_tries = ByDevice::default();
    let mut blind = ByDevice::default();
    out.coverage.lifecycle_known = i.scan.lifecycle_before.is_some();
    for n in &i.scan.notes {
        let c = &mut out.coverage;
        use SystemKind as S;
        match n.kind {
            EventKind::System(S::SensorStart) => life.start(n, c, tz),
            EventKind::System(S::SensorStop) => life.stop(n, c),
            EventKind::System(S::PolicyReload) => out.policy.reloads.push(sys_row(n, tz)),
            // The last load of the week says what was in force at its end.
            EventKind::System(S::CatalogLoaded) => catalogue_loaded(c, n),
            EventKind::System(S::PolicyRejected) => out.policy.rejected.push(sys_row(n, tz)),
            EventKind::System(S::CaptureGap) => capture_gap(c, n, tz),
            EventKind::System(S::KernelDrops) => kernel_drops(c, n, tz),
            EventKind::System(S::SinkDown) => {
                c.sink_outages += 1;
                c.incidents.push(sys_row(n, tz));
            }
            // The store over its size cap with only undelivered events left, and its end; the
            // upstream resolvers' outages.
            EventKind::System(
                S::SinkUp
                | S::StoreFull
                | S::StoreOk
                | S::DnsUpstreamDown
                | S::DnsUpstreamUp
                | S::SetFull
                | S::Spoofed,
            ) => c.incidents.push(sys_row(n, tz)),
            // Retention and break glass have their own figures elsewhere (or none); bypass
            // lookups are not in the report yet.
            EventKind::System(S::Retention | S::BreakGlass) => {}
            EventKind::System(S::DnsBypass) => bypass_tries.add(n, "what"),
            EventKind::System(S::BlindSpot) => blind.add(n, "kind"),
            EventKind::Portal(PortalKind::CoachAck) => out.justifications.push(justification(i, n)),
            EventKind::Portal(PortalKind::GrantExpired) => out.grants_expired += 1,
            EventKind::Portal(PortalKind::View) => out.portal_views += 1,
            EventKind::Observed(_) => {}
        }
    }
    life.finish(&mut out.coverage, week.end_ns, i.now_ns, tz);
    out.bypass_tries = bypass_tries.tries(i);
    out.coverage.blind = blind.blind_rows(i);
    out
}

/// System events that name a device, counted per device and kind (a `detail` field).
#[derive(Default)]
struct ByDevice {
    seen: BTreeMap<(u32, String), Seen>,
}

/// One device's events of one kind: how many, when, and what names they carried.
#[derive(Default)]
struct Seen {
    events: u64,
    first: u64,
    last: u64,
    minutes: HashSet<u64>,
    hours: HashSet<u64>,
    names: std::collections::BTreeSet<String>,
}

impl ByDevice {
    /// An event of device `n.dev`, of the kind its detail's `field` says.
    fn add(&mut self, n: &Note, field: &str) {
        let Some(dev) = n.dev else {
            return;
        };
        let kind = n
            .detail
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_string();
        let s = self.seen.entry((dev, kind)).or_default();
        if s.events == 0 {
            s.first = n.ts;
        }
        s.events += 1;
        s.first = s.first.min(n.ts);
        s.last = s.last.max(n.ts);
        s.minutes.insert(n.ts / (60 * crate::time::SEC));
        s.hours.insert(n.ts / (3600 * crate::time::SEC));
        if let Some(name) = n.detail.get("name").and_then(|v| v.as_str()) {
            if s.names.len() < 16 {
                s.names.insert(name.to_string());
            }
        }
    }

    /// `dns_bypass` tries: by kind, most events first, then by device.
    fn tries(self, i: &Inputs<'_>) -> Vec<BypassTry> {
        let mut v: Vec<BypassTry> = self
            .seen
            .into_iter()
            .map(|((dev, what), s)| BypassTry {
                what,
                info: i.device(dev),
                names: s.names.into_iter().collect(),
                events: s.events,
                first: local(s.first, i.tz),
                last: local(s.last, i.tz),
            })
            .collect();
        v.sort_by(|a, b| {
            a.what
                .cmp(&b.what)
                .then(b.events.cmp(&a.events))
                .then(a.info.device.cmp(&b.info.device))
        });
        v
    }

    /// Blind devices: by device, then kind.
    fn blind_rows(self, i: &Inputs<'_>) -> Vec<BlindRow> {
        let mut v: Vec<BlindRow> = self
            .seen
            .into_iter()
            .map(|((dev, kind), s)| BlindRow {
                info: i.device(dev),
                kind,
                minutes: s.minutes.len() as u64,
                hours: s.hours.len() as u64,
                first: local(s.first, i.tz),
                last: local(s.last, i.tz),
            })
            .collect();
        v.sort_by(|a, b| a.info.device.cmp(&b.info.device).then(a.kind.cmp(&b.kind)));
        v
    }
}

/// Whether the sensor is running, and since when it has been down, as the week's starts and
/// stops are read in time order.
struct Lifecycle {
    running: bool,
    down_from: Option<u64>,
}

impl Lifecycle {
    /// The state at the week's start, from the last start or stop before it (a stop: down
    /// since the week began).
    fn before(s: &Scan, week: &Week) -> Self {
        Lifecycle {
            running: s.lifecycle_before.as_deref() == Some("sensor_start"),
            down_from: (s.lifecycle_before.as_deref() == Some("sensor_stop"))
                .then_some(week.start_ns),
        }
    }

    /// A start: ends a downtime; a start while running is an unclean restart (no stop was
    /// recorded, so the downtime before it is unknown).
    fn start(&mut self, n: &Note, c: &mut Coverage, tz: &TimeZone) {
        c.starts += 1;
        c.lifecycle_known = true;
        if self.running {
            c.unclean_restarts += 1;
            c.incidents.push(SysRow {
                time: local(n.ts, tz),
                kind: "unclean_restart".into(),
                summary: "started again with no stop recorded (crash or power loss): the downtime before is unknown".into(),
            });
        }
        if let Some(f) = self.down_from.take() {
            down(c, f, n.ts, tz);
        }
        self.running = true;
    }

    /// A stop: the sensor is down from here (or still from an earlier stop).
    fn stop(&mut self, n: &Note, c: &mut Coverage) {
        c.stops += 1;
        c.lifecycle_known = true;
        if self.down_from.is_none() {
            self.down_from = Some(n.ts);
        }
        self.running = false;
    }

    /// After the week's last event: a sensor still down is down until the week's end, or until
    /// now when the week is not over (but not before it stopped).
    fn finish(self, c: &mut Coverage, end_ns: u64, now_ns: u64, tz: &TimeZone) {
        if let Some(f) = self.down_from {
            if !self.running {
                down(c, f, end_ns.min(now_ns.max(f)), tz);
            }
        }
    }
}

/// Record that the sensor was down from `from` to `to`.
fn down(c: &mut Coverage, from: u64, to: u64, tz: &TimeZone) {
    c.down_seconds += (to.saturating_sub(from)) / crate::time::SEC;
    c.down.push(Interval {
        from: local(from, tz),
        to: local(to, tz),
        seconds: to.saturating_sub(from) / crate::time::SEC,
    });
}

/// A catalogue load: its summary and the names the portal CA cannot certify.
fn catalogue_loaded(c: &mut Coverage, n: &Note) {
    c.catalogue = Some(n.summary.clone());
    c.portal_uncertifiable = num(&n.detail, &["portal_uncertifiable"]);
    c.portal_uncertifiable_names = n
        .detail
        .get("portal_uncertifiable_names")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
}

/// A capture gap: bytes skipped and events not stored (under either field name writers use).
fn capture_gap(c: &mut Coverage, n: &Note, tz: &TimeZone) {
    c.capture_gaps += 1;
    c.capture_gap_bytes += num(&n.detail, &["skipped_bytes", "bytes"]).unwrap_or(0);
    c.events_not_stored += num(&n.detail, &["events_dropped"]).unwrap_or(0);
    c.incidents.push(sys_row(n, tz));
}

/// A kernel drop report: packets the kernel dropped before the sensor saw them.
fn kernel_drops(c: &mut Coverage, n: &Note, tz: &TimeZone) {
    c.kernel_drop_reports += 1;
    c.kernel_dropped_packets += num(
        &n.detail,
        &["dropped", "drops", "packets_dropped", "kernel_drops"],
    )
    .unwrap_or(0);
    c.incidents.push(sys_row(n, tz));
}

/// A coach acknowledgement: who, for which service, and why (the text is left out of a
/// pseudonymised report).
fn justification(i: &Inputs<'_>, n: &Note) -> Justification {
    let d = n.dev.map(|d| i.device(d));
    let text = ["justification", "reason", "text"]
        .iter()
        .find_map(|k| n.detail.get(*k).and_then(|v| v.as_str()))
        .map(str::to_string);
    Justification {
        time: local(n.ts, i.tz),
        device: d
            .as_ref()
            .map(|d| d.device.clone())
            .unwrap_or_else(|| "?".into()),
        owner: d.and_then(|d| d.owner),
        service: n.svc.map(|v| i.service_name(v)).unwrap_or_default(),
        text: if i.pseudo.is_some() { None } else { text },
    }
}
