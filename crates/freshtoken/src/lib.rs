//! freshtoken keeps OAuth2 access tokens fresh for jobs that outlive them.
//!
//! A [`CachedSource`] hands out a valid token on every call: it fetches one with the client
//! credentials grant ([`HttpFetcher`]), keeps it in memory and optionally in a shared
//! [`TokenStore`] (a file for every process of a user, Redis for a fleet), refreshes it ahead
//! of expiry in the background, and makes one request however many callers miss at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), freshtoken::Error> {
//! use freshtoken::{CachedSource, HttpFetcher, HttpOptions, TokenRequest};
//!
//! let request = TokenRequest::client_credentials(
//!     "https://login.mypurecloud.com/oauth/token".parse().unwrap(),
//!     "my-client-id",
//! )
//! .secret(std::env::var("CLIENT_SECRET").unwrap())
//! .build()?;
//! let source = CachedSource::builder(HttpFetcher::new(request, HttpOptions::default())?).build();
//! let token = source.token().await?;          // fetched once, then served from memory
//! let header = format!("Bearer {}", token.expose_secret());
//! # let _ = header; Ok(()) }
//! ```

#![warn(missing_docs)]

mod assertion;
pub mod clock;
mod credentials;
pub mod discovery;
mod dns;
pub mod dpop;
pub mod drain;
mod error;
mod exchange;
mod fetch;
mod http;
pub mod identity;
#[doc(hidden)]
pub mod internal;
pub mod jwt;
pub mod login;
mod mtls;
mod observe;
mod owned;
pub mod policy;
pub mod provider;
mod redact;
mod regular_file;
mod request;
mod response;
mod retry;
mod source;
pub mod stats;
pub mod store;
mod sync;
#[cfg(feature = "test-util")]
pub mod testing;
mod tls;
mod token;

#[cfg(test)]
mod fuzz_tests;

pub use assertion::{ASSERTION_TYPE, DEFAULT_ASSERTION_LIFETIME, Signer, SigningAlg};
pub use clock::{Clock, ManualClock, SharedClock, SkewedClock, SystemClock};
pub use credentials::{ClientId, ClientSecret, PrivateKey};
pub use error::{Cause, Error, ErrorKind, Missing, Result};
pub use exchange::TokenExchange;
pub use fetch::{
    Budget, DEFAULT_LIFETIME, Fetch, HttpFetcher, HttpOptions, http_client, install_crypto_provider,
};
pub use mtls::{ClientIdentity, certificate_thumbprint, pem_certificate_thumbprint};
pub use observe::{RetryNotice, RetryObserver};
pub use policy::{Freshness, RefreshPolicy};
pub use request::{AuthMethod, CacheKey, TokenRequest, TokenRequestBuilder};
pub use retry::{Backoff, RetryPolicy};
pub use source::{
    AccessToken, CachedSource, CachedSourceBuilder, DEFAULT_FALLBACK_WAIT, DEFAULT_LOCK_WAIT, Want,
};
pub use stats::{BudgetUse, CacheStats, StatsSnapshot};
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{
    FailureNote, FileStore, LayeredStore, MemoryStore, NOTE_BACKOFF_CAP, StoreLock, TokenStore,
};
pub use token::{CLOCK_TOLERANCE, ExpirySource, Fingerprint, Token, check_b64token};
