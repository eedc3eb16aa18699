//! Rule schedules: the days and the time-of-day window (`policy.toml` `schedule`) in which a rule
//! applies, compiled from `HH:MM` text and checked in the policy's time zone.

use std::path::Path;

use toml::Spanned;

use super::config::ScheduleDef;
use super::{Policy, PolicyError};

#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// Bit 0 = Monday.
    days: u8,
    from_min: u16,
    to_min: u16,
}

impl Schedule {
    /// Compile a rule's `schedule`; errors go to `errs` (pointing at the schedule in `f`).
    pub(super) fn compile(
        sd: Spanned<ScheduleDef>,
        f: &Path,
        text: &str,
        errs: &mut Vec<PolicyError>,
    ) -> Option<Schedule> {
        let at = sd.span().start;
        let sd = sd.into_inner();
        let mut days = 0u8;
        for d in &sd.days {
            match ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|x| x.eq_ignore_ascii_case(d))
            {
                Some(i) => days |= 1 << i,
                None => errs.push(
                    PolicyError::new(f, format!("{d:?} is not a day"))
                        .at(text, at)
                        .hint("use mon, tue, wed, thu, fri, sat, sun"),
                ),
            }
        }
        match (parse_hhmm(&sd.from), parse_hhmm(&sd.to)) {
            (Some(from_min), Some(to_min)) => Some(Schedule {
                days,
                from_min,
                to_min,
            }),
            _ => {
                errs.push(
                    PolicyError::new(
                        f,
                        format!("schedule times {:?}-{:?} are not HH:MM", sd.from, sd.to),
                    )
                    .at(text, at),
                );
                None
            }
        }
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl Policy {
    pub(super) fn schedule_active(&self, s: &Schedule, ts_ns: u64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_nanosecond(ts_ns as i128) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let day = z.weekday().to_monday_zero_offset() as u8;
        let min = z.hour() as u16 * 60 + z.minute() as u16;
        let prev_day = (day + 6) % 7;
        if s.from_min <= s.to_min {
            s.days & (1 << day) != 0 && (s.from_min..s.to_min).contains(&min)
        } else {
            // Overnight: the part after midnight belongs to the previous day's window.
            (s.days & (1 << day) != 0 && min >= s.from_min)
                || (s.days & (1 << prev_day) != 0 && min < s.to_min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("25:00"), None);
    }
}
