//! The local endpoint: `/v1/token/<profile>`, `/healthz`, `/readyz` and `/metrics`, on a unix
//! socket only its user can open and, when configured, on a loopback TCP port, where a token
//! request needs the agent's credential and a `Host` naming that port.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use freshtoken::{AccessToken, CachedSource, SharedClock, Token, Want};

use freshtoken::internal::fmt_duration;
use freshtoken_proxy::{Addresses, AllowedHosts, Limits};
use serde_json::json;
use tracing::Instrument;

use crate::credential::Credential;
use crate::metrics::{ProfileSample, ProxySample, render};
use crate::output::TokenWire;
use crate::{AgentError, Endpoint, State as Agent};

/// Longest a token request to the endpoint waits for a refresh.
const TOKEN_WAIT: Duration = Duration::from_secs(30);

/// The bound listeners.
pub(crate) struct Endpoints {
    unix: tokio::net::UnixListener,
    socket: PathBuf,
    tcp: Option<tokio::net::TcpListener>,
}

/// Binds the socket (mode 0600, in a 0700 folder of the user's, which it creates when
/// missing) and the TCP port.
pub(crate) fn bind(config: &Endpoint) -> Result<Endpoints, AgentError> {
    let socket = config.socket.clone();
    let tcp = config.listen;
    if let Some(addr) = tcp
        && !addr.ip().is_loopback()
    {
        return Err(AgentError::config(format!(
            "[agent] listen = {addr}: the token endpoint serves loopback only (127.0.0.1 or [::1])"
        )));
    }
    // Owned by the user, 0700, not a symlink; made so when missing.
    crate::socket_dir::prepare(crate::socket_dir::of(&socket))?;
    if let Ok(meta) = std::fs::symlink_metadata(&socket) {
        if !meta.file_type().is_socket() {
            return Err(AgentError::config(format!(
                "{} exists and is not a socket; not touching it",
                socket.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(AgentError::config(format!(
                "another agent is serving {} (stop it, or set [agent] socket)",
                socket.display()
            )));
        }
        // Left by an agent that did not stop cleanly.
        let _ = std::fs::remove_file(&socket);
    }
    // The socket is created 0600 from the start: no moment where others could connect.
    // SAFETY: umask only swaps the process's file mode mask.
    let previous = unsafe { libc::umask(0o177) };
    let unix = tokio::net::UnixListener::bind(&socket);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    let unix = unix
        .map_err(|e| AgentError::config(format!("cannot listen on {}: {e}", socket.display())))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        AgentError::internal(format!("cannot set the mode of {}: {e}", socket.display()))
    })?;
    let tcp = match tcp {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .map_err(|e| AgentError::config(format!("[agent] cannot listen on {addr}: {e}")))?,
        ),
        None => None,
    };
    Ok(Endpoints { unix, socket, tcp })
}

impl Endpoints {
    /// Serves until `stopped` is signaled, then lets requests finish and removes the socket.
    /// With a TCP port, first writes the credential its token requests must carry (see
    /// `credential`), new at every start.
    pub(crate) fn serve(
        self,
        agent: Arc<Agent>,
        stopped: freshtoken::drain::Watch,
    ) -> Result<impl Future<Output = ()> + use<>, AgentError> {
        let grace = agent.grace;
        let router = Router::new()
            .route("/v1/token/{profile}", get(token))
            .route("/v1/status", get(crate::status::status))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(agent);
        let wait = freshtoken::drain::Watch::into_signaled;
        let socket = self.socket.clone();
        tracing::info!("token endpoint on {}", socket.display());
        let unix = axum::serve(self.unix, router.clone().into_make_service())
            .with_graceful_shutdown(wait(stopped.clone()));
        let credential = match &self.tcp {
            Some(_) => Some(Arc::new(Credential::create(&socket)?)),
            None => None,
        };
        let tcp = match (self.tcp, &credential) {
            (Some(listener), Some(credential)) => Some(serve_tcp(
                listener,
                router,
                Arc::clone(credential),
                wait(stopped),
                grace,
            )),
            _ => None,
        };
        Ok(async move {
            let tcp = async move {
                if let Some(tcp) = tcp
                    && let Err(e) = tcp.await
                {
                    tracing::error!("token endpoint (TCP) failed: {e}");
                }
            };
            let unix = async move {
                if let Err(e) = unix.await {
                    tracing::error!("token endpoint (socket) failed: {e}");
                }
            };
            tokio::join!(tcp, unix);
            let _ = std::fs::remove_file(&socket);
            if let Some(credential) = credential {
                credential.remove();
            }
        })
    }
}

