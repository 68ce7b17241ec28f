//! The cached source's counters (`CachedSource::stats`): which layer answered, lock waits,
//! failure notes seen and written, and refreshes over the request budget. Each counter is
//! shown to move when it should and to stay put otherwise (the hit path counts nothing).
//!
//! Time moves with a `ManualClock`; "other processes" are other sources on the same store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use freshtoken::testing::ScriptedFetcher;
use freshtoken::{
    Budget, BudgetUse, CacheKey, CachedSource, FailureNote, Fetch, FileStore, ManualClock,
    RefreshPolicy, StatsSnapshot, StoreLock, Token, TokenRequest, TokenStore, Want,
};

const HOUR: Duration = Duration::from_secs(3600);

fn key() -> CacheKey {
    TokenRequest::new("https://idp.example/token".parse().unwrap(), "c", None).cache_key()
}

fn source(
    fetcher: Arc<dyn Fetch>,
    store: Arc<dyn TokenStore>,
    clock: &ManualClock,
) -> CachedSource {
    CachedSource::builder_shared(fetcher)
        .store_under(store, key())
        .clock(Arc::new(clock.clone()))
        .policy(RefreshPolicy::default().with_jitter(0.0))
        .build()
}

fn one_shot() -> Want {
    Want::one_shot(Duration::ZERO)
}

/// Awaits `work`, bounded: a test that would wait forever fails instead.
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"))
}

/// A file store that also says how often its lock was tried, and keeps a request budget of
/// `limit` per (never-ending) window, as Redis's `token_rate` does for a fleet.
#[derive(Debug)]
struct Watched {
    file: FileStore,
    locks_tried: tokio::sync::watch::Sender<u64>,
    limit: u64,
    spent: AtomicU64,
}

