//! Logs go to stderr, terse by default. Nothing logged ever holds a secret or a token: the
//! library logs fingerprints, and secrets are types whose `Debug` is redacted.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Sets up logging from `-v` count, `--log-level` and `RUST_LOG` (in that order of weight:
/// `--log-level`, then `RUST_LOG`, then `-v`). `daemon` commands (the agent) log what they
/// do at info level by default; one-shot commands only warnings.
pub(crate) fn init(
    verbose: u8,
    level: Option<&str>,
    format: LogFormat,
    daemon: bool,
) -> Result<(), String> {
    let filter = match level {
        Some(l) => {
            let l = l.trim().to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace", "off"].contains(&l.as_str()) {
                return Err(format!(
                    "--log-level {l:?}: use error, warn, info, debug, trace or off"
                ));
            }
            EnvFilter::new(l)
        }
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => {
                EnvFilter::try_new(v.trim()).map_err(|e| format!("RUST_LOG: {e}"))?
            }
            _ => EnvFilter::new(match verbose {
                // The proxies' access log (one line per request) stays off unless asked.
                0 if daemon => "info,freshtoken::access=warn",
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            }),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    let result = match format {
        // Timestamps matter for a daemon's log, and JSON consumers expect them.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if daemon => builder
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .compact()
            .try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}
