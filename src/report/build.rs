//! Turns the scan's runs and notes into the report's figures: headline and previous-week change,
//! the 5-week trend, services with BAA status, groups, top devices, first-seen services,
//! approved-route adoption, coach justifications, DNS bypass, policy changes and coverage.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;

use super::inventory::Inventory;
use super::model::*;
use super::pseudo::Pseudonymiser;
use super::scan::{Note, Scan, ACTIONS, COACH_ACK, GRANT_EXPIRED, PORTAL_VIEW};
use super::week::{local, Week};

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

pub fn build(i: &Inputs<'_>) -> Report {
    let s = i.scan;
    let this = i.weeks.len() - 1;
    let week = &i.weeks[this];
    let cat_of = |svc: u32| -> String {
        let sv = &s.services[svc as usize];
        i.catalogue
            .and_then(|c| c.get(&sv.id))
            .map(|e| e.category.clone())
            .or_else(|| sv.category.clone())
            .unwrap_or_else(|| "unknown".into())
    };
    let cats: Vec<String> = (0..s.services.len() as u32).map(cat_of).collect();
    let week_of = |t: u64| i.weeks.iter().position(|w| t >= w.start_ns && t < w.end_ns);

    let mut weeks: Vec<Acc> = (0..i.weeks.len()).map(|_| Acc::default()).collect();
    // This week's breakdowns.
    #[derive(Default)]
    struct SvcAcc {
        visits: u64,
        lookups: u64,
        dot: u64,
        devices: HashSet<u32>,
        actions: Actions,
    }
    #[derive(Default)]
    struct DevAcc {
        visits: u64,
        consumer: u64,
        approved: u64,
        per_service: BTreeMap<u32, u64>,
        groups: u32,
    }
    let mut svc_acc: BTreeMap<u32, SvcAcc> = BTreeMap::new();
    let mut grp_acc: BTreeMap<String, (u64, HashSet<u32>, u64, u64)> = BTreeMap::new();
    let mut dev_acc: HashMap<u32, DevAcc> = HashMap::new();
    let mut earlier_consumer: HashMap<u32, u64> = HashMap::new();
    // (device, service, action) -> (visits, lookups, events, groups).
    type RowAcc = (u64, u64, u64, u32);
    let mut rows: BTreeMap<(u32, u32, u8), RowAcc> = BTreeMap::new();

    for r in &s.runs {
        let Some(w) = week_of(r.start_ns) else {
            continue;
        };
        let cat = cats[r.svc as usize].as_str();
        let action = ACTIONS[r.action as usize];
        if w == this {
            let sa = svc_acc.entry(r.svc).or_default();
            let row = rows
                .entry((r.dev, r.svc, r.action))
                .or_insert((0, 0, 0, r.groups));
            row.2 += r.events as u64;
            if r.visit {
                sa.visits += 1;
                sa.dot += r.dot as u64;
                sa.devices.insert(r.dev);
                sa.actions.add(action, 1);
                row.0 += 1;
            } else {
                sa.lookups += 1;
                row.1 += 1;
            }
        }
        if cat == RESOLVER {
            continue;
        }
        let a = &mut weeks[w];
        if !r.visit {
            a.lookups += 1;
            continue;
        }
        a.visits += 1;
        a.devices.insert(r.dev);
        a.services.insert(r.svc);
        a.actions.add(action, 1);
        let consumer = is_consumer(cat);
        a.consumer += consumer as u64;
        match cat {
            APPROVED => a.approved += 1,
            ENTERPRISE => a.enterprise += 1,
            _ => {}
        }
        if w < this {
            if consumer {
                *earlier_consumer.entry(r.dev).or_default() += 1;
            }
            continue;
        }
        let groups = &s.groups[r.groups as usize];
        let names: Vec<&str> = if groups.is_empty() {
            vec!["(no group)"]
        } else {
            groups.split(',').collect()
        };
        for g in names {
            let e = grp_acc.entry(g.to_string()).or_default();
            e.0 += 1;
            e.1.insert(r.dev);
            e.2 += consumer as u64;
            e.3 += (cat == APPROVED) as u64;
        }
        let d = dev_acc.entry(r.dev).or_default();
        d.visits += 1;
        d.consumer += consumer as u64;
        d.approved += (cat == APPROVED) as u64;
        *d.per_service.entry(r.svc).or_default() += 1;
        d.groups = r.groups;
    }

    let info = |dev: u32| -> DeviceInfo { device_info(s, dev, i.inventory, i.pseudo) };
    let svc_name = |svc: u32| -> String {
        let sv = &s.services[svc as usize];
        i.catalogue
            .and_then(|c| c.get(&sv.id))
            .map(|e| e.name.clone())
            .or_else(|| sv.name.clone())
            .unwrap_or_else(|| sv.id.clone())
    };
    let baa = |svc: u32| -> (String, String) {
        i.catalogue
            .and_then(|c| c.get(&s.services[svc as usize].id))
            .map(|e| (e.baa.clone(), e.baa_source.clone()))
            .unwrap_or_else(|| ("unknown (no catalogue given)".into(), String::new()))
    };

    // Headline, trend.
    let nums: Vec<Numbers> = weeks.iter().map(Acc::numbers).collect();
    let (cur, prev) = (
        nums[this].clone(),
        nums.get(this.wrapping_sub(1)).cloned().unwrap_or_default(),
    );
    let d = |a: u64, b: u64| a as i64 - b as i64;
    let change = Change {
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
    };
    let trend = i
        .weeks
        .iter()
        .zip(&nums)
        .map(|(w, n)| TrendWeek {
            week: w.label(),
            visits: n.visits,
            consumer_visits: n.consumer_visits,
            approved_visits: n.approved_visits,
            enterprise_visits: n.enterprise_visits,
            devices: n.devices,
            lookups: n.lookups,
        })
        .collect();

    // Services (AI) and DNS bypass.
    let mut services = Vec::new();
    let mut dns_bypass = Vec::new();
    let mut first_seen = Vec::new();
    for (&svc, a) in &svc_acc {
        let (b, src) = baa(svc);
        let row = ServiceRow {
            service: s.services[svc as usize].id.clone(),
            name: svc_name(svc),
            category: cats[svc as usize].clone(),
            baa: b,
            baa_source: src,
            visits: a.visits,
            lookups: a.lookups,
            devices: a.devices.len() as u64,
            actions: a.actions,
            first_seen: !i.seen_before.get(svc as usize).copied().unwrap_or(true),
        };
        if row.first_seen {
            first_seen.push(row.clone());
        }
        if cats[svc as usize] == RESOLVER {
            dns_bypass.push(Bypass {
                service: row.service.clone(),
                name: row.name.clone(),
                visits: a.visits,
                dot_visits: a.dot,
                lookups: a.lookups,
                devices: a.devices.len() as u64,
            });
        } else {
            services.push(row);
        }
    }
    let order = |a: &ServiceRow, b: &ServiceRow| {
        (b.visits, b.lookups)
            .cmp(&(a.visits, a.lookups))
            .then(a.service.cmp(&b.service))
    };
    services.sort_by(order);
    first_seen.sort_by(order);
    dns_bypass.sort_by(|a, b| {
        (b.visits, b.lookups)
            .cmp(&(a.visits, a.lookups))
            .then(a.service.cmp(&b.service))
    });

    let groups = grp_acc
        .into_iter()
        .map(|(g, (v, devs, c, a))| GroupRow {
            group: g,
            visits: v,
            devices: devs.len() as u64,
            consumer_visits: c,
            approved_visits: a,
            adoption_pct: pct(a, c),
        })
        .collect();

    let mut devs: Vec<(&u32, &DevAcc)> = dev_acc.iter().collect();
    devs.sort_by(|a, b| b.1.visits.cmp(&a.1.visits).then(a.0.cmp(b.0)));
    let top_devices = devs
        .iter()
        .take(i.top_devices)
        .map(|(&dev, a)| {
            let top = a
                .per_service
                .iter()
                .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
                .map(|(&svc, _)| svc_name(svc))
                .unwrap_or_default();
            DeviceRow {
                info: info(dev),
                groups: s.groups[a.groups as usize].clone(),
                visits: a.visits,
                consumer_visits: a.consumer,
                approved_visits: a.approved,
                services: a.per_service.len() as u64,
                top_service: top,
            }
        })
        .collect();

    let mut moved: Vec<MovedDevice> = devs
        .iter()
        .filter(|(dev, a)| a.approved > 0 && earlier_consumer.contains_key(dev))
        .map(|(&dev, a)| MovedDevice {
            info: info(dev),
            earlier_consumer_visits: earlier_consumer[&dev],
            approved_visits: a.approved,
        })
        .collect();
    moved.sort_by(|a, b| a.info.device.cmp(&b.info.device));
    let adoption = Adoption {
        approved_visits: cur.approved_visits,
        consumer_visits: cur.consumer_visits,
        adoption_pct: pct(cur.approved_visits, cur.consumer_visits),
        moved_devices: moved,
    };

    // CSV rows.
    let rows = rows
        .into_iter()
        .map(|((dev, svc, act), (visits, lookups, events, groups))| {
            let d = info(dev);
            Row {
                week: week.label(),
                device: d.device,
                hostname: d.hostname.unwrap_or_default(),
                mac: d.mac.unwrap_or_default(),
                ips: d.ips.join(" "),
                owner: d.owner.unwrap_or_default(),
                department: d.department.unwrap_or_default(),
                location: d.location.unwrap_or_default(),
                groups: s.groups[groups as usize].clone(),
                service: s.services[svc as usize].id.clone(),
                service_name: svc_name(svc),
                category: cats[svc as usize].clone(),
                baa: baa(svc).0,
                action: ACTIONS[act as usize].to_string(),
                visits,
                lookups,
                events,
            }
        })
        .collect::<Vec<_>>();

    // Notes: coverage, policy, coach.
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
        services,
        groups,
        top_devices,
        first_seen,
        adoption,
        justifications: notes.justifications,
        justifications_withheld: i.pseudo.is_some(),
        portal_views: notes.portal_views,
        grants_expired: notes.grants_expired,
        dns_bypass,
        policy: notes.policy,
        coverage: notes.coverage,
        rows,
        events_read: s.rows_read,
    }
}

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
    portal_views: u64,
    grants_expired: u64,
    policy: PolicyChanges,
    coverage: Coverage,
}