impl Watched {
    fn new(dir: &std::path::Path, limit: u64) -> Arc<Self> {
        Arc::new(Self {
            file: FileStore::new(dir),
            locks_tried: tokio::sync::watch::Sender::new(0),
            limit,
            spent: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl TokenStore for Watched {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn location(&self, key: &CacheKey) -> String {
        self.file.location(key)
    }
    async fn load(&self, key: &CacheKey) -> freshtoken::Result<Option<Token>> {
        self.file.load(key).await
    }
    async fn save(&self, key: &CacheKey, token: &Token) -> freshtoken::Result<()> {
        self.file.save(key, token).await
    }
    async fn remove(&self, key: &CacheKey) -> freshtoken::Result<bool> {
        self.file.remove(key).await
    }
    async fn try_lock(&self, key: &CacheKey) -> freshtoken::Result<Option<StoreLock>> {
        let lock = self.file.try_lock(key).await;
        self.locks_tried.send_modify(|n| *n += 1);
        lock
    }
    async fn note(&self, key: &CacheKey) -> freshtoken::Result<Option<FailureNote>> {
        self.file.note(key).await
    }
    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> freshtoken::Result<()> {
        self.file.set_note(key, note).await
    }
    async fn spend_budget(&self, _key: &CacheKey) -> freshtoken::Result<Option<Duration>> {
        let n = self.spent.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((n > self.limit).then_some(HOUR))
    }
    async fn budget_use(&self, _key: &CacheKey) -> freshtoken::Result<Option<BudgetUse>> {
        let asked = self.spent.load(Ordering::SeqCst);
        let limit = u32::try_from(self.limit).unwrap();
        Ok(Some(BudgetUse::new(asked, limit, HOUR, HOUR)))
    }
}

/// A fetcher whose fetches wait for the test to open the gate.
#[derive(Debug)]
struct Gated {
    inner: Arc<ScriptedFetcher>,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl Fetch for Gated {
    fn cache_key(&self) -> CacheKey {
        key()
    }
    async fn fetch(&self, previous: Option<&Token>, budget: Budget) -> freshtoken::Result<Token> {
        let _pass = self.gate.acquire().await;
        self.inner.fetch(previous, budget).await
    }
}

fn answers(s: &CachedSource) -> [u64; 3] {
    s.stats().answers
}

#[tokio::test]
async fn the_layer_that_answered_is_counted_and_the_hit_path_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()));
    let fetcher = ScriptedFetcher::new(&clock, HOUR);
    let first = source(fetcher.clone(), store.clone(), &clock);
    let second = source(fetcher.clone(), store.clone(), &clock);

    first.token_with(one_shot()).await.unwrap();
    assert_eq!(
        first.stats(),
        StatsSnapshot::default(),
        "a fetch is no layer's answer"
    );
    second.token_with(one_shot()).await.unwrap();
    assert_eq!(
        answers(&second),
        [0, 1, 0],
        "the file answered the second process"
    );
    for _ in 0..3 {
        first.token_with(one_shot()).await.unwrap();
        second.token_with(one_shot()).await.unwrap();
    }
    assert_eq!(answers(&first), [0, 0, 0], "hits are not counted");
    assert_eq!(answers(&second), [0, 1, 0], "hits are not counted");
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_served_by_another_callers_refresh_counts_memory() {
    let clock = ManualClock::starting_now();
    let gated = Arc::new(Gated {
        inner: ScriptedFetcher::new(&clock, HOUR),
        gate: tokio::sync::Semaphore::new(0),
    });
    // No store: nothing blocks but the gate and the single flight.
    let s = CachedSource::builder_shared(gated.clone())
        .clock(Arc::new(clock.clone()))
        .build();
    let (a, b) = (s.clone(), s.clone());
    let first = tokio::spawn(async move { a.token().await.map(|t| t.expose_secret().to_owned()) });
    let second = tokio::spawn(async move { b.token().await.map(|t| t.expose_secret().to_owned()) });
    // On this one thread, each task runs until it blocks: the first on the gate, the second
    // on the first one's single flight.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!first.is_finished() && !second.is_finished());
    assert_eq!(answers(&s), [0, 0, 0]);
    gated.gate.add_permits(1);
    let (x, y) = (within("a", first).await, within("b", second).await);
    assert_eq!(x.unwrap().unwrap(), y.unwrap().unwrap());
    assert_eq!(gated.inner.calls(), 1);
    assert_eq!(
        answers(&s),
        [1, 0, 0],
        "the queued caller got the token in memory"
    );
}

#[tokio::test]
async fn a_wait_for_another_holders_lock_is_counted_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store = Watched::new(dir.path(), u64::MAX);
    let fetcher = ScriptedFetcher::new(&clock, HOUR);
    let waiter = source(fetcher.clone(), store.clone(), &clock);
    let other = FileStore::new(dir.path());

    // Uncontended: the lock is taken at once, no wait.
    waiter.token_with(one_shot()).await.unwrap();
    assert_eq!(waiter.stats().lock_waits, 0);

    clock.advance(HOUR);
    let held = other.try_lock(&key()).await.unwrap().unwrap();
    let mut tried = store.locks_tried.subscribe();
    let seen = *tried.borrow_and_update();
    let w = waiter.clone();
    let task = tokio::spawn(async move { w.token_with(one_shot()).await.map(|_| ()) });
    within("a lock attempt", tried.wait_for(|n| *n > seen))
        .await
        .unwrap();
    // The other holder publishes its token and lets go.
    let now = freshtoken::Clock::now(&clock);
    let token = Token::new(
        secrecy::SecretString::from("other".to_owned()),
        now,
        now + HOUR,
        freshtoken::ExpirySource::ExpiresIn,
    );
    other.save(&key(), &token).await.unwrap();
    held.release().await;
    within("the waiter", task).await.unwrap().unwrap();

    let stats = waiter.stats();
    assert_eq!(stats.lock_waits, 1);
    assert!(stats.lock_wait_total > Duration::ZERO);
    assert_eq!(stats.lock_wait_max, stats.lock_wait_total);
    assert!(stats.lock_wait_total < Duration::from_secs(10));
    assert_eq!(
        answers(&waiter),
        [0, 1, 0],
        "the holder's token came from the file"
    );
    assert_eq!(fetcher.calls(), 1, "the waiter did not fetch");
}

#[tokio::test]
async fn notes_written_by_a_failing_refresh_and_seen_by_the_next_caller() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()));
    let fetcher = ScriptedFetcher::new(&clock, HOUR);
    let first = source(fetcher.clone(), store.clone(), &clock);
    let second = source(fetcher.clone(), store.clone(), &clock);
    first.token_with(one_shot()).await.unwrap();
    second.token_with(one_shot()).await.unwrap();
    assert_eq!(
        (first.stats().notes_written, first.stats().notes_seen),
        (0, 0)
    );

    // Stale, so a one-shot caller tries a refresh and falls back to its held token.
    clock.advance(HOUR.mul_f64(0.8));
    fetcher.set_failing(true);
    first.token_with(one_shot()).await.unwrap();
    assert_eq!(first.stats().notes_written, 1);
    assert_eq!(
        first.stats().notes_seen,
        0,
        "no note held before its own failure"
    );
    let calls = fetcher.calls();
    second.token_with(one_shot()).await.unwrap();
    assert_eq!(
        fetcher.calls(),
        calls,
        "the note held the second caller back"
    );
    assert_eq!(second.stats().notes_seen, 1);
    assert_eq!(second.stats().notes_written, 0);
}

#[tokio::test]
async fn a_refresh_over_the_budget_is_counted_and_the_use_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store = Watched::new(dir.path(), 1);
    let fetcher = ScriptedFetcher::new(&clock, HOUR);
    let first = source(fetcher.clone(), store.clone(), &clock);
    let second = source(fetcher.clone(), store.clone(), &clock);
    first.token_with(one_shot()).await.unwrap();
    assert_eq!(first.stats().over_budget, 0);
    let used = first.budget_use().await.unwrap().unwrap();
    assert_eq!((used.spent, used.limit, used.refused), (1, 1, 0));

    // The fleet's one request is spent: a caller with nothing in hand is refused.
    store.remove(&key()).await.unwrap();
    let e = second.token_with(one_shot()).await.unwrap_err();
    assert!(e.to_string().contains("token_rate"), "{e}");
    assert_eq!(second.stats().over_budget, 1);
    assert_eq!(first.stats().over_budget, 0);
    assert_eq!(fetcher.calls(), 1);
    let used = second.budget_use().await.unwrap().unwrap();
    assert_eq!((used.spent, used.limit, used.refused), (1, 1, 1));
    let none = CachedSource::builder_shared(fetcher.clone()).build();
    assert_eq!(
        none.budget_use().await.unwrap(),
        None,
        "no store, no budget"
    );
}
