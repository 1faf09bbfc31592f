//! Duration strings (`"250ms"`, `"2s"`, `"5m"`, `"1h"`): parsing and bounds, for routes.toml
//! and for the registry API's `ttl`.
//!
//! Only parsing lives here; which keys may be zero and how a bad value is reported is the
//! caller's business (the config compiler's `Compiler::duration`, the registry API's TTL
//! clamping). A low module: it imports nothing from the crate.

use std::time::Duration;
use thiserror::Error;

/// The longest duration any key accepts. Timers add durations to `Instant`s, which
/// overflows long before `Duration::MAX`; a year is far beyond any sensible setting and
/// safely inside what every clock can represent.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest non-zero duration: ficus's timers count milliseconds.
pub const MIN_NONZERO_DURATION: Duration = Duration::from_millis(1);

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("not a number followed by a unit")]
    Syntax,
    #[error("longer than the maximum of one year")]
    TooLong,
    #[error("shorter than 1ms but not zero")]
    BelowMillisecond,
}

/// Parses a duration like `250ms`, `2s`, `1.5s`, `5m`, `1h` (a space between the number
/// and the unit is allowed). Never panics: values over [`MAX_DURATION`] and non-zero values
/// under a millisecond are errors.
pub fn try_parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(DurationError::Syntax)?;
    let (num, unit) = s.split_at(split);
    if !num.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(DurationError::Syntax);
    }
    let value: f64 = num.parse().map_err(|_| DurationError::Syntax)?;
    let unit_secs = match unit.trim_start() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError::Syntax),
    };
    let secs = value * unit_secs;
    if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong);
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| DurationError::TooLong)?;
    if secs > 0.0 && d < MIN_NONZERO_DURATION {
        return Err(DurationError::BelowMillisecond);
    }
    Ok(d)
}

/// [`try_parse_duration`] for callers that only need to know whether it is valid.
pub fn parse_duration(s: &str) -> Option<Duration> {
    try_parse_duration(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("2 parsecs"), None);
    }

    #[test]
    fn durations_never_panic_and_are_bounded() {
        for huge in [
            "999999999999999999999h",
            "18446744073709551615s",
            "3000000000000000h",
        ] {
            assert_eq!(
                try_parse_duration(huge),
                Err(DurationError::TooLong),
                "{huge}"
            );
        }
        assert_eq!(try_parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(try_parse_duration("8761h"), Err(DurationError::TooLong));
        assert_eq!(
            try_parse_duration("0.0000001ms"),
            Err(DurationError::BelowMillisecond)
        );
        assert_eq!(try_parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(try_parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(try_parse_duration(".5s"), Err(DurationError::Syntax));
        assert_eq!(try_parse_duration("5 seconds"), Err(DurationError::Syntax));
    }
}
