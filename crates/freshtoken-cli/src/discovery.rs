//! Discovery for the command line: the library's cached discovery, run to completion before
//! the settings are used.

use freshtoken::HttpOptions;
use freshtoken::discovery::{Metadata, discover_cached};
use url::Url;

use crate::exit::{CliError, CliResult};
use crate::settings::CacheChoice;

/// The issuer's metadata, from the cache directory of `cache` when it is a file cache.
pub fn cached(issuer: &Url, http: &HttpOptions, cache: &CacheChoice) -> CliResult<Metadata> {
    let dir = cache.file_dir();
    let runtime = crate::commands::runtime()?;
    runtime
        .block_on(discover_cached(issuer, http, dir))
        .map_err(CliError::from)
}
