//! Test doubles for code built on the library (the `test-util` feature): a fetcher whose
//! outcomes a test scripts, to show the faults a real server cannot be made to show on
//! cue. Time is moved with [`ManualClock`], which is always available.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::clock::Clock;
pub use crate::clock::ManualClock;
use crate::error::{Error, Result};
use crate::fetch::{Budget, Fetch};
use crate::request::CacheKey;
use crate::token::{ExpirySource, Token};

/// Issues `tok-1`, `tok-2`, … living `lifetime` on a shared [`ManualClock`]; fails with a
/// transport error, or hangs, while told to.
#[derive(Debug)]
pub struct ScriptedFetcher {
    clock: ManualClock,
    lifetime: Duration,
    calls: AtomicU32,
    failing: AtomicBool,
    hanging: AtomicBool,
    /// Fetches started, for tests that await a refresh that hangs.
    started: tokio::sync::watch::Sender<u32>,
    /// Fetches that returned (a token or an error), for tests that await background work.
    returned: tokio::sync::watch::Sender<u32>,
}

impl ScriptedFetcher {
    /// A fetcher that succeeds until told otherwise.
    pub fn new(clock: &ManualClock, lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            clock: clock.clone(),
            lifetime,
            calls: AtomicU32::new(0),
            failing: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
            started: tokio::sync::watch::Sender::new(0),
            returned: tokio::sync::watch::Sender::new(0),
        })
    }

    /// How many fetches were started.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every fetch from now on fail (`true`) or succeed (`false`).
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Makes every fetch from now on hang until the caller gives up (`true`).
    pub fn set_hanging(&self, on: bool) {
        self.hanging.store(on, Ordering::SeqCst);
    }

    /// Sees the count of fetches that returned, so that a test can await a background
    /// refresh, failed or not, instead of yielding and hoping.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u32> {
        self.returned.subscribe()
    }

    /// Waits until `n` fetches in all have returned.
    pub async fn returned(&self, n: u32) {
        let mut returned = self.subscribe();
        // The sender lives as long as `self`, so the wait ends only by reaching `n`.
        let _ = returned.wait_for(|count| *count >= n).await;
    }

    /// Waits until `n` fetches in all have started (a hanging one never returns).
    pub async fn started(&self, n: u32) {
        let mut started = self.started.subscribe();
        let _ = started.wait_for(|count| *count >= n).await;
    }
}

#[async_trait]
impl Fetch for ScriptedFetcher {
    fn cache_key(&self) -> CacheKey {
        let zeros = "0".repeat(64);
        // 64 lowercase hex digits always make a key.
        CacheKey::from_hex(&zeros).expect("64 hex digits")
    }

    async fn fetch(&self, _previous: Option<&Token>, _budget: Budget) -> Result<Token> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.started.send_modify(|count| *count += 1);
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let outcome = if self.failing.load(Ordering::SeqCst) {
            Err(Error::transport("scripted outage"))
        } else {
            let now = self.clock.now();
            Ok(Token::new(
                SecretString::from(format!("tok-{n}")),
                now,
                now + self.lifetime,
                ExpirySource::ExpiresIn,
            ))
        };
        self.returned.send_modify(|count| *count += 1);
        outcome
    }
}
