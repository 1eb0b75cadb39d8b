//! Timestamps in the shape Azure prints them: `2024-03-27T10:25:03.9217887+00:00`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::time::SystemTime;

/// RFC 3339 with 7 fractional digits and `+00:00`, like ARM.
pub fn azure(t: SystemTime) -> String {
    match Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(TimeZone::UTC)
            .strftime("%Y-%m-%dT%H:%M:%S%.7f+00:00")
            .to_string(),
        Err(_) => "1970-01-01T00:00:00.0000000+00:00".to_string(),
    }
}

/// Now, formatted by [`azure`].
pub fn now() -> String {
    azure(SystemTime::now())
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_arm() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_711_534_703_921);
        assert_eq!(azure(t), "2024-03-27T10:18:23.9210000+00:00");
        let parsed: Timestamp = azure(t).parse().unwrap();
        assert_eq!(parsed.as_millisecond(), 1_711_534_703_921);
    }
}
