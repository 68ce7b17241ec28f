//! The refresh decision: a pure function of a token's times, the clock and the policy.
//!
//! Kept free of I/O and state so that every case is one row of a table test.

use std::time::{Duration, SystemTime};

use crate::token::Token;

/// When to refresh. The defaults follow the product contract (docs/RELIABILITY.md): refresh in the background once 75 % of the
/// lifetime has passed (earlier by a random jitter of up to 5 % of the lifetime, so a fleet
/// does not refresh in one instant); block for a new token only when less than
/// `max(min_ttl, min(30 s, 10 % of the lifetime))` is left.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Fraction of the lifetime after which a token is stale (0 < x ≤ 1).
    pub stale_fraction: f64,
    /// Largest jitter, as a fraction of the lifetime, subtracted from `stale_fraction`.
    pub jitter_fraction: f64,
    /// Upper bound of the safety margin below which callers must wait for a new token.
    pub margin_cap: Duration,
    /// The safety margin as a fraction of the lifetime (bounded by `margin_cap`).
    pub margin_fraction: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            stale_fraction: 0.75,
            jitter_fraction: 0.05,
            margin_cap: Duration::from_secs(30),
            margin_fraction: 0.10,
        }
    }
}

impl RefreshPolicy {
    /// The same policy with the largest jitter set to `fraction` of the lifetime; 0 makes
    /// the refresh moments exact, which tests of those moments want.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter_fraction = fraction;
        self
    }

    /// Checks the fractions, so that a bad config value fails at start, not at refresh time.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(self.stale_fraction) || self.stale_fraction == 0.0 {
            return Err(format!(
                "refresh_at must be a fraction above 0 and at most 1, not {}",
                self.stale_fraction
            ));
        }
        if !unit(self.jitter_fraction) || self.jitter_fraction > self.stale_fraction {
            return Err(format!(
                "refresh_jitter must be a fraction from 0 to refresh_at ({}), not {}",
                self.stale_fraction, self.jitter_fraction
            ));
        }
        if !unit(self.margin_fraction) {
            return Err(format!(
                "refresh_margin_fraction must be a fraction from 0 to 1, not {}",
                self.margin_fraction
            ));
        }
        Ok(())
    }

    /// The safety margin for a token of this lifetime and a caller that needs `min_ttl`.
    pub fn must_refresh_margin(&self, lifetime: Duration, min_ttl: Duration) -> Duration {
        let proportional = lifetime.mul_f64(self.margin_fraction).min(self.margin_cap);
        proportional.max(min_ttl)
    }

    /// The moments that matter for `token`, computed once so that the hot path only compares
    /// times. `jitter` is a draw from `[0, 1)` made once per token.
    pub fn thresholds(&self, token: &Token, jitter: f64) -> Thresholds {
        let lifetime = token.lifetime();
        let fraction =
            (self.stale_fraction - self.jitter_fraction * jitter.clamp(0.0, 1.0)).clamp(0.0, 1.0);
        let margin = self.must_refresh_margin(lifetime, Duration::ZERO);
        Thresholds {
            trusted_from: token.trusted_from(),
            stale_at: token.received_at() + lifetime.mul_f64(fraction),
            must_refresh_at: token
                .expires_at()
                .checked_sub(margin)
                .unwrap_or(token.received_at()),
            expires_at: token.expires_at(),
        }
    }

    /// Decides what a caller that needs `min_ttl` of validity should do with `token` at `now`.
    pub fn assess(
        &self,
        token: &Token,
        now: SystemTime,
        jitter: f64,
        min_ttl: Duration,
    ) -> Freshness {
        self.thresholds(token, jitter).assess(now, min_ttl)
    }
}

/// A token's refresh moments under a policy (see [`RefreshPolicy::thresholds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Thresholds {
    /// Before this, the token is not trusted: it arrived "later" than now, so the clock went
    /// back (see [`Token::is_valid_at`]).
    pub trusted_from: SystemTime,
    /// From here on, refresh in the background.
    pub stale_at: SystemTime,
    /// From here on, callers wait for a new token (the policy's own margin; a caller's
    /// `min_ttl` can move this earlier).
    pub must_refresh_at: SystemTime,
    /// From here on, the token is never served.
    pub expires_at: SystemTime,
}

impl Thresholds {
    /// What a caller that needs `min_ttl` should do at `now`.
    #[inline]
    pub fn assess(&self, now: SystemTime, min_ttl: Duration) -> Freshness {
        if now >= self.expires_at || now < self.trusted_from {
            return Freshness::Expired;
        }
        if now > self.must_refresh_at
            || (!min_ttl.is_zero()
                && self
                    .expires_at
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    < min_ttl)
        {
            return Freshness::MustRefresh;
        }
        if now >= self.stale_at {
            return Freshness::Stale;
        }
        Freshness::Fresh
    }
}

