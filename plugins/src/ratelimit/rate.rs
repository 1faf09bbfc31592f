//! Rates as written in a limit (`"100/s"`, `"6000/min"`, `"20/h"`) and the GCRA quantities
//! derived from them with the limit's burst: the emission interval `T = period / N` and the
//! capacity `B`. Only parsing and arithmetic; no state.

use std::fmt;
use std::time::Duration;

/// The longest period a rate may name.
const HOUR: Duration = Duration::from_secs(3600);

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Period,
}

/// The unit after the slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    pub fn duration(self) -> Duration {
        match self {
            Period::Second => Duration::from_secs(1),
            Period::Minute => Duration::from_secs(60),
            Period::Hour => HOUR,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
        }
    }
}

/// Why a rate string was refused; the caller adds the position and a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("is not a rate")]
    Syntax,
    #[error("has an unknown unit")]
    Unit,
    #[error("admits nothing: the count must be at least 1")]
    Zero,
    #[error("is faster than one request per nanosecond")]
    TooFast,
}

impl Rate {
    /// Parses `N/s`, `N/min` or `N/h` (spaces around the slash allowed). `N` is a whole
    /// number from 1 to the number of nanoseconds in the period.
    pub fn parse(s: &str) -> Result<Rate, RateError> {
        let (n, unit) = s.split_once('/').ok_or(RateError::Syntax)?;
        let (n, unit) = (n.trim(), unit.trim());
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateError::Syntax);
        }
        let period = match unit {
            "s" => Period::Second,
            "min" => Period::Minute,
            "h" => Period::Hour,
            _ => return Err(RateError::Unit),
        };
        // All digits: only too many of them fails, and that is too fast for any period.
        let count: u32 = n.parse().map_err(|_| RateError::TooFast)?;
        if count == 0 {
            return Err(RateError::Zero);
        }
        let rate = Rate { count, period };
        if rate.emission_interval().is_zero() {
            return Err(RateError::TooFast);
        }
        Ok(rate)
    }

    /// `T = period / N`, in whole nanoseconds (rounded down): the time one request's
    /// share of the quota takes to come back. The Redis store uses the same value.
    pub fn emission_interval(self) -> Duration {
        let ns = self.period.duration().as_nanos() / u128::from(self.count);
        Duration::from_nanos(ns as u64)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.unit())
    }
}

/// A duration in whole seconds, rounded up (`Retry-After`, the `t` and `w` parameters):
/// a client told to wait that long is never early.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_intervals() {
        let r = Rate::parse("100/s").unwrap();
        assert_eq!(r.emission_interval(), Duration::from_millis(10));
        assert_eq!(r.to_string(), "100/s");
        let r = Rate::parse(" 6000 / min ").unwrap();
        assert_eq!(r.emission_interval(), Duration::from_millis(10));
        assert_eq!(
            Rate::parse("1/h").unwrap().emission_interval(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            Rate::parse("3/s").unwrap().emission_interval(),
            Duration::from_nanos(333_333_333)
        );
        assert_eq!(
            Rate::parse("1000000000/s").unwrap().emission_interval(),
            Duration::from_nanos(1)
        );
    }

    #[test]
    fn bad_rates() {
        for (s, e) in [
            ("100", RateError::Syntax),
            ("/s", RateError::Syntax),
            ("-1/s", RateError::Syntax),
            ("1.5/s", RateError::Syntax),
            ("100/sec", RateError::Unit),
            ("100/m", RateError::Unit),
            ("100/d", RateError::Unit),
            ("0/s", RateError::Zero),
            ("2000000000/s", RateError::TooFast),
            ("99999999999999999999/h", RateError::TooFast),
        ] {
            assert_eq!(Rate::parse(s), Err(e), "{s}");
        }
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
