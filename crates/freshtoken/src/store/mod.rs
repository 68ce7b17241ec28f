//! Where tokens are kept between requests, processes and machines.
//!
//! Every store offers the same five operations, and one conformance suite
//! (`tests/store_conformance.rs`) runs against each of them.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::request::CacheKey;
use crate::token::Token;

mod file;
mod memory;
mod record;

pub use file::FileStore;
pub use memory::MemoryStore;
pub use record::Record;

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

    /// Serialises refreshes of `key` among everyone sharing this store, so that many
    /// processes make one token request. Held until the returned guard is dropped. The
    /// holder must re-read the store after taking it: someone else may have just refreshed.
    async fn lock(&self, key: &CacheKey) -> Result<StoreLock>;
}

/// Holds a store's refresh lock until dropped.
pub struct StoreLock(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl StoreLock {
    /// Wraps whatever releases the lock when dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        Self(Box::new(guard))
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
}
