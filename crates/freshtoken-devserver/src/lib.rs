//! A local authorization server and protected API, for trying pipelines and for tests.
//!
//! It issues opaque tokens with a short lifetime, answers 401 on `/api/...` once they expire
//! (on its own clock, which tests can move), counts everything at `/__stats`, and can be made
//! to fail on purpose (`/__faults`): an outage, 429 with `Retry-After`, a slow answer,
//! Genesys Cloud's throttling 400, or any canned answer, malformed ones included.
//!
//! With [`Config::genesys`] it speaks Genesys Cloud where the real Genesys SDKs need it
//! (Genesys' 401 body, `/api/v2/tokens/me`, users to GET and PATCH, the login server's
//! throttle), and it counts API calls and 401s per path at `/__stats/paths`.
//!
//! It binds loopback by default and is not meant for anything but trying things out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::{SharedClock, SystemClock};
use tokio::net::TcpListener;

mod api;
mod assertion;
mod authorize;
mod ci_issuer;
mod compare;
mod device;
mod dpop;
mod dpop_state;
mod faults;
mod genesys;
mod grants;
mod mtls;
mod oauth;
mod routes;
mod state;
mod token;

pub use ci_issuer::{CiConfig, CiStats, Federation};
pub use dpop_state::DpopStats;
pub use faults::{Canned, Faults};
pub use mtls::{CertificateClient, PeerCertificate};
pub use routes::app;
pub use state::{ApiRequest, PathStats, State, Stats};

/// How a dev-server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lifetime of the tokens it issues.
    pub ttl: Duration,
    /// Registered clients: (id, secret). The secret also keys client_secret_jwt.
    pub clients: Vec<(String, String)>,
    /// Clients that authenticate with private_key_jwt: (id, public key PEM).
    pub client_keys: Vec<(String, String)>,
    /// Issue refresh tokens (rotated on every use) and accept the refresh_token grant.
    pub refresh_tokens: bool,
    /// When set, only these scopes are granted; others asked for are silently dropped, as
    /// real servers do with scopes the client credentials grant does not know.
    pub scopes: Option<Vec<String>>,
    /// Speak Genesys Cloud on the API: 401s carry Genesys' `bad.credentials` body, and
    /// `GET /api/v2/tokens/me`, `GET|PATCH /api/v2/users/{id}` answer as Genesys does, so the
    /// real Genesys SDKs can run against this server. Off, every `/api/...` path echoes.
    pub genesys: bool,
    /// Faults switched on from the start.
    pub faults: Faults,
    /// The clock that decides expiry.
    pub clock: SharedClock,
    /// Also be a CI identity issuer, and trust it for client assertions and token exchange
    /// (see the `ci_issuer` module).
    pub ci: Option<CiConfig>,
    /// Clients that authenticate with a TLS client certificate (RFC 8705); their tokens
    /// are bound to it. The certificate comes from a TLS listener in front (see
    /// [`PeerCertificate`]).
    pub certificate_clients: Vec<CertificateClient>,
    /// That listener's `https://HOST:PORT`, named in the metadata's `mtls_endpoint_aliases`.
    pub mtls_base_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            clients: vec![(
                DEFAULT_CLIENT_ID.to_owned(),
                DEFAULT_CLIENT_SECRET.to_owned(),
            )],
            client_keys: Vec::new(),
            refresh_tokens: false,
            scopes: None,
            genesys: false,
            faults: Faults::default(),
            clock: Arc::new(SystemClock),
            ci: None,
            certificate_clients: Vec::new(),
            mtls_base_url: None,
        }
    }
}

/// The client registered when none is given.
pub const DEFAULT_CLIENT_ID: &str = "dev-client";
/// Its secret: this server is for trying things out, not for guarding anything.
pub const DEFAULT_CLIENT_SECRET: &str = "dev-secret";

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A dev-server running in the background of the current tokio runtime.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    /// Dropped with the server, which then stops too.
    stop: Option<freshtoken::drain::Signal>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Binds `addr` (port 0 picks a free one) and starts serving.
    pub async fn start(addr: SocketAddr, config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config));
        let (stop, watch) = freshtoken::drain::channel();
        let task = tokio::spawn(run(listener, Arc::clone(&state), watch.into_signaled()));
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url())
    }

    /// The shared state: stats, faults, issued tokens.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            stop.signal();
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.signal();
        }
    }
}
