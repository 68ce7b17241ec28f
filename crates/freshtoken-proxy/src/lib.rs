//! A local reverse proxy for SDKs and scripts that cannot be taught to refresh tokens: point
//! them at it, and every request reaches the one configured upstream with a fresh
//! `Authorization: Bearer …`. On a 401 from the upstream the proxy drops that exact token,
//! gets a new one and replays the request once. An upstream that refuses every token does not
//! make it hammer the token endpoint: a new token at most once per refused token, and none
//! while a backoff runs after a fresh token was refused too (see `guard`).
//!
//! Bodies stream in both directions; only a request body up to the replay limit is kept, so
//! that it can be sent again. The proxy forwards to its upstream and nowhere else: absolute
//! URIs for other hosts and `CONNECT` are refused, and upstream redirects are handed to the
//! client, never followed. It answers only requests whose `Host` names its own address (or a
//! name it was told to answer), so that a web page rebinding its DNS name to loopback cannot
//! use it; and it bounds what a client can hold (a header timeout, a connection cap).

#![warn(missing_docs)]

mod body;
mod dpop;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod guard;
mod headers;
mod host;
mod resolve;
mod server;
mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use freshtoken::internal::lock;
use freshtoken::{CachedSource, SharedClock, SystemClock};
use url::Url;

pub use gateway::Gateway;
pub use guard::{FIRST_BACKOFF, MAX_BACKOFF};
pub use host::{AllowedHosts, misdirected};
pub use server::{
    Addresses, Background, DEFAULT_GRACE, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Limits,
    Listening, MAX_HEADER_TIMEOUT, run, run_threaded, serve,
};

/// Request bodies up to this size are kept for a replay after a 401.
pub const DEFAULT_REPLAY_LIMIT: usize = 1024 * 1024;

/// What the proxy needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where every request goes (scheme, host, optional base path).
    pub upstream: Url,
    /// Largest request body kept for a replay.
    pub replay_limit: usize,
    /// A PEM file of certificate authorities trusted for the upstream besides the
    /// platform's roots.
    pub ca_file: Option<PathBuf>,
    /// Also answer the login path's token endpoint, as a gateway for tools that
    /// authenticate themselves (see [`Gateway`]).
    pub gateway: Option<Gateway>,
    /// The client certificate presented to the upstream when it asks for one: an API whose
    /// tokens are bound to the certificate they were issued for (RFC 8705 §3) accepts them
    /// only from its holder.
    pub client_identity: Option<freshtoken::ClientIdentity>,
}

/// Counters, for the demo, the agent's metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    replayed: AtomicU64,
    unauthorized: AtomicU64,
    not_replayable: AtomicU64,
    upstream_errors: AtomicU64,
    gateway_tokens: AtomicU64,
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
    /// Token requests the gateway answered (with the shared token; none reached the real
    /// token endpoint).
    pub gateway_tokens: u64,
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
            gateway_tokens: get(&self.gateway_tokens),
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

struct Shared {
    source: CachedSource,
    config: Config,
    /// HTTP/1.1 or HTTP/2 (ALPN) over rustls with the platform's roots, or plain HTTP.
    upstream: upstream::Upstream,
    stats: Arc<Stats>,
    /// The 401 backoff and the token-failure streak, shared by every serving thread.
    guard: Arc<guard::Guard>,
    /// The last `Authorization` value built, reused while the token stays the same.
    authorization: std::sync::Mutex<Option<(String, http::HeaderValue)>>,
    /// The source's DPoP key, for DPoP-bound tokens (see `dpop`).
    dpop: Option<dpop::Dpop>,
}

