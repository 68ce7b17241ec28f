//! A `TokenStore` of your own: here a map in memory, standing in for whatever your
//! processes share (a database table, a secret manager, a key-value service).
//!
//! ```text
//! cargo run -p freshtoken --example custom_store
//! ```
//!
//! Two sources that share the store make one token request between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use freshtoken::{
    Budget, CacheKey, CachedSource, Clock, Error, ExpirySource, FailureNote, Fetch, Result,
    StoreLock, SystemClock, Token, TokenStore,
};
use secrecy::SecretString;

/// Tokens, failure notes and refresh locks by cache key.
#[derive(Debug, Default)]
struct MapStore {
    tokens: Mutex<HashMap<CacheKey, Token>>,
    notes: Mutex<HashMap<CacheKey, FailureNote>>,
    locks: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl MapStore {
    /// Locks one of the maps; a panic elsewhere leaves them consistent, so go on.
    fn map<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl TokenStore for MapStore {
    fn kind(&self) -> &'static str {
        "map"
    }

    fn location(&self, key: &CacheKey) -> String {
        format!("map entry {key}")
    }

    async fn load(&self, key: &CacheKey) -> Result<Option<Token>> {
        Ok(Self::map(&self.tokens).get(key).cloned())
    }

    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()> {
        Self::map(&self.tokens).insert(key.clone(), token.clone());
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<bool> {
        Ok(Self::map(&self.tokens).remove(key).is_some())
    }

    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>> {
        let lock = Arc::clone(Self::map(&self.locks).entry(key.clone()).or_default());
        // The guard is the lock: dropping it (or `StoreLock::release`) gives it back.
        Ok(lock.try_lock_owned().ok().map(StoreLock::new))
    }

    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>> {
        Ok(Self::map(&self.notes).get(key).cloned())
    }

    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let mut notes = Self::map(&self.notes);
        match note {
            Some(note) => notes.insert(key.clone(), note.clone()),
            None => notes.remove(key),
        };
        Ok(())
    }
}

/// A stand-in for the token endpoint: an hour-long token per call.
#[derive(Debug)]
struct LocalIssuer;

#[async_trait]
impl Fetch for LocalIssuer {
    fn cache_key(&self) -> CacheKey {
        CacheKey::from_hex(&"a".repeat(64)).expect("64 lowercase hex digits make a key")
    }

    async fn fetch(&self, _previous: Option<&Token>, _budget: Budget) -> Result<Token> {
        let now: SystemTime = SystemClock.now();
        let issued = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| Error::transport("the clock is before 1970"))?;
        Ok(Token::new(
            SecretString::from(format!("local-{}", issued.as_nanos())),
            now,
            now + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        ))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let store: Arc<dyn TokenStore> = Arc::new(MapStore::default());
    let first = CachedSource::builder(LocalIssuer)
        .store(Arc::clone(&store))
        .build();
    let second = CachedSource::builder(LocalIssuer)
        .store(Arc::clone(&store))
        .build();

    let a = first.token().await?;
    let b = second.token().await?;
    println!(
        "first {} ({} fetched), second {} ({} fetched): {}",
        a.fingerprint(),
        first.fetch_count(),
        b.fingerprint(),
        second.fetch_count(),
        if a.same_token(&b) {
            "one token, shared through the store"
        } else {
            "two tokens"
        }
    );
    Ok(())
}
