//! The connections to the one upstream. There is only one host to reach, so there is no pool
//! key to hash and no connection to pick by address: idle HTTP/1.1 connections sit in a short
//! list (one list per serving thread, so its lock is never contended), and when ALPN picks
//! HTTP/2 one connection carries every request. A request goes straight to its connection's
//! task; nothing is spawned per request. Redirects are never followed: these are bare
//! connections, and a 3xx is just an answer.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;
use url::Url;

use crate::body::{BoxError, ProxyBody};
use crate::resolve::NameResolver;
use freshtoken::internal::lock;

/// Idle HTTP/1.1 connections kept per serving thread; more are closed once their answer is
/// read. Matches the `keepalive 64` the benchmark gives nginx.
const MAX_IDLE: usize = 64;

/// An idle connection older than this is closed rather than used: a load balancer or NAT on
/// the way may have forgotten it without a word, and a request sent on it would hang.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go, and the connections that take them there.
pub(crate) struct Upstream {
    connector: HttpsConnector<HttpConnector<NameResolver>>,
    /// `scheme://authority/`: what the connector dials.
    dial: Uri,
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header for HTTP/1.1 (HTTP/2 sends `:authority` from the URI instead).
    host: HeaderValue,
    /// The upstream URL's path without its trailing slash, put before each request's path.
    base_path: String,
    /// One lock for both, taken once per checkout.
    open: Mutex<Open>,
}

/// The connections open to the upstream.
#[derive(Default)]
struct Open {
    /// HTTP/1.1, each with the moment it was given back.
    idle: Vec<(http1::SendRequest<ProxyBody>, Instant)>,
    /// The shared HTTP/2 connection, once ALPN has picked HTTP/2.
    h2: Option<http2::SendRequest<ProxyBody>>,
}

