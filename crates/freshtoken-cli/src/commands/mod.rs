//! One file per command.

pub mod demo;
pub mod dev_server;
pub mod get;
pub mod inspect;
pub mod invalidate;
pub mod status;

use freshtoken::{CachedSource, HttpFetcher};

use crate::exit::{CliError, CliResult};
use crate::settings::Settings;

/// A runtime for a one-shot command: one thread, started fast.
pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// The cached source a command gets its token from.
pub fn source(settings: &Settings) -> CliResult<CachedSource> {
    let request = settings.token_request()?;
    let store = settings.store(Some(&request))?;
    let fetcher =
        HttpFetcher::new(request, settings.http.clone())?.with_clock(settings.clock.clone());
    Ok(CachedSource::builder(fetcher)
        .store(store, settings.cache_key())
        .policy(settings.policy)
        .clock(settings.clock.clone())
        .build())
}
