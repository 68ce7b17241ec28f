//! The cached token source: one valid token for many callers, refreshed ahead of expiry.
//!
//! - The hit path loads an atomic pointer and compares two times: no lock, no allocation.
//! - Misses are single-flight: callers queue on one async mutex, and whoever gets it second
//!   finds the first one's token already there.
//! - A stale token is served while one background task refreshes it.
//! - A held token serves: a caller holding — in memory or in the store — a token valid for
//!   its `min_ttl` waits for a refresh at most min(half of what is left beyond `min_ttl`,
//!   the fallback wait, [`DEFAULT_FALLBACK_WAIT`] unless
//!   [`CachedSourceBuilder::fallback_wait`] says otherwise), then gets that token. Never an
//!   expired one.
//! - A failed refresh leaves a [`FailureNote`] in the store, so that every caller sharing it
//!   serves its held token at once until the note's moment, instead of trying again.
//! - Each call has one deadline (the fetcher's [`Fetch::patience`]): lock waits, backoffs
//!   and the attempt in flight all end by it.
//! - With a shared [`TokenStore`], the store's lock is taken and the store re-read before
//!   fetching, so that many processes (or machines) make one request.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use secrecy::SecretString;

use crate::clock::{Clock, SharedClock, SystemClock, unix_millis};
use crate::error::{Error, Result};
use crate::fetch::{Budget, Fetch, fmt_duration};
use crate::policy::{Freshness, RefreshPolicy, Thresholds};
use crate::request::CacheKey;
use crate::retry::RetryPolicy;
use crate::stats::{BudgetUse, CacheStats, StatsSnapshot};
use crate::store::{FailureNote, TokenStore};
use crate::sync::lock;
use crate::token::{ExpirySource, Token};

/// A long-running process warns about serving a held token at most this often, unless a
/// new failure was noted.
const QUIET_FOR: Duration = Duration::from_secs(10);

/// How often a caller waiting for another process's store lock looks again: soon at first
/// (the holder usually publishes within milliseconds), then at most every 100 ms.
const LOCK_POLL: RetryPolicy =
    RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(100))
        .with_jitter(0.5, 1.5);

/// Longest a caller that holds a still-usable token waits for its refresh before using it,
/// unless [`CachedSourceBuilder::fallback_wait`] says otherwise: short, since the caller
/// has a token that works.
pub const DEFAULT_FALLBACK_WAIT: Duration = Duration::from_secs(2);

/// What a caller needs from the token it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
    /// The moments `thresholds` calls [`Freshness::Fresh`] (for no `min_ttl`) are
    /// `fresh_from..fresh_before`, precomputed for the hit path.
    fresh_from: SystemTime,
    fresh_before: SystemTime,
}

impl Entry {
    fn new(token: Token, policy: &RefreshPolicy) -> Self {
        let thresholds = policy.thresholds(&token, rand::random::<f64>());
        Self::with_thresholds(token, thresholds)
    }

    fn with_thresholds(token: Token, thresholds: Thresholds) -> Self {
        // Fresh is `trusted_from <= now`, `now < expires_at`, `now <= must_refresh_at`
        // and `now < stale_at`: one interval.
        let after_must_refresh = thresholds
            .must_refresh_at
            .checked_add(Duration::from_nanos(1))
            .unwrap_or(thresholds.must_refresh_at);
        let fresh_before = thresholds
            .stale_at
            .min(thresholds.expires_at)
            .min(after_must_refresh);
        Self {
            token,
            fresh_from: thresholds.trusted_from,
            fresh_before,
            thresholds,
        }
    }

