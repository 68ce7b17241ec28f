//! Entry point for the fuzz target in `fuzz/` (run by `scripts/fuzz.sh`): the proxy's
//! handling of a request head, reachable without a token source or a socket. Not part of the
//! API: it may change at any time.

use std::sync::OnceLock;

use http::{HeaderMap, Method, StatusCode, Uri};
use url::Url;

use crate::forward::upstream_head;
use crate::upstream::Upstream;

/// What the proxy makes of one request head.
#[derive(Debug)]
pub enum Outcome {
    /// The upstream URL itself is refused (not http(s) with a host), as at start-up.
    BadUpstream,
    /// The request is answered by the proxy with this status and text, never forwarded.
    Refused(StatusCode, String),
    /// The request goes upstream with this URI (origin form) and these headers (before the
    /// proxy adds `Authorization` and the connection adds `Host`).
    Forwarded(Uri, HeaderMap),
}

/// Runs the head checks and rewriting of [`crate::forward`] for a request to `upstream`.
pub fn request_head(upstream: &Url, method: &Method, uri: &Uri, mut headers: HeaderMap) -> Outcome {
    static TLS: OnceLock<rustls::ClientConfig> = OnceLock::new();
    let tls = TLS.get_or_init(|| {
        freshtoken::install_crypto_provider();
        // No roots: nothing is dialled here, the config only has to exist.
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    });
    let Ok(target) = Upstream::new(upstream, tls.clone()) else {
        return Outcome::BadUpstream;
    };
    match upstream_head(upstream, &target, method, uri, &mut headers) {
        Ok(uri) => Outcome::Forwarded(uri, headers),
        Err((status, text)) => Outcome::Refused(status, text),
    }
}

/// The `Host` check of [`crate::forward`] for a request that arrived on 127.0.0.1:8080, with
/// no names allowed besides: `None` when it is answered, else the reason of the 421.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 8080));
    crate::host::misdirected(&crate::AllowedHosts::default(), local, uri, headers)
}
