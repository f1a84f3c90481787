//! Time conversions for the audit tables. Both backends keep microseconds (PostgreSQL's
//! `timestamptz` resolution); SQLite keeps fixed-width UTC RFC 3339 text so text order is time
//! order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Microseconds since the epoch, clamped to years 1970..=9999 so no event time can fail a batch.
fn micros(t: SystemTime) -> i64 {
    const MAX: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(MAX).min(MAX),
        Err(_) => 0,
    }
}

pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros(t)) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn from_offset(t: OffsetDateTime) -> SystemTime {
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    } else {
        UNIX_EPOCH - Duration::from_nanos(u64::try_from(-nanos).unwrap_or(u64::MAX))
    }
}

/// Fixed width, so that text order is time order.
const TEXT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(crate) fn to_text(t: SystemTime) -> String {
    // Formatting fails only for a year past 9999, which `to_offset` never gives.
    to_offset(t).format(TEXT).unwrap_or_default()
}

/// Reads RFC 3339 (any fraction width, any offset).
pub(crate) fn from_text(s: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(from_offset)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

/// RFC 3339 for output, e.g. `2026-11-24T00:05:31.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    to_text(t)
}

/// Parses an RFC 3339 time as given on a command line.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    from_text(s.trim())
}

/// `t` truncated to what the tables keep (microseconds).
pub fn stored_precision(t: SystemTime) -> SystemTime {
    from_offset(to_offset(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_order() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_790_000_000_123_456_789);
        let s = to_text(t);
        assert_eq!(s, "2026-09-21T14:13:20.123456Z");
        assert_eq!(from_text(&s), Ok(stored_precision(t)));
        assert!(to_text(t) < to_text(t + Duration::from_micros(1)));
        assert_eq!(
            to_text(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert!(from_text("yesterday").is_err());
        assert_eq!(
            from_text("2026-09-21T16:13:20.5+02:00"),
            Ok(UNIX_EPOCH + Duration::from_millis(1_790_000_000_500))
        );
    }
}