    /// Whether `thresholds.assess` says [`Freshness::Fresh`] for `min_ttl` at every moment
    /// from `earliest` to `latest` (see [`crate::Clock::now_bounds`]). `false` means "ask
    /// with the precise time", not "not fresh".
    #[inline]
    fn fresh_throughout(
        &self,
        (earliest, latest): (SystemTime, SystemTime),
        min_ttl: Duration,
    ) -> bool {
        earliest >= self.fresh_from
            && latest < self.fresh_before
            && (min_ttl.is_zero()
                || latest
                    .checked_add(min_ttl)
                    .is_some_and(|end| end <= self.thresholds.expires_at))
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
            trusted_from: UNIX_EPOCH,
            stale_at: UNIX_EPOCH,
            must_refresh_at: UNIX_EPOCH,
            expires_at: UNIX_EPOCH,
        };
        Self::with_thresholds(token, thresholds)
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
    /// `clock` is [`SystemClock`]: the hit path then reads its bounds inline rather than
    /// through the trait object (`peek_fresh()` 14.3 -> 13.9 ns in criterion).
    system_clock: bool,
    policy: RefreshPolicy,
    current: ArcSwap<Entry>,
    /// Single flight within this process; owned, so that a refresh can outlive a caller that
    /// stopped waiting for it.
    refresh: Arc<tokio::sync::Mutex<()>>,
    background_running: AtomicBool,
    /// Unix ms before which no background refresh is tried: the last failure note's moment,
    /// mirrored here so that the hit path need not read the note.
    background_not_before: AtomicU64,
    /// The note of a source without a store (with one, notes live in the store).
    local_note: std::sync::Mutex<Option<FailureNote>>,
    /// The failure count of the last note this source warned about, so that a long-running
    /// process says it serves a held token once per failure, not once per request.
    warned_failures: AtomicU32,
    /// Unix ms of the last warning about a refresh that did not come (see `should_warn`).
    last_warned: AtomicU64,
    fetches: AtomicU64,
    /// Which layer answered, lock waits, notes, budget: counted off the hit path only.
    stats: CacheStats,
    lock_wait: Duration,
    fallback_wait: Duration,
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

/// The future of [`CachedSource::token_with`]: the hit path on its first poll, then the
/// boxed refresh path if that missed.
struct Lookup<'a> {
    source: &'a CachedSource,
    want: Want,
    slow: Option<Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + 'a>>>,
}

impl Future for Lookup<'_> {
    type Output = Result<AccessToken>;

    /// Only the check that a fresh token answers is inlined into the caller; anything else
    /// (a precise clock read, a stale token, the refresh) is one call out of line. With the
    /// whole poll out of line, its result came back through memory and cost a hit 12 ns
    /// (perf annotate: the reload of the returned token stalled on the callee's stores).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.slow.is_none() {
            let entry = self.source.inner.current.load();
            if entry.fresh_throughout(self.source.inner.now_bounds(), self.want.min_ttl) {
                return Poll::Ready(Ok(AccessToken(Held::Borrowed(entry))));
            }
        }
        self.poll_slow(cx)
    }
}

impl Lookup<'_> {
    /// Everything [`Lookup::poll`] does not answer inline.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<AccessToken>> {
        let slow = match &mut self.slow {
            Some(slow) => slow,
            None => match self.source.hit(self.want) {
                Ok(token) => return Poll::Ready(Ok(token)),
                Err(entry) => self
                    .slow
                    .insert(self.source.boxed_refresh(self.want, entry)),
            },
        };
        slow.as_mut().poll(cx)
    }
}

