//! The weekly shadow-AI report for the compliance officer: one ISO week of the event store as
//! visits and devices (HTML with charts, CSV, JSON), optionally pseudonymised, mailed, scheduled.
//!
//! `scan` reads the store and forms visits, `build` computes the figures (`model`), `html`,
//! `charts` and `output` write them; `pseudo`, `inventory`, `mail`, `schedule` and `config` do
//! one job each.

pub mod build;
pub mod charts;
pub mod config;
pub mod html;
pub mod inventory;
pub mod mail;
pub mod model;
pub mod output;
pub mod pseudo;
pub mod scan;
pub mod schedule;
pub mod week;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use config::{ReportConf, ScheduleConf, SmtpConf};
pub use model::Report;
pub use week::Week;

/// What one report is made from.
#[derive(Debug, Clone)]
pub struct Options {
    pub store: PathBuf,
    /// Policy directory whose catalogue gives BAA status and categories.
    pub policy_dir: Option<PathBuf>,
    /// `2026-W47`; none: the last complete week.
    pub week: Option<String>,
    pub out: PathBuf,
    pub pseudonymise: bool,
    /// Overrides `[report] inventory`.
    pub inventory: Option<PathBuf>,
    pub conf: ReportConf,
    /// The clock (ns); `crate::time::now_ns()` except in tests.
    pub now_ns: u64,
}

/// What `generate` wrote.
#[derive(Debug)]
pub struct Written {
    pub week: String,
    pub html: PathBuf,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub report: Report,
}

/// The catalogue of a policy directory as the report needs it (name, category, BAA).
pub fn catalogue(dir: &Path) -> Result<HashMap<String, build::CatalogEntry>, String> {
    let p = crate::policy::Policy::load(dir).map_err(|e| {
        format!("{e}\n(the report reads BAA status from this policy's catalogue; fix it or give another --policy)")
    })?;
    Ok(p.services()
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                build::CatalogEntry {
                    name: s.name.clone(),
                    category: s.category.as_str().to_string(),
                    baa: s.baa.clone(),
                    baa_source: s.baa_source.clone(),
                },
            )
        })
        .collect())
}

/// Compute the figures of one week without writing anything.
pub fn compute(o: &Options) -> Result<Report, String> {
    let tz = o.conf.tz()?;
    let tz_name = o
        .conf
        .timezone
        .clone()
        .or_else(|| tz.iana_name().map(str::to_string))
        .unwrap_or_else(|| "the gateway's local time".into());
    let week = match &o.week {
        Some(w) => Week::parse(w, &tz)?,
        None => Week::last_complete(o.now_ns, &tz)?,
    };
    let mut weeks = Vec::with_capacity(5);
    for n in (1..=4).rev() {
        weeks.push(week.back(n, &tz)?);
    }
    weeks.push(week.clone());
    let pseudo = if o.pseudonymise {
        Some(pseudo::Pseudonymiser::new(o.conf.secret()?))
    } else {
        None
    };
    let inv_path = o.inventory.clone().or_else(|| o.conf.inventory.clone());
    let inventory = inv_path
        .as_deref()
        .map(inventory::Inventory::load)
        .transpose()?;
    let catalogue = o.policy_dir.as_deref().map(catalogue).transpose()?;

    let conn = scan::open(&o.store)?;
    let gap = o.conf.gap_ns();
    // A day either side, so runs crossing the window's edges are seen whole (a run that goes
    // on for more than a day without a 30-minute pause is cut there).
    let margin = 86_400 * crate::time::SEC;
    let s = scan::scan(
        &conn,
        weeks[0].start_ns.saturating_sub(margin),
        week.end_ns.saturating_add(margin),
        (weeks[0].start_ns, week.end_ns),
        (week.start_ns, week.end_ns),
        gap,
    )?;
    // Which services of this week were never seen before it.
    let this_week: Vec<u32> = {
        let mut v: Vec<u32> = s
            .runs
            .iter()
            .filter(|r| r.start_ns >= week.start_ns)
            .map(|r| r.svc)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let ids: Vec<&str> = this_week
        .iter()
        .map(|&i| s.services[i as usize].id.as_str())
        .collect();
    let before = scan::seen_before(&conn, &ids, week.start_ns)?;
    let mut seen_before = vec![true; s.services.len()];
    for (&i, b) in this_week.iter().zip(before) {
        seen_before[i as usize] = b;
    }
    Ok(build::build(&build::Inputs {
        scan: &s,
        weeks: &weeks,
        tz: &tz,
        tz_name,
        catalogue: catalogue.as_ref(),
        inventory: inventory.as_ref(),
        seen_before: &seen_before,
        pseudo: pseudo.as_ref(),
        gap_minutes: o.conf.visit_gap_minutes.max(1),
        top_devices: o.conf.top_devices,
        now_ns: o.now_ns,
    }))
}

/// Compute one week's report and write `report.html`, `report.csv` and `report.json` to `out`.
pub fn generate(o: &Options) -> Result<Written, String> {
    let r = compute(o)?;
    let trend = charts::trend(&r.trend)?;
    let services = charts::services(&r.services, 12)?;
    let page = html::render(&r, &trend, &services);
    let f = output::write_all(&o.out, &r, &page)?;
    Ok(Written {
        week: r.week.clone(),
        html: f.html,
        csv: f.csv,
        json: f.json,
        report: r,
    })
}