/// The outcome of [`RefreshPolicy::assess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Serve it; nothing to do.
    Fresh,
    /// Serve it, and refresh in the background (one-shot commands refresh now, falling back
    /// to this token if that fails).
    Stale,
    /// Still valid, but too close to expiry for this caller: wait for a new token.
    MustRefresh,
    /// Never served.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::ExpirySource;
    use secrecy::SecretString;
    use std::time::UNIX_EPOCH;

    fn token(lifetime: Duration) -> Token {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Token::new(
            SecretString::from("t".to_owned()),
            at,
            at + lifetime,
            ExpirySource::ExpiresIn,
        )
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn table() {
        use Freshness::*;
        let p = RefreshPolicy::default();
        // (lifetime, elapsed, jitter draw, min_ttl, expected)
        let rows: &[(Duration, Duration, f64, Duration, Freshness)] = &[
            // One hour, the Genesys Cloud case.
            (S(3600), S(0), 0.0, S(0), Fresh),
            (S(3600), S(2699), 0.0, S(0), Fresh),
            (S(3600), S(2700), 0.0, S(0), Stale),  // 75 %
            (S(3600), S(2525), 0.99, S(0), Stale), // 75 % - 4.95 % jitter: 2521.8 s
            (S(3600), S(2500), 0.99, S(0), Fresh),
            (S(3600), S(3569), 0.0, S(0), Stale), // 31 s left: margin is min(30, 360) = 30
            (S(3600), S(3571), 0.0, S(0), MustRefresh), // 29 s left
            (S(3600), S(3600), 0.0, S(0), Expired),
            (S(3600), S(4000), 0.0, S(0), Expired),
            // A caller's min_ttl raises the margin: 10 minutes left, 15 wanted.
            (S(3600), S(3000), 0.0, S(900), MustRefresh),
            (S(3600), S(1000), 0.0, S(900), Fresh),
            // A min_ttl longer than the lifetime can never be met by this token.
            (S(3600), S(0), 0.0, S(7200), MustRefresh),
            // Three-second test tokens: margin is 10 % = 300 ms, stale at 2.25 s.
            (S(3), MS(2000), 0.0, S(0), Fresh),
            (S(3), MS(2250), 0.0, S(0), Stale),
            (S(3), MS(2699), 0.0, S(0), Stale),
            (S(3), MS(2701), 0.0, S(0), MustRefresh),
            (S(3), MS(3000), 0.0, S(0), Expired),
            // A token born expired.
            (S(0), S(0), 0.0, S(0), Expired),
        ];
        // The clock went back: a token that arrives "after" now is not trusted, beyond the
        // tolerance for clocks of a fleet that disagree a little.
        let t = token(S(3600));
        let tolerance = crate::token::CLOCK_TOLERANCE;
        assert_eq!(p.assess(&t, t.received_at() - tolerance, 0.0, S(0)), Fresh);
        assert_eq!(
            p.assess(&t, t.received_at() - tolerance - MS(1), 0.0, S(0)),
            Expired
        );
        for (i, &(lifetime, elapsed, jitter, min_ttl, want)) in rows.iter().enumerate() {
            let t = token(lifetime);
            let got = p.assess(&t, t.received_at() + elapsed, jitter, min_ttl);
            assert_eq!(
                got, want,
                "row {i}: lifetime {lifetime:?} elapsed {elapsed:?} jitter {jitter} min_ttl {min_ttl:?}"
            );
        }
    }

    #[test]
    fn custom_policy_moves_the_thresholds() {
        let p = RefreshPolicy {
            stale_fraction: 0.5,
            jitter_fraction: 0.0,
            margin_cap: S(5),
            margin_fraction: 0.5,
        };
        let t = token(S(100));
        let at = |s| t.received_at() + S(s);
        assert_eq!(p.assess(&t, at(49), 0.7, S(0)), Freshness::Fresh);
        assert_eq!(p.assess(&t, at(50), 0.7, S(0)), Freshness::Stale);
        assert_eq!(p.assess(&t, at(94), 0.7, S(0)), Freshness::Stale);
        assert_eq!(p.assess(&t, at(96), 0.7, S(0)), Freshness::MustRefresh);
    }

    #[test]
    fn validation_names_the_bad_value() {
        let mut p = RefreshPolicy::default();
        assert!(p.validate().is_ok());
        p.stale_fraction = 1.5;
        assert!(p.validate().unwrap_err().contains("refresh_at"));
        p = RefreshPolicy {
            jitter_fraction: 0.9,
            ..RefreshPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("refresh_jitter"));
        p = RefreshPolicy {
            margin_fraction: f64::NAN,
            ..RefreshPolicy::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .contains("refresh_margin_fraction")
        );
    }
}
