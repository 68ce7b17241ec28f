//! The cached token source: one valid token for many callers, refreshed ahead of expiry.
//!
//! - The hit path loads an atomic pointer and compares two times: no lock, no allocation.
//! - Misses are single-flight: callers queue on one async mutex, and whoever gets it second
//!   finds the first one's token already there.
//! - A stale token is served while one background task refreshes it.
//! - A failed refresh keeps serving the current token while it is valid, never after.
//! - With a shared [`TokenStore`], the store's lock is taken and the store re-read before
//!   fetching, so that many processes (or machines) make one request.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use secrecy::SecretString;

use crate::clock::{SharedClock, SystemClock, unix_millis};
use crate::error::{Error, Result};
use crate::fetch::{Fetch, fmt_duration};
use crate::policy::{Freshness, RefreshPolicy, Thresholds};
use crate::request::CacheKey;
use crate::store::TokenStore;
use crate::token::{ExpirySource, Token};

/// Longest a caller that holds a still-usable token waits for its refresh before using it.
pub const FALLBACK_WAIT: Duration = Duration::from_secs(10);

/// What a caller needs from the token it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// The token must stay valid at least this long.
    pub min_ttl: Duration,
    /// The caller is a one-shot process (`get`, `exec`) that cannot refresh in the
    /// background: a stale token is refreshed now, falling back to it if that fails.
    pub one_shot: bool,
}

impl Want {
    /// A long-running caller that needs the token valid for `min_ttl`.
    pub fn min_ttl(min_ttl: Duration) -> Self {
        Self {
            min_ttl,
            one_shot: false,
        }
    }

    /// A one-shot caller that needs the token valid for `min_ttl`.
    pub fn one_shot(min_ttl: Duration) -> Self {
        Self {
            min_ttl,
            one_shot: true,
        }
    }
}

/// A token with its refresh moments, as held by the source.
struct Entry {
    token: Token,
    thresholds: Thresholds,
}

impl Entry {
    fn new(token: Token, policy: &RefreshPolicy) -> Self {
        let thresholds = policy.thresholds(&token, rand::random::<f64>());
        Self { token, thresholds }
    }

    /// The placeholder before the first token: expired, so it is never served.
    fn empty() -> Self {
        let token = Token::new(
            SecretString::from(String::new()),
            UNIX_EPOCH,
            UNIX_EPOCH,
            ExpirySource::Default,
        );
        let thresholds = Thresholds {
            stale_at: UNIX_EPOCH,
            must_refresh_at: UNIX_EPOCH,
            expires_at: UNIX_EPOCH,
        };
        Self { token, thresholds }
    }
}

/// A token handed out by [`CachedSource::token`]. `Debug` is redacted.
///
/// On the hit path it borrows the cached entry through an `arc_swap` guard, so that handing
/// it out touches no reference count shared between threads; a clone holds an owned `Arc`.
pub struct AccessToken(Held);

enum Held {
    Borrowed(Guard<Arc<Entry>>),
    Owned(Arc<Entry>),
}

impl AccessToken {
    fn entry(&self) -> &Entry {
        match &self.0 {
            Held::Borrowed(guard) => guard,
            Held::Owned(arc) => arc,
        }
    }
}

impl Clone for AccessToken {
    fn clone(&self) -> Self {
        let arc = match &self.0 {
            Held::Borrowed(guard) => Arc::clone(guard),
            Held::Owned(arc) => Arc::clone(arc),
        };
        AccessToken(Held::Owned(arc))
    }
}

impl Deref for AccessToken {
    type Target = Token;
    fn deref(&self) -> &Token {
        &self.entry().token
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.entry().token.fmt(f)
    }
}

/// Hands out valid tokens, fetching and refreshing as needed. Clones share one cache.
#[derive(Clone)]
pub struct CachedSource {
    inner: Arc<Inner>,
}

struct Inner {
    fetcher: Arc<dyn Fetch>,
    store: Option<Arc<dyn TokenStore>>,
    key: CacheKey,
    clock: SharedClock,
    policy: RefreshPolicy,
    current: ArcSwap<Entry>,
    refresh: tokio::sync::Mutex<()>,
    background_running: AtomicBool,
    /// Unix ms before which no background refresh is tried again, after a failure.
    background_not_before: AtomicU64,
    background_failures: AtomicU32,
    fetches: AtomicU64,
    lock_wait: Duration,
    /// Bumped whenever the held token changes, for watchers such as the agent's sinks.
    changes: tokio::sync::watch::Sender<u64>,
}

