//! What can go wrong while getting a token, grouped by what the user should do about it.

use std::fmt;
use std::time::Duration;

/// The library's error. Messages are one line, name what failed and never hold a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings given to the library are unusable (bad URL, missing client id, …).
    #[error("{0}")]
    Config(String),

    /// The request lacks something it cannot work without. The message says what is
    /// missing; where it goes is the caller's to say (a CLI names its flags).
    #[error("{0}")]
    Missing(Missing),

    /// The authorization server answered with an OAuth error (RFC 6749 §5.2).
    #[error("the authorization server refused the token request (HTTP {status}): {error}{}", describe(.description))]
    OAuth {
        /// HTTP status of the answer.
        status: u16,
        /// The OAuth `error` code, e.g. `invalid_client`.
        error: String,
        /// `error_description` (or Genesys Cloud's `description`), when sent.
        description: Option<String>,
    },

    /// A non-success status without an OAuth error body.
    #[error("the token endpoint answered HTTP {status}{}", excerpt_suffix(.excerpt))]
    Status {
        /// HTTP status of the answer.
        status: u16,
        /// A short, sanitized excerpt of the body.
        excerpt: String,
    },

    /// The token endpoint answered with a redirect, which is never followed with credentials.
    #[error("the token endpoint answered HTTP {status} redirecting to {}; redirects are not followed with credentials: set the token URL to the final address", .location.as_deref().unwrap_or("an unnamed location"))]
    Redirect {
        /// HTTP status of the answer.
        status: u16,
        /// The `Location` header, when sent.
        location: Option<String>,
    },

    /// A success status whose body is not a usable token response.
    #[error(
        "the token endpoint's answer (HTTP {status}) is not a usable token response: {problem}"
    )]
    InvalidResponse {
        /// HTTP status of the answer.
        status: u16,
        /// What is wrong, with a short sanitized excerpt where it helps.
        problem: String,
    },

    /// The request did not get an answer (connection refused or reset, a resolver that
    /// cannot answer now). Retried.
    #[error("{message}")]
    #[non_exhaustive]
    Transport {
        /// What failed, with the root cause, on one line.
        message: String,
        /// The underlying error (usually a `reqwest::Error`), for callers that inspect it.
        #[source]
        source: Option<Cause>,
    },

    /// An answer did not come in time: one attempt's timeout, or the call's deadline.
    /// Retried while the deadline allows.
    #[error("{message}")]
    #[non_exhaustive]
    Timeout {
        /// What was waited for, and how long, on one line.
        message: String,
        /// The underlying error, when the timeout came from the HTTP client.
        #[source]
        source: Option<Cause>,
    },

    /// The token endpoint cannot be reached in a way that waiting will not fix: its host name
    /// does not exist, or its certificate is not trusted. Not retried.
    #[error("{message}")]
    #[non_exhaustive]
    Unreachable {
        /// What failed, with the root cause, on one line.
        message: String,
        /// The underlying error (a `reqwest::Error` wrapping DNS or TLS failures).
        #[source]
        source: Option<Cause>,
    },

    /// Retryable failures went on until the retry deadline.
    #[error("gave up after {attempts} attempt{} over {}: {last}", if *.attempts == 1 { "" } else { "s" }, fmt_secs(*.elapsed))]
    Unavailable {
        /// How many requests were made.
        attempts: u32,
        /// How long was spent trying.
        elapsed: Duration,
        /// The last failure.
        last: Box<Error>,
    },

    /// No token that satisfies the caller can be had: the one held expires too soon and no new
    /// one could be fetched, or the server's lifetime is shorter than the caller needs.
    #[error("{0}")]
    NoValidToken(String),

    /// The server's tokens live shorter than the caller needs, so no refresh can help.
    #[error("the server's tokens live {}, less than the {} asked for", fmt_secs(*.lifetime), fmt_secs(*.min_ttl))]
    LifetimeTooShort {
        /// The lifetime of the token just issued.
        lifetime: Duration,
        /// What the caller asked for.
        min_ttl: Duration,
    },

    /// A human has to log in (again): no login is stored, or the stored refresh token was
    /// refused (`invalid_grant`) or has expired. No retry or wait can fix it.
    #[error("login needed: {0}")]
    LoginNeeded(String),

    /// The token cache failed in a way that could not be worked around.
    #[error("token cache: {message}")]
    #[non_exhaustive]
    Store {
        /// What failed, on one line.
        message: String,
        /// The underlying error: an `std::io::Error` for files, a Redis error for Redis.
        #[source]
        source: Option<Cause>,
    },
}

/// What a request lacks (see [`Error::Missing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// No client id, or a blank one.
    ClientId,
    /// The auth method signs or sends a client secret, and there is none.
    ClientSecret {
        /// The method that needs it.
        auth_method: crate::AuthMethod,
    },
    /// `private_key_jwt` without a private key.
    PrivateKey,
    /// A mutual-TLS method without a client certificate and key in the HTTP options.
    ClientCertificate {
        /// The method that needs it.
        auth_method: crate::AuthMethod,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::ClientId => f.write_str("no client id"),
            Missing::ClientSecret { auth_method } => {
                write!(f, "auth method {auth_method} needs a client secret")
            }
            Missing::PrivateKey => f.write_str("private_key_jwt needs a private key"),
            Missing::ClientCertificate { auth_method } => {
                write!(
                    f,
                    "auth method {auth_method} needs a client certificate and key"
                )
            }
        }
    }
}

