//! The cache layers a command uses, opened from the settings.

use std::sync::Arc;

use freshtoken::{FileStore, LayeredStore, MemoryStore, SharedClock, TokenRequest, TokenStore};

use crate::exit::{CliError, CliResult};
use crate::settings::{Cache, CacheChoice};

/// The layers of `cache`, nearest first. `request` carries the credentials that seal Redis
/// values; without them (status, invalidate when no secret is at hand) Redis is left out.
pub(super) fn layers(
    cache: &Cache,
    request: Option<&TokenRequest>,
    clock: &SharedClock,
) -> CliResult<Vec<Arc<dyn TokenStore>>> {
    match &cache.choice {
        CacheChoice::Memory => Ok(vec![Arc::new(MemoryStore::new())]),
        CacheChoice::File(dir) => Ok(vec![Arc::new(FileStore::new(dir))]),
        CacheChoice::Redis { url, file } => {
            let mut layers: Vec<Arc<dyn TokenStore>> = Vec::new();
            if let Some(dir) = file {
                layers.push(Arc::new(FileStore::new(dir)));
            }
            if let Some(request) = request {
                layers.push(redis(url, cache, request, clock)?);
            }
            Ok(layers)
        }
    }
}

/// One store over `layers`.
pub(super) fn stack(
    mut layers: Vec<Arc<dyn TokenStore>>,
    clock: &SharedClock,
) -> Arc<dyn TokenStore> {
    if layers.len() == 1 {
        return layers.remove(0);
    }
    Arc::new(LayeredStore::new(layers).with_clock(clock.clone()))
}

#[cfg(feature = "redis")]
fn redis(
    url: &str,
    cache: &Cache,
    request: &TokenRequest,
    clock: &SharedClock,
) -> CliResult<Arc<dyn TokenStore>> {
    use secrecy::SecretString;
    // A profile's own cache_key first: named for the purpose, it outranks what is derived.
    let seal_key = match &cache.seal_key {
        Some(source) => Some(crate::secret::read_secret(
            &crate::secret::SecretSpec::Config(source.clone()),
            crate::secret::Secret::CacheKey,
            request.auth_method,
        )?),
        None => None,
    };
    let credentials = seal_key.as_ref().or(request.client_secret.as_ref().map(|s| s.as_secret())).or(request.private_key.as_ref().map(|k| k.as_secret())).ok_or_else(|| {
        CliError::usage(format!(
            "the Redis cache seals tokens with a key derived from the client's secret or private key; auth method {} has neither: set cache_key = {{ env = \"VAR\" }} or {{ file = \"PATH\" }} in the profile",
            request.auth_method
        ))
    })?;
    let password = std::env::var(crate::env::REDIS_PASSWORD)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from);
    let store = freshtoken::RedisStore::new(url, password.as_ref(), credentials)?
        .with_lease(cache.redis_lease)
        .with_clock(clock.clone());
    let store = match cache.token_rate {
        Some((requests, period)) => store.with_token_rate(requests, period),
        None => store,
    };
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis(
    _url: &str,
    _cache: &Cache,
    _request: &TokenRequest,
    _clock: &SharedClock,
) -> CliResult<Arc<dyn TokenStore>> {
    Err(CliError::usage(
        "this freshtoken was built without the redis feature; rebuild with --features redis",
    ))
}
