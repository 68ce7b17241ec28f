//! Stores stacked nearest-first (file, then Redis): a read stops at the first layer with a
//! fresh token and fills the nearer layers from a farther one; writes go to every layer; the
//! refresh lock is the farthest (most shared) layer's that answers. A layer that fails is
//! skipped with one warning, so a Redis outage degrades to the file cache, not to errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{FailureNote, StoreLock, TokenStore};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::policy::{Freshness, RefreshPolicy};
use crate::request::CacheKey;
use crate::stats::BudgetUse;
use crate::token::Token;

/// Layers of stores, nearest first.
#[derive(Debug)]
pub struct LayeredStore {
    layers: Vec<Layer>,
    clock: SharedClock,
}

#[derive(Debug)]
struct Layer {
    store: Arc<dyn TokenStore>,
    /// Set while the layer is failing, so that it is reported once per outage.
    failing: AtomicBool,
}

impl Layer {
    fn failed(&self, what: &str, e: &Error) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the {} cache is not answering ({what}); going on without it: {e}",
                self.store.kind()
            );
        }
    }

    fn answered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the {} cache answers again", self.store.kind());
        }
    }
}

impl LayeredStore {
    /// `layers`, nearest first.
    pub fn new(layers: Vec<Arc<dyn TokenStore>>) -> Self {
        Self {
            layers: layers
                .into_iter()
                .map(|store| Layer {
                    store,
                    failing: AtomicBool::new(false),
                })
                .collect(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` to judge which layer's token is fresh.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The layers, nearest first.
    pub fn layers(&self) -> impl Iterator<Item = &Arc<dyn TokenStore>> {
        self.layers.iter().map(|l| &l.store)
    }

    /// Like [`TokenStore::load`], also saying which layer answered.
    pub async fn load_with_layer(&self, key: &CacheKey) -> Result<Option<(Token, &'static str)>> {
        let now = self.clock.now();
        let mut best: Option<(usize, Token)> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let token = match layer.store.load(key).await {
                Ok(t) => {
                    layer.answered();
                    t
                }
                Err(e) => {
                    layer.failed("read", &e);
                    continue;
                }
            };
            let Some(token) = token.filter(|t| t.is_valid_at(now)) else {
                continue;
            };
            let fresh = RefreshPolicy::default().assess(&token, now, 0.0, Duration::ZERO)
                == Freshness::Fresh;
            if best
                .as_ref()
                .is_none_or(|(_, b)| token.expires_at() > b.expires_at())
            {
                best = Some((i, token));
            }
            if fresh {
                break;
            }
        }
        let Some((found_at, token)) = best else {
            return Ok(None);
        };
        // Fill the nearer layers, so the next read stops earlier.
        for layer in &self.layers[..found_at] {
            if let Err(e) = layer.store.save(key, &token).await {
                layer.failed("write", &e);
            }
        }
        Ok(Some((token, self.layers[found_at].store.kind())))
    }
}

#[async_trait]
impl TokenStore for LayeredStore {
    fn kind(&self) -> &'static str {
        match self.layers.last() {
            Some(l) => l.store.kind(),
            None => "none",
        }
    }

    fn location(&self, key: &CacheKey) -> String {
        self.layers
            .iter()
            .map(|l| format!("{} {}", l.store.kind(), l.store.location(key)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn load(&self, key: &CacheKey) -> Result<Option<Token>> {
        Ok(self.load_with_layer(key).await?.map(|(t, _)| t))
    }

    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()> {
        let mut last_error = None;
        let mut saved = false;
        for layer in &self.layers {
            match layer.store.save(key, token).await {
                Ok(()) => {
                    layer.answered();
                    saved = true;
                }
                Err(e) => {
                    layer.failed("write", &e);
                    last_error = Some(e);
                }
            }
        }
        match (saved, last_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn remove(&self, key: &CacheKey) -> Result<bool> {
        let mut removed = false;
        for layer in &self.layers {
            match layer.store.remove(key).await {
                Ok(r) => removed |= r,
                Err(e) => layer.failed("remove", &e),
            }
        }
        Ok(removed)
    }

    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>> {
        for layer in self.layers.iter().rev() {
            match layer.store.try_lock(key).await {
                Ok(lock) => {
                    layer.answered();
                    return Ok(lock);
                }
                Err(e) => layer.failed("lock", &e),
            }
        }
        Err(Error::store("no cache layer could be locked"))
    }

    /// The latest note of any layer that answers: a note from the fleet's Redis counts even
    /// when this machine's file has none, and the other way round while Redis is down.
    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>> {
        let mut latest: Option<FailureNote> = None;
        for layer in &self.layers {
            match layer.store.note(key).await {
                Ok(Some(n)) if latest.as_ref().is_none_or(|l| n.not_before > l.not_before) => {
                    latest = Some(n)
                }
                Ok(_) => {}
                Err(e) => layer.failed("read", &e),
            }
        }
        Ok(latest)
    }

    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        for layer in &self.layers {
            if let Err(e) = layer.store.set_note(key, note).await {
                layer.failed("write", &e);
            }
        }
        Ok(())
    }

    /// The budget of the farthest (most shared) layer that keeps one and answers; a layer
    /// that fails is skipped (a Redis outage lets requests go, as it lets locks go).
    async fn spend_budget(&self, key: &CacheKey) -> Result<Option<Duration>> {
        for layer in self.layers.iter().rev() {
            match layer.store.spend_budget(key).await {
                Ok(None) => {}
                Ok(wait) => return Ok(wait),
                Err(e) => layer.failed("budget", &e),
            }
        }
        Ok(None)
    }

    async fn load_from(&self, key: &CacheKey) -> Result<Option<(Token, &'static str)>> {
        self.load_with_layer(key).await
    }

    /// The use of the farthest layer that keeps a budget and answers.
    async fn budget_use(&self, key: &CacheKey) -> Result<Option<BudgetUse>> {
        for layer in self.layers.iter().rev() {
            match layer.store.budget_use(key).await {
                Ok(None) => {}
                Ok(found) => return Ok(found),
                Err(e) => layer.failed("budget", &e),
            }
        }
        Ok(None)
    }

    async fn ttl(&self, key: &CacheKey) -> Result<Option<Duration>> {
        match self.layers.last() {
            Some(l) => l.store.ttl(key).await,
            None => Ok(None),
        }
    }
}
