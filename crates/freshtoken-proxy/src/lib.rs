//! A local reverse proxy for SDKs and scripts that cannot be taught to refresh tokens: point
//! them at it, and every request reaches the one configured upstream with a fresh
//! `Authorization: Bearer …`. On a 401 from the upstream the proxy drops that exact token,
//! gets a new one and replays the request once.
//!
//! Bodies stream in both directions; only a request body up to the replay limit is kept, so
//! that it can be sent again. The proxy forwards to its upstream and nowhere else: absolute
//! URIs for other hosts and `CONNECT` are refused, and upstream redirects are handed to the
//! client, never followed.

#![warn(missing_docs)]

mod forward;
mod headers;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use freshtoken::CachedSource;
use url::Url;

pub use server::{DEFAULT_GRACE, run};

/// Request bodies up to this size are kept for a replay after a 401.
pub const DEFAULT_REPLAY_LIMIT: usize = 1024 * 1024;

/// What the proxy needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where every request goes (scheme, host, optional base path).
    pub upstream: Url,
    /// Largest request body kept for a replay.
    pub replay_limit: usize,
}

/// Counters, for the demo, the agent's metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    replayed: AtomicU64,
    unauthorized: AtomicU64,
    not_replayable: AtomicU64,
    upstream_errors: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Requests forwarded.
    pub requests: u64,
    /// Requests sent again after a 401.
    pub replayed: u64,
    /// 401s passed on to the client (after a replay, or when none was possible).
    pub unauthorized: u64,
    /// 401s whose request body was too large to replay.
    pub not_replayable: u64,
    /// Requests the upstream could not answer (502 to the client).
    pub upstream_errors: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            replayed: get(&self.replayed),
            unauthorized: get(&self.unauthorized),
            not_replayable: get(&self.not_replayable),
            upstream_errors: get(&self.upstream_errors),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The proxy: a token source, an upstream and an HTTP client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    source: CachedSource,
    config: Config,
    http: reqwest::Client,
    stats: Stats,
}

impl Proxy {
    /// A proxy that takes its tokens from `source`.
    pub fn new(source: CachedSource, config: Config) -> freshtoken::Result<Self> {
        if !matches!(config.upstream.scheme(), "http" | "https")
            || config.upstream.host_str().is_none()
        {
            return Err(freshtoken::Error::Config(format!(
                "upstream {} is not an http(s) URL with a host",
                config.upstream
            )));
        }
        let options = freshtoken::HttpOptions {
            // Requests through the proxy may stream for a long time; only connecting is bounded.
            timeout: std::time::Duration::from_secs(24 * 3600),
            ..freshtoken::HttpOptions::default()
        };
        let http = freshtoken::http_client(&options)?;
        Ok(Self {
            shared: Arc::new(Shared {
                source,
                config,
                http,
                stats: Stats::default(),
            }),
        })
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The upstream.
    pub fn upstream(&self) -> &Url {
        &self.shared.config.upstream
    }
}
