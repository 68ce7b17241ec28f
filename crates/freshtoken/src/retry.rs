//! The one backoff of the crate: capped exponential steps with jitter, honouring
//! `Retry-After`, inside one overall deadline. The fetcher's retries, the failure note's
//! pause between refreshes and the wait for another process's store lock all draw their
//! delays from a [`RetryPolicy`]; a loop that keeps its own count uses a [`Backoff`].

use std::time::{Duration, SystemTime};

/// How hard to try, and how long to pause between tries.
///
/// The pause before retry `n` (0-based) is a step of `min(cap, base · 2ⁿ)`, scaled by a
/// draw from `[jitter_min, jitter_max]` so that many clients do not retry in one instant.
/// The default is the token endpoint's: full jitter (`[0, 1]`) over 500 ms … 10 s steps,
/// giving up after 60 s.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Give up once this much time has been spent (the first attempt included).
    pub deadline: Duration,
    /// The first step.
    pub base: Duration,
    /// No step is longer than this (unless the server's `Retry-After` says so).
    pub cap: Duration,
    /// The smallest share of a step that a pause lasts (0 for full jitter).
    pub jitter_min: f64,
    /// The largest share of a step that a pause lasts (1 to never exceed the step).
    pub jitter_max: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(500), Duration::from_secs(10))
            .with_deadline(Duration::from_secs(60))
    }
}

impl RetryPolicy {
    /// Steps from `base` doubling up to `cap`, full jitter, no deadline of its own (for
    /// loops that decide themselves when to stop).
    pub const fn exponential(base: Duration, cap: Duration) -> Self {
        Self {
            deadline: Duration::MAX,
            base,
            cap,
            jitter_min: 0.0,
            jitter_max: 1.0,
        }
    }

    /// The same policy with each pause drawn from `[min, max]` of its step.
    pub const fn with_jitter(mut self, min: f64, max: f64) -> Self {
        self.jitter_min = min;
        self.jitter_max = max;
        self
    }

    /// The step before retry `retry` (0-based), before jitter: `min(cap, base · 2^retry)`.
    pub fn step(&self, retry: u32) -> Duration {
        self.base
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The pause before retry `retry` (0-based) for a uniform draw `unit` ∈ [0, 1]: the
    /// step scaled to `jitter_min + (jitter_max − jitter_min) · unit`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let share = self.jitter_min + (self.jitter_max - self.jitter_min) * unit.clamp(0.0, 1.0);
        self.step(retry).mul_f64(share.max(0.0))
    }

    /// A counter of retries over this policy, for a loop that pauses between attempts.
    pub fn start(self) -> Backoff {
        Backoff {
            policy: self,
            retries: 0,
        }
    }

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

    /// The wait before retry number `retry` (0-based): the server's `Retry-After` if it
    /// sent one, else [`RetryPolicy::delay`].
    pub fn backoff(&self, retry: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| self.delay(retry, unit))
    }
}

/// Retries counted over a [`RetryPolicy`]: each [`next_delay`](Backoff::next_delay) is the
/// pause before one more retry, and [`reset`](Backoff::reset) starts over after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    retries: u32,
}

impl Backoff {
    /// The pause before the next retry, with a random draw for the jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// The pause before the next retry for the draw `unit` ∈ [0, 1] (tests pass their own).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let delay = self.policy.delay(self.retries, unit);
        self.retries = self.retries.saturating_add(1);
        delay
    }

    /// Starts over from the first step: the failures in a row ended.
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// Pauses handed out since the start or the last reset.
    pub fn retries(&self) -> u32 {
        self.retries
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
    fn jitter_bounds_and_a_backoff_that_resets() {
        let s = Duration::from_secs;
        let p = RetryPolicy::exponential(s(1), s(60)).with_jitter(0.8, 1.2);
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(800));
        assert_eq!(p.delay(2, 1.0), Duration::from_millis(4800));
        assert_eq!(p.delay(10, 0.5), s(60), "capped before jitter");
        let mut b = p.with_jitter(1.0, 1.0).start();
        let steps: Vec<u64> = (0..4).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8]);
        assert_eq!(b.retries(), 4);
        b.reset();
        assert_eq!(b.next_delay_with(0.3), s(1));
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
