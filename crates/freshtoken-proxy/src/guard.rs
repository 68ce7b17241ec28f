//! What keeps an upstream that refuses every token, or a token endpoint that refuses the
//! client, from turning each client request into a token request or a log line.
//!
//! - **401 storms are bounded.** After an upstream 401 the refused token is dropped and a new
//!   one fetched at most once per token, one request at a time (others that were refused the
//!   same token replay with the new one). When the upstream refuses that fresh token too, the
//!   proxy stops asking for tokens: 401s go to the clients as they are until a backoff passes
//!   (1 s, 2 s, 4 s … up to 60 s, judged on the proxy's clock). Any answer but a 401 to a
//!   request with a token ends the backoff.
//! - **Token failures are logged once per failure streak**, with the server's error, and
//!   once more (at info) when a token can be had again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use freshtoken::{Fingerprint, SharedClock, Token};

use freshtoken::internal::fmt_duration;
use freshtoken::internal::lock;
/// The pause after the first fresh token the upstream refused; it doubles with each further
/// one, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between token requests made because of 401s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The pause after `strikes` fresh tokens were refused in a row (`strikes` ≥ 1).
pub(crate) fn backoff(strikes: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << strikes.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// One proxy's 401 backoff and token-failure streak, shared by its serving threads.
pub(crate) struct Guard {
    clock: SharedClock,
    /// Fresh tokens refused in a row; 0 while the upstream accepts tokens. Read without the
    /// lock on every answer, so that the path of an accepted token takes none.
    strikes: AtomicU32,
    backoff: Mutex<Backoff>,
    /// One 401-driven refresh at a time, held until the upstream has judged the new token:
    /// whoever waits on it then sees the verdict instead of refreshing again.
    flight: tokio::sync::Mutex<()>,
    /// Whether the last token request failed.
    failing: AtomicBool,
}

#[derive(Default)]
struct Backoff {
    /// The last fresh token the upstream refused, counted once however many requests it
    /// was refused for.
    refused: Option<Fingerprint>,
    /// Until when a 401 does not lead to a token request.
    until: Option<SystemTime>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("strikes", &self.strikes.load(Ordering::Relaxed))
            .field("failing", &self.failing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The time on the proxy's clock.
    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// A guard judging its backoff on `clock`.
    pub(crate) fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            strikes: AtomicU32::new(0),
            backoff: Mutex::default(),
            flight: tokio::sync::Mutex::new(()),
            failing: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.backoff)
    }

    /// Whether a 401 must be passed on without a token request.
    pub(crate) fn backing_off(&self) -> bool {
        if self.strikes.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.state()
            .until
            .is_some_and(|until| self.clock.now() < until)
    }

    /// Waits for the right to refresh after a 401: one at a time, each keeping it until the
    /// upstream has answered the replay with its new token.
    pub(crate) async fn flight(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.flight.lock().await
    }

    /// The upstream answered a request with a token with something other than 401.
    pub(crate) fn accepted(&self) {
        if self.strikes.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.state();
        if self.strikes.swap(0, Ordering::Relaxed) != 0 {
            *state = Backoff::default();
            tracing::info!("the upstream accepts the token again; a 401 gets a new token again");
        }
    }

    /// The upstream refused `fresh`, a token got after a 401: no token requests for 401s
    /// until the next step of the backoff has passed.
    pub(crate) fn refused_fresh(&self, fresh: &Token) {
        let fingerprint = fresh.fingerprint();
        let mut state = self.state();
        if state.refused == Some(fingerprint) {
            return;
        }
        let strikes = self
            .strikes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let pause = backoff(strikes);
        state.refused = Some(fingerprint);
        state.until = Some(self.clock.now() + pause);
        tracing::warn!(
            token = %fingerprint,
            "the upstream refused a new token too (401); 401s go to the clients as they are, with no new token for {}",
            fmt_duration(pause)
        );
    }

    /// A token request failed: the first of a streak is logged, with why.
    pub(crate) fn token_failed(&self, error: &freshtoken::Error) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cannot get a token to forward with: {error}; clients get 503 until one can be had"
            );
        }
    }

    /// A token was had: ends a failure streak.
    pub(crate) fn token_ok(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("got a token again; forwarding");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_one_second_up_to_a_minute() {
        let steps: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
