//! A dev-server with a mutual-TLS listener in front (RFC 8705), and client certificates made
//! in the test with rcgen.
//!
//! The dev-server answers on plain http as ever (its metadata, the usual clients) and on
//! `https://127.0.0.1:PORT`, where every client is asked for a certificate; the one it
//! presents reaches the dev-server as a [`PeerCertificate`], which decides: a certificate
//! client's token request is authenticated by it, and the tokens it gets are bound to it
//! (the API over TLS takes them only with the same certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use freshtoken_devserver::{CertificateClient, Config, PeerCertificate};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

pub use crate::ca::TestCa;
use crate::server::Server;

/// A client certificate and its key, written to files for `--client-cert`/`--client-key`.
pub struct ClientCert {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8, mode 0600).
    pub key_file: PathBuf,
    /// The certificate (DER), to register with the server.
    pub der: Vec<u8>,
}

impl ClientCert {
    fn write(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            cert_file,
            key_file,
            der: cert.der().to_vec(),
        }
    }

    /// A certificate for the DNS name `san` issued by `ca`, as `dir/NAME.pem` and `.key`.
    pub fn issued(dir: &Path, name: &str, ca: &TestCa, san: &str) -> Self {
        let (cert, key) = ca.issue(&[san]);
        Self::write(dir, name, &cert, &key)
    }

    /// A self-signed certificate, as `dir/NAME.pem` and `.key`.
    pub fn self_signed(dir: &Path, name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.freshtoken.test")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self::write(dir, name, &cert, &key)
    }

    /// `x5t#S256` of the certificate, as a server binds tokens to it.
    pub fn thumbprint(&self) -> String {
        PeerCertificate(vec![self.der.clone()])
            .thumbprint()
            .unwrap_or_default()
    }
}

/// The dev-server with its mutual-TLS listener.
pub struct MtlsServer {
    /// The dev-server (plain http: its issuer URL, metadata, state and counters).
    pub server: Server,
    /// `https://127.0.0.1:PORT`: the listener that asks for client certificates.
    pub url: String,
    /// The CA of that listener's own certificate, for `--ca-file`.
    pub ca_file: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl MtlsServer {
    /// A dev-server issuing tokens that live `ttl` to `clients` (and to the usual
    /// [`crate::server::CLIENT_ID`]), its TLS listener's certificate signed by a fresh CA
    /// written to `dir/mtls-ca.pem`.
    pub fn start(dir: &Path, ttl: Duration, clients: Vec<CertificateClient>) -> Self {
        Self::start_with(
            dir,
            Config {
                ttl,
                clients: vec![(
                    crate::server::CLIENT_ID.to_owned(),
                    crate::server::SECRET.to_owned(),
                )],
                certificate_clients: clients,
                ..Config::default()
            },
        )
    }

    /// Like [`MtlsServer::start`], with the whole `config` (a clock of the test's own); its
    /// `mtls_base_url` is set to the listener's.
    pub fn start_with(dir: &Path, mut config: Config) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        config.mtls_base_url = Some(url.clone());
        let server = Server::start_with(config);
        let ca = TestCa::new("freshtoken mTLS server CA");
        let ca_file = dir.join("mtls-ca.pem");
        ca.write(&ca_file);
        let (cert, key) = ca.issue(&["127.0.0.1"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(AnyClientCert(provider)))
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = Arc::clone(server.state());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let app = freshtoken_devserver::app(Arc::clone(&state));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return; // a client that refused our certificate
                    };
                    let peer =
                        tls.get_ref().1.peer_certificates().map(|chain| {
                            PeerCertificate(chain.iter().map(|c| c.to_vec()).collect())
                        });
                    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        if let Some(peer) = &peer {
                            req.extensions_mut().insert(peer.clone());
                        }
                        let mut app = app.clone();
                        async move { tower_service::Service::call(&mut app, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            server,
            url,
            ca_file,
            _runtime: runtime,
        }
    }

    /// The mTLS token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url)
    }
}

/// Asks every client for a certificate and takes whichever it presents (or none), checking
/// only that the client holds its key: which certificates count is the dev-server's call, as
/// behind a TLS-terminating proxy.
#[derive(Debug)]
struct AnyClientCert(Arc<rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
