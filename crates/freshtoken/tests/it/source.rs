//! The cached source: single flight, background refresh, outages, invalidation.
//!
//! Expiry is crossed by moving a `ManualClock`, never by sleeping. The fetcher is scripted
//! where a fault is needed; the single-flight test uses the real dev-server.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::Clock;
use freshtoken::testing::ScriptedFetcher;
use freshtoken::{
    CachedSource, ExpirySource, HttpFetcher, HttpOptions, ManualClock, RefreshPolicy, Token,
    TokenRequest, Want,
};
use secrecy::SecretString;

fn no_jitter() -> RefreshPolicy {
    RefreshPolicy::default().with_jitter(0.0)
}

fn source(fetcher: &Arc<ScriptedFetcher>, clock: &ManualClock) -> CachedSource {
    CachedSource::builder_shared(fetcher.clone())
        .clock(Arc::new(clock.clone()))
        .policy(no_jitter())
        .build()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Awaits background work, bounded: a test that would wait forever fails instead.
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"))
}

/// Awaits the next change of the source's held token (a background refresh landed).
async fn next_token(changes: &mut tokio::sync::watch::Receiver<u64>) {
    within("a new token", changes.changed())
        .await
        .expect("the source outlives the test");
}

#[tokio::test]
async fn a_fresh_token_is_served_from_memory() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    let a = s.token().await.unwrap();
    clock.advance(Duration::from_secs(2000));
    let b = s.token().await.unwrap();
    assert_eq!(a.expose_secret(), "tok-1");
    assert_eq!(b.expose_secret(), "tok-1");
    assert_eq!(f.calls(), 1);
    assert!(s.peek_fresh().is_some());
}

#[tokio::test]
async fn a_stale_token_is_served_while_one_background_refresh_runs() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    clock.advance(Duration::from_secs(2700)); // 75 %: stale
    let mut changes = s.subscribe();
    for _ in 0..10 {
        assert_eq!(
            s.token().await.unwrap().expose_secret(),
            "tok-1",
            "stale tokens keep being served"
        );
    }
    assert!(s.peek_fresh().is_none(), "a stale token is not a hit");
    next_token(&mut changes).await;
    assert_eq!(f.calls(), 2, "ten stale reads start one refresh");
    assert_eq!(s.token().await.unwrap().expose_secret(), "tok-2");
}

#[tokio::test]
async fn one_shot_callers_refresh_a_stale_token_now() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    clock.advance(Duration::from_secs(2800));
    assert_eq!(
        s.token_with(Want::one_shot(Duration::ZERO))
            .await
            .unwrap()
            .expose_secret(),
        "tok-2"
    );
}

#[tokio::test]
async fn one_shot_falls_back_to_the_stale_token_when_refresh_fails() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    clock.advance(Duration::from_secs(2800));
    f.set_failing(true);
    assert_eq!(
        s.token_with(Want::one_shot(Duration::ZERO))
            .await
            .unwrap()
            .expose_secret(),
        "tok-1"
    );
    // ... but not when the caller needs longer than the token has left.
    let e = s
        .token_with(Want::one_shot(Duration::from_secs(900)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("scripted outage"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_refresh_does_not_stall_a_caller_holding_a_usable_token() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    clock.advance(Duration::from_secs(2800));
    f.set_hanging(true);
    let started = tokio::time::Instant::now();
    let t = s.token_with(Want::one_shot(Duration::ZERO)).await.unwrap();
    assert_eq!(t.expose_secret(), "tok-1");
    assert_eq!(
        started.elapsed(),
        freshtoken::DEFAULT_FALLBACK_WAIT,
        "waited the bounded time, then fell back"
    );
    // Without a usable token there is nothing to fall back to: the caller waits for the
    // refresh still in flight, but no longer than its one deadline, and then fails.
    clock.advance(Duration::from_secs(900));
    let started = tokio::time::Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(3600), s.token()).await;
    assert!(
        matches!(waited, Ok(Err(_))),
        "an expired token is never a fallback, however long the fetch takes"
    );
    assert_eq!(
        started.elapsed(),
        freshtoken::RetryPolicy::default().deadline,
        "the call ends at its deadline (the fetcher's patience), not when the fetch does"
    );
}

#[tokio::test(start_paused = true)]
async fn the_fallback_wait_is_the_builders_to_set() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = CachedSource::builder_shared(f.clone())
        .clock(Arc::new(clock.clone()))
        .policy(no_jitter())
        .fallback_wait(Duration::from_millis(300))
        .build();
    s.token().await.unwrap();
    clock.advance(Duration::from_secs(2800));
    f.set_hanging(true);
    let started = tokio::time::Instant::now();
    let t = s.token_with(Want::one_shot(Duration::ZERO)).await.unwrap();
    assert_eq!(t.expose_secret(), "tok-1");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn during_an_outage_the_valid_token_is_served_and_an_expired_one_never() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    f.set_failing(true);

    // Stale: background refreshes fail, the token keeps being served.
    clock.advance(Duration::from_secs(3000));
    assert_eq!(s.token().await.unwrap().expose_secret(), "tok-1");
    within("the failed background refresh", f.returned(2)).await;
    // Must refresh (20 s left): the blocking refresh fails, the valid token is still served.
    clock.advance(Duration::from_secs(580));
    assert_eq!(s.token().await.unwrap().expose_secret(), "tok-1");
    // Expired: an error, never the expired token.
    clock.advance(Duration::from_secs(20));
    let e = s.token().await.unwrap_err();
    assert!(e.to_string().contains("scripted outage"), "{e}");
    assert!(s.peek_fresh().is_none());

    // Recovery: once the failure note's step has passed, the next call gets a new token.
    f.set_failing(false);
    clock.advance(freshtoken::NOTE_BACKOFF_CAP);
    let t = s.token().await.unwrap();
    assert!(t.is_valid_at(clock.now()));
    assert_ne!(t.expose_secret(), "tok-1");
}