impl fmt::Debug for CachedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSource")
            .field("fetcher", &self.inner.fetcher)
            .field("store", &self.inner.store)
            .field("key", &self.inner.key)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Configures a [`CachedSource`].
pub struct CachedSourceBuilder {
    fetcher: Arc<dyn Fetch>,
    store: Option<Arc<dyn TokenStore>>,
    key: Option<CacheKey>,
    clock: SharedClock,
    policy: RefreshPolicy,
    lock_wait: Duration,
}

/// How long a caller waits for another process's refresh (seen through the store's lock)
/// before fetching on its own: longer than one fetch with its retries can take.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(90);

impl CachedSourceBuilder {
    /// Bounds the wait for another process's refresh (default [`DEFAULT_LOCK_WAIT`]).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }
    /// Shares tokens through `store` under `key` (see [`crate::TokenRequest::cache_key`]).
    pub fn store(mut self, store: Arc<dyn TokenStore>, key: CacheKey) -> Self {
        self.store = Some(store);
        self.key = Some(key);
        self
    }

    /// Uses `clock` to judge expiry (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `policy` to decide when to refresh.
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The source.
    pub fn build(self) -> CachedSource {
        let key = self.key.unwrap_or_else(CacheKey::unnamed);
        CachedSource {
            inner: Arc::new(Inner {
                fetcher: self.fetcher,
                store: self.store,
                key,
                clock: self.clock,
                policy: self.policy,
                current: ArcSwap::from_pointee(Entry::empty()),
                refresh: tokio::sync::Mutex::new(()),
                background_running: AtomicBool::new(false),
                background_not_before: AtomicU64::new(0),
                background_failures: AtomicU32::new(0),
                fetches: AtomicU64::new(0),
                lock_wait: self.lock_wait,
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl CachedSource {
    /// Starts configuring a source that gets new tokens from `fetcher`.
    pub fn builder(fetcher: impl Fetch + 'static) -> CachedSourceBuilder {
        Self::builder_shared(Arc::new(fetcher))
    }

    /// Like [`CachedSource::builder`], for a fetcher that is already shared.
    pub fn builder_shared(fetcher: Arc<dyn Fetch>) -> CachedSourceBuilder {
        CachedSourceBuilder {
            fetcher,
            store: None,
            key: None,
            clock: Arc::new(SystemClock),
            policy: RefreshPolicy::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// A valid token, refreshed in the background once stale. Waits only when there is no
    /// token yet, or the one held is too close to expiry.
    pub async fn token(&self) -> Result<AccessToken> {
        self.token_with(Want::default()).await
    }

    /// A token that satisfies `want`.
    pub async fn token_with(&self, want: Want) -> Result<AccessToken> {
        let entry = self.inner.current.load();
        match entry
            .thresholds
            .assess(self.inner.clock.now(), want.min_ttl)
        {
            Freshness::Fresh => return Ok(AccessToken(Held::Borrowed(entry))),
            Freshness::Stale if !want.one_shot => {
                self.spawn_background_refresh();
                return Ok(AccessToken(Held::Borrowed(entry)));
            }
            Freshness::Stale | Freshness::MustRefresh | Freshness::Expired => {}
        }
        // Boxed, so that the hit path's future stays small: it is created and moved on every
        // call, and carrying the refresh machinery inline cost ~10 ns a lookup.
        Box::pin(self.refresh_for(want, entry)).await
    }

    /// The slow path of [`CachedSource::token_with`].
    async fn refresh_for(&self, want: Want, entry: Guard<Arc<Entry>>) -> Result<AccessToken> {
        // With a token that still serves this caller as a fallback, wait for the refresh only
        // a bounded time: a slow or retrying token endpoint must not stall a caller that
        // already holds something usable.
        let fallback_wait = entry
            .token
            .remaining(self.inner.clock.now())
            .checked_sub(want.min_ttl)
            .filter(|spare| !spare.is_zero())
            .map(|spare| spare.min(FALLBACK_WAIT));
        drop(entry);
        let refresh = self.inner.refresh(want);
        let result = match fallback_wait {
            Some(wait) => tokio::time::timeout(wait, refresh)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Transport(format!(
                        "no new token within {}",
                        fmt_duration(wait)
                    )))
                }),
            None => refresh.await,
        };
        match result {
            Ok(entry) => Ok(AccessToken(Held::Owned(entry))),
            Err(e @ Error::LifetimeTooShort { .. }) => Err(e),
            Err(e) => {
                // The refresh failed: the current token still serves if it is valid for as
                // long as the caller needs. An expired one never does.
                let current = self.inner.current.load_full();
                let left = current.token.remaining(self.inner.clock.now());
                if left.is_zero() || left < want.min_ttl {
                    return Err(e);
                }
                tracing::warn!(
                    "could not refresh the token; using the current one, valid for {} more: {e}",
                    fmt_duration(left)
                );
                Ok(AccessToken(Held::Owned(current)))
            }
        }
    }

    /// The current token if it is fresh, without waiting or starting a refresh; `None`
    /// means "call [`CachedSource::token`]". For synchronous code and health checks.
    pub fn cached(&self) -> Option<AccessToken> {
        let entry = self.inner.current.load();
        match entry
            .thresholds
            .assess(self.inner.clock.now(), Duration::ZERO)
        {
            Freshness::Fresh => Some(AccessToken(Held::Borrowed(entry))),
            _ => None,
        }
    }

    /// The token held now if it is still valid, fresh or stale, without waiting or starting
    /// a refresh: what a sink may show, never an expired token.
    pub fn current(&self) -> Option<AccessToken> {
        let entry = self.inner.current.load();
        entry
            .token
            .is_valid_at(self.inner.clock.now())
            .then(|| AccessToken(Held::Borrowed(entry)))
    }

    /// When the held token turns stale (refresh-ahead starts, jitter included); `None`
    /// before the first token. A keeper that refreshes on its own schedule sleeps until then.
    pub fn next_refresh(&self) -> Option<SystemTime> {
        let entry = self.inner.current.load();
        (!entry.token.expose_secret().is_empty()).then_some(entry.thresholds.stale_at)
    }

    /// A receiver that sees a change each time the held token is replaced or dropped, so
    /// that whoever mirrors the token elsewhere (files, metrics) need not poll.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Drops the cached token, but only if it is still `token`: after a 401, a caller must
    /// not throw away a newer token that another caller already fetched.
    pub async fn invalidate(&self, token: &Token) -> Result<bool> {
        let current = self.inner.current.load_full();
        if !current.token.same_token(token) {
            return Ok(false);
        }
        let previous = self
            .inner
            .current
            .compare_and_swap(&current, Arc::new(Entry::empty()));
        let dropped = Arc::ptr_eq(&previous, &current);
        if dropped {
            self.inner.changed();
        }
        if let Some(store) = &self.inner.store {
            let stored = store.load(&self.inner.key).await?;
            if stored.is_some_and(|s| s.same_token(token)) {
                store.remove(&self.inner.key).await?;
            }
        }
        if dropped {
            tracing::info!(token = %token.fingerprint(), "dropped the cached token");
        }
        Ok(dropped)
    }

    /// How many tokens this source has fetched from the server (not from a store).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    fn spawn_background_refresh(&self) {
        let inner = &self.inner;
        if unix_millis(inner.clock.now()) < inner.background_not_before.load(Ordering::Relaxed) {
            return;
        }
        if inner.background_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            inner.background_running.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(inner);
        runtime.spawn(async move {
            match inner.refresh_in_background().await {
                Ok(()) => {
                    inner.background_failures.store(0, Ordering::Relaxed);
                    inner.background_not_before.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    let failures = inner.background_failures.fetch_add(1, Ordering::Relaxed) + 1;
                    let pause = Duration::from_millis(250 * (1u64 << failures.min(7))).min(Duration::from_secs(30));
                    let not_before = inner.clock.now() + pause;
                    inner.background_not_before.store(unix_millis(not_before), Ordering::Relaxed);
                    tracing::warn!(
                        "background refresh failed; still serving the current token, next try in {}: {e}",
                        fmt_duration(pause)
                    );
                }
            }
            inner.background_running.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn assess(&self, entry: &Entry, want: Want) -> Freshness {
        entry.thresholds.assess(self.clock.now(), want.min_ttl)
    }

    /// Whether `entry` serves a caller with `want` without any refresh.
    fn satisfies(&self, entry: &Entry, want: Want) -> bool {
        match self.assess(entry, want) {
            Freshness::Fresh => true,
            Freshness::Stale => !want.one_shot,
            Freshness::MustRefresh | Freshness::Expired => false,
        }
    }

    async fn refresh_in_background(&self) -> Result<()> {
        // A background refresh is satisfied by nothing less than a fresh token.
        let want = Want::one_shot(Duration::ZERO);
        self.refresh(want).await.map(|_| ())
    }

    /// Gets a token that satisfies `want`, fetching at most once however many callers wait.
    async fn refresh(&self, want: Want) -> Result<Arc<Entry>> {
        let _single_flight = self.refresh.lock().await;
        let current = self.current.load_full();
        if self.satisfies(&current, want) {
            return Ok(current);
        }
        let entry = self.refresh_locked(want).await?;
        let lifetime = entry.token.lifetime();
        if lifetime < want.min_ttl {
            return Err(Error::LifetimeTooShort {
                lifetime,
                min_ttl: want.min_ttl,
            });
        }
        Ok(entry)
    }

    async fn refresh_locked(&self, want: Want) -> Result<Arc<Entry>> {
        let Some(store) = &self.store else {
            return self.fetch_and_adopt(None).await;
        };
        if let Some(entry) = self.adopt_from_store(store.as_ref(), want).await {
            return Ok(entry);
        }
        // Take the store's lock, or wait for whoever holds it to publish their token.
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        let lock = loop {
            match store.try_lock(&self.key).await {
                Ok(Some(lock)) => break Some(lock),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("going on without the {} cache's lock: {e}", store.kind());
                    break None;
                }
            }
            if let Some(entry) = self.adopt_from_store(store.as_ref(), want).await {
                return Ok(entry);
            }
            if started.elapsed() >= self.lock_wait {
                tracing::warn!(
                    "another process has been refreshing for over {}; fetching without waiting longer",
                    fmt_duration(self.lock_wait)
                );
                break None;
            }
            tokio::time::sleep(pause.mul_f64(0.5 + rand::random::<f64>())).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        // Someone may have refreshed just before we took the lock.
        let result = match self.adopt_from_store(store.as_ref(), want).await {
            Some(entry) => Ok(entry),
            None => self.fetch_and_adopt(Some(store.as_ref())).await,
        };
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }

    /// Takes the store's token if it is newer than ours; returns it if it satisfies `want`.
    async fn adopt_from_store(&self, store: &dyn TokenStore, want: Want) -> Option<Arc<Entry>> {
        let stored = match store.load(&self.key).await {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!("cannot read the {} cache: {e}", store.kind());
                return None;
            }
        };
        let current = self.current.load_full();
        if stored.expires_at() <= current.token.expires_at()
            || !stored.is_valid_at(self.clock.now())
        {
            return self.satisfies(&current, want).then_some(current);
        }
        let entry = Arc::new(Entry::new(stored, &self.policy));
        self.current.store(Arc::clone(&entry));
        self.changed();
        tracing::debug!(token = %entry.token.fingerprint(), store = store.kind(), "took the token from the cache");
        self.satisfies(&entry, want).then_some(entry)
    }

    async fn fetch_and_adopt(&self, store: Option<&dyn TokenStore>) -> Result<Arc<Entry>> {
        let previous = self.current.load_full();
        let previous = (!previous.token.expose_secret().is_empty()).then_some(&previous.token);
        let token = self.fetcher.fetch(previous).await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        if !token.is_valid_at(now) {
            return Err(Error::NoValidToken(
                "the server issued a token that is already expired".into(),
            ));
        }
        if let Some(store) = store
            && let Err(e) = store.save(&self.key, &token).await
        {
            tracing::warn!(
                "cannot write the {} cache; going on without it: {e}",
                store.kind()
            );
        }
        tracing::info!(
            token = %token.fingerprint(),
            "fetched a new token, valid for {} (until {})",
            fmt_duration(token.lifetime()),
            httpdate::fmt_http_date(token.expires_at())
        );
        let entry = Arc::new(Entry::new(token, &self.policy));
        self.current.store(Arc::clone(&entry));
        self.changed();
        Ok(entry)
    }
}
