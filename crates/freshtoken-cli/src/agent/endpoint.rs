//! The local endpoint: `/v1/token/<profile>`, `/healthz`, `/readyz` and `/metrics`, on a unix
//! socket only its user can open and, when configured, on a loopback TCP port.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use freshtoken::Want;
use serde_json::json;

use super::Agent;
use super::metrics::{ProfileSample, ProxySample, render};
use crate::cli::Format;
use crate::config::AgentConfig;
use crate::exit::{CliError, CliResult};
use crate::settings::parse_duration;

/// Longest a token request to the endpoint waits for a refresh.
const TOKEN_WAIT: Duration = Duration::from_secs(30);

/// `$XDG_RUNTIME_DIR/freshtoken/agent.sock`, else `/tmp/freshtoken-<uid>/agent.sock`.
pub fn default_socket() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|p| p.join("freshtoken"))
        // SAFETY: getuid cannot fail and touches no memory.
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/freshtoken-{}", unsafe { libc::getuid() })));
    dir.join("agent.sock")
}

/// The socket path of `[agent]`, or the default.
pub fn socket_path(config: &AgentConfig) -> PathBuf {
    config.socket.clone().unwrap_or_else(default_socket)
}

/// The TCP address of `[agent]`, checked to be loopback.
pub fn tcp_addr(config: &AgentConfig) -> CliResult<Option<SocketAddr>> {
    let Some(listen) = &config.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::usage(format!(
            "[agent] listen = {listen:?} is not an address like 127.0.0.1:8765"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "[agent] listen = {addr}: the token endpoint serves loopback only (127.0.0.1 or [::1])"
        )));
    }
    Ok(Some(addr))
}

/// The bound listeners.
pub struct Endpoints {
    unix: tokio::net::UnixListener,
    socket: PathBuf,
    tcp: Option<tokio::net::TcpListener>,
}

/// Binds the socket (mode 0600, in a 0700 directory it creates) and the TCP port.
pub fn bind(config: &AgentConfig) -> CliResult<Endpoints> {
    let socket = socket_path(config);
    let tcp = tcp_addr(config)?;
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&socket) {
        if !meta.file_type().is_socket() {
            return Err(CliError::usage(format!(
                "{} exists and is not a socket; not touching it",
                socket.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(CliError::usage(format!(
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
    let unix =
        unix.map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", socket.display())))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        CliError::internal(format!("cannot set the mode of {}: {e}", socket.display()))
    })?;
    let tcp = match tcp {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .map_err(|e| CliError::usage(format!("[agent] cannot listen on {addr}: {e}")))?,
        ),
        None => None,
    };
    Ok(Endpoints { unix, socket, tcp })
}

impl Endpoints {
    /// Serves until `stopped` turns true, then lets requests finish and removes the socket.
    pub fn serve(
        self,
        agent: Arc<Agent>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = ()> {
        let router = Router::new()
            .route("/v1/token/{profile}", get(token))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(agent);
        let wait = |mut s: tokio::sync::watch::Receiver<bool>| async move {
            let _ = s.wait_for(|v| *v).await;
        };
        let socket = self.socket.clone();
        tracing::info!("token endpoint on {}", socket.display());
        let unix = axum::serve(self.unix, router.clone().into_make_service())
            .with_graceful_shutdown(wait(stopped.clone()));
        let tcp = self.tcp.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!("token endpoint on http://{addr}");
            }
            let router = router.layer(axum::middleware::from_fn(loopback_only));
            axum::serve(
                l,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(wait(stopped))
        });
        async move {
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
        }
    }
}

/// Refuses any peer that is not on this machine, whatever address the port was bound to.
async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        return problem(
            StatusCode::FORBIDDEN,
            "the agent answers loopback clients only".into(),
        );
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
    let Some(source) = agent.source(&profile) else {
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
    let token =
        match tokio::time::timeout(TOKEN_WAIT, source.token_with(Want::min_ttl(min_ttl))).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no valid token for {profile:?}: {e}"),
                );
            }
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
            crate::commands::get::render(&token, Format::Json, now),
            "application/json",
        )
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    let now = agent.clock.now();
    let waiting: Vec<String> = agent
        .profiles()
        .iter()
        .filter_map(|(name, p)| {
            if p.source.current().is_none() {
                return Some(match p.metrics.last_error() {
                    Some(e) => format!("{name} (no valid token: {e})"),
                    None => format!("{name} (no valid token yet)"),
                });
            }
            let sinks_hold = p.sinks.is_empty() || p.held.until().is_some_and(|t| t > now);
            (!sinks_hold).then(|| format!("{name} (its sinks are not written)"))
        })
        .collect();
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

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let now = agent.clock.now();
    let profiles: Vec<(String, Arc<super::Profile>)> = agent
        .profiles()
        .iter()
        .map(|(n, p)| (n.clone(), Arc::clone(p)))
        .collect();
    let samples: Vec<ProfileSample<'_>> = profiles
        .iter()
        .map(|(name, p)| ProfileSample {
            name,
            metrics: &p.metrics,
            expires_in: p.source.current().map(|t| t.remaining(now).as_secs_f64()),
        })
        .collect();
    let proxies = agent.proxies();
    let proxy_samples: Vec<ProxySample<'_>> = proxies
        .iter()
        .map(|r| ProxySample {
            profile: &r.config.profile,
            listen: &r.config.listen,
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
