//! Timestamp texts of the contract: RFC 3339 in UTC with second precision
//! (most fields) or with the fraction Go's `RFC3339Nano` prints (trailing
//! zeros trimmed), for the few fields the spec says carry full precision.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

/// `2026-07-01T11:28:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-07-01T11:28:00.12345Z` (fraction without trailing zeros, none when
/// the fraction is zero), like Go's `time.RFC3339Nano`.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats() {
        let t = Utc.with_ymd_and_hms(2026, 7, 1, 11, 28, 0).unwrap();
        assert_eq!(rfc3339(t), "2026-07-01T11:28:00Z");
        assert_eq!(rfc3339_nano(t), "2026-07-01T11:28:00Z");
        let t = t + chrono::Duration::microseconds(123_450);
        assert_eq!(rfc3339(t), "2026-07-01T11:28:00Z");
        assert_eq!(rfc3339_nano(t), "2026-07-01T11:28:00.12345Z");
    }
}
