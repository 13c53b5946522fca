//! Times as velt stores them: microseconds since the Unix epoch, UTC, in an `i64`, and
//! their RFC 3339 form on the API.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time in µs since the epoch.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 in UTC with microseconds, e.g. `2025-07-28T17:05:03.123000Z`.
pub fn to_rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time with any offset; sub-microsecond digits are truncated.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Serde adapters so row types can expose µs fields as RFC 3339 strings.
pub mod serde_rfc3339 {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_rfc3339(*us))
    }

    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(us: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match us {
                Some(us) => s.serialize_str(&super::super::to_rfc3339(*us)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_microseconds() {
        let us = parse_rfc3339("2025-07-28T17:05:03.123456Z").unwrap();
        assert_eq!(us, 1_753_722_303_123_456);
        assert_eq!(to_rfc3339(us), "2025-07-28T17:05:03.123456Z");
    }

    #[test]
    fn accepts_offsets_and_truncates_nanoseconds() {
        assert_eq!(
            parse_rfc3339("2025-07-28T19:05:03.1234567+02:00"),
            parse_rfc3339("2025-07-28T17:05:03.123456Z")
        );
        assert_eq!(parse_rfc3339("2025-07-28 17:05"), None);
    }

    #[test]
    fn far_future_is_fine() {
        let us = parse_rfc3339("2099-01-01T00:00:00Z").unwrap();
        assert_eq!(to_rfc3339(us), "2099-01-01T00:00:00.000000Z");
    }
}