/// The first numeric field among `keys` of a detail object.
fn num(d: &serde_json::Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| d.get(*k).and_then(|v| v.as_u64()))
}

fn notes(i: &Inputs<'_>, week: &Week) -> Notes {
    let s = i.scan;
    let tz = i.tz;
    let sys = |n: &Note| SysRow {
        time: local(n.ts, tz),
        kind: n.kind.clone(),
        summary: n.summary.clone(),
    };
    let mut out = Notes {
        justifications: Vec::new(),
        portal_views: 0,
        grants_expired: 0,
        policy: PolicyChanges::default(),
        coverage: Coverage::default(),
    };
    let c = &mut out.coverage;
    let mut running = s.lifecycle_before.as_deref() == Some("sensor_start");
    let mut down_from =
        (s.lifecycle_before.as_deref() == Some("sensor_stop")).then_some(week.start_ns);
    c.lifecycle_known = s.lifecycle_before.is_some();
    let down = |from: u64, to: u64, c: &mut Coverage| {
        c.down_seconds += (to.saturating_sub(from)) / crate::time::SEC;
        c.down.push(Interval {
            from: local(from, tz),
            to: local(to, tz),
            seconds: to.saturating_sub(from) / crate::time::SEC,
        });
    };
    for n in &s.notes {
        match n.kind.as_str() {
            "sensor_start" => {
                c.starts += 1;
                c.lifecycle_known = true;
                if running {
                    c.unclean_restarts += 1;
                    c.incidents.push(SysRow {
                        time: local(n.ts, tz),
                        kind: "unclean_restart".into(),
                        summary: "started again with no stop recorded (crash or power loss): the downtime before is unknown".into(),
                    });
                }
                if let Some(f) = down_from.take() {
                    down(f, n.ts, c);
                }
                running = true;
            }
            "sensor_stop" => {
                c.stops += 1;
                c.lifecycle_known = true;
                if down_from.is_none() {
                    down_from = Some(n.ts);
                }
                running = false;
            }
            "policy_reload" => out.policy.reloads.push(sys(n)),
            // The last load of the week says what was in force at its end.
            "catalog_loaded" => {
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
            "policy_rejected" => out.policy.rejected.push(sys(n)),
            "capture_gap" => {
                c.capture_gaps += 1;
                c.capture_gap_bytes += num(&n.detail, &["skipped_bytes", "bytes"]).unwrap_or(0);
                c.events_not_stored += num(&n.detail, &["events_dropped"]).unwrap_or(0);
                c.incidents.push(sys(n));
            }
            "kernel_drops" => {
                c.kernel_drop_reports += 1;
                c.kernel_dropped_packets += num(
                    &n.detail,
                    &["dropped", "drops", "packets_dropped", "kernel_drops"],
                )
                .unwrap_or(0);
                c.incidents.push(sys(n));
            }
            "sink_down" => {
                c.sink_outages += 1;
                c.incidents.push(sys(n));
            }
            // The store over its size cap with only undelivered events left, and its end; the
            // upstream resolvers' outages.
            "sink_up" | "store_full" | "store_ok" | "dns_upstream_down" | "dns_upstream_up" => {
                c.incidents.push(sys(n))
            }
            COACH_ACK => {
                let d = n.dev.map(|d| device_info(s, d, i.inventory, i.pseudo));
                let text = ["justification", "reason", "text"]
                    .iter()
                    .find_map(|k| n.detail.get(*k).and_then(|v| v.as_str()))
                    .map(str::to_string);
                out.justifications.push(Justification {
                    time: local(n.ts, tz),
                    device: d
                        .as_ref()
                        .map(|d| d.device.clone())
                        .unwrap_or_else(|| "?".into()),
                    owner: d.and_then(|d| d.owner),
                    service: n
                        .svc
                        .map(|v| {
                            let sv = &s.services[v as usize];
                            i.catalogue
                                .and_then(|c| c.get(&sv.id))
                                .map(|e| e.name.clone())
                                .or_else(|| sv.name.clone())
                                .unwrap_or_else(|| sv.id.clone())
                        })
                        .unwrap_or_default(),
                    text: if i.pseudo.is_some() { None } else { text },
                });
            }
            GRANT_EXPIRED => out.grants_expired += 1,
            PORTAL_VIEW => out.portal_views += 1,
            _ => {}
        }
    }
    if let Some(f) = down_from {
        if !running {
            down(f, week.end_ns.min(i.now_ns.max(f)), c);
        }
    }
    out
}
