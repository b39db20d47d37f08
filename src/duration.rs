//! Durations as people read and write them. A leaf: it imports nothing of the crate.

use std::time::Duration;

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
}
