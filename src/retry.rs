//! When to retry, and how long to wait first (SPEC section 5).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The wait the server asked for: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP
/// date. Unparseable values are ignored (the backoff applies), negative ones mean now.
pub fn server_wait(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    let secs = |s: &str, scale: f64| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .and_then(|v| Duration::try_from_secs_f64((v * scale).max(0.0)).ok())
    };
    if let Some(wait) = retry_after_ms.and_then(|ms| secs(ms, 0.001)) {
        return Some(wait);
    }
    let value = retry_after?;
    secs(value, 1.0).or_else(|| {
        let at = httpdate::parse_http_date(value.trim()).ok()?;
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    })
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

    #[test]
    fn retryable_statuses_are_exactly_the_spec_list() {
        let retryable: Vec<u16> = (100..600).filter(|&s| is_retryable_status(s)).collect();
        assert_eq!(retryable, [429, 500, 502, 503, 504]);
    }

    #[test]
    fn retry_after_ms_beats_retry_after() {
        let now = SystemTime::now();
        assert_eq!(
            server_wait(Some("250"), Some("9"), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            server_wait(None, Some("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            server_wait(None, Some(" 1.5 "), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            server_wait(Some("junk"), Some("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(server_wait(None, Some("-4"), now), Some(Duration::ZERO));
        assert_eq!(server_wait(None, Some("soon"), now), None);
        assert_eq!(server_wait(None, None, now), None);
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            server_wait(None, Some("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            server_wait(None, Some("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
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
