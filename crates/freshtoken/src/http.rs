//! Talking HTTP to authorization servers, identity-token issuers and discovery endpoints:
//! the options and the one client builder they share, capped body reads, error text, and
//! the plain-http rule. Below `fetch` and `identity`, which both use it.

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::observe::RetryObserver;
use crate::retry::RetryPolicy;

/// Limits on talking to the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Whole-request timeout for one attempt (connect, send, read the body).
    pub timeout: Duration,
    /// Connect timeout for one attempt.
    pub connect_timeout: Duration,
    /// Largest response body read; a larger one is an error, not a truncation.
    pub max_body: usize,
    /// Retries of connection failures, timeouts, 5xx, 429 and throttling answers.
    pub retry: RetryPolicy,
    /// Lifetime assumed when the server gives neither `expires_in` nor a JWT `exp`.
    pub default_lifetime: Duration,
    /// A PEM file of certificate authorities trusted besides the platform's roots; a file
    /// that holds no certificate is a configuration error.
    pub ca_file: Option<PathBuf>,
    /// Told of each failed attempt that will be retried (see [`RetryObserver`]); without
    /// one, the first is logged as a warning and the rest at debug level.
    pub observer: Option<Arc<dyn RetryObserver>>,
    /// The client certificate and key presented when a server asks for one (mutual TLS:
    /// `tls_client_auth`, `self_signed_tls_client_auth`, certificate-bound tokens).
    pub client_identity: Option<crate::mtls::ClientIdentity>,
}

/// The documented lifetime assumed when a server says nothing about expiry: short, so a
/// wrong guess costs a few extra requests rather than 401s.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            retry: RetryPolicy::default(),
            default_lifetime: DEFAULT_LIFETIME,
            ca_file: None,
            observer: None,
            client_identity: None,
        }
    }
}

/// Builds the HTTP client freshtoken uses everywhere: rustls with the platform's roots (and
/// the CA file's, if any), the client certificate if one is set, host names resolved by
/// [`crate::dns`], no redirects, the given
/// timeouts.
pub fn http_client(options: &HttpOptions) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &options.ca_file {
        let extra = crate::tls::load_ca_file(path)?
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("CA file {}: {}", path.display(), chain(&e))))?;
        builder = builder.tls_certs_merge(extra);
    }
    if let Some(identity) = &options.client_identity {
        builder = builder.identity(reqwest_identity(identity)?);
    }
    builder
        .dns_resolver(std::sync::Arc::new(crate::dns::Resolver::system()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!("freshtoken/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {}", chain(&e))))
}

/// The client certificate and key for reqwest's client.
pub(crate) fn reqwest_identity(
    identity: &crate::mtls::ClientIdentity,
) -> Result<reqwest::Identity> {
    use secrecy::ExposeSecret;
    reqwest::Identity::from_pem(identity.pem().expose_secret().as_bytes()).map_err(|e| {
        // reqwest's error names the problem ("private key or certificate not found"), not the
        // key.
        Error::Config(format!("cannot use the client certificate: {}", chain(&e)))
    })
}

/// Makes ring the process's rustls crypto provider (HTTPS and `rediss://`), once; call it
/// before building any other rustls client in the process.
pub fn install_crypto_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Fails only if another provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause, which is the part that says what happened ("Connection refused").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string().replace(['\n', '\r'], " ")
}

/// The error and its sources on one line, each new piece of text once.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace(['\n', '\r'], " ")
}

/// Refuses a plain `http` URL to anything but loopback, with one wording wherever it is
/// checked: what is sent there (`carries`: credentials, a bearer token) would cross the
/// network in clear. `what` names the URL ("token URL", "upstream"). Other schemes pass:
/// whether they are allowed at all is the caller's to say.
pub fn refuse_plain_http(what: &str, url: &Url, carries: &str) -> Result<(), Error> {
    if url.scheme() == "http" && !is_loopback(url) {
        return Err(Error::Config(format!(
            "{what} {url} is plain http to a non-loopback host; use https ({carries} would cross the network in clear)"
        )));
    }
    Ok(())
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
