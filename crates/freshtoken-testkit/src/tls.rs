//! An HTTPS upstream for proxy tests: a certificate authority of the test's own (trusted by
//! the process under test through `--ca-file`, or `SSL_CERT_FILE`, which the platform
//! verifier reads on Linux) and a small server that offers HTTP/2 and/or HTTP/1.1 by ALPN and
//! records what reached it. `POST /oauth/token` answers with a token, so that it can stand
//! for a token endpoint behind a private CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A host name the upstream's certificate also holds; `.test` is reserved (RFC 2606), so it
/// resolves only where a test's hosts file says so.
pub const TLS_TEST_NAME: &str = "freshtoken.test";

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP/1.1 or HTTP/2, as negotiated by ALPN.
    pub version: http::Version,
    /// The `Authorization` header: the token the proxy put there.
    pub authorization: Option<String>,
    /// `Host` for HTTP/1.1, `:authority` for HTTP/2.
    pub authority: Option<String>,
    /// How many body bytes arrived (streamed bodies are counted, not kept).
    pub body_len: usize,
}

/// The running upstream; stops with its runtime when dropped.
pub struct TlsUpstream {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA's certificate, for `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsUpstream {
    /// Serves `https://127.0.0.1:PORT` with a certificate for 127.0.0.1 and for the name
    /// [`TLS_TEST_NAME`] (for tests that resolve it to 127.0.0.1) signed by a fresh CA
    /// written to `dir/ca.pem`, offering the ALPN protocols `alpn` in that order.
    pub fn start(dir: &Path, alpn: &[&[u8]]) -> Self {
        Self::start_at(dir, alpn, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// As [`TlsUpstream::start`], listening on `addr` (e.g. an address inside a test's
    /// network namespace, when called on a thread in it).
    pub fn start_at(dir: &Path, alpn: &[&[u8]], addr: SocketAddr) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = crate::ca::TestCa::new("freshtoken test CA");
        let (leaf, leaf_key) = ca.issue(&["127.0.0.1", TLS_TEST_NAME]);
        let ca_file = dir.join("ca.pem");
        ca.write(&ca_file);

        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    break; // out of descriptors or the like: stop rather than spin
                };
                let acceptor = acceptor.clone();
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return; // a client that refused our certificate
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |req| {
                        let record = Arc::clone(&record);
                        async move { answer(req, &record).await }
                    });
                    let io = TokioIo::new(tls);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        Self {
            url,
            ca_file,
            seen,
            _runtime: runtime,
        }
    }

    /// Every request that reached it so far, in order (token requests not included).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    record: &Mutex<Vec<Seen>>,
) -> Result<Response<String>, hyper::Error> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header(http::header::AUTHORIZATION);
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header(http::header::HOST));
    let version = req.version();
    let token_request = req.method() == http::Method::POST && req.uri().path() == "/oauth/token";
    let body_len = body_len(req.into_body()).await?;
    if token_request {
        // A token endpoint behind the private CA, for tests of --ca-file.
        return Ok(Response::new(
            r#"{"access_token":"from-the-private-ca","token_type":"Bearer","expires_in":3600}"#
                .to_owned(),
        ));
    }
    record.lock().unwrap().push(Seen {
        version,
        authorization,
        authority,
        body_len,
    });
    Ok(Response::new(format!("{version:?}\n")))
}

/// How many body bytes arrived.
async fn body_len(mut body: Incoming) -> Result<usize, hyper::Error> {
    use hyper::body::Body;
    let mut len = 0;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Some(data) = frame?.data_ref() {
            len += data.len();
        }
    }
    Ok(len)
}
