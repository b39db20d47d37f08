//! `--rate-limit N[/SECS]`, a value: N requests per rolling SECS seconds. A leaf: it imports
//! only the crate's other value types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::duration::secs;

/// `--rate-limit N[/SECS]`: N requests per rolling SECS seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub requests: u32,
    pub window: Duration,
}

impl Rate {
    /// The documented limit of the API.
    pub const DEFAULT: Rate = Rate {
        requests: 30,
        window: Duration::from_secs(60),
    };
}

impl FromStr for Rate {
    type Err = String;

    /// `0` requests turns pacing off: the caller's choice, not a parse error.
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("expected N or N/SECS, such as 30/60, not {s:?}");
        let (n, window) = match s.split_once('/') {
            Some((n, secs)) => {
                let secs = secs.trim().parse::<f64>().map_err(|_| bad())?;
                let window = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|w| !w.is_zero() && *w <= Duration::from_secs(86_400))
                    .ok_or_else(bad)?;
                (n, window)
            }
            None => (s, Rate::DEFAULT.window),
        };
        let requests = n.trim().parse::<u32>().map_err(|_| bad())?;
        Ok(Rate { requests, window })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}s", self.requests, secs(self.window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_window() {
        assert_eq!("30/60".parse(), Ok(Rate::DEFAULT));
        assert_eq!("30".parse(), Ok(Rate::DEFAULT));
        assert_eq!(
            "6/0.5".parse(),
            Ok(Rate {
                requests: 6,
                window: Duration::from_millis(500)
            })
        );
        assert_eq!("0".parse::<Rate>().unwrap().requests, 0);
        for bad in ["", "x", "-1", "6/0", "6/-3", "6/x", "1.5/3", "6/1e9"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(Rate::DEFAULT.to_string(), "30 per 60s");
    }
}