/// The cause kept under an [`Error`], reachable through [`std::error::Error::source`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The broad class of an [`Error`], which is what decides an exit code or a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Fix the settings.
    Config,
    /// The server said no to these credentials or this request.
    Rejected,
    /// The server could not be reached, kept failing, or answered nonsense.
    Unavailable,
    /// No answer came in time (one attempt's timeout, or the call's deadline).
    Timeout,
    /// Anything else: a local failure.
    Internal,
    /// A person must log in again (see [`Error::LoginNeeded`]).
    LoginNeeded,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_)
            | Error::Missing(_)
            | Error::Redirect { .. }
            | Error::LifetimeTooShort { .. } => ErrorKind::Config,
            Error::OAuth { status, .. } | Error::Status { status, .. }
                if self.is_transient() || *status >= 500 =>
            {
                ErrorKind::Unavailable
            }
            Error::OAuth { .. } | Error::Status { .. } => ErrorKind::Rejected,
            Error::InvalidResponse { .. }
            | Error::Transport { .. }
            | Error::Unreachable { .. }
            | Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::NoValidToken(_) => ErrorKind::Unavailable,
            Error::Store { .. } => ErrorKind::Internal,
            Error::LoginNeeded(_) => ErrorKind::LoginNeeded,
        }
    }

    /// A transport failure (no answer), for [`Fetch`](crate::Fetch) implementations; add
    /// the cause with [`Error::with_source`].
    pub fn transport(message: impl Into<String>) -> Self {
        Error::Transport {
            message: message.into(),
            source: None,
        }
    }

    /// A timeout: an answer that did not come in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Error::Timeout {
            message: message.into(),
            source: None,
        }
    }

    /// A failure that waiting will not fix (unknown host, untrusted certificate).
    pub fn unreachable(message: impl Into<String>) -> Self {
        Error::Unreachable {
            message: message.into(),
            source: None,
        }
    }

    /// A store failure, for [`TokenStore`](crate::TokenStore) implementations; add the
    /// cause with [`Error::with_source`].
    pub fn store(message: impl Into<String>) -> Self {
        Error::Store {
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `cause` as this error's [`source`](std::error::Error::source), so that callers
    /// can inspect it. Only the variants that wrap an outside failure (transport, timeout,
    /// unreachable, store) keep one; the others are returned unchanged.
    pub fn with_source(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            Error::Transport { source, .. }
            | Error::Timeout { source, .. }
            | Error::Unreachable { source, .. }
            | Error::Store { source, .. } => *source = Some(cause.into()),
            _ => {}
        }
        self
    }

    /// Whether the failure is a server certificate signed by an authority nobody here
    /// trusts (rustls's `UnknownIssuer`): a private CA, which trusting its certificate
    /// (see [`HttpOptions::ca_file`](crate::HttpOptions::ca_file)) fixes.
    pub fn is_unknown_issuer(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )) = c.downcast_ref::<rustls::Error>()
            {
                return true;
            }
            // An I/O error's `source()` skips the error it wraps (often another I/O error
            // around the rustls one), so step into it instead.
            cause = match c.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => c.source(),
            };
        }
        false
    }
}

impl Error {
    /// Whether the same request may well succeed later: 5xx, 408, 429, and Genesys Cloud's
    /// throttling answer (HTTP 400 `invalid_request`, "rate limit exceeded …").
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Error::OAuth {
                status,
                error,
                description,
            } => {
                *status >= 500
                    || *status == 429
                    || *status == 408
                    || (*status == 400
                        && error == "invalid_request"
                        && description.as_deref().is_some_and(|d| {
                            d.trim_start()
                                .to_ascii_lowercase()
                                .starts_with("rate limit exceeded")
                        }))
            }
            _ => false,
        }
    }
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) if !d.is_empty() => format!(" ({d})"),
        _ => String::new(),
    }
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        " with an empty body".to_owned()
    } else {
        format!(": {excerpt}")
    }
}

fn fmt_secs(d: Duration) -> impl fmt::Display {
    format!("{:.1} s", d.as_secs_f64())
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_say_what_happened() {
        let e = Error::OAuth {
            status: 401,
            error: "invalid_client".into(),
            description: Some("client authentication failed".into()),
        };
        assert_eq!(
            e.to_string(),
            "the authorization server refused the token request (HTTP 401): invalid_client (client authentication failed)"
        );
        assert_eq!(e.kind(), ErrorKind::Rejected);

        let e = Error::Unavailable {
            attempts: 3,
            elapsed: Duration::from_millis(2500),
            last: Box::new(Error::Status {
                status: 503,
                excerpt: String::new(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "gave up after 3 attempts over 2.5 s: the token endpoint answered HTTP 503 with an empty body"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.to_string().contains('\n'));
    }
}
