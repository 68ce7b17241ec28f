//! One suite, every store: what `TokenStore` promises, checked against each implementation.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use freshtoken::{
    CacheKey, Clock, ExpirySource, FileStore, MemoryStore, Token, TokenRequest, TokenStore,
};
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
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
fn redis() -> (Arc<dyn TokenStore>, redis_server::RedisServer) {
    let server = redis_server::RedisServer::start();
    let creds = SecretString::from("client-secret".to_owned());
    (
        Arc::new(freshtoken::RedisStore::new(&server.url(), None, &creds).unwrap()),
        server,
    )
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
        .command(&["GET", &format!("freshtoken:v1:{k}")])
        .unwrap();
    let value = moved.lines().nth(1).unwrap().to_owned();
    server.command(&[
        "SET",
        &format!("freshtoken:v1:{}", key("elsewhere")),
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
