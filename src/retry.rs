//! When to retry, and how long to wait first: the retry rules of the README's "Exit codes"
//! section, as pure functions, so that every rule is tested here rather than only end to end.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use crate::duration::{secs, secs_f64};

/// `--retries` and `--max-retry-wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub retries: u32,
    /// The longest single wait accepted, the server's or our own backoff.
    pub max_wait: Duration,
}

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The server answered with this status, and maybe asked for a wait, in seconds (see
    /// [`server_wait`]: possibly far longer than any `Duration`).
    Answered { status: u16, asked: Option<f64> },
    /// No response arrived; `retryable` when it failed before any response byte in a way
    /// worth another try (a connect error, a timeout).
    Failed { retryable: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This attempt's result is final.
    Done,
    /// Final too, but a retry was refused for this reason, which the error message gives.
    GiveUp(String),
    Retry(Duration),
}

/// What to do after attempt number `attempt` (counting from 0) ended in `outcome`. `jitter` is
/// a number in [0, 1), from [`jitter`] outside of tests.
pub fn decide(attempt: u32, outcome: Outcome, policy: &Policy, jitter: f64) -> Decision {
    let backoff = || backoff(attempt, jitter).min(policy.max_wait);
    let retries_left = attempt < policy.retries;
    match outcome {
        Outcome::Answered { status, .. } if !is_retryable_status(status) => Decision::Done,
        Outcome::Answered { .. } | Outcome::Failed { .. } if !retries_left => Decision::Done,
        Outcome::Failed { retryable: false } => Decision::Done,
        Outcome::Failed { retryable: true } => Decision::Retry(backoff()),
        Outcome::Answered {
            asked: Some(asked), ..
        } if asked > policy.max_wait.as_secs_f64() => Decision::GiveUp(format!(
            "the server asked to wait {}s, longer than --max-retry-wait {}s",
            secs_f64(asked),
            secs(policy.max_wait)
        )),
        // Not longer than `max_wait`, so a `Duration` holds it.
        Outcome::Answered { asked, .. } => {
            Decision::Retry(asked.map_or_else(backoff, Duration::from_secs_f64))
        }
    }
}

pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The wait the server asked for, in seconds: `retry-after-ms`, else `Retry-After` in seconds or
/// as an HTTP date. A wait too long for any clock (`99999999999999999999`, `1e300`, even one
/// past `f64`, held as `f64::MAX`) is kept: it is longer than any `--max-retry-wait`, never
/// "no wait asked". A negative or unparseable value counts as absent (the backoff applies).
pub fn server_wait(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<f64> {
    if let Some(ms) = retry_after_ms.and_then(non_negative_number) {
        return Some(ms / 1000.0);
    }
    let value = retry_after?.trim();
    non_negative_number(value).or_else(|| {
        let at = httpdate::parse_http_date(value).ok()?;
        Some(
            at.duration_since(now)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
        )
    })
}

/// A decimal number such as `3`, `1.5` or `1e300`, not negative; never `inf` or `NaN` as Rust
/// would read them.
fn non_negative_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let starts_well = s.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !starts_well || !s.chars().all(|c| c.is_ascii_digit() || ".eE+-".contains(c)) {
        return None;
    }
    let value = s.parse::<f64>().ok()?;
    Some(if value.is_infinite() { f64::MAX } else { value })
}

/// `min(8, 0.5 * 2^attempt)` seconds, scaled by a jitter in [0.5, 1.0) so that clients that
/// failed together do not retry together. `attempt` counts from 0.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = (0.5 * 2f64.powi(attempt.min(16) as i32)).min(8.0);
    Duration::from_secs_f64(base * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// A number in [0, 1) that differs between runs: std's hasher keys are random per process.
pub fn jitter() -> f64 {
    (RandomState::new().hash_one(SystemTime::now()) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        retries: 2,
        max_wait: Duration::from_secs(10),
    };

    fn answered(status: u16, asked: Option<u64>) -> Outcome {
        Outcome::Answered {
            status,
            asked: asked.map(|s| s as f64),
        }
    }

    #[test]
    fn only_retryable_failures_are_retried_and_only_while_retries_last() {
        let retry = |attempt, outcome| decide(attempt, outcome, &POLICY, 1.0);
        assert_eq!(retry(0, answered(200, None)), Decision::Done);
        assert_eq!(retry(0, answered(400, Some(1))), Decision::Done);
        assert_eq!(
            retry(0, answered(503, None)),
            Decision::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            retry(1, answered(429, None)),
            Decision::Retry(Duration::from_secs(1))
        );
        assert_eq!(retry(2, answered(429, None)), Decision::Done);
        assert_eq!(
            retry(0, Outcome::Failed { retryable: true }),
            Decision::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            retry(2, Outcome::Failed { retryable: true }),
            Decision::Done
        );
        assert_eq!(
            retry(0, Outcome::Failed { retryable: false }),
            Decision::Done
        );
    }

    #[test]
    fn the_servers_wait_is_taken_unless_longer_than_allowed() {
        let retry = |attempt, outcome| decide(attempt, outcome, &POLICY, 1.0);
        assert_eq!(
            retry(0, answered(429, Some(3))),
            Decision::Retry(Duration::from_secs(3))
        );
        assert_eq!(
            retry(0, answered(429, Some(0))),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            retry(0, answered(503, Some(11))),
            Decision::GiveUp(
                "the server asked to wait 11s, longer than --max-retry-wait 10s".into()
            )
        );
        // On the last attempt there is nothing to give up: the response is final anyway.
        assert_eq!(retry(2, answered(503, Some(11))), Decision::Done);
    }

    #[test]
    fn a_wait_too_long_for_any_clock_is_longer_than_allowed_not_absent() {
        let now = SystemTime::now();
        for (ms, header, expected) in [
            (None, "99999999999999999999", 1e20),
            (None, "1e300", 1e300),
            (Some("1e30"), "1", 1e27),
            (None, "1e400", f64::MAX),
        ] {
            let asked = server_wait(ms, Some(header), now);
            assert_eq!(asked, Some(expected), "{ms:?} {header}");
            let outcome = Outcome::Answered { status: 429, asked };
            assert!(
                matches!(decide(0, outcome, &POLICY, 1.0), Decision::GiveUp(_)),
                "{header}"
            );
        }
        let Decision::GiveUp(why) = decide(
            0,
            Outcome::Answered {
                status: 503,
                asked: Some(1e300),
            },
            &POLICY,
            1.0,
        ) else {
            panic!("not given up")
        };
        assert_eq!(
            why,
            "the server asked to wait 1e300s, longer than --max-retry-wait 10s"
        );
    }

    #[test]
    fn negative_or_unparseable_waits_count_as_absent() {
        let now = SystemTime::now();
        for bad in [
            "-4", "-1e300", "soon", "inf", "NaN", "infinity", "", "+5", "0x10",
        ] {
            assert_eq!(server_wait(None, Some(bad), now), None, "{bad:?}");
            assert_eq!(server_wait(Some(bad), None, now), None, "ms {bad:?}");
        }
        assert_eq!(
            decide(0, answered(503, None), &POLICY, 1.0),
            Decision::Retry(Duration::from_millis(500)),
            "the backoff applies"
        );
    }

    #[test]
    fn our_own_backoff_never_exceeds_the_longest_wait() {
        let policy = Policy {
            retries: 9,
            max_wait: Duration::from_secs(2),
        };
        assert_eq!(
            decide(6, answered(502, None), &policy, 1.0),
            Decision::Retry(Duration::from_secs(2))
        );
    }

    #[test]
    fn retryable_statuses_are_exactly_the_spec_list() {
        let retryable: Vec<u16> = (100..600).filter(|&s| is_retryable_status(s)).collect();
        assert_eq!(retryable, [429, 500, 502, 503, 504]);
    }

    #[test]
    fn retry_after_ms_beats_retry_after() {
        let now = SystemTime::now();
        assert_eq!(server_wait(Some("250"), Some("9"), now), Some(0.25));
        assert_eq!(server_wait(None, Some("3"), now), Some(3.0));
        assert_eq!(server_wait(None, Some(" 1.5 "), now), Some(1.5));
        assert_eq!(server_wait(Some("junk"), Some("2"), now), Some(2.0));
        assert_eq!(server_wait(Some("-5"), Some("2"), now), Some(2.0));
        assert_eq!(server_wait(None, Some("soon"), now), None);
        assert_eq!(server_wait(None, None, now), None);
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            server_wait(None, Some("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(30.0)
        );
        assert_eq!(
            server_wait(None, Some("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(0.0)
        );
    }

    #[test]
    fn backoff_doubles_up_to_eight_seconds_with_jitter() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(60, 1.0), Duration::from_secs(8));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
