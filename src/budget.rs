//! `--budget N[/PERIOD]`, a value: at most N credits per rolling PERIOD. A leaf: it imports
//! only the crate's other value types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::duration;

/// `--budget N[/PERIOD]`: at most `limit` credits consumed per rolling `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub limit: f64,
    pub period: Duration,
}

impl Budget {
    pub const DEFAULT_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
    /// The shortest period: the ledger counts by the minute.
    pub const SHORTEST: Duration = Duration::from_secs(60);
    /// The longest period: the ledger keeps 31 days.
    pub const LONGEST: Duration = Duration::from_secs(31 * 24 * 60 * 60);
}

/// The credit limits every request is checked against before it is sent: `--budget` and
/// `--min-credits`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub budget: Option<Budget>,
    /// `--min-credits`: the lowest last balance at which a request is still sent.
    pub floor: Option<f64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.budget.is_some() || self.floor.is_some()
    }

    /// The options that set them, for a message: `--budget and --min-credits`.
    pub fn named(&self) -> &'static str {
        match (self.budget, self.floor) {
            (Some(_), Some(_)) => "--budget and --min-credits",
            (None, Some(_)) => "--min-credits",
            _ => "--budget",
        }
    }
}

/// What `--budget` (or `BLUENEXUS_BUDGET`) says: a budget, or `off`, which turns off one set
/// in the environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    Off,
    On(Budget),
}

impl FromStr for Setting {
    type Err = String;

    fn from_str(s: &str) -> Result<Setting, String> {
        if s == "off" {
            return Ok(Setting::Off);
        }
        let (n, period) = match s.split_once('/') {
            Some((n, period)) => (n, Some(period)),
            None => (s, None),
        };
        let limit = n
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0 && !n.is_nan())
            .ok_or_else(|| {
                format!("expected N[/PERIOD], N a number of credits, 0 or more, such as 500/1d, not {s:?}")
            })?;
        let period = match period {
            None => Budget::DEFAULT_PERIOD,
            Some(text) => duration::parse(text)
                .ok()
                .filter(|p| (Budget::SHORTEST..=Budget::LONGEST).contains(p))
                .ok_or_else(|| {
                    format!(
                        "the PERIOD of {s:?} must be from 60s to 31d, written as {}",
                        duration::FORMAT
                    )
                })?,
        };
        // `-0` is 0: "-0 of -0 per 1d" would puzzle anyone.
        Ok(Setting::On(Budget {
            limit: limit + 0.0,
            period,
        }))
    }
}

impl fmt::Display for Budget {
    /// `500 per 1d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {}",
            credits(self.limit),
            duration::written(self.period)
        )
    }
}

/// A number of credits as a message or a document gives it: sums of fractions rounded to
/// nine decimals, so that 0.1 + 0.2 reads 0.3, and whole numbers without a decimal point.
pub fn rounded(credits: f64) -> f64 {
    let rounded = (credits * 1e9).round() / 1e9;
    if rounded.is_finite() {
        rounded + 0.0
    } else {
        credits
    }
}

/// [`rounded`], as text: `500`, `0.3`, `1e300`.
pub fn credits(n: f64) -> String {
    let n = rounded(n);
    if n.abs() >= 1e15 {
        format!("{n:e}")
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: f64, secs: u64) -> Setting {
        Setting::On(Budget {
            limit,
            period: Duration::from_secs(secs),
        })
    }

    #[test]
    fn budgets_parse_with_and_without_a_period() {
        assert_eq!("500".parse(), Ok(budget(500.0, 86_400)));
        assert_eq!("500/1d".parse(), Ok(budget(500.0, 86_400)));
        assert_eq!("2.5/90m".parse(), Ok(budget(2.5, 5400)));
        assert_eq!("0/60".parse(), Ok(budget(0.0, 60)));
        assert_eq!("10/3600".parse(), Ok(budget(10.0, 3600)));
        assert_eq!("10/31d".parse(), Ok(budget(10.0, 31 * 86_400)));
        assert_eq!("-0".parse(), Ok(budget(0.0, 86_400)));
        assert_eq!("off".parse(), Ok(Setting::Off));
    }

    #[test]
    fn bad_budgets_say_what_is_wrong() {
        for bad in [
            "", "-1", "lots", "inf", "NaN", "1e400", "/1d", "off/1d", "5 /1d",
        ] {
            let err = bad.parse::<Setting>().unwrap_err();
            assert!(err.contains("expected N[/PERIOD]"), "{bad:?}: {err}");
        }
        for bad in [
            "5/59", "5/59s", "5/32d", "5/1.5h", "5/", "5/1w", "5/0", "5/1d/2",
        ] {
            let err = bad.parse::<Setting>().unwrap_err();
            assert!(err.contains("must be from 60s to 31d"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_budget_reads_as_written() {
        let Ok(Setting::On(b)) = "500/1d".parse() else {
            panic!()
        };
        assert_eq!(b.to_string(), "500 per 1d");
        let Ok(Setting::On(b)) = "0.5/5400".parse() else {
            panic!()
        };
        assert_eq!(b.to_string(), "0.5 per 90m");
    }

    #[test]
    fn credits_read_rounded() {
        assert_eq!(credits(0.1 + 0.2), "0.3");
        assert_eq!(credits(500.0), "500");
        assert_eq!(credits(-0.0), "0");
        assert_eq!(credits(1e300), "1e300");
        assert_eq!(rounded(2.0000000001), 2.0);
        assert_eq!(rounded(0.125), 0.125);
    }
}
