//! One profile's keeper: refreshes ahead of expiry on its own schedule (before anyone asks),
//! mirrors the token into the profile's sinks, and takes it out of them once it expires.

use std::sync::{Arc, Mutex};

use freshtoken::internal::lock;
use std::time::{Duration, SystemTime};

use freshtoken::{CachedSource, Fingerprint, RetryPolicy, SharedClock, Want};

use crate::metrics::ProfileMetrics;
use crate::sink::Sink;
use tracing::Instrument;

/// The pause after a failed refresh: 1 s, doubling up to a minute, each drawn within ±20 %
/// of that (never near zero: a keeper does not hammer a failing server). The deadline is
/// unused: a keeper never gives up.
const BACKOFF: RetryPolicy =
    RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.8, 1.2);

/// Everything a keeper needs.
pub(crate) struct Keeper {
    pub(crate) profile: String,
    pub(crate) source: CachedSource,
    pub(crate) sinks: Arc<Vec<Sink>>,
    pub(crate) metrics: Arc<ProfileMetrics>,
    pub(crate) clock: SharedClock,
    pub(crate) held: Arc<SinksHeld>,
    /// Bumped after each pass that wrote or cleared the sinks, and after each refresh
    /// attempt (see `Handle::changes`).
    pub(crate) events: Arc<tokio::sync::watch::Sender<u64>>,
    /// Changes when the clock may have jumped (see `Handle::recheck`).
    pub(crate) wake: tokio::sync::watch::Receiver<u64>,
}

/// Until when every sink of a profile holds a valid token, as the keeper last wrote them:
/// what `/readyz` waits for, so that a job that waits for it finds its files written. A
/// refresh does not clear it (the sinks keep the older token, still valid, until the new one
/// is written), so readiness does not flicker at each refresh.
#[derive(Debug, Default)]
pub(crate) struct SinksHeld(Mutex<Option<SystemTime>>);

impl SinksHeld {
    /// When the token in the sinks expires; `None` before the first write and once cleared.
    pub(crate) fn until(&self) -> Option<SystemTime> {
        *lock(&self.0)
    }

    fn set(&self, until: Option<SystemTime>) {
        *lock(&self.0) = until;
    }
}

impl Keeper {
    /// Runs until aborted.
    pub(crate) async fn run(mut self) {
        for sink in self.sinks.iter() {
            sink.sweep();
        }
        let mut changes = self.source.subscribe();
        // What the sinks hold: a token's fingerprint, `None` for cleared, or unknown at start.
        let mut shown: Option<Option<Fingerprint>> = None;
        let mut failures = 0u32;
        let mut retry_at: Option<SystemTime> = None;
        // The error last logged at WARN in this failure streak.
        let mut warned: Option<String> = None;
        loop {
            changes.borrow_and_update();
            self.sync_sinks(&mut shown);
            let now = self.clock.now();
            let current = self.source.peek_valid();
            let fresh_until = self.source.next_refresh().filter(|_| current.is_some());
            let wake = match (fresh_until, retry_at) {
                (Some(stale_at), _) if stale_at > now => {
                    failures = 0;
                    retry_at = None;
                    Some(stale_at)
                }
                (_, Some(at)) if at > now => {
                    // Backing off; still wake at expiry to take the token out of the sinks.
                    let expiry = current.as_ref().map(|t| t.expires_at());
                    Some(expiry.map_or(at, |e| e.min(at)))
                }
                _ => None,
            };
            if let Some(wake) = wake {
                let wait = wake.duration_since(now).unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                    Ok(()) = self.wake.changed() => {}
                }
                continue;
            }
            // Stale, expired or missing: refresh now. A stale token is kept if this fails.
            // What the library logs during the refresh names the profile too.
            let _ = self
                .source
                .token_with(Want::one_shot(Duration::ZERO))
                .instrument(tracing::info_span!("refresh", profile = %self.profile))
                .await;
            let refreshed = self
                .source
                .next_refresh()
                .is_some_and(|stale_at| stale_at > self.clock.now());
            if refreshed {
                if failures > 0 {
                    tracing::info!(profile = %self.profile, "got a new token after {failures} failed tries");
                } else {
                    self.log_refreshed();
                }
                failures = 0;
                retry_at = None;
                warned = None;
            } else {
                failures = failures.saturating_add(1);
                let pause = BACKOFF.delay(failures.saturating_sub(1), rand::random::<f64>());
                retry_at = Some(self.clock.now() + pause);
                self.log_failure(&mut warned, pause);
            }
            self.bump();
        }
    }

    /// A refresh that worked at the first try: once per token lifetime, what it got (its
    /// fingerprint, never the token) and for how long.
    fn log_refreshed(&self) {
        if let Some(token) = self.source.peek_valid() {
            let left = token.remaining(self.clock.now());
            tracing::info!(
                profile = %self.profile,
                token = %token.fingerprint(),
                "refreshed the token; valid for {}",
                freshtoken::internal::fmt_duration(left)
            );
        }
    }

    /// A failed refresh: at WARN, with the server's error, once per failure streak (and
    /// again if the error changes); the further tries of the streak at info.
    fn log_failure(&self, warned: &mut Option<String>, pause: Duration) {
        let error = self
            .metrics
            .last_error()
            .unwrap_or_else(|| "no new token".into());
        let next = freshtoken::internal::fmt_duration(pause);
        if warned.as_deref() == Some(error.as_str()) {
            tracing::info!(profile = %self.profile, "still no new token: {error}; next try in {next}");
        } else {
            tracing::warn!(profile = %self.profile, "could not refresh the token: {error}; next try in {next}");
            *warned = Some(error);
        }
    }

    /// Writes the current token to every sink if it changed, or clears them once no valid
    /// token is left.
    fn sync_sinks(&self, shown: &mut Option<Option<Fingerprint>>) {
        let now = self.clock.now();
        let current = self.source.peek_valid();
        let want = current.as_ref().map(|t| t.fingerprint());
        if shown.as_ref() == Some(&want) {
            return;
        }
        match &current {
            Some(token) => {
                let mut all = true;
                for sink in self.sinks.iter() {
                    let result = sink.write(token, now);
                    self.metrics.sink_written(result.is_ok());
                    if let Err(e) = result {
                        all = false;
                        tracing::error!(profile = %self.profile, "cannot write sink {}: {e}", sink.path().display());
                    }
                }
                // A sink that could not be written keeps what it held before, if anything.
                if all && !self.sinks.is_empty() {
                    tracing::info!(
                        profile = %self.profile,
                        token = %token.fingerprint(),
                        "wrote {} sink(s)",
                        self.sinks.len()
                    );
                }
                if all {
                    self.held.set(Some(token.expires_at()));
                }
            }
            None => {
                self.held.set(None);
                if !self.sinks.is_empty() {
                    // At start there is simply no token yet: clear quietly.
                    if shown.is_some() {
                        tracing::error!(
                            profile = %self.profile,
                            "the token expired with no new one ({}); sinks cleared",
                            self.metrics.last_error().unwrap_or_else(|| "no refresh yet".into())
                        );
                        self.metrics.sink_cleared();
                    }
                    clear(&self.profile, &self.sinks);
                }
            }
        }
        *shown = Some(want);
        self.bump();
    }

    /// Tells whoever watches `Handle::changes` that this keeper did something.
    fn bump(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Removes or empties `sinks` (as each is configured), logging what cannot be.
pub(crate) fn clear(profile: &str, sinks: &[Sink]) {
    for sink in sinks {
        if let Err(e) = sink.clear() {
            tracing::error!(%profile, "cannot clear sink {}: {e}", sink.path().display());
        }
    }
}
