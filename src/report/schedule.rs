//! The daemon's weekly schedule: a thread that, at `[report] schedule` (weekday and time in the
//! clinic's time zone), writes last week's report to `out_dir/<week>/` and mails it.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use super::config::{ReportConf, ScheduleConf};
use super::{generate, mail, Options};

/// `monday` (or `mon`) and `07:00` / `07:00:30`.
pub fn parse(s: &ScheduleConf) -> Result<(Weekday, Time), String> {
    let wd = match s.weekday.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        w => {
            return Err(format!(
                "[report] schedule weekday {w:?}: write a day such as \"monday\""
            ))
        }
    };
    let t: Time = s.time.parse().map_err(|_| {
        format!(
            "[report] schedule time {:?}: write it as HH:MM, e.g. \"07:00\"",
            s.time
        )
    })?;
    Ok((wd, t))
}

/// The next time (ns) after `now_ns` that the schedule fires.
pub fn next_run(wd: Weekday, at: Time, tz: &TimeZone, now_ns: u64) -> Result<u64, String> {
    let now = jiff::Timestamp::from_nanosecond(now_ns as i128).map_err(|e| e.to_string())?;
    let today = now.to_zoned(tz.clone()).date();
    let ahead =
        (wd.to_monday_zero_offset() - today.weekday().to_monday_zero_offset()).rem_euclid(7);
    for extra in [0i64, 7, 14] {
        let d = today
            .checked_add(jiff::Span::new().days(ahead as i64 + extra))
            .map_err(|e| e.to_string())?;
        let z = d
            .to_datetime(at)
            .to_zoned(tz.clone())
            .map_err(|e| e.to_string())?;
        if z.timestamp() > now {
            return Ok(z.timestamp().as_nanosecond().max(0) as u64);
        }
    }
    Err("no next run time".into())
}

/// Write last week's report to `out_dir/<week>/` and mail it if `[report.smtp]` is set.
/// Returns a line saying what was done.
pub fn run_once(
    conf: &ReportConf,
    store: &std::path::Path,
    policy_dir: Option<&std::path::Path>,
    now_ns: u64,
) -> Result<String, String> {
    let tz = conf.tz()?;
    let week = super::Week::last_complete(now_ns, &tz)?;
    let o = Options {
        store: store.to_path_buf(),
        policy_dir: policy_dir.map(PathBuf::from),
        week: Some(week.label()),
        out: conf.out_dir.join(week.label()),
        pseudonymise: conf.pseudonymise,
        inventory: None,
        conf: conf.clone(),
        now_ns,
    };
    let w = generate(&o)?;
    let mut said = format!("report {} written to {}", w.week, o.out.display());
    if let Some(smtp) = &conf.smtp {
        mail::send(smtp, &w)?;
        said += &format!(", mailed to {}", smtp.to.join(", "));
    }
    Ok(said)
}

/// A running schedule: stop it (or drop it) to end the thread.
pub struct Handle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    last: Arc<Mutex<Option<Result<String, String>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// What the last scheduled run did (none before the first).
    pub fn last_result(&self) -> Option<Result<String, String>> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Ask the thread to end and wait for it (a report being written is finished first).
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        let (m, cv) = &*self.stop;
        if let Ok(mut s) = m.lock() {
            *s = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.end();
    }
}

/// Start the weekly report thread. `conf` must have `schedule`; `store_path` is the event store
/// (`[store] path`), `policy_dir` the policy whose catalogue gives BAA status (`[policy] dir`).
/// Each run's outcome goes to stderr (and `Handle::last_result`); a failed run does not stop
/// the schedule.
pub fn spawn(
    conf: ReportConf,
    store_path: PathBuf,
    policy_dir: Option<PathBuf>,
) -> Result<Handle, String> {
    let sched = conf.schedule.as_ref().ok_or(
        "[report] has no schedule (e.g. schedule = { weekday = \"monday\", time = \"07:00\" })",
    )?;
    let (wd, at) = parse(sched)?;
    let tz = conf.tz()?;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let last = Arc::new(Mutex::new(None));
    let (stop2, last2) = (Arc::clone(&stop), Arc::clone(&last));
    let thread = std::thread::Builder::new()
        .name("sg-report".into())
        .spawn(move || loop {
            let now = crate::time::now_ns();
            let next = match next_run(wd, at, &tz, now) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("shadowgate: report schedule: {e}");
                    return;
                }
            };
            // Wait in steps of at most a minute, so a changed wall clock is noticed.
            loop {
                let (m, cv) = &*stop2;
                let Ok(g) = m.lock() else { return };
                if *g {
                    return;
                }
                let now = crate::time::now_ns();
                if now >= next {
                    break;
                }
                let wait = Duration::from_nanos((next - now).min(60 * crate::time::SEC));
                let Ok((g, _)) = cv.wait_timeout(g, wait) else {
                    return;
                };
                if *g {
                    return;
                }
            }
            let r = run_once(
                &conf,
                &store_path,
                policy_dir.as_deref(),
                crate::time::now_ns(),
            );
            match &r {
                Ok(s) => eprintln!("shadowgate: {s}"),
                Err(e) => eprintln!("shadowgate: scheduled report failed: {e}"),
            }
            if let Ok(mut l) = last2.lock() {
                *l = Some(r);
            }
        })
        .map_err(|e| format!("cannot start the report thread: {e}"))?;
    Ok(Handle {
        stop,
        last,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_monday_morning() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let (wd, at) = parse(&ScheduleConf {
            weekday: "Monday".into(),
            time: "07:00".into(),
        })
        .unwrap();
        let ns = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as u64;
        // Wednesday 2026-11-18 -> Monday 2026-11-23 07:00 CET (06:00 UTC).
        assert_eq!(
            next_run(wd, at, &tz, ns("2026-11-18T12:00:00Z")).unwrap(),
            ns("2026-11-23T06:00:00Z")
        );
        // Monday 07:00 exactly has fired: the next is a week on.
        assert_eq!(
            next_run(wd, at, &tz, ns("2026-11-23T06:00:00Z")).unwrap(),
            ns("2026-11-30T06:00:00Z")
        );
        assert_eq!(
            next_run(wd, at, &tz, ns("2026-11-23T05:59:00Z")).unwrap(),
            ns("2026-11-23T06:00:00Z")
        );
        assert!(parse(&ScheduleConf {
            weekday: "mo".into(),
            time: "7".into()
        })
        .is_err());
    }
}
