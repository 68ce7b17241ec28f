//! Where tokens are kept between requests, processes and machines.
//!
//! Every store offers the same five operations, and one conformance suite
//! (`tests/it/store_conformance.rs`) runs against each of them.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::request::CacheKey;
use crate::stats::BudgetUse;
use crate::token::Token;

pub(crate) mod atomic;
mod file;
mod layered;
mod memory;
mod note;
pub(crate) mod record;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod seal;

pub use file::FileStore;
pub use layered::LayeredStore;
pub use memory::MemoryStore;
pub use note::{FailureNote, NOTE_BACKOFF, NOTE_BACKOFF_BASE, NOTE_BACKOFF_CAP};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_LEASE, RedisStore};

/// A place that keeps tokens by [`CacheKey`], shared by everyone who uses the same place.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// A short name for status output and logs: `memory`, `file`, `redis`.
    fn kind(&self) -> &'static str;

    /// Where `key`'s token lives (a path, a key name), for `freshtoken status`.
    fn location(&self, key: &CacheKey) -> String;

    /// The token stored under `key`. A missing, unreadable, corrupt or foreign entry is
    /// `Ok(None)` (with a warning where it deserves one): a cache is never trusted blindly.
    async fn load(&self, key: &CacheKey) -> Result<Option<Token>>;

    /// Stores `token` under `key`, replacing what was there in one step.
    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()>;

    /// Drops `key`'s token; `true` if there was one.
    async fn remove(&self, key: &CacheKey) -> Result<bool>;

    /// Tries to take the refresh lock of `key` without waiting: `None` while someone else
    /// holds it. The lock serialises refreshes among everyone sharing this store, so that
    /// many processes (or machines) make one token request; the cached source polls it and
    /// re-reads the store in between, so waiters pick up the holder's token as soon as it
    /// lands. The holder must re-read the store after taking it.
    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>>;

    /// The note the last failed refresh of `key` left (see [`FailureNote`]). A missing,
    /// unreadable or foreign note is `Ok(None)`.
    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>>;

    /// Leaves `note` for everyone who shares this store, or clears it with `None` once a
    /// refresh succeeded.
    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()>;

    /// How long the store itself will keep `key`'s token (Redis's PTTL), where it says.
    async fn ttl(&self, _key: &CacheKey) -> Result<Option<Duration>> {
        Ok(None)
    }

    /// Counts one token request for `key` against the request budget everyone sharing the
    /// store keeps (Redis's `token_rate`), so that a fleet never asks the IdP more often
    /// than it allows: `None` when the request may go, `Some(wait)` when the budget is
    /// spent and the next request may go in `wait`. A store without a budget lets it go.
    async fn spend_budget(&self, _key: &CacheKey) -> Result<Option<Duration>> {
        Ok(None)
    }

    /// Like [`TokenStore::load`], also naming the layer that answered (its
    /// [`TokenStore::kind`]; a stack of stores names one of its layers), so that a source
    /// can count which layer served it.
    async fn load_from(&self, key: &CacheKey) -> Result<Option<(Token, &'static str)>> {
        Ok(self.load(key).await?.map(|t| (t, self.kind())))
    }

    /// How much of `key`'s request budget the current window has used, fleet-wide, for
    /// `status` and `/metrics`; `None` for a store without a budget. Reads, never spends.
    async fn budget_use(&self, _key: &CacheKey) -> Result<Option<BudgetUse>> {
        Ok(None)
    }
}

/// Releases a lock that needs work to release (a network round trip).
pub trait Release: Send + Sync {
    /// Gives the lock back.
    fn release(self: Box<Self>) -> BoxFuture;
}

/// A boxed future, for releases.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Held {
    Dropped(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
    Released(Box<dyn Release>),
}

/// Holds a store's refresh lock until released (or dropped).
pub struct StoreLock(Held);

impl StoreLock {
    /// A lock that is given back by dropping `guard` (a file lock, a mutex guard).
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        Self(Held::Dropped(Box::new(guard)))
    }

    /// A lock that is given back by running `release`.
    pub fn with_release(release: impl Release + 'static) -> Self {
        Self(Held::Released(Box::new(release)))
    }

    /// Gives the lock back now.
    pub async fn release(self) {
        match self.0 {
            Held::Dropped(guard) => drop(guard),
            Held::Released(r) => r.release().await,
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
}

/// A store URL with any password replaced, for messages and status output.
#[doc(hidden)]
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_shown_without_passwords() {
        use super::redact_url;
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://…@cache:6379/0"
        );
        assert_eq!(redact_url("rediss://user:pw@h:1"), "rediss://…@h:1");
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
    }
}
