//! Durations on the command line and in the runtime configuration: `90s`, `5m`, `1h30m`
//! (humantime syntax) or a bare number of seconds.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Parses `5m`, `30s`, `1h 30m`, `250ms` or a bare number of seconds (`300`, `0.5`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {text:?}: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Formats a duration the way [`parse`] reads it back (`5m`, `1h 30m`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde helpers: serialize as a humantime string, deserialize from a string or a number
/// of seconds.
pub mod serde_text {
    use super::*;

    /// Serializes as `format(d)`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Deserializes a string (`"5m"`) or a number of seconds (`300`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(secs) => Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// Like [`serde_text`], for `Option<Duration>` fields of a partial update.
pub mod serde_opt_text {
    use super::*;

    /// Deserializes a string, a number of seconds, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::serde_text")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse("soon").is_err());
        assert!(parse("-1").is_err());
        assert_eq!(format(Duration::from_secs(300)), "5m");
    }
}
