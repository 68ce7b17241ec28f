//! Exit codes and the one-line errors that go with them.

use std::fmt;

use freshtoken::ErrorKind;

/// The documented exit codes (also in `--help` and README.md).
pub(crate) mod code {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// Usage or configuration error: fix the flags, environment or config file.
    pub(crate) const USAGE: u8 = 2;
    /// The authorization server rejected the request (an OAuth 4xx such as invalid_client).
    pub(crate) const REJECTED: u8 = 3;
    /// The server is unreachable, kept failing after retries, or answered nonsense.
    pub(crate) const UNAVAILABLE: u8 = 4;
    /// Anything else failed locally (cache I/O, an internal fault).
    pub(crate) const INTERNAL: u8 = 5;
    /// A person must log in (again): no stored login, or its refresh token was refused or
    /// has expired (`freshtoken login`).
    pub(crate) const LOGIN_NEEDED: u8 = 6;
}

/// The text of the exit-code table, for `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0  success
  2  usage or configuration error (flags, environment, config file, --min-ttl longer than the token lives)
  3  the authorization server rejected the request (OAuth 4xx, e.g. invalid_client)
  4  the authorization server is unreachable, kept failing after retries, or answered nonsense
  5  internal failure (cache I/O and the like)
  6  login needed: no stored login, or its refresh token was refused or expired (run `freshtoken login`)
  126  exec: CMD is there but cannot be run (not executable, a folder)
  127  exec: CMD is not found";

/// A failure of a command: the message printed and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    /// Exit code.
    pub code: u8,
    /// One line; a second line may carry a hint.
    pub message: String,
}

impl CliError {
    /// A usage or configuration error.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: code::USAGE,
            message: message.into(),
        }
    }

    /// A local failure.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            code: code::INTERNAL,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<freshtoken::Error> for CliError {
    fn from(e: freshtoken::Error) -> Self {
        let code = match e.kind() {
            ErrorKind::Config => code::USAGE,
            ErrorKind::Rejected => code::REJECTED,
            ErrorKind::Unavailable | ErrorKind::Timeout => code::UNAVAILABLE,
            ErrorKind::LoginNeeded => code::LOGIN_NEEDED,
            _ => code::INTERNAL,
        };
        let mut message = e.to_string();
        if let Some(hint) = hint_for(&e) {
            message.push_str(hint);
        }
        Self { code, message }
    }
}

/// How to fix a library error with this binary's flags, environment and config keys: the
/// library says what is wrong, and only the binary knows what its settings are called.
fn hint_for(e: &freshtoken::Error) -> Option<&'static str> {
    use freshtoken::{Error, Missing};
    match e {
        Error::Missing(Missing::ClientId) => {
            Some(": set --client-id, FRESHTOKEN_CLIENT_ID or client_id in the profile")
        }
        Error::Missing(Missing::ClientSecret { .. }) => Some(
            ": set FRESHTOKEN_CLIENT_SECRET, --client-secret-file, --client-secret-stdin or client_secret in the profile",
        ),
        Error::Missing(Missing::PrivateKey) => {
            Some(": set --private-key PATH, FRESHTOKEN_PRIVATE_KEY or private_key in the profile")
        }
        Error::Missing(Missing::ClientCertificate { .. }) => Some(
            ": set --client-cert PATH and --client-key PATH, or client_certificate and client_key in the profile",
        ),
        Error::LifetimeTooShort { .. } => Some(" (--min-ttl); ask for less"),
        e if e.is_unknown_issuer() => {
            Some(" (a private CA? trust it with --ca-file PATH, or ca_file in the profile)")
        }
        _ => None,
    }
}

/// Result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;
