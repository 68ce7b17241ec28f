//! Tokens kept in this process only: the store behind `proxy`, `agent` and library users
//! that want no persistence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{FailureNote, StoreLock, TokenStore};
use crate::error::Result;
use crate::request::CacheKey;
use crate::sync::lock;
use crate::token::Token;

/// A process-local store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<CacheKey, Token>>,
    notes: Mutex<HashMap<CacheKey, FailureNote>>,
    locks: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn location(&self, _key: &CacheKey) -> String {
        "this process's memory".into()
    }

    async fn load(&self, key: &CacheKey) -> Result<Option<Token>> {
        Ok(lock(&self.tokens).get(key).cloned())
    }

    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()> {
        lock(&self.tokens).insert(key.clone(), token.clone());
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<bool> {
        Ok(lock(&self.tokens).remove(key).is_some())
    }

    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>> {
        let lock = lock(&self.locks).entry(key.clone()).or_default().clone();
        Ok(lock.try_lock_owned().ok().map(StoreLock::new))
    }

    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>> {
        Ok(lock(&self.notes).get(key).cloned())
    }

    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let mut notes = lock(&self.notes);
        match note {
            Some(n) => notes.insert(key.clone(), n.clone()),
            None => notes.remove(key),
        };
        Ok(())
    }
}
