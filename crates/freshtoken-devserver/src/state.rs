//! What a dev-server remembers: clients, issued tokens, fault switches, counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use freshtoken::SharedClock;
use serde::Serialize;

use crate::{Config, Faults};

/// Counters served at `/__stats`.
#[derive(Debug, Default)]
pub struct Counters {
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    token_errors: AtomicU64,
    api_calls: AtomicU64,
    api_ok: AtomicU64,
    api_401: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Every request to the token endpoint, whatever its answer.
    pub token_requests: u64,
    /// Tokens handed out.
    pub tokens_issued: u64,
    /// Token requests answered with an error (faults included).
    pub token_errors: u64,
    /// Requests to `/api/...`.
    pub api_calls: u64,
    /// `/api/...` requests that were let through.
    pub api_ok: u64,
    /// `/api/...` requests answered 401.
    pub api_401: u64,
}

/// A token this server issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Whom it was issued to.
    pub client_id: String,
    /// When it stops working, on the server's clock.
    pub expires_at: SystemTime,
    /// The scope granted.
    pub scope: Option<String>,
}

/// The shared state of one dev-server.
#[derive(Debug)]
pub struct State {
    pub(crate) ttl: Duration,
    pub(crate) clients: HashMap<String, String>,
    pub(crate) clock: SharedClock,
    tokens: Mutex<HashMap<String, Issued>>,
    faults: Mutex<Faults>,
    pub(crate) counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// State for `config`.
    pub fn new(config: Config) -> Self {
        Self {
            ttl: config.ttl,
            clients: config.clients.into_iter().collect(),
            clock: config.clock,
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(config.faults),
            counters: Counters::default(),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            token_requests: get(&c.token_requests),
            tokens_issued: get(&c.tokens_issued),
            token_errors: get(&c.token_errors),
            api_calls: get(&c.api_calls),
            api_ok: get(&c.api_ok),
            api_401: get(&c.api_401),
        }
    }

    /// The fault switches now.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Takes one from `outage_next`, if any is left; true when this request must fail.
    pub(crate) fn take_outage(&self) -> bool {
        let mut f = lock(&self.faults);
        if f.outage {
            return true;
        }
        if f.outage_next > 0 {
            f.outage_next -= 1;
            return true;
        }
        false
    }

    /// Makes every issued token invalid at once (as a revocation would).
    pub fn revoke_all(&self) -> usize {
        let mut tokens = lock(&self.tokens);
        let n = tokens.len();
        tokens.clear();
        n
    }

    /// Makes one token invalid; true if it was known.
    pub fn revoke(&self, token: &str) -> bool {
        lock(&self.tokens).remove(token).is_some()
    }

    pub(crate) fn issue(&self, client_id: &str, scope: Option<String>) -> (String, Duration) {
        let token = format!("dev-{:032x}", rand::random::<u128>());
        let now = self.clock.now();
        let mut tokens = lock(&self.tokens);
        // Forget long-expired tokens so a long run does not grow without bound.
        tokens.retain(|_, t| t.expires_at + Duration::from_secs(60) > now);
        tokens.insert(
            token.clone(),
            Issued {
                client_id: client_id.to_owned(),
                expires_at: now + self.ttl,
                scope,
            },
        );
        (token, self.ttl)
    }

    /// The issued token, if it is known and not expired on the server's clock.
    pub fn check(&self, token: &str) -> Option<Issued> {
        let now = self.clock.now();
        lock(&self.tokens)
            .get(token)
            .filter(|t| t.expires_at > now)
            .cloned()
    }

    pub(crate) fn count(&self, which: impl Fn(&Counters) -> &AtomicU64) {
        which(&self.counters).fetch_add(1, Ordering::SeqCst);
    }
}

impl Counters {
    pub(crate) fn token_requests(&self) -> &AtomicU64 {
        &self.token_requests
    }
    pub(crate) fn tokens_issued(&self) -> &AtomicU64 {
        &self.tokens_issued
    }
    pub(crate) fn token_errors(&self) -> &AtomicU64 {
        &self.token_errors
    }
    pub(crate) fn api_calls(&self) -> &AtomicU64 {
        &self.api_calls
    }
    pub(crate) fn api_ok(&self) -> &AtomicU64 {
        &self.api_ok
    }
    pub(crate) fn api_401(&self) -> &AtomicU64 {
        &self.api_401
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::ManualClock;
    use std::sync::Arc;

    #[test]
    fn tokens_expire_on_the_servers_clock_and_can_be_revoked() {
        let clock = ManualClock::starting_now();
        let state = State::new(Config {
            ttl: Duration::from_secs(3),
            clock: Arc::new(clock.clone()),
            ..Config::default()
        });
        let (a, _) = state.issue("c", None);
        let (b, _) = state.issue("c", Some("s".into()));
        assert_eq!(state.check(&a).unwrap().client_id, "c");
        clock.advance(Duration::from_millis(2999));
        assert!(state.check(&a).is_some());
        clock.advance(Duration::from_millis(1));
        assert!(state.check(&a).is_none(), "expired exactly at ttl");
        assert!(state.check("dev-unknown").is_none());
        let (c, _) = state.issue("c", None);
        assert!(state.revoke(&c));
        assert!(state.check(&c).is_none());
        assert!(!state.revoke(&b) || state.check(&b).is_none());
    }
}
