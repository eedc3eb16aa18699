//! ISO weeks in the clinic's time zone: parse `2026-W47`, the week's start and end instants
//! (Monday 00:00 local, DST-aware), neighbouring weeks and the last complete week before now.

use jiff::civil::{ISOWeekDate, Weekday};
use jiff::tz::TimeZone;

/// One ISO week: its label and its bounds in ns since the epoch (`start` inclusive, `end` exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Week {
    pub year: i16,
    pub week: i8,
    pub start_ns: u64,
    pub end_ns: u64,
}

fn ns(z: &jiff::Zoned) -> u64 {
    z.timestamp().as_nanosecond().max(0) as u64
}

impl Week {
    /// `2026-W47` (also `2026W47`, `2026-w47`).
    pub fn parse(s: &str, tz: &TimeZone) -> Result<Week, String> {
        let bad = || format!("{s:?} is not an ISO week; write it like 2026-W47");
        let t = s.trim().to_ascii_uppercase();
        let (y, w) = t.split_once('W').ok_or_else(bad)?;
        let y: i16 = y.trim_end_matches('-').parse().map_err(|_| bad())?;
        let w: i8 = w.parse().map_err(|_| bad())?;
        Week::new(y, w, tz).map_err(|e| format!("{s:?}: {e}"))
    }

    pub fn new(year: i16, week: i8, tz: &TimeZone) -> Result<Week, String> {
        let d = ISOWeekDate::new(year, week, Weekday::Monday)
            .map_err(|e| e.to_string())?
            .date();
        let start = d.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
        let end = d
            .checked_add(jiff::Span::new().weeks(1))
            .and_then(|n| n.to_zoned(tz.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Week {
            year,
            week,
            start_ns: ns(&start),
            end_ns: ns(&end),
        })
    }

    /// The week holding the instant `t_ns`.
    pub fn containing(t_ns: u64, tz: &TimeZone) -> Result<Week, String> {
        let ts = jiff::Timestamp::from_nanosecond(t_ns as i128).map_err(|e| e.to_string())?;
        let iso = ts.to_zoned(tz.clone()).date().iso_week_date();
        Week::new(iso.year(), iso.week(), tz)
    }

    /// The last complete week before `now_ns` (what a Monday-morning schedule reports).
    pub fn last_complete(now_ns: u64, tz: &TimeZone) -> Result<Week, String> {
        Week::containing(now_ns, tz)?.prev(tz)
    }

    /// The week `n` weeks before this one.
    pub fn back(&self, n: i64, tz: &TimeZone) -> Result<Week, String> {
        let d = ISOWeekDate::new(self.year, self.week, Weekday::Monday)
            .map_err(|e| e.to_string())?
            .date()
            .checked_sub(jiff::Span::new().weeks(n))
            .map_err(|e| e.to_string())?;
        let iso = d.iso_week_date();
        Week::new(iso.year(), iso.week(), tz)
    }

    pub fn prev(&self, tz: &TimeZone) -> Result<Week, String> {
        self.back(1, tz)
    }

    pub fn label(&self) -> String {
        format!("{:04}-W{:02}", self.year, self.week)
    }
}

/// Local date and time of `t_ns` in `tz`, `2026-11-19 14:05`.
pub fn local(t_ns: u64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_nanosecond(t_ns as i128) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => "?".into(),
    }
}

/// Local date of `t_ns` in `tz`, `Mon 2026-11-16`.
pub fn local_day(t_ns: u64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_nanosecond(t_ns as i128) {
        Ok(t) => t.to_zoned(tz.clone()).strftime("%a %Y-%m-%d").to_string(),
        Err(_) => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_in_a_zone() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let w = Week::parse("2026-W47", &tz).unwrap();
        assert_eq!(w.label(), "2026-W47");
        // Monday 2026-11-16 00:00 EST = 05:00 UTC.
        assert_eq!(
            crate::time::rfc3339_micros(w.start_ns),
            "2026-11-16T05:00:00.000000Z"
        );
        assert_eq!(w.end_ns - w.start_ns, 7 * 86_400 * crate::time::SEC);
        // The week of the DST change (2026-11-01) is an hour longer.
        let d = Week::parse("2026-W44", &tz).unwrap();
        assert_eq!(
            d.end_ns - d.start_ns,
            (7 * 24 + 1) * 3600 * crate::time::SEC
        );
        assert_eq!(w.back(47, &tz).unwrap().label(), "2025-W52");
        assert_eq!(
            Week::parse("2026-W01", &tz)
                .unwrap()
                .prev(&tz)
                .unwrap()
                .label(),
            "2025-W52"
        );
        assert!(Week::parse("2026-W54", &tz).is_err());
        assert!(Week::parse("47", &tz).is_err());
        assert_eq!(
            Week::last_complete(w.start_ns + 3600 * crate::time::SEC, &tz)
                .unwrap()
                .label(),
            "2026-W46"
        );
    }
}