/// The endpoint on a loopback TCP port, where any local user can connect: served by the
/// proxy's listener (its header timeout and connection cap), every request checked by
/// [`tcp_guard`].
fn serve_tcp(
    listener: tokio::net::TcpListener,
    router: Router,
    credential: Arc<Credential>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> impl Future<Output = std::io::Result<()>> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            "token endpoint on http://{addr} (token requests need the credential in {})",
            credential.path().display()
        );
    }
    let router = router.layer(axum::middleware::from_fn_with_state(credential, tcp_guard));
    let make = move |at: Addresses| {
        let router = router.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(at);
            let mut router = router.clone();
            async move { tower_service::Service::call(&mut router, req).await }
        })
    };
    freshtoken_proxy::serve(listener, Limits::default(), make, shutdown, grace)
}

/// What any local user may read on the TCP port without the credential: none carries a
/// token, and probes and scrapers (which may run as another user) need them.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The checks of a TCP request, in order: a peer on this machine (403, whatever address the
/// port was bound to), a `Host` that names the port's loopback address (421: a web page that
/// rebinds its DNS name to 127.0.0.1 sends its own name), and for anything but
/// [`OPEN_PATHS`], the agent's credential (401).
async fn tcp_guard(
    State(credential): State<Arc<Credential>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(at) = req.extensions().get::<Addresses>().copied() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the connection's addresses are unknown".into(),
        );
    };
    if !at.peer.ip().to_canonical().is_loopback() {
        return problem(
            StatusCode::FORBIDDEN,
            "the agent answers loopback clients only".into(),
        );
    }
    let allowed = AllowedHosts::default();
    if let Some(why) = freshtoken_proxy::misdirected(&allowed, at.local, req.uri(), req.headers()) {
        return problem(
            StatusCode::MISDIRECTED_REQUEST,
            format!("{why}: the agent answers its own address only"),
        );
    }
    if !OPEN_PATHS.contains(&req.uri().path()) && !credential.admits(req.headers()) {
        let mut refused = problem(
            StatusCode::UNAUTHORIZED,
            format!(
                "the agent's TCP endpoint needs its credential: Authorization: Bearer <the contents of {}> (readable by the agent's user only; the socket needs none)",
                credential.path().display()
            ),
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"freshtoken-agent\""),
        );
        return refused;
    }
    next.run(req).await
}

fn problem(status: StatusCode, reason: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

async fn token(
    State(agent): State<Arc<Agent>>,
    axum::extract::Path(profile): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(kept) = agent.profile(&profile) else {
        let known: Vec<String> = agent.profiles().keys().cloned().collect();
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "no profile {profile:?} (the agent keeps: {})",
                known.join(", ")
            ),
        );
    };
    let min_ttl = match query.get("min_ttl").map(|v| parse_duration(v)) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => return problem(StatusCode::BAD_REQUEST, format!("min_ttl: {e}")),
    };
    // What the library logs while it fetches for this request names the profile.
    let wanted = token_for(&kept.source, &kept.early, &agent.clock, min_ttl)
        .instrument(tracing::info_span!("token_request", %profile));
    let token = match tokio::time::timeout(TOKEN_WAIT, wanted).await {
        Ok(Ok(t)) => t,
        Ok(Err(refusal)) => return refusal.answer(&profile, min_ttl),
        Err(_) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no valid token for {profile:?} within {} s",
                    TOKEN_WAIT.as_secs()
                ),
            );
        }
    };
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    let now = agent.clock.now();
    let (body, content_type) = if raw {
        (
            token.expose_secret().to_owned(),
            "text/plain; charset=utf-8",
        )
    } else {
        (
            format!("{}\n", TokenWire::new(&token, now).to_json()),
            "application/json",
        )
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A `min_ttl` query value: whole seconds (`30`) or a duration (`250ms`, `5m`), as `get
/// --min-ttl` takes it.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("{value:?} is not a duration (try 30s, 5m, 1h)"))
}

/// A caller's `min_ttl` fetches a token ahead of the refresh schedule at most once per this
/// share of the token's lifetime: a quarter, so at most four extra token requests a lifetime
/// however many callers ask, and however close to the lifetime their `min_ttl` is.
const EARLY_FETCH_SHARE: u32 = 4;