/// A connection ready to take one request.
enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Upstream {
    /// `tls` is shared by every upstream of the process (one copy of the platform's roots).
    pub(crate) fn new(url: &Url, tls: rustls::ClientConfig) -> freshtoken::Result<Self> {
        let bad = || {
            freshtoken::Error::Config(format!("upstream {url} is not an http(s) URL with a host"))
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad());
        }
        // Every request carries the bearer token: as for the token URL, plain http is for
        // loopback only.
        freshtoken::internal::refuse_plain_http("upstream", url, "the token")?;
        let scheme: Scheme = url.scheme().parse().map_err(|_| bad())?;
        let host = url.host_str().ok_or_else(bad)?;
        // `Url` drops a port that is the scheme's default, as `Host` should.
        let authority: Authority = match url.port() {
            Some(port) => format!("{host}:{port}").parse(),
            None => host.parse(),
        }
        .map_err(|_| bad())?;
        let dial = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| bad())?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;

        let mut tcp = HttpConnector::new_with_resolver(NameResolver::default());
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Self {
            connector,
            dial,
            scheme,
            authority,
            host,
            base_path: url.path().trim_end_matches('/').to_owned(),
            open: Mutex::default(),
        })
    }

    /// Where `requested` (origin form, or absolute for this upstream) goes: the upstream's own
    /// path before the client's. Without a base path the client's URI is shared, not copied.
    pub(crate) fn target(&self, requested: &Uri) -> Option<Uri> {
        let path_and_query = requested.path_and_query();
        if !self.base_path.is_empty() {
            let pq = path_and_query.map_or("/", |p| p.as_str());
            return format!("{}{pq}", self.base_path).parse().ok();
        }
        if requested.scheme().is_none() && requested.authority().is_none() {
            return Some(requested.clone());
        }
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).ok()
    }

    /// Sends `request` (its URI in origin form, from [`Upstream::target`]). A request that
    /// never left because an idle connection closed under it goes again on another, as
    /// hyper's pooled client does; one that left is never sent twice here. Past as many
    /// tries as the pool holds, it takes a new connection, whose failure is final: the loop
    /// ends even if every connection it is handed closes.
    pub(crate) async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let pooled = if tries <= MAX_IDLE {
                self.checkout(Instant::now())
            } else {
                None
            };
            let (sender, reused) = match pooled {
                Some(sender) => (sender, true),
                // Boxed: the TLS handshake's state is kilobytes, and carried inline it would
                // be copied with every request's future on the path that reuses a connection.
                None => (Box::pin(self.connect()).await?, false),
            };
            let unsent = match sender {
                Sender::H1(mut sender) => {
                    request
                        .headers_mut()
                        .insert(header::HOST, self.host.clone());
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            self.keep(sender);
                            return Ok(response);
                        }
                        Err(mut e) => match e.take_message() {
                            Some(unsent) if reused => unsent,
                            _ => return Err(Box::new(e.into_error())),
                        },
                    }
                }
                Sender::H2(mut sender) => {
                    request.headers_mut().remove(header::HOST);
                    *request.uri_mut() = self.absolute(request.uri());
                    match sender.try_send_request(request).await {
                        Ok(response) => return Ok(response),
                        Err(mut e) => match e.take_message() {
                            Some(unsent) if reused => unsent,
                            _ => return Err(Box::new(e.into_error())),
                        },
                    }
                }
            };
            tracing::debug!("an idle upstream connection closed before the request left; again");
            request = unsent;
        }
    }

    /// A live connection that can take a request now, if one is open.
    fn checkout(&self, now: Instant) -> Option<Sender> {
        let mut open = lock(&self.open);
        if let Some(h2) = open.h2.as_ref().filter(|s| !s.is_closed()) {
            return Some(Sender::H2(h2.clone()));
        }
        let idle = &mut open.idle;
        // An HTTP/1.1 connection comes back as soon as its answer's head is in; it is ready
        // again once the body has been read, and gone once the upstream closed it.
        idle.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < IDLE_TIMEOUT);
        let ready = idle.iter().position(|(s, _)| s.is_ready())?;
        Some(Sender::H1(idle.swap_remove(ready).0))
    }

    fn keep(&self, sender: http1::SendRequest<ProxyBody>) {
        let idle = &mut lock(&self.open).idle;
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let io = self.connector.clone().call(self.dial.clone()).await?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("upstream HTTP/2 connection ended: {e}");
                }
            });
            lock(&self.open).h2 = Some(sender.clone());
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = http1::handshake(io).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("upstream connection ended: {e}");
                }
            });
            Ok(Sender::H1(sender))
        }
    }

    /// HTTP/2 carries scheme and authority in the request.
    fn absolute(&self, origin: &Uri) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = origin.path_and_query().cloned();
        Uri::from_parts(parts).unwrap_or_else(|_| origin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(), BoxError>;

    fn upstream(url: &str) -> Result<Upstream, BoxError> {
        freshtoken::install_crypto_provider();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Ok(Upstream::new(&url.parse()?, tls)?)
    }

    /// An upstream on loopback that answers every request with 200.
    async fn answering() -> Result<Upstream, BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(ProxyBody::full("ok")))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        upstream(&url)
    }

    #[test]
    fn plain_http_goes_to_loopback_only() {
        for url in [
            "http://127.0.0.1:8080/api",
            "http://localhost:1",
            "http://[::1]:80",
            "https://api.example.com/v2",
        ] {
            assert!(upstream(url).is_ok(), "{url}");
        }
        for url in [
            "http://example.com",
            "http://10.0.0.1:8080",
            "http://[2001:db8::1]/",
        ] {
            let e = upstream(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("is plain http to a non-loopback host; use https (the token would cross the network in clear)"),
                "{url}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_is_reused_until_it_has_been_idle_too_long() -> Outcome {
        let up = answering().await?;
        let mut request = Request::new(ProxyBody::full(""));
        *request.uri_mut() = up.target(&"/".parse()?).ok_or("no target")?;
        let first = up.send(request).await?;
        http_body_util::BodyExt::collect(first.into_body()).await?;
        // Ready again once its connection task has seen the answer through.
        for _ in 0..100 {
            if lock(&up.open).idle.iter().any(|(s, _)| s.is_ready()) {
                break;
            }
            tokio::task::yield_now().await;
        }
        let Some(Sender::H1(again)) = up.checkout(Instant::now()) else {
            return Err("an idle connection was not reused".into());
        };
        up.keep(again);
        let later = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(up.checkout(later).is_none(), "a stale one is not");
        assert!(lock(&up.open).idle.is_empty(), "and it is closed");
        Ok(())
    }

    #[test]
    fn the_upstream_path_goes_before_the_request_path() -> Outcome {
        let plain = upstream("https://api.example.com/")?;
        for (requested, sent) in [
            ("/a?b=1", "/a?b=1"),
            ("https://api.example.com/a?b=1", "/a?b=1"),
            ("https://api.example.com", "/"),
        ] {
            let target = plain.target(&requested.parse()?).ok_or("no target")?;
            assert_eq!(target, sent, "{requested}");
        }
        let based = upstream("https://api.example.com/api/v2/")?;
        for (requested, sent) in [
            ("/users?x", "/api/v2/users?x"),
            ("https://api.example.com/users?x", "/api/v2/users?x"),
        ] {
            let target = based.target(&requested.parse()?).ok_or("no target")?;
            assert_eq!(target, sent, "{requested}");
        }
        Ok(())
    }

    #[test]
    fn only_http_and_https_upstreams_with_a_host() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "unix:/run/x.sock",
        ] {
            let e = upstream(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("is not an http(s) URL with a host"),
                "{url}: {e:?}"
            );
        }
    }

    #[test]
    fn host_keeps_only_a_port_that_is_not_the_default() -> Outcome {
        assert_eq!(
            upstream("https://api.example.com:443/")?.host,
            "api.example.com"
        );
        assert_eq!(upstream("http://127.0.0.1:8080")?.host, "127.0.0.1:8080");
        let up = upstream("https://api.example.com:8443/v2")?;
        assert_eq!(
            up.absolute(&up.target(&"/x".parse()?).ok_or("no target")?),
            "https://api.example.com:8443/v2/x"
        );
        Ok(())
    }
}
