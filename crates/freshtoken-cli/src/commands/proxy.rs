//! `freshtoken proxy`: a local reverse proxy that puts a fresh token on every request.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use freshtoken::MemoryStore;
use freshtoken_proxy::{AllowedHosts, Config, Limits, Listening, MAX_HEADER_TIMEOUT, Proxy};
use url::Url;

use crate::cli::{Cli, ProxyArgs};
use crate::exit::{CliError, CliResult};
use crate::settings::{Settings, parse_duration};

pub fn run(cli: &Cli, args: &ProxyArgs) -> CliResult {
    // The one runtime of this thread: it resolves the settings (discovery), then watches
    // signals; the serving threads run their own.
    let runtime = super::runtime()?;
    let settings = runtime.block_on(Settings::resolve(cli, &args.credentials))?;
    let upstream = upstream(args.upstream.as_deref(), &settings)?;
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
    let source = super::source_with(&settings, Some(Arc::new(MemoryStore::new())))?;
    // The 401 backoff runs on the source's clock (FRESHTOKEN_CLOCK_SKEW moves both).
    let proxy = Proxy::with_clock(
        source,
        Config {
            upstream,
            replay_limit,
            ca_file: settings.http.ca_file.clone(),
        },
        settings.clock.clone(),
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
    // Signals are watched on a thread of their own; the serving threads drain when told.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        runtime.block_on(super::shutdown_signal());
        let _ = stop.send(true);
    });
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    freshtoken_proxy::run_threaded(listener, &proxy, threads, &listening, stopped)
        .map_err(|e| CliError::internal(format!("proxy failed: {e}")))
}

/// `--upstream`, else the provider's API base; plain http only to loopback, checked before
/// any token is asked for.
pub fn upstream(flag: Option<&str>, settings: &Settings) -> CliResult<Url> {
    let url = match (flag, &settings.api_base) {
        (Some(u), _) => Url::parse(u)
            .map_err(|e| CliError::usage(format!("--upstream {u:?} is not a URL: {e}")))?,
        (None, Some(api)) => api.clone(),
        (None, None) => {
            return Err(CliError::usage(
                "no upstream: set --upstream URL (or use --provider genesys --region R)",
            ));
        }
    };
    freshtoken::internal::refuse_plain_http("upstream", &url, "the token")?;
    Ok(url)
}

/// The header timeout (a duration, up to [`MAX_HEADER_TIMEOUT`]) and connection cap (at
/// least one) of a listener. An error starts with the setting's flag name.
pub fn limits(header_timeout: &str, max_connections: usize) -> Result<Limits, String> {
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
pub fn listen_addr(listen: &str, allow_remote: bool) -> CliResult<SocketAddr> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::usage(format!(
            "--listen {listen:?} is not an address like 127.0.0.1:8080"
        ))
    })?;
    if !addr.ip().is_loopback() {
        if !allow_remote {
            return Err(CliError::usage(format!(
                "--listen {addr} is not loopback: anyone who reaches it gets requests made with your token; add --allow-remote if that is really meant"
            )));
        }
        tracing::warn!(
            "listening on {addr}, beyond loopback: anyone who can reach it can make requests with this token"
        );
    }
    Ok(addr)
}

/// Sizes as people write them: `1048576`, `512KiB`, `1MiB`, `10MB`, `1GiB`.
pub fn parse_size(value: &str) -> Result<usize, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a size (try 1MiB or 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return Err(format!("{value:?} is not a size (try 1MiB or 1048576)")),
    };
    n.checked_mul(factor)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{value:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() -> Result<(), String> {
        assert_eq!(parse_size("1MiB")?, 1_048_576);
        assert_eq!(parse_size("512KiB")?, 524_288);
        assert_eq!(parse_size("10MB")?, 10_000_000);
        assert_eq!(parse_size("42")?, 42);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        Ok(())
    }

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
