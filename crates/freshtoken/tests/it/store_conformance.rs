//! One suite, every store: what `TokenStore` promises, checked against each implementation.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use freshtoken::{
    CacheKey, Clock, ExpirySource, FileStore, MemoryStore, Token, TokenRequest, TokenStore,
};
use freshtoken_testkit::{as_root, chown_nobody};
use secrecy::SecretString;

fn key(client: &str) -> CacheKey {
    TokenRequest::new("https://idp.example/token".parse().unwrap(), client, None).cache_key()
}

fn token(value: &str, lifetime: Duration) -> Token {
    let now = freshtoken::SystemClock.now();
    Token::new(
        SecretString::from(value.to_owned()),
        now,
        now + lifetime,
        ExpirySource::ExpiresIn,
    )
    .with_scope(Some("a b".into()))
}

async fn round_trip(store: Arc<dyn TokenStore>) {
    let k = key("c1");
    assert!(store.load(&k).await.unwrap().is_none());
    let t = token("tok-1", Duration::from_secs(60));
    store.save(&k, &t).await.unwrap();
    let back = store.load(&k).await.unwrap().expect("saved token loads");
    assert!(back.same_token(&t));
    assert_eq!(back.scope(), Some("a b"));
    // Millisecond precision is what persistent stores keep.
    let diff = |a: SystemTime, b: SystemTime| {
        a.duration_since(b)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap()
    };
    assert!(diff(back.expires_at(), t.expires_at()) < Duration::from_millis(1));
}

