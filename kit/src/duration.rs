//! The one parser behind every duration flag of the three daemons.
//!
//! Durations read like `100ms`, `1s`, `2.5s`, `1m 30s` (humantime). Each flag
//! states its bounds: a value outside them is refused when the daemon starts,
//! naming the flag and the bounds, instead of overflowing `Instant`
//! arithmetic later (`--upstream-timeout 500000000y`) or being sent on the
//! wire as something the protocol cannot carry (`--advert-interval 0s`).
//! A bare number is ambiguous (seconds? milliseconds?) and refused, except
//! for flags whose contract has always been "seconds" (`--resync`).

use std::ffi::OsStr;
use std::time::Duration;

use clap::builder::TypedValueParser;

/// Why a duration flag's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{value:?} is not a duration like 100ms, 1s or 2.5s: {reason}")]
    Syntax { value: String, reason: String },
    #[error("{value:?} is out of range: must be between {min} and {max}")]
    Range { value: String, min: String, max: String },
}

/// The bounds of one flag, and whether a bare number means seconds.
/// Use as `value_parser = kit::duration::between(MIN, MAX)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    min: Duration,
    max: Duration,
    bare_seconds: bool,
}

/// Accepts `min..=max` (a `max` below `min` accepts only `min`).
pub const fn between(min: Duration, max: Duration) -> Bounds {
    let max = if max.as_nanos() < min.as_nanos() { min } else { max };
    Bounds { min, max, bare_seconds: false }
}

impl Bounds {
    /// Also accepts a bare whole number as seconds (`30` = `30s`), for flags
    /// documented in seconds before they took units.
    pub const fn or_seconds(self) -> Bounds {
        Bounds { bare_seconds: true, ..self }
    }

    pub fn min(&self) -> Duration {
        self.min
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// Parses `s` and checks it against the bounds.
    pub fn parse(&self, s: &str) -> Result<Duration, DurationError> {
        let t = s.trim();
        let bare = self.bare_seconds && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let d = if bare {
            t.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|e| DurationError::Syntax { value: s.to_string(), reason: e.to_string() })?
        } else {
            humantime::parse_duration(t)
                .map_err(|e| DurationError::Syntax { value: s.to_string(), reason: e.to_string() })?
        };
        if d < self.min || d > self.max {
            return Err(DurationError::Range {
                value: s.to_string(),
                min: humantime::format_duration(self.min).to_string(),
                max: humantime::format_duration(self.max).to_string(),
            });
        }
        Ok(d)
    }
}

impl TypedValueParser for Bounds {
    type Value = Duration;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<Duration, clap::Error> {
        // Delegates to clap's closure parser, which formats the error as
        // "invalid value 'X' for '--flag <FLAG>': <our reason>".
        let bounds = *self;
        let parse = move |s: &str| bounds.parse(s);
        parse.parse_ref(cmd, arg, value)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn reads_units_and_refuses_what_is_out_of_bounds() {
        let b = between(10 * MS, 40 * S);
        assert_eq!(b.parse("100ms"), Ok(100 * MS));
        assert_eq!(b.parse("2.5s"), Ok(2500 * MS));
        assert_eq!(b.parse("10ms"), Ok(10 * MS), "the minimum is included");
        assert_eq!(b.parse("40s"), Ok(40 * S), "the maximum is included");
        for bad in ["0s", "9ms", "41s", "500000000y"] {
            let e = b.parse(bad).unwrap_err();
            assert!(matches!(e, DurationError::Range { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("between 10ms and 40s"), "{e}");
        }
        let e = b.parse("soon").unwrap_err();
        assert!(e.to_string().contains("not a duration like"), "{e}");
    }

    #[test]
    fn a_bare_number_is_seconds_only_where_the_flag_says_so() {
        let plain = between(S, 3600 * S);
        assert!(matches!(plain.parse("30"), Err(DurationError::Syntax { .. })), "ambiguous: refused");
        let secs = plain.or_seconds();
        assert_eq!(secs.parse("30"), Ok(30 * S));
        assert_eq!(secs.parse("30s"), Ok(30 * S));
        assert!(matches!(secs.parse("500ms"), Err(DurationError::Range { .. })), "below 1s");
        assert!(matches!(secs.parse("0"), Err(DurationError::Range { .. })));
        assert!(matches!(secs.parse("99999999999999999999999"), Err(DurationError::Syntax { .. })));
        assert!(matches!(secs.parse("-5"), Err(DurationError::Syntax { .. })));
    }

    #[test]
    fn a_max_below_min_accepts_only_min() {
        let b = between(S, MS);
        assert_eq!(b.parse("1s"), Ok(S));
        assert!(b.parse("2s").is_err());
    }

    /// Property: every duration inside the bounds, written the way humantime
    /// writes it, reads back to itself; every one outside is refused.
    #[test]
    fn formatted_durations_round_trip_and_bounds_hold() {
        let b = between(10 * MS, 3600 * S);
        let mut rng = rand::rng();
        for _ in 0..5000 {
            let d = Duration::from_nanos(rng.random_range(0..=7200 * 1_000_000_000u64));
            let text = humantime::format_duration(d).to_string();
            let inside = d >= b.min() && d <= b.max();
            match b.parse(&text) {
                Ok(back) => assert!(inside && back == d, "{text} -> {back:?} (inside: {inside})"),
                Err(e) => assert!(!inside && matches!(e, DurationError::Range { .. }), "{text}: {e}"),
            }
        }
    }

    /// Property: arbitrary text never panics, and anything accepted is in bounds.
    #[test]
    fn arbitrary_text_is_refused_or_in_bounds() {
        let b = between(MS, 60 * S).or_seconds();
        let alphabet = b"0123456789 .smhdyun-+\xce\xbc";
        let mut rng = rand::rng();
        for _ in 0..20000 {
            let len = rng.random_range(0..12);
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(d) = b.parse(&text) {
                assert!(d >= MS && d <= 60 * S, "{text:?} -> {d:?}");
            }
        }
    }
}
