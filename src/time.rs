//! Time in one place: nanoseconds since the Unix epoch (what captures and events carry), the
//! wall clock, RFC 3339 rendering and the `--since 7d` parser. One crate (`jiff`) does all of it.

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
    // Any u64 of ns (up to year 2554) is inside jiff's range.
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => String::from("9999-12-31T23:59:59.999999Z"),
    }
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