/// Configures a [`CachedSource`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct CachedSourceBuilder {
    fetcher: Arc<dyn Fetch>,
    store: Option<Arc<dyn TokenStore>>,
    key: Option<CacheKey>,
    clock: SharedClock,
    policy: RefreshPolicy,
    lock_wait: Duration,
    fallback_wait: Duration,
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
    /// Bounds how long a caller that holds a usable token waits for its refresh before it
    /// is served that token (default [`DEFAULT_FALLBACK_WAIT`]; never more than half of
    /// what the token has to spare beyond the caller's `min_ttl`).
    pub fn fallback_wait(mut self, wait: Duration) -> Self {
        self.fallback_wait = wait;
        self
    }

    /// Shares tokens through `store`, under the fetcher's [`Fetch::cache_key`].
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Shares tokens through `store` under `key` instead of the fetcher's own key: for
    /// sources whose fetchers differ in what does not change the token (a wrapper that
    /// counts requests, a second HTTP client).
    pub fn store_under(mut self, store: Arc<dyn TokenStore>, key: CacheKey) -> Self {
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
        let key = self.key.unwrap_or_else(|| self.fetcher.cache_key());
        CachedSource {
            inner: Arc::new(Inner {
                fetcher: self.fetcher,
                store: self.store,
                key,
                system_clock: (&*self.clock as &dyn std::any::Any).is::<SystemClock>(),
                clock: self.clock,
                policy: self.policy,
                current: ArcSwap::from_pointee(Entry::empty()),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
                background_running: AtomicBool::new(false),
                background_not_before: AtomicU64::new(0),
                local_note: std::sync::Mutex::new(None),
                warned_failures: AtomicU32::new(0),
                last_warned: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                stats: CacheStats::default(),
                lock_wait: self.lock_wait,
                fallback_wait: self.fallback_wait,
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
            fallback_wait: DEFAULT_FALLBACK_WAIT,
        }
    }

    /// A valid token, refreshed in the background once stale. Waits only when there is no
    /// token yet, or the one held is too close to expiry.
    #[inline]
    pub fn token(&self) -> impl Future<Output = Result<AccessToken>> + Send + '_ {
        self.token_with(Want::default())
    }

    /// A token that satisfies `want`.
    ///
    /// A hand-written future rather than an `async fn`, so that a hit is answered on the
    /// first poll with no state machine around it; the refresh path's future is made (boxed)
    /// only on a miss.
    #[inline]
    pub fn token_with(&self, want: Want) -> impl Future<Output = Result<AccessToken>> + Send + '_ {
        Lookup {
            source: self,
            want,
            slow: None,
        }
    }

    /// The token held, if it serves `want` without waiting (starting a background refresh
    /// when it is stale); otherwise the entry, for the slow path.
    #[inline]
    fn hit(&self, want: Want) -> std::result::Result<AccessToken, Guard<Arc<Entry>>> {
        let entry = self.inner.current.load();
        if entry.fresh_throughout(self.inner.now_bounds(), want.min_ttl) {
            return Ok(AccessToken(Held::Borrowed(entry)));
        }
        match entry
            .thresholds
            .assess(self.inner.clock.now(), want.min_ttl)
        {
            Freshness::Fresh => Ok(AccessToken(Held::Borrowed(entry))),
            Freshness::Stale if !want.one_shot => {
                self.spawn_background_refresh();
                Ok(AccessToken(Held::Borrowed(entry)))
            }
            Freshness::Stale | Freshness::MustRefresh | Freshness::Expired => Err(entry),
        }
    }

    /// The slow path's future, boxed. Never inlined: the future is built on the stack before
    /// it is moved into its box, and inlined into the hit path that frame (1.6 KB) made
    /// every hit slower.
    #[inline(never)]
    fn boxed_refresh(
        &self,
        want: Want,
        entry: Guard<Arc<Entry>>,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + '_>> {
        Box::pin(self.refresh_for(want, entry))
    }

    /// The slow path of [`CachedSource::token_with`].
    async fn refresh_for(&self, want: Want, entry: Guard<Arc<Entry>>) -> Result<AccessToken> {
        drop(entry);
        let inner = &self.inner;
        let held = inner.held(want).await;
        if inner.satisfies(&held, want) {
            if inner.assess(&held, want) == Freshness::Stale {
                self.spawn_background_refresh();
            }
            return Ok(AccessToken(Held::Owned(held)));
        }
        // What the held token has to spare beyond this caller's need decides how long the
        // caller may wait for a new one; with nothing to spare, it waits the whole deadline.
        let now = inner.clock.now();
        let spare = held
            .token
            .is_valid_at(now)
            .then(|| held.token.remaining(now).checked_sub(want.min_ttl))
            .flatten()
            .filter(|spare| !spare.is_zero());
        let Some(spare) = spare else {
            // A long-running process with nothing to serve fails at once while a failure note
            // holds, rather than sending every one of its callers to the failing endpoint; a
            // one-shot process tries, since it has only this call.
            if !want.one_shot
                && let Some(note) = inner.holding_note().await
            {
                let next = note.not_before.duration_since(now).unwrap_or_default();
                return Err(Error::NoValidToken(format!(
                    "no valid token: the token endpoint is failing ({}); next attempt in {}",
                    note.error,
                    fmt_duration(next)
                )));
            }
            let budget = Budget::within(inner.fetcher.patience());
            return inner
                .refresh(want, budget)
                .await
                .map(|e| AccessToken(Held::Owned(e)));
        };
        // Half of what is spare, so that the held token still has the other half when the
        // wait ends: waiting all of it would hand out a token with nothing left.
        self.refresh_or_serve(want, held, (spare / 2).min(self.inner.fallback_wait))
            .await
    }

    /// For a caller that holds a usable token: one bounded attempt at a new one, or the held
    /// token at once while a failure note says the endpoint is failing.
    async fn refresh_or_serve(
        &self,
        want: Want,
        held: Arc<Entry>,
        wait: Duration,
    ) -> Result<AccessToken> {
        let inner = &self.inner;
        if let Some(note) = inner.holding_note().await {
            return inner.serve_held(held, want, &note.error, Some(&note));
        }
        let Ok(guard) = Arc::clone(&inner.refresh).try_lock_owned() else {
            // Someone in this process is refreshing already: wait for their token, bounded.
            let mut changes = inner.changes.subscribe();
            let _ = tokio::time::timeout(wait, changes.changed()).await;
            let current = inner.current.load_full();
            if inner.satisfies(&current, want) {
                inner.stats.answered("memory");
                return Ok(AccessToken(Held::Owned(current)));
            }
            return inner.serve_held(held, want, "a refresh is still under way", None);
        };
        let budget = Budget::within(inner.fetcher.patience()).once();
        let task = {
            let inner = Arc::clone(inner);
            tokio::spawn(async move {
                let _single_flight = guard;
                inner.refresh_guarded(want, budget).await
            })
        };
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(Ok(entry))) => Ok(AccessToken(Held::Owned(entry))),
            Ok(Ok(Err(e @ Error::LifetimeTooShort { .. }))) => Err(e),
            Ok(Ok(Err(e))) => inner.serve_held(held, want, &e.to_string(), None),
            Ok(Err(e)) => inner.serve_held(held, want, &format!("refresh task: {e}"), None),
            Err(_) => {
                let error = format!("no new token within {}", fmt_duration(wait));
                // A one-shot process ends with this call, and its attempt with it: the note
                // tells the next process not to start over at once. A long-running one keeps
                // the attempt going, and that attempt notes its own outcome.
                if want.one_shot {
                    inner.note_failure(&error).await;
                }
                inner.serve_held(held, want, &error, None)
            }
        }
    }

    /// The held token if it is fresh (not yet due for refresh-ahead), without waiting or
    /// starting a refresh. `None` when there is none or it is stale, which means "call
    /// [`CachedSource::token`]". For synchronous code and health checks.
    #[inline]
    pub fn peek_fresh(&self) -> Option<AccessToken> {
        let entry = self.inner.current.load();
        if entry.fresh_throughout(self.inner.now_bounds(), Duration::ZERO) {
            return Some(AccessToken(Held::Borrowed(entry)));
        }
        match entry
            .thresholds
            .assess(self.inner.clock.now(), Duration::ZERO)
        {
            Freshness::Fresh => Some(AccessToken(Held::Borrowed(entry))),
            _ => None,
        }
    }

    /// The DPoP key the tokens are bound to (see [`Fetch::dpop_key`]), if any.
    pub fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.inner.fetcher.dpop_key()
    }

    /// The held token if it has not expired, fresh or stale, without waiting or starting a
    /// refresh. `None` when there is none or it expired: what a sink may show, never an
    /// expired token.
    pub fn peek_valid(&self) -> Option<AccessToken> {
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

    /// What this source's layers did for it so far (see [`CacheStats`]).
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// How much of the fleet's request budget the current window has used, as the store
    /// counts it; `None` without a store that keeps a budget.
    pub async fn budget_use(&self) -> Result<Option<BudgetUse>> {
        match &self.inner.store {
            Some(store) => store.budget_use(&self.inner.key).await,
            None => Ok(None),
        }
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
            if let Err(e) = inner.refresh_in_background().await {
                tracing::warn!("background refresh failed; still serving the current token: {e}");
            }
            inner.background_running.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    /// [`Clock::now_bounds`] of the source's clock, without a call through the trait object
    /// for the real clock.
    #[inline(always)]
    fn now_bounds(&self) -> (SystemTime, SystemTime) {
        if self.system_clock {
            SystemClock.now_bounds()
        } else {
            self.clock.now_bounds()
        }
    }

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
        // A background refresh is satisfied by nothing less than a fresh token, makes one
        // attempt, and leaves the endpoint alone while a failure note holds.
        if self.holding_note().await.is_some() {
            return Ok(());
        }
        let Ok(_single_flight) = Arc::clone(&self.refresh).try_lock_owned() else {
            return Ok(());
        };
        let budget = Budget::within(self.fetcher.patience()).once();
        self.refresh_guarded(Want::one_shot(Duration::ZERO), budget)
            .await
            .map(|_| ())
    }

    /// The best token this caller holds: ours, or a newer one from the store.
    async fn held(&self, want: Want) -> Arc<Entry> {
        let current = self.current.load_full();
        if self.satisfies(&current, want) {
            return current;
        }
        if let Some(store) = &self.store
            && let Some(entry) = self.adopt_from_store(store.as_ref(), want).await
        {
            return entry;
        }
        self.current.load_full()
    }

    /// The failure note that holds now, if any (see [`FailureNote::holds_at`]).
    async fn holding_note(&self) -> Option<FailureNote> {
        let note = match &self.store {
            Some(store) => match store.note(&self.key).await {
                Ok(note) => note,
                Err(e) => {
                    tracing::debug!("cannot read the {} cache's failure note: {e}", store.kind());
                    None
                }
            },
            None => lock(&self.local_note).clone(),
        }?;
        let holds = note.holds_at(self.clock.now());
        if holds {
            self.stats.note_seen();
        }
        holds.then_some(note)
    }

    /// Leaves `note` (or clears it) where the next caller looks.
    async fn set_note(&self, note: Option<FailureNote>) {
        let not_before = note.as_ref().map_or(0, |n| unix_millis(n.not_before));
        self.background_not_before
            .store(not_before, Ordering::Relaxed);
        match &self.store {
            Some(store) => {
                if let Err(e) = store.set_note(&self.key, note.as_ref()).await {
                    tracing::debug!(
                        "cannot write the {} cache's failure note: {e}",
                        store.kind()
                    );
                }
            }
            None => *lock(&self.local_note) = note,
        }
    }

    /// Records one more failed refresh, growing the backoff of the note already there.
    async fn note_failure(&self, error: &str) {
        let previous = match &self.store {
            Some(store) => store.note(&self.key).await.ok().flatten(),
            None => lock(&self.local_note).clone(),
        };
        let note = FailureNote::after(
            previous.as_ref(),
            error,
            self.clock.now(),
            rand::random::<f64>(),
        );
        self.stats.note_written();
        self.set_note(Some(note)).await;
    }

    /// Hands out `held` after a refresh that did not come, with one warning per failure.
    fn serve_held(
        &self,
        held: Arc<Entry>,
        want: Want,
        why: &str,
        note: Option<&FailureNote>,
    ) -> Result<AccessToken> {
        let left = held.token.remaining(self.clock.now());
        if !held.token.is_valid_at(self.clock.now()) || left.is_zero() || left < want.min_ttl {
            return Err(Error::NoValidToken(format!(
                "no new token ({why}), and the one held has only {} left",
                fmt_duration(left)
            )));
        }
        if self.should_warn(want, note) {
            match note {
                Some(n) => tracing::warn!(
                    "the token endpoint is failing ({}); using the current token, valid for {} more; next attempt in {}",
                    n.error,
                    fmt_duration(left),
                    fmt_duration(
                        n.not_before
                            .duration_since(self.clock.now())
                            .unwrap_or_default()
                    )
                ),
                None => tracing::warn!(
                    "could not refresh the token; using the current one, valid for {} more: {why}",
                    fmt_duration(left)
                ),
            }
        }
        Ok(AccessToken(Held::Owned(held)))
    }

    /// Whether serving a held token deserves a warning: a one-shot process says it once (it
    /// has one call); a long-running one once per failure noted, and otherwise at most every
    /// [`QUIET_FOR`], so that a proxy does not log every request of an outage.
    fn should_warn(&self, want: Want, note: Option<&FailureNote>) -> bool {
        if want.one_shot {
            return true;
        }
        if let Some(n) = note {
            return self.warned_failures.swap(n.failures, Ordering::Relaxed) != n.failures;
        }
        let now = unix_millis(self.clock.now());
        let last = self.last_warned.load(Ordering::Relaxed);
        let quiet = u64::try_from(QUIET_FOR.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) >= quiet
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Gets a token that satisfies `want`, fetching at most once however many callers wait.
    async fn refresh(&self, want: Want, budget: Budget) -> Result<Arc<Entry>> {
        let wait = budget.left();
        let Ok(_single_flight) = tokio::time::timeout(wait, self.refresh.lock()).await else {
            return Err(Error::timeout(format!(
                "another refresh in this process took longer than the {} this call may take",
                fmt_duration(wait)
            )));
        };
        self.refresh_guarded(want, budget).await
    }

    /// [`Inner::refresh`], for a caller that holds the single-flight lock.
    async fn refresh_guarded(&self, want: Want, budget: Budget) -> Result<Arc<Entry>> {
        let current = self.current.load_full();
        if self.satisfies(&current, want) {
            // Another caller in this process refreshed while this one queued.
            self.stats.answered("memory");
            return Ok(current);
        }
        let entry = self.refresh_locked(want, budget).await?;
        let lifetime = entry.token.lifetime();
        if lifetime < want.min_ttl {
            return Err(Error::LifetimeTooShort {
                lifetime,
                min_ttl: want.min_ttl,
            });
        }
        Ok(entry)
    }

    async fn refresh_locked(&self, want: Want, budget: Budget) -> Result<Arc<Entry>> {
        let Some(store) = &self.store else {
            return self.fetch_and_adopt(None, budget).await;
        };
        if let Some(entry) = self.adopt_from_store(store.as_ref(), want).await {
            return Ok(entry);
        }
        // Take the store's lock, or wait for whoever holds it to publish their token. A lock
        // whose holder never publishes (stopped, or on a dead machine) is taken over once
        // half of this call's time is gone, so the other half is left for its own attempt.
        let takeover = budget.left().mul_f64(0.5).min(self.lock_wait);
        let started = tokio::time::Instant::now();
        let mut pause = LOCK_POLL.start();
        let mut waited = false;
        let lock = loop {
            match store.try_lock(&self.key).await {
                Ok(Some(lock)) => break Some(lock),
                Ok(None) => waited = true,
                Err(e) => {
                    tracing::warn!("going on without the {} cache's lock: {e}", store.kind());
                    break None;
                }
            }
            if let Some(entry) = self.adopt_from_store(store.as_ref(), want).await {
                self.stats.lock_waited(started.elapsed());
                return Ok(entry);
            }
            if started.elapsed() >= takeover {
                tracing::warn!(
                    "another process has held the refresh lock for over {}; fetching without waiting longer",
                    fmt_duration(takeover)
                );
                break None;
            }
            tokio::time::sleep(pause.next_delay()).await;
        };
        if waited {
            self.stats.lock_waited(started.elapsed());
        }
        // Someone may have refreshed (or failed, and said so) just before we took the lock.
        let result = match self.adopt_from_store(store.as_ref(), want).await {
            Some(entry) => Ok(entry),
            None => match self.holding_note().await {
                Some(note) if !budget.retry => Err(Error::transport(note.error)),
                _ => match self.within_budget(store.as_ref(), budget).await {
                    Ok(()) => self.fetch_and_adopt(Some(store.as_ref()), budget).await,
                    Err(e) => Err(e),
                },
            },
        };
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }

    /// Spends one request of the fleet's budget (see [`TokenStore::spend_budget`]), waiting
    /// for the next window when that leaves half of this call's time for the request itself
    /// (as a lock is taken over at half). A caller that may not retry holds a usable token:
    /// it does not wait, its caller serves that token.
    async fn within_budget(&self, store: &dyn TokenStore, budget: Budget) -> Result<()> {
        loop {
            let wait = match store.spend_budget(&self.key).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => {
                    self.stats.budget_spent();
                    wait
                }
                Err(e) => {
                    tracing::warn!(
                        "going on without the {} cache's request budget: {e}",
                        store.kind()
                    );
                    return Ok(());
                }
            };
            if !budget.retry || wait >= budget.left() / 2 {
                return Err(Error::timeout(format!(
                    "the fleet's token-request budget (token_rate) is spent; the next request may go in {}",
                    fmt_duration(wait)
                )));
            }
            tracing::info!(
                "the fleet's token-request budget is spent; waiting {} for the next window",
                fmt_duration(wait)
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the store's token if it is newer than ours; returns it if it satisfies `want`.
    async fn adopt_from_store(&self, store: &dyn TokenStore, want: Want) -> Option<Arc<Entry>> {
        let (stored, layer) = match store.load_from(&self.key).await {
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
        tracing::debug!(token = %entry.token.fingerprint(), store = layer, "took the token from the cache");
        let satisfies = self.satisfies(&entry, want);
        if satisfies {
            self.stats.answered(layer);
        }
        satisfies.then_some(entry)
    }

    async fn fetch_and_adopt(
        &self,
        store: Option<&dyn TokenStore>,
        budget: Budget,
    ) -> Result<Arc<Entry>> {
        let previous = self.current.load_full();
        let previous = (!previous.token.expose_secret().is_empty()).then_some(&previous.token);
        let token = match self.fetcher.fetch(previous, budget).await {
            Ok(token) => token,
            Err(e) => {
                self.note_failure(&e.to_string()).await;
                return Err(e);
            }
        };
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
        if self.background_not_before.load(Ordering::Relaxed) != 0 || store.is_some() {
            self.set_note(None).await;
        }
        let entry = Arc::new(Entry::new(token, &self.policy));
        self.current.store(Arc::clone(&entry));
        self.changed();
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the real clock is read past the trait object: a source on any other clock (a
    /// `ManualClock`, or the real one moved by an offset) must ask that clock.
    #[test]
    fn only_the_system_clock_is_read_inline() {
        let manual = crate::ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let fetcher = crate::testing::ScriptedFetcher::new(&manual, Duration::from_secs(60));
        let on = |clock: SharedClock| {
            CachedSource::builder_shared(fetcher.clone())
                .clock(clock)
                .build()
                .inner
                .system_clock
        };
        assert!(on(Arc::new(SystemClock)));
        assert!(!on(Arc::new(manual.clone())));
        assert!(!on(Arc::new(crate::clock::SkewedClock::ahead(
            Duration::from_secs(5)
        ))));
    }

    /// Every ordering of the four moments on a nanosecond grid, every `min_ttl` up to the
    /// grid's width: with exact bounds (`now_bounds` of a `ManualClock`) the hit path's check
    /// says Fresh exactly when `assess` does, boundaries included; with wider bounds, only
    /// when `assess` says Fresh at every moment between them.
    #[test]
    fn fresh_throughout_agrees_with_assess() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |n: u64| t0 + Duration::from_nanos(n);
        let grid = 0..7u64;
        for (a, b, c, d) in grid.clone().flat_map(|a| {
            grid.clone().flat_map(move |b| {
                (0..7u64).flat_map(move |c| (0..7u64).map(move |d| (a, b, c, d)))
            })
        }) {
            let thresholds = Thresholds {
                trusted_from: at(a),
                stale_at: at(b),
                must_refresh_at: at(c),
                expires_at: at(d),
            };
            let entry = Entry::with_thresholds(Entry::empty().token, thresholds);
            for min_ttl in (0..4).map(Duration::from_nanos) {
                let fresh = |n| thresholds.assess(at(n), min_ttl) == Freshness::Fresh;
                for lo in 0..9 {
                    assert_eq!(
                        entry.fresh_throughout((at(lo), at(lo)), min_ttl),
                        fresh(lo),
                        "{thresholds:?} at {lo} for {min_ttl:?}"
                    );
                    for hi in lo..9 {
                        if entry.fresh_throughout((at(lo), at(hi)), min_ttl) {
                            assert!((lo..=hi).all(fresh), "{thresholds:?} {lo}..={hi}");
                        }
                    }
                }
            }
        }
    }
}
