//! `shadowgate report`: write one ISO week's shadow-AI report (HTML, CSV, JSON) from the event
//! store, optionally pseudonymised and mailed.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::{self, Options, ReportConf};

#[derive(clap::Args)]
pub struct Args {
    /// ISO week in the clinic's time zone, e.g. 2026-W47 (default: the last complete week).
    #[arg(long)]
    week: Option<String>,
    /// Configuration file: [store] path, [policy] dir (BAA status), [report] settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Event store file (instead of the configuration's [store] path).
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Policy directory whose catalogue gives each service's BAA status (default: [policy] dir).
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// Output folder (created 0700; files 0600). Default: [report] out_dir/<week>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace host names, MACs, addresses and owners with keyed pseudonyms
    /// ([report] pseudonymise_secret_file) and leave out justification texts.
    #[arg(long)]
    pseudonymise: bool,
    /// Device inventory CSV: mac and/or hostname, owner, department, location.
    #[arg(long, value_name = "CSV")]
    inventory: Option<PathBuf>,
    /// The clinic's time zone (IANA name), overriding [report] timezone.
    #[arg(long, value_name = "TZ")]
    timezone: Option<String>,
    /// Visit gap in minutes, overriding [report] visit_gap_minutes.
    #[arg(long, value_name = "MIN")]
    visit_gap: Option<u64>,
    /// E-mail the report as [report.smtp] says.
    #[arg(long)]
    mail: bool,
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("shadowgate: {e}");
    ExitCode::FAILURE
}

pub fn run(a: Args) -> ExitCode {
    let t0 = std::time::Instant::now();
    let cfg = match super::load_config(a.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut conf: ReportConf = cfg
        .as_ref()
        .and_then(|c| c.report.clone())
        .unwrap_or_default();
    if a.timezone.is_some() {
        conf.timezone = a.timezone;
    }
    if let Some(g) = a.visit_gap {
        conf.visit_gap_minutes = g;
    }
    let store = match (a.store, cfg.as_ref().and_then(|c| c.store.as_ref())) {
        (Some(p), _) => p,
        (None, Some(s)) => s.path.clone(),
        (None, None) => {
            return fail("give --store FILE, or --config FILE with a [store] section");
        }
    };
    let policy_dir = a.policy.or_else(|| {
        cfg.as_ref()
            .and_then(|c| c.policy.as_ref())
            .map(|p| p.dir.clone())
    });
    if policy_dir.is_none() {
        eprintln!("shadowgate: warning: no policy directory (--policy or [policy] dir): BAA status will show as unknown");
    }
    let tz = match conf.tz() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let now = crate::time::now_ns();
    let week = match &a.week {
        Some(w) => report::Week::parse(w, &tz),
        None => report::Week::last_complete(now, &tz),
    };
    let week = match week {
        Ok(w) => w,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match a.out {
        Some(o) => o,
        None if cfg.as_ref().is_some_and(|c| c.report.is_some()) => conf.out_dir.join(week.label()),
        None => return fail("give --out DIR (or set [report] out_dir in the configuration)"),
    };
    let smtp = if a.mail {
        match &conf.smtp {
            Some(s) => Some(s.clone()),
            None => return fail("--mail needs a [report.smtp] section in the configuration"),
        }
    } else {
        None
    };
    let o = Options {
        store,
        policy_dir,
        week: Some(week.label()),
        out,
        pseudonymise: a.pseudonymise || conf.pseudonymise,
        inventory: a.inventory,
        conf,
        now_ns: now,
    };
    let w = match report::generate(&o) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let h = &w.report.headline.this_week;
    // The report is written whatever happens to stdout; a reader that has gone does not stop
    // the mail either (see `out`).
    let said = super::out::line(format_args!(
        "{}: {} visits, {} devices, {} services, {} lookup-only runs ({} events read) -> {} (and report.csv, report.json) in {:.1} s",
        w.week,
        h.visits,
        h.devices,
        h.services,
        h.lookups,
        w.report.events_read,
        w.html.display(),
        t0.elapsed().as_secs_f64()
    ));
    if let Some(s) = smtp {
        if let Err(e) = report::mail::send(&s, &w) {
            return fail(e);
        }
        let mailed = super::out::line(format_args!("mailed to {}", s.to.join(", ")));
        return super::out::exit(said.and(mailed), ExitCode::SUCCESS);
    }
    super::out::exit(said, ExitCode::SUCCESS)
}
