//! Discovery for the command line: the library's cached discovery, awaited on the command's
//! one runtime while the settings are resolved (never a runtime of its own, which would panic
//! inside the agent's).

use freshtoken::HttpOptions;
use freshtoken::discovery::{Metadata, discover_cached};
use url::Url;

use crate::exit::{CliError, CliResult};
use crate::settings::CacheChoice;

/// The issuer's metadata, from the cache directory of `cache` when it is a file cache.
pub async fn cached(issuer: &Url, http: &HttpOptions, cache: &CacheChoice) -> CliResult<Metadata> {
    discover_cached(issuer, http, cache.file_dir())
        .await
        .map_err(CliError::from)
}
