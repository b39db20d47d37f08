//! Durations as people read and write them. A leaf: it imports nothing of the crate.

use std::time::Duration;

/// The longest DURATION accepted (`--cache`, a `--budget`'s PERIOD): a year.
pub const MAX: Duration = Duration::from_secs(365 * DAY);

const DAY: u64 = 24 * 60 * 60;

/// What a DURATION looks like, for an error message.
pub const FORMAT: &str =
    "whole seconds or a whole number with s, m, h or d, such as 90, 10m, 12h or 7d";

/// A DURATION (SPEC 8): whole seconds (`3600`), or a whole number with `s`, `m`, `h` or `d`
/// (`90m`, `12h`, `7d`), at most [`MAX`]. No fractions, signs, spaces or other units: a
/// pipeline's `1.5h` or `1 h` is refused rather than read as something else. `0` is zero;
/// what zero (or `off`) means is the caller's business.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration, {FORMAT}, not {text:?}");
    let (digits, unit) = match text.char_indices().last() {
        Some((at, unit @ ('s' | 'm' | 'h' | 'd'))) => (&text[..at], unit),
        _ => (text, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        _ => DAY,
    };
    let too_long = || format!("{text} is longer than the longest duration, 365d");
    // Digits past u64 are a number too large, not a malformed one.
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(too_long)?;
    let duration = Duration::from_secs(secs);
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

/// A duration as [`parse`] reads it, in its largest whole unit: `1d`, `90m`, `45s`.
pub fn written(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => "0s".into(),
        _ if secs.is_multiple_of(DAY) => format!("{}d", secs / DAY),
        _ if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
        _ if secs.is_multiple_of(60) => format!("{}m", secs / 60),
        _ => format!("{secs}s"),
    }
}

/// A wait as a person reads it, in its two largest units, rounded up: `3h 12m`, `47m`, `59s`,
/// `1d 2h`.
pub fn approx(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let units = [(DAY, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|&(unit, _)| secs >= unit) else {
        return "0s".into();
    };
    let (unit, name) = units[first];
    let Some(&(next, next_name)) = units.get(first + 1) else {
        return format!("{secs}{name}");
    };
    // Rounded up to the smaller unit, so that a wait is never said shorter than it is; that
    // may carry into a larger unit (23h 59m 30s is 1d).
    let rounded = secs.div_ceil(next) * next;
    if first > 0 && rounded >= units[first - 1].0 {
        return approx(Duration::from_secs(rounded));
    }
    match (rounded / unit, rounded % unit / next) {
        (whole, 0) => format!("{whole}{name}"),
        (whole, rest) => format!("{whole}{name} {rest}{next_name}"),
    }
}

/// Seconds for a message: whole when whole, else one decimal.
pub fn secs(d: Duration) -> String {
    secs_f64(d.as_secs_f64())
}

/// As [`secs`], and in exponent form when it is huge: `1e300`, not 301 digits.
pub fn secs_f64(s: f64) -> String {
    if s >= 1e9 {
        format!("{s:e}")
    } else if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_whole_or_with_one_decimal() {
        assert_eq!(secs(Duration::from_secs(60)), "60");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5");
        assert_eq!(secs_f64(1e20), "1e20");
        assert_eq!(secs_f64(1.5e30), "1.5e30");
    }

    #[test]
    fn durations_are_whole_seconds_or_a_whole_number_with_a_unit() {
        let s = Duration::from_secs;
        for (text, expected) in [
            ("0", s(0)),
            ("90", s(90)),
            ("3600", s(3600)),
            ("45s", s(45)),
            ("10m", s(600)),
            ("90m", s(5400)),
            ("12h", s(43_200)),
            ("1d", s(86_400)),
            ("7d", s(604_800)),
            ("0d", s(0)),
            ("007m", s(420)),
            ("365d", MAX),
            ("31536000", MAX),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_saying_what_a_duration_is() {
        for text in [
            "", "s", "d", "1.5h", "1,5h", "-1", "+1", " 1", "1 ", "1 h", "1H", "1ms", "1w", "1y",
            "1h30m", "h1", "1e3", "inf", "nan", "off", "١", "1d\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("such as 90, 10m, 12h or 7d"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn more_than_a_year_is_refused_as_too_long_even_past_u64() {
        for text in [
            "366d",
            "8761h",
            "31536001",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("longer than the longest duration, 365d"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_wait_reads_in_its_two_largest_units_never_shorter_than_it_is() {
        let s = Duration::from_secs;
        for (wait, text) in [
            (s(0), "0s"),
            (Duration::from_millis(1), "1s"),
            (s(59), "59s"),
            (s(60), "1m"),
            (s(61), "1m 1s"),
            (s(3599), "59m 59s"),
            (s(3600 + 1), "1h 1m"),
            (s(3 * 3600 + 12 * 60), "3h 12m"),
            (s(86_400 - 1), "1d"),
            (s(86_400 + 2 * 3600), "1d 2h"),
            (s(31 * 86_400 + 60), "31d 1h"),
        ] {
            assert_eq!(approx(wait), text, "{wait:?}");
        }
    }

    #[test]
    fn a_duration_is_written_back_in_its_largest_whole_unit() {
        for text in ["1d", "7d", "12h", "90m", "45s", "61s", "0s", "365d"] {
            assert_eq!(written(parse(text).unwrap()), text);
        }
        assert_eq!(written(Duration::from_secs(3600)), "1h");
        assert_eq!(written(Duration::from_secs(86_400 * 31)), "31d");
    }
}
