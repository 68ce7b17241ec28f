//! Backoff for the token endpoint: capped exponential with full jitter, honouring
//! `Retry-After`, inside one overall deadline.

use std::time::{Duration, SystemTime};

/// How hard to try before giving up on the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Give up once this much time has been spent (the first attempt included).
    pub deadline: Duration,
    /// The first backoff's upper bound.
    pub base: Duration,
    /// No single backoff is longer than this (unless the server's `Retry-After` says so).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The same policy, giving up after `deadline` (the first attempt included).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self {
            deadline: Duration::ZERO,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based): a uniform draw `unit` ∈ [0, 1) over
    /// `[0, min(cap, base · 2^retry)]` ("full jitter"), or the server's `Retry-After`.
    pub fn backoff(&self, retry: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after;
        }
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// The longest wait a server's `Retry-After` is believed for, in either form.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Reads `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3), relative to `now`,
/// at most a day.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy::default();
        let ms = Duration::from_millis;
        assert_eq!(p.backoff(0, 0.999_999, None).as_millis(), 499);
        assert_eq!(p.backoff(0, 0.0, None), Duration::ZERO);
        assert_eq!(p.backoff(1, 0.5, None), ms(500));
        assert_eq!(p.backoff(3, 0.5, None), ms(2000));
        assert_eq!(p.backoff(5, 1.0, None), Duration::from_secs(10));
        assert_eq!(p.backoff(40, 1.0, None), Duration::from_secs(10));
        assert_eq!(p.backoff(u32::MAX, 1.0, None), Duration::from_secs(10));
        assert_eq!(
            p.backoff(2, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let rows: &[(&str, Option<u64>)] = &[
            ("3", Some(3)),
            (" 120 ", Some(120)),
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(30)),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(0)),
            ("99999999999", Some(24 * 3600)),
            // Found by fuzzing (fuzz/fuzz_targets/retry_after.rs): a date past the cap
            // asked for 4 000 years.
            ("Wed, 21 Oct 6240 07:28:00 GMT", Some(24 * 3600)),
            ("Thu, 22 Oct 2015 07:28:00 GMT", Some(24 * 3600)),
            ("-1", None),
            ("soon", None),
            ("", None),
        ];
        for (value, want) in rows {
            assert_eq!(
                parse_retry_after(value, now).map(|d| d.as_secs()),
                *want,
                "{value:?}"
            );
        }
    }
}