async fn replace_and_remove(store: Arc<dyn TokenStore>) {
    let k = key("c2");
    store
        .save(&k, &token("old", Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .save(&k, &token("new", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().expose_secret(),
        "new"
    );
    assert!(store.remove(&k).await.unwrap());
    assert!(!store.remove(&k).await.unwrap());
    assert!(store.load(&k).await.unwrap().is_none());
}

async fn keys_are_separate(store: Arc<dyn TokenStore>) {
    store
        .save(&key("a"), &token("for-a", Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .save(&key("b"), &token("for-b", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        store
            .load(&key("a"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "for-a"
    );
    assert_eq!(
        store
            .load(&key("b"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "for-b"
    );
}

async fn lock_excludes_and_releases(store: Arc<dyn TokenStore>) {
    let k = key("c3");
    let held = store
        .try_lock(&k)
        .await
        .unwrap()
        .expect("a free lock is taken");
    assert!(
        store.try_lock(&k).await.unwrap().is_none(),
        "a held lock is not taken twice"
    );
    // Other keys are not blocked.
    let other = store
        .try_lock(&key("x"))
        .await
        .unwrap()
        .expect("another key's lock is free");
    held.release().await;
    let again = store
        .try_lock(&k)
        .await
        .unwrap()
        .expect("a released lock is taken again");
    again.release().await;
    other.release().await;
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn round_trip() {
                let (store, _guard) = $make;
                super::round_trip(store).await;
            }

            #[tokio::test]
            async fn replace_and_remove() {
                let (store, _guard) = $make;
                super::replace_and_remove(store).await;
            }

            #[tokio::test]
            async fn keys_are_separate() {
                let (store, _guard) = $make;
                super::keys_are_separate(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_excludes_and_releases() {
                let (store, _guard) = $make;
                super::lock_excludes_and_releases(store).await;
            }
        }
    };
}

fn memory() -> (Arc<dyn TokenStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

fn file() -> (Arc<dyn TokenStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(FileStore::new(dir.path().join("cache"))), dir)
}

conformance!(memory_store, memory());
conformance!(file_store, file());
#[cfg(feature = "redis")]
conformance!(redis_store, redis());

#[cfg(feature = "redis")]
fn redis() -> (Arc<dyn TokenStore>, freshtoken_testkit::RedisServer) {
    let server = freshtoken_testkit::RedisServer::start();
    let creds = SecretString::from("client-secret".to_owned());
    (
        Arc::new(freshtoken::RedisStore::new(&server.url(), None, &creds).unwrap()),
        server,
    )
}

#[cfg(feature = "redis")]
conformance!(redis_cluster_store, redis_cluster());

/// The store on a six-node Redis Cluster (three primaries, three replicas).
#[cfg(feature = "redis")]
fn redis_cluster() -> (Arc<dyn TokenStore>, freshtoken_testkit::RedisCluster) {
    let cluster = freshtoken_testkit::RedisCluster::start();
    let creds = SecretString::from("client-secret".to_owned());
    (
        Arc::new(freshtoken::RedisStore::new(&cluster.url(), None, &creds).unwrap()),
        cluster,
    )
}

/// The lock must sit on the primary that holds the token (and the note with them): a
/// failover or a resharding moves the slot, so they move together, and no primary can
/// hand out a lock for a token another primary holds.
#[cfg(feature = "redis")]
#[test]
fn a_profile_s_token_lock_and_note_hash_to_one_cluster_slot() {
    use freshtoken::RedisStore;
    let cluster = freshtoken_testkit::RedisCluster::start();
    let mut slots = std::collections::HashSet::new();
    for client in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let k = key(client);
        let slot = cluster.keyslot(&RedisStore::key_name(&k));
        assert_eq!(
            cluster.keyslot(&RedisStore::lock_name(&k)),
            slot,
            "{client}"
        );
        assert_eq!(
            cluster.keyslot(&RedisStore::note_name(&k)),
            slot,
            "{client}"
        );
        slots.insert(slot);
    }
    assert!(
        slots.len() > 1,
        "profiles still spread over the cluster: {slots:?}"
    );
}

/// A planned failover and then a primary killed with SIGKILL: the token, its lock and its
/// note come through both, and the store answers again on the promoted replicas.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_keeps_token_lock_and_note() {
    use freshtoken::{FailureNote, RedisStore};
    let (store, mut cluster) = redis_cluster();
    let k = key("failover");
    let name = RedisStore::key_name(&k);
    store
        .save(&k, &token("tok-failover", Duration::from_secs(600)))
        .await
        .unwrap();
    let held = store.try_lock(&k).await.unwrap().expect("a free lock");
    let note = FailureNote::after(None, "down", freshtoken::SystemClock.now(), 0.0);
    store.set_note(&k, Some(&note)).await.unwrap();

    let check = |what: &'static str| {
        let store = store.clone();
        let k = k.clone();
        async move {
            // The client may need a moment (and a reconnect) to learn the new primary.
            let started = std::time::Instant::now();
            let back = loop {
                match store.load(&k).await {
                    Ok(t) => break t,
                    Err(e) => assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "{what}: the store never answered again: {e}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(back.expect(what).expose_secret(), "tok-failover", "{what}");
            assert!(
                store.try_lock(&k).await.unwrap().is_none(),
                "{what}: lock kept"
            );
            assert!(store.note(&k).await.unwrap().is_some(), "{what}: note kept");
        }
    };
    cluster.fail_over(&name);
    check("after CLUSTER FAILOVER").await;
    cluster.kill_primary(&name);
    check("after the primary was killed").await;
    held.release().await;
    assert!(
        store.try_lock(&k).await.unwrap().is_some(),
        "released on the new primary"
    );
}

/// The budget is counted and checked in one script: of 20 callers at once against a
/// budget of 5, exactly 5 may go, on one Redis and on a cluster alike, and the others learn
/// when the next window opens.
#[cfg(feature = "redis")]
async fn budget_lets_exactly_its_rate_through(url: &str) {
    let creds = SecretString::from("client-secret".to_owned());
    let store = Arc::new(
        freshtoken::RedisStore::new(url, None, &creds)
            .unwrap()
            .with_token_rate(5, Duration::from_secs(3600)),
    );
    let k = key("budget");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move { store.spend_budget(&k).await.unwrap() })
        })
        .collect();
    let mut went = 0;
    for call in calls {
        match call.await.unwrap() {
            None => went += 1,
            Some(wait) => assert!(wait <= Duration::from_secs(3600), "{wait:?}"),
        }
    }
    assert_eq!(went, 5, "the budget's five, no more");
    // Another profile has a budget of its own.
    assert_eq!(store.spend_budget(&key("other")).await.unwrap(), None);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_budget_lets_exactly_its_rate_through() {
    let server = freshtoken_testkit::RedisServer::start();
    budget_lets_exactly_its_rate_through(&server.url()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_budget_lets_exactly_its_rate_through() {
    let cluster = freshtoken_testkit::RedisCluster::start();
    budget_lets_exactly_its_rate_through(&cluster.url()).await;
}

// What only the file store must do.

#[tokio::test]
async fn file_store_modes_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("nested").join("cache");
    let store = FileStore::new(&cache);
    store
        .save(&key("m"), &token("t", Duration::from_secs(60)))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    // The parent it made too, whatever the umask (022 here: 0755 before).
    assert_eq!(mode(&dir.path().join("nested")), 0o700);
    assert_eq!(mode(&cache.join(format!("{}.json", key("m")))), 0o600);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn file_store_ignores_corrupt_foreign_and_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let k = key("f");
    let path = dir.path().join(format!("{k}.json"));
    store
        .save(&k, &token("good", Duration::from_secs(60)))
        .await
        .unwrap();
    let good = std::fs::read(&path).unwrap();

    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    // Garbage.
    std::fs::write(&path, b"\x00\xffnot json").unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    // Another key's record copied over.
    store
        .save(&key("other"), &token("theirs", Duration::from_secs(60)))
        .await
        .unwrap();
    std::fs::copy(dir.path().join(format!("{}.json", key("other"))), &path).unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    // A good record that others may read or change is not trusted.
    std::fs::write(&path, &good).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    // A symlink is not followed.
    std::fs::remove_file(&path).unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    // Saving replaces whatever was there.
    store
        .save(&k, &token("fresh", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().expose_secret(),
        "fresh"
    );
}

/// Every file in `dir` with its contents, to see that nothing was written there.
fn listing(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn file_store_neither_trusts_nor_writes_through_files_of_another_user() {
    if !as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let store = FileStore::new(&cache);
    let k = key("planted");
    store
        .save(&k, &token("planted", Duration::from_secs(600)))
        .await
        .unwrap();
    // A good record, mode 0600, that another user owns (planted while the folder was open).
    let record = cache.join(format!("{k}.json"));
    chown_nobody(&record);
    let planted = dir.path().join("planted.json");
    std::fs::hard_link(&record, &planted).unwrap();
    let planted_bytes = std::fs::read(&planted).unwrap();
    assert!(
        store.load(&k).await.unwrap().is_none(),
        "a record of another user is not trusted"
    );
    store
        .save(&k, &token("ours", Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().expose_secret(),
        "ours"
    );
    assert_eq!(
        std::fs::read(&planted).unwrap(),
        planted_bytes,
        "replaced, not written through"
    );

    // A note of another user is not obeyed.
    let note = freshtoken::FailureNote::after(None, "planted", freshtoken::SystemClock.now(), 0.0);
    store.set_note(&k, Some(&note)).await.unwrap();
    assert!(store.note(&k).await.unwrap().is_some());
    chown_nobody(&cache.join(format!("{k}.note")));
    assert!(store.note(&k).await.unwrap().is_none());

    // A lock file of another user, which they hold, is neither used nor waited for.
    let lock = cache.join(format!("{k}.lock"));
    let _ = std::fs::remove_file(&lock);
    std::fs::write(&lock, b"").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_nobody(&lock);
    let theirs = std::fs::File::open(&lock).unwrap();
    theirs.lock().unwrap();
    let ours = store.try_lock(&k).await.unwrap();
    assert!(ours.is_some(), "a foreign lock file is not waited for");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::symlink_metadata(&lock).unwrap().uid(), 0);
}

#[tokio::test]
async fn file_store_leaves_a_folder_of_another_user_alone() {
    if !as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let k = key("theirs");
    // Another user made the folder first, with a good record and a note in it.
    let theirs = FileStore::new(&cache);
    theirs
        .save(&k, &token("planted", Duration::from_secs(600)))
        .await
        .unwrap();
    let note = freshtoken::FailureNote::after(None, "planted", freshtoken::SystemClock.now(), 0.0);
    theirs.set_note(&k, Some(&note)).await.unwrap();
    for entry in std::fs::read_dir(&cache).unwrap() {
        chown_nobody(&entry.unwrap().path());
    }
    chown_nobody(&cache);
    let before = listing(&cache);

    let store = FileStore::new(&cache);
    assert!(store.load(&k).await.unwrap().is_none());
    assert!(store.note(&k).await.unwrap().is_none());
    let lock = store.try_lock(&k).await.unwrap();
    assert!(
        lock.is_some(),
        "nothing to wait for in a folder it does not use"
    );
    store
        .save(&k, &token("ours", Duration::from_secs(600)))
        .await
        .unwrap();
    store.set_note(&k, None).await.unwrap();
    assert!(
        store.remove(&k).await.is_err(),
        "it says why it removes nothing"
    );
    drop(lock);
    assert_eq!(listing(&cache), before, "nothing written in their folder");
}

#[tokio::test]
async fn file_store_does_not_follow_a_symlinked_folder() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let k = key("linked");
    FileStore::new(&elsewhere)
        .save(&k, &token("planted", Duration::from_secs(600)))
        .await
        .unwrap();
    let before = listing(&elsewhere);
    let cache = dir.path().join("cache");
    std::os::unix::fs::symlink(&elsewhere, &cache).unwrap();

    let store = FileStore::new(&cache);
    assert!(store.load(&k).await.unwrap().is_none());
    store
        .save(&k, &token("ours", Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(store.try_lock(&k).await.unwrap().is_some());
    assert_eq!(
        listing(&elsewhere),
        before,
        "nothing written through the link"
    );
    assert!(
        std::fs::symlink_metadata(&cache)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_values_are_useless_without_the_credentials() {
    let (store, server) = redis();
    let k = key("sealed");
    store
        .save(&k, &token("tok-sealed", Duration::from_secs(600)))
        .await
        .unwrap();
    let stranger = freshtoken::RedisStore::new(
        &server.url(),
        None,
        &SecretString::from("another-secret".to_owned()),
    )
    .unwrap();
    assert!(
        stranger.load(&k).await.unwrap().is_none(),
        "other credentials cannot open the value"
    );
    assert!(!server.dump().contains("tok-sealed"));
    // A value moved to another key does not open either.
    let moved = server
        .command(&["GET", &freshtoken::RedisStore::key_name(&k)])
        .unwrap();
    let value = moved.lines().nth(1).unwrap().to_owned();
    server.command(&[
        "SET",
        &freshtoken::RedisStore::key_name(&key("elsewhere")),
        &value,
    ]);
    assert!(store.load(&key("elsewhere")).await.unwrap().is_none());
}

/// A long-running process picks Redis up again after an outage, without a restart.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_reconnects_after_an_outage() {
    let (store, mut server) = redis();
    let k = key("reconnect");
    store
        .save(&k, &token("before", Duration::from_secs(600)))
        .await
        .unwrap();
    server.stop();
    assert!(
        store
            .save(&k, &token("during", Duration::from_secs(600)))
            .await
            .is_err()
    );
    server.restart();
    let started = std::time::Instant::now();
    loop {
        if store
            .save(&k, &token("after", Duration::from_secs(600)))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().expose_secret(),
        "after"
    );
}
