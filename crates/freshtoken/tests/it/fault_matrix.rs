//! The fault matrix of the library: every store × every fault, against the lifecycle rules
//! of docs/RELIABILITY.md. A "process" is a new `CachedSource` over the shared store (nothing in
//! memory, as a fresh `freshtoken get` starts); a long-running one (agent, proxy) is one
//! source kept across calls. Token time moves with a `ManualClock`; the waits measured are
//! real, and bounded from above only.
//!
//! Each cell asserts:
//! - zero failed calls while a valid token exists (for the caller's `min_ttl`);
//! - every such call waits at most `DEFAULT_FALLBACK_WAIT` plus slack;
//! - token requests within the bound of the rule (one per failure-note step);
//! - once no valid token is left, an error of the documented kind, within the deadline;
//! - recovery: a fresh token once the fault ends (within one backoff step).
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freshtoken::{
    Budget, CacheKey, CachedSource, Clock, DEFAULT_FALLBACK_WAIT, Error, ErrorKind, ExpirySource,
    Fetch, FileStore, LayeredStore, ManualClock, MemoryStore, RedisStore, RefreshPolicy, Token,
    TokenStore, Want,
};
use freshtoken_testkit::RedisServer;
use secrecy::SecretString;

/// The tokens' lifetime: short, so that a cached token has less life left than a retry window.
const TTL: Duration = Duration::from_secs(20);
/// How long a call without a fallback may try (the fetcher's patience).
const PATIENCE: Duration = Duration::from_millis(600);
/// Scheduling slack on top of a bound.
const SLACK: Duration = Duration::from_millis(700);
const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Ok,
    /// 503s, refused connections: retryable.
    Outage,
    /// No answer until the mode changes.
    Hang,
    /// 429 with Retry-After.
    RateLimited,
    /// Genesys Cloud's 400 "Rate limit exceeded".
    GenesysThrottle,
    /// A 200 that is not a token response.
    Malformed,
    /// 401 invalid_client (a rotated secret).
    Rejected,
}

impl Mode {
    fn from(n: u8) -> Mode {
        [
            Mode::Ok,
            Mode::Outage,
            Mode::Hang,
            Mode::RateLimited,
            Mode::GenesysThrottle,
            Mode::Malformed,
            Mode::Rejected,
        ][n as usize]
    }

    fn error(self) -> Error {
        match self {
            Mode::Ok | Mode::Hang | Mode::Outage => Error::Status {
                status: 503,
                excerpt: "Service Unavailable".into(),
            },
            Mode::RateLimited => Error::Status {
                status: 429,
                excerpt: String::new(),
            },
            Mode::GenesysThrottle => Error::OAuth {
                status: 400,
                error: "invalid_request".into(),
                description: Some(
                    "Rate limit exceeded the maximum. Retry the request in [1] seconds".into(),
                ),
            },
            Mode::Malformed => Error::InvalidResponse {
                status: 200,
                problem: "the body is HTML or XML".into(),
            },
            Mode::Rejected => Error::OAuth {
                status: 401,
                error: "invalid_client".into(),
                description: None,
            },
        }
    }

    /// The exit-code group the error of this fault falls in once no token is left.
    fn kind(self) -> ErrorKind {
        match self {
            Mode::Rejected => ErrorKind::Rejected,
            _ => ErrorKind::Unavailable,
        }
    }
}

/// The token endpoint, with its faults switched by the test.
#[derive(Debug)]
struct Endpoint {
    clock: ManualClock,
    mode: AtomicU8,
    calls: AtomicU32,
}