#[tokio::test(start_paused = true)]
async fn background_failures_back_off_instead_of_hammering() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    s.token().await.unwrap();
    f.set_failing(true);
    clock.advance(Duration::from_secs(2800));
    s.token().await.unwrap();
    within("the failed background refresh", f.returned(2)).await;
    for _ in 0..100 {
        s.token().await.unwrap();
        // With time paused, a sleep ends only once every task that can run has run: any
        // refresh these calls started has had its chance to reach the fetcher.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(f.calls(), 2, "one failed background refresh, then a pause");
    clock.advance(Duration::from_secs(1));
    s.token().await.unwrap();
    within("the retry after the pause", f.returned(3)).await;
    assert_eq!(f.calls(), 3, "after the pause, one more try");
}

#[tokio::test]
async fn invalidate_drops_only_the_token_it_names() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    let first = s.token().await.unwrap();
    assert!(s.invalidate(&first).await.unwrap());
    let second = s.token().await.unwrap();
    assert_eq!(second.expose_secret(), "tok-2");
    // A caller still holding the first token gets a 401 late: the newer token stays.
    assert!(!s.invalidate(&first).await.unwrap());
    assert_eq!(s.token().await.unwrap().expose_secret(), "tok-2");
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn min_ttl_longer_than_the_lifetime_is_a_clear_error() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, Duration::from_secs(300));
    let s = source(&f, &clock);
    let e = s
        .token_with(Want::one_shot(Duration::from_secs(600)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), freshtoken::ErrorKind::Config);
    assert!(
        e.to_string().contains("less than the 600.0 s asked for"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_make_one_request() {
    let server = freshtoken_devserver::Running::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Default::default(),
    )
    .await
    .unwrap();
    let request = TokenRequest::new(
        server.token_url().parse().unwrap(),
        freshtoken_devserver::DEFAULT_CLIENT_ID,
        Some(SecretString::from(
            freshtoken_devserver::DEFAULT_CLIENT_SECRET.to_owned(),
        )),
    );
    let s =
        CachedSource::builder(HttpFetcher::new(request, HttpOptions::default()).unwrap()).build();
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.token().await.map(|t| t.expose_secret().to_owned())
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(tokens.len(), 1, "everyone got the same token");
    assert_eq!(server.state().stats().token_requests, 1);
    assert_eq!(s.fetch_count(), 1);
}

/// A source on a file store, while "another process" (a second store on the same directory)
/// holds the refresh lock, and a task of this one already waiting for a token.
struct Contended {
    _dir: tempfile::TempDir,
    other: freshtoken::FileStore,
    key: freshtoken::CacheKey,
    clock: ManualClock,
    fetcher: Arc<ScriptedFetcher>,
    held: freshtoken::StoreLock,
    waiter: tokio::task::JoinHandle<freshtoken::Result<String>>,
}

async fn contended() -> Contended {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn freshtoken::TokenStore> = Arc::new(freshtoken::FileStore::new(dir.path()));
    let key =
        TokenRequest::new("https://idp.example/token".parse().unwrap(), "c", None).cache_key();
    let clock = ManualClock::starting_now();
    let fetcher = ScriptedFetcher::new(&clock, HOUR);
    let s = CachedSource::builder_shared(fetcher.clone())
        .store_under(store, key.clone())
        .clock(Arc::new(clock.clone()))
        .build();
    let other = freshtoken::FileStore::new(dir.path());
    let held = freshtoken::TokenStore::try_lock(&other, &key)
        .await
        .unwrap()
        .unwrap();
    let waiter = tokio::spawn(async move { s.token().await.map(|t| t.expose_secret().to_owned()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter waits while the lock is held"
    );
    Contended {
        _dir: dir,
        other,
        key,
        clock,
        fetcher,
        held,
        waiter,
    }
}

/// The holder publishes its token: the waiter adopts it and makes no request of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_the_lock_holders_token_instead_of_fetching() {
    let c = contended().await;
    let now = c.clock.now();
    let published = Token::new(
        SecretString::from("from-the-holder".to_owned()),
        now,
        now + HOUR,
        ExpirySource::ExpiresIn,
    );
    freshtoken::TokenStore::save(&c.other, &c.key, &published)
        .await
        .unwrap();
    assert_eq!(c.waiter.await.unwrap().unwrap(), "from-the-holder");
    assert_eq!(c.fetcher.calls(), 0, "the waiter made no request");
    c.held.release().await;
}

/// The holder dies without publishing: once its lock is gone, one waiter fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_fetches_once_a_dead_holders_lock_is_gone() {
    let c = contended().await;
    drop(c.held); // the holder dies: its lock goes with it
    assert_eq!(c.waiter.await.unwrap().unwrap(), "tok-1");
    assert_eq!(c.fetcher.calls(), 1);
}

#[tokio::test]
async fn watchers_see_each_new_token_and_current_never_shows_an_expired_one() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, HOUR);
    let s = source(&f, &clock);
    let mut changes = s.subscribe();
    assert!(s.peek_valid().is_none() && s.next_refresh().is_none());
    s.token().await.unwrap();
    assert!(
        changes.has_changed().unwrap(),
        "the first token is a change"
    );
    changes.borrow_and_update();
    // Stale at 75 % of the hour (no jitter here): still current, and due for a refresh.
    let due = s.next_refresh().unwrap();
    assert_eq!(due, clock.now() + HOUR.mul_f64(0.75));
    clock.advance(Duration::from_secs(2800));
    assert_eq!(s.peek_valid().unwrap().expose_secret(), "tok-1");
    assert!(!changes.has_changed().unwrap(), "nothing changed yet");
    s.token_with(Want::one_shot(Duration::ZERO)).await.unwrap();
    assert!(changes.has_changed().unwrap(), "the refresh is a change");
    assert_eq!(s.peek_valid().unwrap().expose_secret(), "tok-2");
    changes.borrow_and_update();
    // Invalidation is a change too; and past expiry nothing is current.
    let t = s.peek_valid().unwrap().clone();
    assert!(s.invalidate(&t).await.unwrap());
    assert!(changes.has_changed().unwrap());
    assert!(s.peek_valid().is_none());
    s.token().await.unwrap();
    clock.advance(HOUR + Duration::from_secs(1));
    assert!(
        s.peek_valid().is_none(),
        "an expired token is never current"
    );
}