/// Why the endpoint answers without a token.
#[derive(Debug)]
enum Refusal {
    /// `min_ttl` is not below the lifetime of the profile's tokens: no token ever meets it.
    Never { lifetime: Duration },
    /// The held token falls short of `min_ttl`, and the last early fetch is too recent.
    Later { left: Duration, retry: Duration },
    /// No token could be had.
    Failed(freshtoken::Error),
}

impl Refusal {
    fn answer(self, profile: &str, min_ttl: Duration) -> Response {
        let ttl = fmt_duration(min_ttl);
        match self {
            Refusal::Never { lifetime } => problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "min_ttl {ttl}: the tokens of {profile:?} live {}, so none stays valid that long; ask for less",
                    fmt_duration(lifetime)
                ),
            ),
            Refusal::Later { left, retry } => {
                let secs = retry.as_secs_f64().ceil().max(1.0);
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the token of {profile:?} is valid for {} more, short of min_ttl {ttl}; the agent fetches a new one ahead of time at most once per quarter of its lifetime: retry in {secs} s, or ask for less",
                        fmt_duration(left)
                    ),
                );
                if let Ok(v) = HeaderValue::try_from(format!("{secs}")) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Refusal::Failed(e) => problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no valid token for {profile:?}: {e}"),
            ),
        }
    }
}

/// A token of `source` valid at least `min_ttl`. What the source holds serves when it lasts
/// long enough; otherwise one caller at a time (`early`) fetches a new one, and only once
/// the held token has lived a quarter of its lifetime: a `min_ttl` near the lifetime never
/// turns every call into a token request.
async fn token_for(
    source: &CachedSource,
    early: &tokio::sync::Mutex<()>,
    clock: &SharedClock,
    min_ttl: Duration,
) -> Result<AccessToken, Refusal> {
    let never = |t: &Token| {
        (min_ttl >= t.lifetime()).then(|| Refusal::Never {
            lifetime: t.lifetime(),
        })
    };
    if let Some(refusal) = source.peek_valid().as_deref().and_then(never) {
        return Err(refusal);
    }
    // What any caller gets: the held token, or the source's own refresh when it has none or
    // it is about to expire.
    let token = source.token().await.map_err(Refusal::Failed)?;
    if token.remaining(clock.now()) >= min_ttl {
        return Ok(token);
    }
    if let Some(refusal) = never(&token) {
        return Err(refusal);
    }
    drop(token);
    let _one = early.lock().await;
    // Another caller may have fetched while this one waited.
    if let Some(held) = source.peek_valid() {
        let now = clock.now();
        if held.remaining(now) >= min_ttl {
            return Ok(held);
        }
        let age = now.duration_since(held.received_at()).unwrap_or_default();
        let floor = held.lifetime() / EARLY_FETCH_SHARE;
        if age < floor {
            return Err(Refusal::Later {
                left: held.remaining(now),
                retry: floor - age,
            });
        }
    }
    source
        .token_with(Want::min_ttl(min_ttl))
        .await
        .map_err(|e| match e {
            freshtoken::Error::LifetimeTooShort { lifetime, .. } => Refusal::Never { lifetime },
            e => Refusal::Failed(e),
        })
}

async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    let waiting = agent.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", waiting.join(", ")),
        )
            .into_response()
    }
}