impl Endpoint {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
    fn mode(&self) -> Mode {
        Mode::from(self.mode.load(Ordering::SeqCst))
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Fetch for Endpoint {
    fn cache_key(&self) -> CacheKey {
        CacheKey::from_hex(&"0".repeat(64)).expect("64 lowercase hex digits")
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    async fn fetch(&self, _previous: Option<&Token>, budget: Budget) -> freshtoken::Result<Token> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        // A hanging endpoint answers nothing until the fault ends, whatever the budget says
        // (a peer that accepted the connection and went silent): the source's own bounds
        // are what is under test.
        let _ = budget;
        while self.mode() == Mode::Hang {
            tokio::time::sleep(MS(10)).await;
        }
        match self.mode() {
            Mode::Ok => {
                let now = self.clock.now();
                Ok(Token::new(
                    SecretString::from(format!("tok-{n}")),
                    now,
                    now + TTL,
                    ExpirySource::ExpiresIn,
                ))
            }
            mode => Err(mode.error()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No store: the source's own memory (library users, the proxy).
    None,
    Memory,
    File,
    Redis,
    FileRedis,
}

/// One row of the matrix: a store and everything the cells need to drive it.
struct Rig {
    kind: Kind,
    clock: ManualClock,
    endpoint: Arc<Endpoint>,
    store: Option<Arc<dyn TokenStore>>,
    key: CacheKey,
    /// The long-running source (for `Kind::None`, the only one).
    daemon: CachedSource,
    redis: Option<RedisServer>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(kind: Kind) -> Rig {
        let clock = ManualClock::starting_now();
        let endpoint = Arc::new(Endpoint {
            clock: clock.clone(),
            mode: AtomicU8::new(0),
            calls: AtomicU32::new(0),
        });
        let dir = tempfile::tempdir().unwrap();
        let redis = matches!(kind, Kind::Redis | Kind::FileRedis).then(RedisServer::start);
        let redis_store = |r: &RedisServer| -> Arc<dyn TokenStore> {
            Arc::new(
                RedisStore::new(
                    &r.url(),
                    None,
                    &SecretString::from("client-secret".to_owned()),
                )
                .unwrap()
                .with_clock(Arc::new(clock.clone())),
            )
        };
        let file: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("cache")));
        let store: Option<Arc<dyn TokenStore>> = match (kind, &redis) {
            (Kind::None, _) => None,
            (Kind::Memory, _) => Some(Arc::new(MemoryStore::new())),
            (Kind::File, _) => Some(file),
            (Kind::Redis, Some(r)) => Some(redis_store(r)),
            (Kind::FileRedis, Some(r)) => Some(Arc::new(
                LayeredStore::new(vec![file, redis_store(r)]).with_clock(Arc::new(clock.clone())),
            )),
            _ => unreachable!("Redis rigs start a server"),
        };
        let key = CacheKey::from_hex(&format!("{:064x}", rand::random::<u128>())).unwrap();
        let daemon = source(&endpoint, &clock, &store, &key);
        Rig {
            kind,
            clock,
            endpoint,
            store,
            key,
            daemon,
            redis,
            _dir: dir,
        }
    }

    /// A fresh process over the shared store; without a store, the one source there is.
    fn process(&self) -> CachedSource {
        match self.kind {
            Kind::None => self.daemon.clone(),
            _ => source(&self.endpoint, &self.clock, &self.store, &self.key),
        }
    }

    /// Starts a cell: a new key, a fresh token fetched at the clock's "now", the fault off.
    fn reset(&mut self) -> String {
        self.endpoint.set(Mode::Ok);
        self.clock.advance(S(3600));
        self.key = CacheKey::from_hex(&format!("{:064x}", rand::random::<u128>())).unwrap();
        self.daemon = source(&self.endpoint, &self.clock, &self.store, &self.key);
        let rt = futures_block(self.daemon.token_with(Want::one_shot(Duration::ZERO)));
        rt.expect("a healthy endpoint gives a token")
            .expose_secret()
            .to_owned()
    }
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn source(
    endpoint: &Arc<Endpoint>,
    clock: &ManualClock,
    store: &Option<Arc<dyn TokenStore>>,
    key: &CacheKey,
) -> CachedSource {
    let mut b = CachedSource::builder_shared(endpoint.clone())
        .clock(Arc::new(clock.clone()))
        .policy(RefreshPolicy::default().with_jitter(0.0));
    if let Some(store) = store {
        b = b.store_under(store.clone(), key.clone());
    }
    b.build()
}

/// What a cell saw, for the table printed at the end.
#[derive(Default, Debug)]
struct Tally {
    calls: u32,
    served: u32,
    requests: u32,
    longest_wait: Duration,
}

impl Tally {
    /// One call that must succeed with `want_token` while a valid token exists.
    async fn served(&mut self, source: &CachedSource, want: Want, want_token: &str, what: &str) {
        let started = Instant::now();
        let got = source.token_with(want).await;
        let waited = started.elapsed();
        self.calls += 1;
        self.longest_wait = self.longest_wait.max(waited);
        let got = got.unwrap_or_else(|e| panic!("{what}: a valid token exists, yet: {e}"));
        assert_eq!(got.expose_secret(), want_token, "{what}");
        assert!(
            waited <= DEFAULT_FALLBACK_WAIT + SLACK,
            "{what}: waited {waited:?}, more than the fallback bound"
        );
        self.served += 1;
    }
}

/// Outage shorter than the token's remaining life, for one kind of failure: every caller is
/// served the held token, the endpoint sees one request per note step, and the IdP's return
/// gives everyone a new token within one step.
async fn outage_shorter(rig: &mut Rig, mode: Mode) -> Tally {
    let token = rig.reset();
    let before = rig.endpoint.calls();
    rig.clock.advance(S(16)); // 4 s left; callers need 1 s.
    rig.endpoint.set(mode);
    let mut tally = Tally::default();
    let want = Want::one_shot(S(1));
    for i in 0..20 {
        let p = rig.process();
        tally
            .served(
                &p,
                want,
                &token,
                &format!("{:?}/{mode:?} call {i}", rig.kind),
            )
            .await;
        rig.clock.advance(MS(100)); // 20 calls over 2 s: the note's steps are 1 s, then 2 s.
    }
    tally.requests = rig.endpoint.calls() - before;
    assert!(
        (1..=2).contains(&tally.requests),
        "{:?}/{mode:?}: {} token requests for 20 calls over 2 s of outage (one per note step)",
        rig.kind,
        tally.requests
    );
    // The IdP returns: within one backoff step (2 s), a caller gets a new token.
    rig.endpoint.set(Mode::Ok);
    rig.clock.advance(S(2));
    let t = rig.process().token_with(want).await.unwrap();
    assert_ne!(
        t.expose_secret(),
        token,
        "{:?}/{mode:?}: recovered",
        rig.kind
    );
    tally
}

/// Outage longer than the token: once it has expired, a clear error of the fault's kind,
/// within the deadline; never the expired token.
async fn outage_longer(rig: &mut Rig, mode: Mode) -> Tally {
    let token = rig.reset();
    let before = rig.endpoint.calls();
    rig.endpoint.set(mode);
    rig.clock.advance(TTL + S(1));
    let mut tally = Tally::default();
    for _ in 0..3 {
        let started = Instant::now();
        let e = rig
            .process()
            .token_with(Want::one_shot(Duration::ZERO))
            .await
            .expect_err("an expired token is never served");
        let waited = started.elapsed();
        tally.calls += 1;
        tally.longest_wait = tally.longest_wait.max(waited);
        assert_eq!(e.kind(), mode.kind(), "{:?}/{mode:?}: {e}", rig.kind);
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        assert!(
            waited <= PATIENCE + SLACK,
            "{:?}/{mode:?}: {waited:?}",
            rig.kind
        );
    }
    tally.requests = rig.endpoint.calls() - before;
    assert!(tally.requests <= 3, "one attempt a call, no retry storm");
    rig.endpoint.set(Mode::Ok);
    // A long-running caller with nothing to serve fails at once while the note holds...
    let e = rig.daemon.token().await.expect_err("the note holds");
    assert!(e.to_string().contains("next attempt in"), "{e}");
    assert_eq!(
        rig.endpoint.calls() - before,
        tally.requests,
        "and sends nothing"
    );
    // ... and recovers within one step (three failures in a row: 4 s).
    rig.clock.advance(S(4));
    let t = rig.process().token().await.unwrap();
    assert_ne!(t.expose_secret(), token);
    tally
}

/// A slow endpoint: the first caller waits the bounded time and is served; the next are
/// served at once (the note), and the endpoint sees one request.
async fn slow(rig: &mut Rig) -> Tally {
    let token = rig.reset();
    let before = rig.endpoint.calls();
    rig.clock.advance(S(16));
    rig.endpoint.set(Mode::Hang);
    let mut tally = Tally::default();
    let want = Want::one_shot(S(1));
    tally
        .served(&rig.process(), want, &token, "slow, first")
        .await;
    // 4 s left, 1 s needed: it waits half of the 3 s spare for the refresh.
    assert!(
        tally.longest_wait >= MS(1500),
        "it did wait for the refresh: {:?}",
        tally.longest_wait
    );
    for i in 0..5 {
        let started = Instant::now();
        tally
            .served(&rig.process(), want, &token, &format!("slow, {i}"))
            .await;
        assert!(
            started.elapsed() < SLACK,
            "served at once while the note holds"
        );
    }
    tally.requests = rig.endpoint.calls() - before;
    assert_eq!(
        tally.requests, 1,
        "{:?}: one attempt, then the note",
        rig.kind
    );
    rig.endpoint.set(Mode::Ok);
    rig.clock.advance(S(2));
    let t = rig.process().token_with(want).await.unwrap();
    assert_ne!(t.expose_secret(), token);
    tally
}

/// A long-running process during an outage: stale and then must-refresh calls all get the
/// held token, the background refresh backs off, and the token is never served expired.
async fn daemon_outage(rig: &mut Rig) -> Tally {
    let token = rig.reset();
    let before = rig.endpoint.calls();
    rig.endpoint.set(Mode::Outage);
    let mut tally = Tally::default();
    // From 75 % of the life to 2 s before expiry, a call every 100 ms of token time.
    rig.clock.advance(S(15));
    for i in 0..30 {
        tally
            .served(&rig.daemon, Want::default(), &token, &format!("daemon {i}"))
            .await;
        // Real time for the background refresh to run (not to cross an expiry).
        tokio::time::sleep(MS(5)).await;
        rig.clock.advance(MS(100));
    }
    tally.requests = rig.endpoint.calls() - before;
    assert!(
        (1..=4).contains(&tally.requests),
        "{:?}: {} token requests over 3 s of outage (note steps 1 s, 2 s)",
        rig.kind,
        tally.requests
    );
    rig.clock.advance(S(3)); // expired
    assert!(rig.daemon.token().await.is_err());
    rig.endpoint.set(Mode::Ok);
    rig.clock
        .advance(freshtoken::FailureNote::backoff(u32::MAX, 0.0)); // past any note
    assert_ne!(rig.daemon.token().await.unwrap().expose_secret(), token);
    tally
}

/// Revocation mid-run: the daemon drops the token after a 401, and no process is served it.
async fn revoked(rig: &mut Rig) -> Tally {
    let token = rig.reset();
    let held = rig.daemon.token().await.unwrap();
    assert!(rig.daemon.invalidate(&held).await.unwrap());
    let mut tally = Tally::default();
    for _ in 0..3 {
        let t = rig.process().token().await.unwrap();
        tally.calls += 1;
        assert_ne!(
            t.expose_secret(),
            token,
            "{:?}: the revoked token is gone",
            rig.kind
        );
    }
    tally.requests = 1;
    tally
}

/// The wall clock jumps: forward past expiry (a new token, never the old one), and back by
/// an hour (the cached token's arrival lies in the future, so it is not trusted).
async fn clock_jumps(rig: &mut Rig) -> Tally {
    let token = rig.reset();
    let mut tally = Tally::default();
    rig.clock.advance(S(3600));
    let t = rig.process().token().await.unwrap();
    assert_ne!(
        t.expose_secret(),
        token,
        "forward: the expired token is not served"
    );
    let after_forward = t.expose_secret().to_owned();
    rig.clock.set(rig.clock.now() - S(3600));
    let t = rig.process().token().await.unwrap();
    assert_ne!(
        t.expose_secret(),
        after_forward,
        "{:?}: back: a token received in the future is not trusted",
        rig.kind
    );
    assert!(t.is_valid_at(rig.clock.now()));
    tally.calls = 2;
    tally.requests = 2;
    tally
}

/// Redis stops mid-run and comes back: every call is served (file layer, or directly).
async fn redis_down_and_back(rig: &mut Rig) -> Tally {
    let token = rig.reset();
    let mut tally = Tally::default();
    rig.redis.as_mut().unwrap().stop();
    for i in 0..5 {
        let started = Instant::now();
        let got = rig.process().token().await;
        tally.calls += 1;
        tally.longest_wait = tally.longest_wait.max(started.elapsed());
        let got = got.unwrap_or_else(|e| panic!("Redis down, call {i}: {e}"));
        if rig.kind == Kind::FileRedis {
            assert_eq!(got.expose_secret(), token, "the file layer serves");
        }
        assert!(
            started.elapsed() <= S(5) + SLACK,
            "Redis down costs at most its own timeouts, {:?}",
            started.elapsed()
        );
    }
    rig.redis.as_mut().unwrap().restart();
    // Recovery: once the store reconnects (at most every 2 s after a failure), a new token
    // lands in Redis again and is shared from there.
    let started = Instant::now();
    let redis = rig.redis.as_ref().unwrap();
    let name = freshtoken::RedisStore::key_name(&rig.key);
    loop {
        rig.clock.advance(TTL); // the token held by the file layer has expired too
        rig.process().token().await.unwrap();
        tally.calls += 1;
        if redis.command(&["EXISTS", &name]).as_deref() == Some(":1") {
            break;
        }
        assert!(started.elapsed() < S(10), "Redis was never used again");
        tokio::time::sleep(MS(200)).await;
    }
    let before = rig.endpoint.calls();
    let shared = rig.process().token().await.unwrap();
    std::fs::remove_dir_all(rig._dir.path().join("cache")).ok();
    let again = rig.process().token().await.unwrap();
    assert_eq!(
        shared.expose_secret(),
        again.expose_secret(),
        "shared through Redis"
    );
    tally.requests = rig.endpoint.calls() - before;
    assert_eq!(tally.requests, 0, "served from Redis after it came back");
    tally
}

/// The rig's file cache on a tmpfs made full or read-only: tokens are still
/// served (fetched), each call warns, and nothing fails.
async fn unwritable_cache(rig: &mut Rig, full: bool) -> Tally {
    let dir = rig._dir.path().join("cache");
    std::fs::create_dir_all(&dir).unwrap();
    let mount = |args: &[&str]| {
        let ok = Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mount {args:?} failed: this cell needs root (CI runs as root)"
        );
    };
    let d = dir.to_str().unwrap();
    mount(&["-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", d]);
    if full {
        let filler = vec![0u8; 64 * 1024];
        let _ = std::fs::write(dir.join("filler"), filler);
    } else {
        mount(&["-o", "remount,ro", d]);
    }
    let mut tally = Tally::default();
    rig.endpoint.set(Mode::Ok);
    rig.clock.advance(S(3600));
    let before = rig.endpoint.calls();
    for _ in 0..3 {
        let t = rig.process().token().await;
        tally.calls += 1;
        assert!(
            t.is_ok(),
            "a cache that cannot be written still serves: {t:?}"
        );
        tally.served += 1;
    }
    let _ = Command::new("umount").arg(d).status();
    tally.requests = rig.endpoint.calls() - before;
    // Without a writable file, each process fetches; with Redis beside it, they share.
    let expected = if rig.kind == Kind::FileRedis { 1 } else { 3 };
    assert_eq!(tally.requests, expected, "{:?}", rig.kind);
    tally
}

async fn row(kind: Kind) -> Vec<(String, Tally)> {
    let mut rig = Rig::new(kind);
    let mut out = Vec::new();
    for mode in [
        Mode::Outage,
        Mode::RateLimited,
        Mode::GenesysThrottle,
        Mode::Malformed,
        Mode::Rejected,
    ] {
        out.push((
            format!("outage<life {mode:?}"),
            outage_shorter(&mut rig, mode).await,
        ));
        out.push((
            format!("outage>life {mode:?}"),
            outage_longer(&mut rig, mode).await,
        ));
    }
    out.push(("slow endpoint".into(), slow(&mut rig).await));
    out.push(("daemon outage".into(), daemon_outage(&mut rig).await));
    out.push(("revoked".into(), revoked(&mut rig).await));
    out.push(("clock jumps".into(), clock_jumps(&mut rig).await));
    if matches!(kind, Kind::Redis | Kind::FileRedis) {
        out.push((
            "redis down/back".into(),
            redis_down_and_back(&mut rig).await,
        ));
    }
    if matches!(kind, Kind::File | Kind::FileRedis) {
        out.push(("cache full".into(), unwritable_cache(&mut rig, true).await));
        out.push((
            "cache read-only".into(),
            unwritable_cache(&mut rig, false).await,
        ));
    }
    for (cell, t) in &out {
        println!(
            "{kind:?} | {cell} | calls {} | served {} | token requests {} | longest wait {:?}",
            t.calls, t.served, t.requests, t.longest_wait
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_without_a_store() {
    row(Kind::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_memory_store() {
    row(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_file_store() {
    row(Kind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_redis_store() {
    row(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_file_and_redis() {
    row(Kind::FileRedis).await;
}
