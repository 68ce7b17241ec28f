//! Logs go to stderr, terse by default. Nothing logged ever holds a secret or a token: the
//! library logs fingerprints, and secrets are types whose `Debug` is redacted.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Sets up logging from `-v` count, `--log-level` and `RUST_LOG` (in that order of weight:
/// `--log-level`, then `RUST_LOG`, then `-v`).
pub fn init(verbose: u8, level: Option<&str>) -> Result<(), String> {
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
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            }),
        },
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .compact()
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}