/// Found by the proxy's fault matrix: a long-running caller with 1.5 s left and a refresh
/// hanging waited all of the 1.5 s, and then had a token with nothing left to hand out.
#[tokio::test(start_paused = true)]
async fn a_caller_that_waits_for_a_hanging_refresh_still_has_a_token_when_the_wait_ends() {
    let clock = ManualClock::starting_now();
    let f = ScriptedFetcher::new(&clock, Duration::from_secs(20));
    let s = source(&f, &clock);
    s.token().await.unwrap();
    f.set_hanging(true);
    clock.advance(Duration::from_secs(15)); // stale: a background refresh starts and hangs
    assert_eq!(s.token().await.unwrap().expose_secret(), "tok-1");
    within("the hanging background refresh", f.started(2)).await;
    clock.advance(Duration::from_millis(3500)); // must refresh: 1.5 s left
    let ticking = {
        let clock = clock.clone();
        tokio::spawn(async move {
            // The token clock moves with tokio's paused time while the caller waits.
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                clock.advance(Duration::from_millis(10));
            }
        })
    };
    let started = tokio::time::Instant::now();
    let got = s.token().await;
    ticking.abort();
    let t = got.expect("the held token, not an error");
    assert_eq!(t.expose_secret(), "tok-1");
    assert!(t.is_valid_at(clock.now()), "still valid when handed out");
    assert!(
        started.elapsed() <= Duration::from_millis(760),
        "{:?}",
        started.elapsed()
    );
}
