//! Times on the wire and in logs: Unix seconds inside, RFC 3339 (UTC) outside, the same way
//! in the server, the agent and the add-on's messages.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `unix` as RFC 3339 in UTC (`2026-12-04T18:30:00Z`); empty for a time out of range.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An RFC 3339 time (any offset) as Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_offsets() {
        assert_eq!(rfc3339(1_796_400_000), "2026-12-04T16:00:00Z");
        assert_eq!(parse_rfc3339("2026-12-04T16:00:00Z"), Some(1_796_400_000));
        assert_eq!(
            parse_rfc3339("2026-12-04T17:00:00+01:00"),
            Some(1_796_400_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339(i64::MAX), "");
    }
}
