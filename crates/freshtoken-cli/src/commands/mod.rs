//! One file per command.

pub mod agent;
pub mod demo;
pub mod dev_server;
pub mod exec;
pub mod get;
pub mod inspect;
pub mod invalidate;
pub mod proxy;
pub mod status;

use std::sync::Arc;

use freshtoken::{CachedSource, Fetch, HttpFetcher};

use crate::exit::{CliError, CliResult};
use crate::settings::Settings;

/// A runtime for a one-shot command: one thread, started fast.
pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    outside_any_runtime()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// A runtime for a long-running command: two worker threads (the machines are small).
pub fn server_runtime() -> CliResult<tokio::runtime::Runtime> {
    outside_any_runtime()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// One runtime per process (per thread for the proxy's serving threads): async work such as
/// discovery is awaited on the command's runtime. Blocking on a second one from inside a
/// runtime panics, so asking for one there is refused with a one-line error instead.
fn outside_any_runtime() -> CliResult {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(CliError::internal(
            "an async runtime was asked for inside another; this is a bug, please report it",
        ));
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The cached source a command gets its token from.
pub fn source(settings: &Settings) -> CliResult<CachedSource> {
    source_with(settings, None)
}

/// Like [`source`]; a long-running command passes `Some(memory)` to keep its tokens in
/// process unless a cache was chosen explicitly.
pub fn source_with(
    settings: &Settings,
    default_store: Option<Arc<dyn freshtoken::TokenStore>>,
) -> CliResult<CachedSource> {
    source_from(settings, default_store, None, |fetcher| fetcher)
}

/// Like [`source_with`], with a given HTTP client (built with `settings.http`) and the
/// fetcher wrapped by `wrap`: the agent shares clients and counts requests.
pub fn source_from(
    settings: &Settings,
    default_store: Option<Arc<dyn freshtoken::TokenStore>>,
    client: Option<reqwest::Client>,
    wrap: impl FnOnce(Arc<dyn Fetch>) -> Arc<dyn Fetch>,
) -> CliResult<CachedSource> {
    let request = settings.token_request()?;
    let store = match default_store {
        Some(store) if !settings.cache_explicit => store,
        _ => settings.store(Some(&request))?,
    };
    let mut fetcher =
        HttpFetcher::new(request, settings.http.clone())?.with_clock(settings.clock.clone());
    if let Some(client) = client {
        fetcher = fetcher.with_client(client);
    }
    Ok(CachedSource::builder_shared(wrap(Arc::new(fetcher)))
        .store(store, settings.cache_key())
        .policy(settings.policy)
        .clock(settings.clock.clone())
        .build())
}

/// Writes what a command prints to stdout. A reader that went away (`freshtoken status |
/// head -1`) ends the command quietly, as it does for `cat`, rather than as an internal error.
pub fn print(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(
            crate::exit::CliError::internal(format!("cannot write to stdout: {e}")),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_runtime_is_started_inside_another() -> CliResult {
        let outer = runtime()?;
        let inner = outer.block_on(async { (runtime().err(), server_runtime().err()) });
        for e in [inner.0, inner.1] {
            let e = e.ok_or_else(|| CliError::internal("a nested runtime was started"))?;
            assert_eq!(e.code, crate::exit::code::INTERNAL);
            assert!(e.message.contains("inside another"), "{}", e.message);
        }
        Ok(())
    }
}
