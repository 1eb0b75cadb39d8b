//! Go-style duration strings (`1h`, `30m`, `90s`, `1h30m`, `500ms`, `1.5h`), as used by
//! `spec.interval` and `spec.timeout` and accepted by the CRD schema pattern
//! [`DURATION_PATTERN`].

use std::fmt;
use std::time::Duration;

/// The schema pattern for durations: one or more `<number><unit>` pairs with units
/// `ms`, `s`, `m`, `h` (the subset of Go's `time.ParseDuration` that Flux and most
/// operators accept). No sign: durations here are never negative.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (expected e.g. 90s, 30m, 1h, 1h30m)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go-style duration: a sequence of decimal numbers, each with an optional
/// fraction and a unit suffix, such as `300ms`, `1.5h` or `2h45m`. Valid units are `ms`,
/// `s`, `m` and `h` (as in [`DURATION_PATTERN`]); Go's `ns`/`us`/`µs` are also accepted for
/// compatibility. `0` alone is accepted (zero), like Go.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with(['-', '+']) {
        return Err(err("a sign is not allowed"));
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(err("each unit needs a number before it"));
        }
        if number.matches('.').count() > 1 {
            return Err(err("a number has more than one decimal point"));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(err("missing unit (ms, s, m or h)")),
            _ => return Err(err("unknown unit (use ms, s, m or h)")),
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let int: u128 = int_part.parse().map_err(|_| err("number too large"))?;
        let mut nanos = int
            .checked_mul(unit_nanos)
            .ok_or_else(|| err("too large"))?;
        // Fraction: exact decimal arithmetic, truncated to whole nanoseconds like Go.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes().take(30) {
            let d = u128::from(digit - b'0');
            nanos += d * scale / 10;
            scale /= 10;
            if scale == 0 {
                break;
            }
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| err("too large"))?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("too large"))?;
    // Lossless: the remainder is below 1e9.
    let sub = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// `d` in the syntax [`parse_duration`] reads, in whole seconds (`10s`, `1m30s`, `24h`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for secs in [1, 59, 61, 3599, 3601, 86_400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn parses_common_forms() {
        let cases = [
            ("1h", 3_600_000),
            ("30m", 1_800_000),
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("2h45m10s", 9_910_000),
            ("500ms", 500),
            ("1.5h", 5_400_000),
            ("0.5s", 500),
            ("1m0s", 60_000),
            ("10s500ms", 10_500),
            ("0", 0),
            ("0s", 0),
        ];
        for (input, millis) in cases {
            assert_eq!(
                parse_duration(input).unwrap(),
                Duration::from_millis(millis),
                "{input}"
            );
        }
    }

    #[test]
    fn sub_millisecond_units() {
        assert_eq!(
            parse_duration("1500us").unwrap(),
            Duration::from_micros(1500)
        );
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("1.000000001s").unwrap(), Duration::new(1, 1));
    }

    #[test]
    fn refuses_bad_input() {
        for input in [
            "",
            " ",
            "1",
            "h",
            "1d",
            "1hh",
            "-1h",
            "+1h",
            "1..5h",
            ".5h",
            "5.h",
            "1h-",
            "one",
            "1 h",
            "1H",
            "99999999999999999999999999999999999999h",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{input}: {e}");
        }
    }
}
