//! Building the cache layers a command uses from the settings.

use std::sync::Arc;
use std::time::Duration;

use freshtoken::{FileStore, LayeredStore, MemoryStore, SharedClock, TokenRequest, TokenStore};

use crate::exit::{CliError, CliResult};
use crate::settings::{CacheChoice, parse_duration};

/// The layers of `cache`, nearest first. `request` carries the credentials that seal Redis
/// values; without them (status, invalidate when no secret is at hand) Redis is left out.
pub fn layers(
    cache: &CacheChoice,
    request: Option<&TokenRequest>,
    clock: &SharedClock,
) -> CliResult<Vec<Arc<dyn TokenStore>>> {
    match cache {
        CacheChoice::Memory => Ok(vec![Arc::new(MemoryStore::new())]),
        CacheChoice::File(dir) => Ok(vec![Arc::new(FileStore::new(dir))]),
        CacheChoice::Redis { url, file } => {
            let mut layers: Vec<Arc<dyn TokenStore>> = Vec::new();
            if let Some(dir) = file {
                layers.push(Arc::new(FileStore::new(dir)));
            }
            if let Some(request) = request {
                layers.push(redis(url, request, clock)?);
            }
            Ok(layers)
        }
    }
}

/// One store over `layers`.
pub fn stack(mut layers: Vec<Arc<dyn TokenStore>>, clock: &SharedClock) -> Arc<dyn TokenStore> {
    if layers.len() == 1 {
        return layers.remove(0);
    }
    Arc::new(LayeredStore::new(layers).with_clock(clock.clone()))
}

#[cfg(feature = "redis")]
fn redis(url: &str, request: &TokenRequest, clock: &SharedClock) -> CliResult<Arc<dyn TokenStore>> {
    use secrecy::SecretString;
    let credentials = request.client_secret.as_ref().map(|s| s.as_secret()).or(request.private_key.as_ref().map(|k| k.as_secret())).ok_or_else(|| {
        CliError::usage(format!(
            "the Redis cache seals tokens with a key derived from the client's secret or private key; auth method {} has neither",
            request.auth_method
        ))
    })?;
    let password = std::env::var(crate::env::REDIS_PASSWORD)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from);
    let lease = match std::env::var(crate::env::REDIS_LEASE) {
        Ok(v) => parse_duration(&v)
            .map_err(|e| CliError::usage(format!("{}: {e}", crate::env::REDIS_LEASE)))?,
        Err(_) => freshtoken::store::DEFAULT_LEASE,
    };
    let store = freshtoken::RedisStore::new(url, password.as_ref(), credentials)?
        .with_lease(lease.max(Duration::from_millis(100)))
        .with_clock(clock.clone());
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis(
    _url: &str,
    _request: &TokenRequest,
    _clock: &SharedClock,
) -> CliResult<Arc<dyn TokenStore>> {
    let _ = parse_duration;
    Err(CliError::usage(
        "this freshtoken was built without the redis feature; rebuild with --features redis",
    ))
}
