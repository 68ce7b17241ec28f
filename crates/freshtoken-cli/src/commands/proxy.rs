//! `freshtoken proxy`: a local reverse proxy that puts a fresh token on every request.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use freshtoken::MemoryStore;
use freshtoken_proxy::{AllowedHosts, Config, Limits, Listening, MAX_HEADER_TIMEOUT, Proxy};

use crate::cli::{Cli, ProxyArgs};
use crate::exit::{CliError, CliResult};
use crate::secret::SecretSpec;
use crate::units::{Listen, parse_duration, parse_loopback, parse_size};
use crate::wiring;

/// The certificate `--upstream-client-cert` and `--upstream-client-key` name, read now (the
/// key with the rules of every secret); clap makes sure both or neither are given.
pub(crate) fn upstream_identity(
    cert: Option<&std::path::PathBuf>,
    key: Option<&std::path::PathBuf>,
) -> CliResult<Option<freshtoken::ClientIdentity>> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    // The method only words the message for a missing file, which a named one never is.
    wiring::read_identity(
        &SecretSpec::File(cert.clone()),
        &SecretSpec::File(key.clone()),
        freshtoken::AuthMethod::TlsClientAuth,
    )
    .map(Some)
    .map_err(|e| CliError::usage(format!("--upstream-client-cert: {}", e.message)))
}

pub(crate) async fn run(cli: &Cli, args: &ProxyArgs) -> CliResult {
    // The command's runtime resolves the settings (discovery), then watches signals; the
    // serving threads run their own.
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let upstream = wired.settings.upstream(args.upstream.as_deref())?;
    if let Some(warning) = wiring::regions_differ(&wired.request_public().token_url, &upstream) {
        tracing::warn!("{warning}");
    }
    let replay_limit = parse_size(&args.replay_limit)
        .map_err(|e| CliError::usage(format!("--replay-limit: {e}")))?;
    let grace =
        parse_duration(&args.grace).map_err(|e| CliError::usage(format!("--grace: {e}")))?;
    let addr = listen_addr(&args.listen, args.allow_remote)?;
    let listening = Listening {
        allowed_hosts: AllowedHosts::parse(&args.allow_host)
            .map_err(|e| CliError::usage(format!("--allow-host {e}")))?,
        limits: limits(&args.header_timeout, args.max_connections)
            .map_err(|e| CliError::usage(format!("--{e}")))?,
        grace,
    };
    let request = wired.token_request()?;
    let gateway = wiring::gateway(&args.gateway, &request)?;
    let source = wired.source_of(request, Some(Arc::new(MemoryStore::new())), None, |f| f)?;
    // The 401 backoff runs on the source's clock (FRESHTOKEN_CLOCK_SKEW moves both).
    let proxy = Proxy::with_clock(
        source,
        Config {
            upstream,
            replay_limit,
            ca_file: wired.settings.http.ca_file.clone(),
            gateway,
            client_identity: upstream_identity(
                args.upstream_client_cert.as_ref(),
                args.upstream_client_key.as_ref(),
            )?,
        },
        wired.clock.clone(),
    )?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::internal(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "freshtoken proxy on http://{bound} -> {}",
        proxy.upstream()
    );
    let _ = out.flush();
    drop(out);
    // Signals are watched on this runtime; the serving threads, blocked on here, drain when
    // told.
    let (stop, watch) = freshtoken::drain::channel();
    let signals = tokio::spawn(async move {
        super::shutdown_signal().await;
        stop.signal();
    });
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let served = tokio::task::spawn_blocking(move || {
        freshtoken_proxy::run_threaded(listener, &proxy, threads, &listening, &watch)
    })
    .await;
    signals.abort();
    match served {
        Ok(result) => result.map_err(|e| CliError::internal(format!("proxy failed: {e}"))),
        Err(e) => Err(CliError::internal(format!("proxy failed: {e}"))),
    }
}

/// The header timeout (a duration, up to [`MAX_HEADER_TIMEOUT`]) and connection cap (at
/// least one) of a listener. An error starts with the setting's flag name.
pub(crate) fn limits(header_timeout: &str, max_connections: usize) -> Result<Limits, String> {
    let header_timeout =
        parse_duration(header_timeout).map_err(|e| format!("header-timeout: {e}"))?;
    if header_timeout.is_zero() || header_timeout > MAX_HEADER_TIMEOUT {
        return Err(format!(
            "header-timeout {}: give a duration above 0 and up to {} s",
            freshtoken::internal::fmt_duration(header_timeout),
            MAX_HEADER_TIMEOUT.as_secs()
        ));
    }
    if max_connections == 0 {
        return Err("max-connections 0: at least one connection must be let in".to_owned());
    }
    Ok(Limits {
        header_timeout,
        max_connections,
    })
}

/// The address to listen on; anything but loopback only with `allow_remote`.
pub(crate) fn listen_addr(listen: &str, allow_remote: bool) -> CliResult<SocketAddr> {
    let addr = match parse_loopback(listen) {
        Ok(addr) => addr,
        Err(Listen::NotAnAddress) => {
            return Err(CliError::usage(format!(
                "--listen {listen:?} is not an address like 127.0.0.1:8080"
            )));
        }
        Err(Listen::NotLoopback(addr)) if !allow_remote => {
            return Err(CliError::usage(format!(
                "--listen {addr} is not loopback: anyone who reaches it gets requests made with your token; add --allow-remote if that is really meant"
            )));
        }
        Err(Listen::NotLoopback(addr)) => {
            tracing::warn!(
                "listening on {addr}, beyond loopback: anyone who can reach it can make requests with this token"
            );
            addr
        }
    };
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_timeouts_and_connection_caps_are_bounded() {
        let ok = limits("10s", 1024).unwrap();
        assert_eq!(ok.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(ok.max_connections, 1024);
        assert!(limits("30s", 1).is_ok());
        assert!(limits("31s", 1).unwrap_err().contains("up to 30 s"));
        assert!(limits("0s", 1).unwrap_err().starts_with("header-timeout"));
        assert!(limits("soon", 1).unwrap_err().starts_with("header-timeout"));
        assert!(limits("1s", 0).unwrap_err().starts_with("max-connections"));
    }

    #[test]
    fn listening_beyond_loopback_needs_consent() {
        assert!(listen_addr("127.0.0.1:0", false).is_ok());
        assert!(listen_addr("[::1]:0", false).is_ok());
        assert!(
            listen_addr("0.0.0.0:8080", false)
                .unwrap_err()
                .message
                .contains("--allow-remote")
        );
        assert!(listen_addr("0.0.0.0:8080", true).is_ok());
        assert!(listen_addr("localhost", false).is_err());
    }
}