impl Agent {
    /// The profiles that keep `/readyz` from answering 200, each with why: no valid token,
    /// or sinks not (all) written with it.
    pub(crate) fn not_ready(&self) -> Vec<String> {
        let now = self.clock.now();
        self.profiles()
            .iter()
            .filter_map(|(name, p)| {
                if p.source.peek_valid().is_none() {
                    return Some(match p.metrics.last_error() {
                        Some(e) => format!("{name} (no valid token: {e})"),
                        None => format!("{name} (no valid token yet)"),
                    });
                }
                let sinks_hold = p.sinks.is_empty() || p.held.until().is_some_and(|t| t > now);
                (!sinks_hold).then(|| format!("{name} (its sinks are not written)"))
            })
            .collect()
    }
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let now = agent.clock.now();
    let profiles: Vec<(String, Arc<crate::Profile>)> = agent
        .profiles()
        .iter()
        .map(|(n, p)| (n.clone(), Arc::clone(p)))
        .collect();
    let budgets = crate::budget::budget_uses(profiles.iter().map(|(_, p)| &p.source)).await;
    let samples: Vec<ProfileSample<'_>> = profiles
        .iter()
        .zip(budgets)
        .map(|((name, p), budget)| ProfileSample {
            name,
            metrics: &p.metrics,
            expires_in: p
                .source
                .peek_valid()
                .map(|t| t.remaining(now).as_secs_f64()),
            cache: p.metrics.cache(&p.source),
            budget,
        })
        .collect();
    let proxies = agent.proxies();
    let proxy_samples: Vec<ProxySample<'_>> = proxies
        .iter()
        .map(|r| ProxySample {
            profile: &r.spec.profile,
            listen: r.bound.to_string(),
            stats: r.proxy.stats(),
        })
        .collect();
    let text = render(&samples, &proxy_samples, &agent.reloads);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::{HttpFetcher, HttpOptions, ManualClock, TokenRequest};
    use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Running};
    use secrecy::SecretString;

    /// A source of 60 s tokens from a dev-server, on a clock the test moves.
    async fn setup() -> (Running, CachedSource, ManualClock) {
        let server = Running::start(
            ([127, 0, 0, 1], 0).into(),
            Config {
                ttl: Duration::from_secs(60),
                ..Config::default()
            },
        )
        .await
        .unwrap();
        let request = TokenRequest::new(
            server.token_url().parse().unwrap(),
            DEFAULT_CLIENT_ID,
            Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
        );
        let clock = ManualClock::starting_now();
        let fetcher = HttpFetcher::new(request, HttpOptions::default())
            .unwrap()
            .with_clock(Arc::new(clock.clone()));
        let source = CachedSource::builder(fetcher)
            .clock(Arc::new(clock.clone()))
            .build();
        (server, source, clock)
    }

    /// 50 callers at once; what each got.
    async fn fifty(
        source: &CachedSource,
        early: &Arc<tokio::sync::Mutex<()>>,
        clock: &SharedClock,
        min_ttl: Duration,
    ) -> Vec<Result<AccessToken, Refusal>> {
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let (source, early, clock) = (source.clone(), Arc::clone(early), clock.clone());
                tokio::spawn(async move { token_for(&source, &early, &clock, min_ttl).await })
            })
            .collect();
        let mut got = Vec::new();
        for call in calls {
            got.push(call.await.unwrap());
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_min_ttl_near_the_lifetime_fetches_at_most_once_per_quarter_of_it() {
        let (server, source, manual) = setup().await;
        let clock: SharedClock = Arc::new(manual.clone());
        let early = Arc::new(tokio::sync::Mutex::new(()));
        let tokens = || server.state().stats().token_requests;
        let near = Duration::from_millis(59_990);

        token_for(&source, &early, &clock, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(tokens(), 1);
        // Just fetched: the held token meets it.
        assert!(
            fifty(&source, &early, &clock, near)
                .await
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(tokens(), 1);

        // A second later it falls short; a new token only once it has lived 15 s.
        manual.advance(Duration::from_secs(1));
        for got in fifty(&source, &early, &clock, near).await {
            match got {
                Err(Refusal::Later { retry, .. }) => assert_eq!(retry, Duration::from_secs(14)),
                other => panic!("expected a refusal for now: {other:?}"),
            }
        }
        assert_eq!(tokens(), 1);
        manual.advance(Duration::from_secs(14));
        let got = fifty(&source, &early, &clock, near).await;
        assert_eq!(tokens(), 2, "one early fetch for 50 callers");
        for token in got {
            let token = token.unwrap();
            assert!(token.remaining(clock.now()) >= near);
        }
        manual.advance(Duration::from_secs(1));
        assert!(matches!(
            token_for(&source, &early, &clock, near).await,
            Err(Refusal::Later { .. })
        ));
        assert_eq!(tokens(), 2);

        // As long as the lifetime, or longer: never met, and no token request for it.
        for beyond in [Duration::from_secs(60), Duration::from_secs(120)] {
            for got in fifty(&source, &early, &clock, beyond).await {
                assert!(
                    matches!(got, Err(Refusal::Never { lifetime }) if lifetime == Duration::from_secs(60)),
                    "{got:?}"
                );
            }
        }
        assert_eq!(tokens(), 2);
    }

    #[tokio::test]
    async fn a_min_ttl_beyond_the_lifetime_costs_one_token_request_when_none_is_held() {
        let (server, source, manual) = setup().await;
        let clock: SharedClock = Arc::new(manual);
        let early = tokio::sync::Mutex::new(());
        for _ in 0..10 {
            let got = token_for(&source, &early, &clock, Duration::from_secs(3600)).await;
            assert!(matches!(got, Err(Refusal::Never { .. })), "{got:?}");
        }
        assert_eq!(server.state().stats().token_requests, 1);
    }
}