impl Shared {
    /// `Bearer <token>` (`DPoP <token>` for a DPoP-bound one), marked sensitive; built once
    /// per token.
    fn authorization(&self, token: &freshtoken::Token) -> Option<http::HeaderValue> {
        let scheme = if token.is_dpop() { "DPoP" } else { "Bearer" };
        let token = token.expose_secret();
        let mut cached = lock(&self.authorization);
        if let Some((t, v)) = cached.as_ref()
            && t == token
        {
            return Some(v.clone());
        }
        let mut value = http::HeaderValue::try_from(format!("{scheme} {token}")).ok()?;
        value.set_sensitive(true);
        *cached = Some((token.to_owned(), value.clone()));
        Some(value)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy that takes its tokens from `source`; refuses an upstream that is not an
    /// http(s) URL with a host.
    pub fn new(source: CachedSource, config: Config) -> freshtoken::Result<Self> {
        Self::with_clock(source, config, Arc::new(SystemClock))
    }

    /// Like [`Proxy::new`], judging the 401 backoff on `clock`: give it the clock of the
    /// token source, so that whatever moves that one (a test's manual clock, a skew) moves
    /// both.
    pub fn with_clock(
        source: CachedSource,
        config: Config,
        clock: SharedClock,
    ) -> freshtoken::Result<Self> {
        let guard = Arc::new(guard::Guard::new(clock));
        Self::with_shared(source, config, Arc::default(), guard)
    }

    /// A proxy sharing this one's token source, upstream and counters, with upstream
    /// connections of its own: one set per serving thread keeps each request on one thread.
    pub fn for_another_thread(&self) -> freshtoken::Result<Self> {
        let s = &self.shared;
        Self::with_shared(
            s.source.clone(),
            s.config.clone(),
            Arc::clone(&s.stats),
            Arc::clone(&s.guard),
        )
    }

    fn with_shared(
        source: CachedSource,
        config: Config,
        stats: Arc<Stats>,
        guard: Arc<guard::Guard>,
    ) -> freshtoken::Result<Self> {
        Ok(Self {
            shared: Arc::new(Shared {
                upstream: upstream::Upstream::new(
                    &config.upstream,
                    tls_config(config.ca_file.as_deref(), config.client_identity.as_ref())?,
                )?,
                dpop: source.dpop_key().cloned().map(dpop::Dpop::new),
                source,
                config,
                stats,
                guard,
                authorization: Default::default(),
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

/// One TLS config (and so one copy of the platform's roots) for every upstream in the process
/// that trusts the same CA file, or none, and presents the same client certificate, or none.
fn tls_config(
    ca_file: Option<&Path>,
    identity: Option<&freshtoken::ClientIdentity>,
) -> freshtoken::Result<rustls::ClientConfig> {
    type Configs = Vec<(Option<PathBuf>, Option<String>, rustls::ClientConfig)>;
    static TLS: std::sync::Mutex<Configs> = std::sync::Mutex::new(Vec::new());
    freshtoken::install_crypto_provider();
    let mut built = lock(&TLS);
    let thumbprint = identity.map(|i| i.thumbprint().to_owned());
    if let Some((_, _, tls)) = built
        .iter()
        .find(|(p, t, _)| p.as_deref() == ca_file && *t == thumbprint)
    {
        return Ok(tls.clone());
    }
    let extra = match ca_file {
        Some(path) => freshtoken::internal::load_ca_file(path)?,
        None => Vec::new(),
    };
    let builder = rustls::ClientConfig::builder();
    // What hyper-rustls's `try_with_platform_verifier` does, with the CA file's roots added.
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra,
        builder.crypto_provider().clone(),
    )
    .map_err(|e| freshtoken::Error::Config(format!("cannot load the platform's TLS roots: {e}")))?;
    let builder = builder
        .dangerous() // the platform's verifier with more roots, not fewer checks
        .with_custom_certificate_verifier(Arc::new(verifier));
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain().to_vec(), id.private_key())
            .map_err(|e| {
                freshtoken::Error::Config(format!(
                    "cannot use the upstream client certificate: {e}"
                ))
            })?,
    };
    built.push((ca_file.map(Path::to_owned), thumbprint, tls.clone()));
    Ok(tls)
}
