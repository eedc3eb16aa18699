//! Time in one place: ns since the Unix epoch (what captures and events carry), the wall clock,
//! RFC 3339 rendering (by hand: it runs once per JSON line) and the `--since 7d` parser (jiff).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds in one second.
pub const SEC: u64 = 1_000_000_000;

/// The wall clock as ns since the Unix epoch (0 before 1970, saturating far in the future).
pub fn now_ns() -> u64 {
    system_to_ns(SystemTime::now())
}

/// A `SystemTime` as ns since the Unix epoch (0 before 1970, saturating at `u64::MAX`).
pub fn system_to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// ns since the Unix epoch as a `SystemTime`.
pub fn ns_to_system(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-23T11:43:28.123456Z`.
pub fn rfc3339_micros(ns: u64) -> String {
    let b = rfc3339_micros_bytes(ns);
    // The bytes are ASCII digits and punctuation.
    String::from_utf8_lossy(&b).into_owned()
}

/// Length of [`rfc3339_micros`]'s text: every u64 of ns falls in the years 1970 to 2554.
pub const RFC3339_MICROS_LEN: usize = 27;

/// [`rfc3339_micros`] without an allocation (one per JSON line): the civil date from the day
/// number (Howard Hinnant's `civil_from_days`), the fraction truncated to microseconds.
pub fn rfc3339_micros_bytes(ns: u64) -> [u8; RFC3339_MICROS_LEN] {
    let secs = ns / SEC;
    let micros = (ns % SEC) / 1_000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    two(&mut b[0..2], (y / 100) as usize);
    two(&mut b[2..4], (y % 100) as usize);
    two(&mut b[5..7], m as usize);
    two(&mut b[8..10], d as usize);
    two(&mut b[11..13], (sod / 3600) as usize);
    two(&mut b[14..16], (sod / 60 % 60) as usize);
    two(&mut b[17..19], (sod % 60) as usize);
    two(&mut b[20..22], (micros / 10_000) as usize);
    two(&mut b[22..24], (micros / 100 % 100) as usize);
    two(&mut b[24..26], (micros % 100) as usize);
    b
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Two decimal digits of `v` (below 100) into `dst`.
fn two(dst: &mut [u8], v: usize) {
    const DIGITS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let i = (v % 100) * 2;
    dst[0] = DIGITS[i];
    dst[1] = DIGITS[i + 1];
}

/// A point in time given as RFC 3339 (`2026-11-01T00:00:00Z`) or as an age before `now_ns`
/// (`7d`, `24h`, `90m`, `1w 2d`) -> ns since the epoch.
pub fn parse_since(s: &str, now_ns: u64) -> Result<u64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_nanosecond().max(0) as u64);
    }
    let bad = || format!("{s:?} is neither an RFC 3339 time nor an age like 7d or 24h");
    let span: jiff::Span = s.trim().parse().map_err(|_| bad())?;
    // Days and weeks are 24 h here (an age, not calendar arithmetic).
    let age = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if age.is_negative() {
        return Err(bad());
    }
    let age_ns = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
    Ok(now_ns.saturating_sub(age_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_micros() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
        assert!(rfc3339_micros(u64::MAX).starts_with("2554-"));
    }

    /// What `rfc3339_micros` was before the hand-written formatter: jiff's strftime.
    fn reference(ns: u64) -> String {
        match jiff::Timestamp::from_nanosecond(ns as i128) {
            Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            Err(_) => String::from("9999-12-31T23:59:59.999999Z"),
        }
    }

    #[test]
    fn fast_formatter_matches_jiff_everywhere() {
        let day = 86_400 * SEC;
        let mut edges = vec![0, 1, 999, 1_000, 999_999_999, SEC, day - 1, day, u64::MAX];
        edges.extend([u64::MAX - 1, u64::MAX - SEC, u64::MAX / 2, i64::MAX as u64]);
        // Year boundaries and leap days (1972, 2000, 2024 leap; 2100, 2200, 2300 not; 2400 is)
        // from 1970 to 2554, each with the nanosecond before and after.
        for y in 1970..=2554i16 {
            for (m, d) in [(1, 1), (2, 28), (2, 29), (3, 1), (12, 31)] {
                let Ok(date) = jiff::civil::Date::new(y, m, d) else {
                    continue;
                };
                let Ok(ts) = date.to_zoned(jiff::tz::TimeZone::UTC) else {
                    continue;
                };
                let ns = ts.timestamp().as_nanosecond();
                for delta in [-1i128, 0, 1, 86_399_999_999_999, 86_400_000_000_000] {
                    if let Ok(v) = u64::try_from(ns + delta) {
                        edges.push(v);
                    }
                }
            }
        }
        for &ns in &edges {
            assert_eq!(rfc3339_micros(ns), reference(ns), "ns {ns}");
        }
        // Every day from 1970 to 2554 at a moving time of day, and pseudo-random values.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for d in 0..=u64::MAX / day {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ns = (d * day).saturating_add(x % day);
            assert_eq!(rfc3339_micros(ns), reference(ns), "ns {ns}");
            assert_eq!(rfc3339_micros(x), reference(x), "ns {x}");
        }
        assert_eq!(rfc3339_micros(u64::MAX).len(), RFC3339_MICROS_LEN);
    }

    #[test]
    fn parses_ages_and_times() {
        let now = 10 * 86_400 * SEC;
        assert_eq!(parse_since("7d", now), Ok(3 * 86_400 * SEC));
        assert_eq!(parse_since("24h", now), Ok(9 * 86_400 * SEC));
        assert_eq!(parse_since("1w", now), Ok(3 * 86_400 * SEC));
        assert_eq!(parse_since("1970-01-02T00:00:00Z", now), Ok(86_400 * SEC));
        assert_eq!(parse_since("999999d", now), Ok(0));
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn clock_conversions_saturate() {
        assert_eq!(system_to_ns(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(system_to_ns(ns_to_system(42)), 42);
    }
}
