//! Accepting connections, and stopping cleanly: on shutdown the listener closes, in-flight
//! requests finish under a grace period, then the server returns.
//!
//! Every listener bounds what one client can hold: a request head must arrive within the
//! header timeout (the first one and each next one on a kept-alive connection), else the
//! connection is closed; and at most `max_connections` are open at once. At the cap the
//! listener stops accepting, so that further connections wait in the kernel's backlog (they
//! are served as soon as one closes, rather than refused), and says so once at WARN; it says
//! at info when it is below the cap again, after a second without reaching it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::body::{BoxError, ProxyBody};
use crate::forward::{Door, handle};
use crate::host::AllowedHosts;
use crate::{Proxy, Shared};
use freshtoken::internal::lock;

/// How long in-flight requests may run on after shutdown is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take to send a request head by default: far more than any client
/// on the same machine or network needs, far less than the minutes a slow-loris client would
/// hold a connection for.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest header timeout accepted: a head that takes longer is an attack, not a client.
pub const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Client connections open at once by default; below the 1024 file descriptors a process
/// often starts with, counting the upstream connections, it bounds what idle clients hold.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// What one listener lets its clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a client may take to send a request head (its first, or the next one on a
    /// kept-alive connection); then the connection is closed without an answer.
    pub header_timeout: Duration,
    /// Most client connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// How a proxy's listener treats its clients: which `Host` names it answers, what they may
/// hold, and how long their requests may run on after shutdown.
#[derive(Debug, Clone)]
pub struct Listening {
    /// Names answered besides the listen address (421 for any other).
    pub allowed_hosts: AllowedHosts,
    /// Header timeout and connection cap.
    pub limits: Limits,
    /// How long in-flight requests may run on after shutdown is asked for.
    pub grace: Duration,
}

impl Default for Listening {
    fn default() -> Self {
        Self {
            allowed_hosts: AllowedHosts::default(),
            limits: Limits::default(),
            grace: DEFAULT_GRACE,
        }
    }
}

/// Where a connection arrived, and from where: for the `Host` check and the peer check of a
/// service that [`serve`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The address the client connected to (the listen address, or with an unspecified one,
    /// the interface's).
    pub local: SocketAddr,
    /// The client's address.
    pub peer: SocketAddr,
}

/// Serves `proxy` on `listener` until `shutdown` completes, then drains for up to the grace
/// period of `listening`.
pub async fn run(
    listener: TcpListener,
    proxy: Proxy,
    listening: &Listening,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let door = Arc::new(door_of(listening));
    serve(
        listener,
        listening.limits,
        move |at| proxy_service(&proxy.shared, &door, at.local),
        shutdown,
        listening.grace,
    )
    .await
}

/// Serves HTTP/1.1 on `listener` within `limits` until `shutdown` completes, each connection
/// answered by the service `make` builds for it, then lets requests in flight finish for up
/// to `grace`. The proxy runs on it, and so does the agent's TCP token endpoint, so that both
/// get the same header timeout and connection cap.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: Limits,
    make: M,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    M: FnMut(Addresses) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let cap = Cap::new(limits.max_connections, listener.local_addr().ok());
    serve_capped(listener, limits, &cap, make, shutdown, grace).await
}

/// [`serve`] within a connection cap that other event loops on the same socket share.
async fn serve_capped<M, S, B>(
    listener: TcpListener,
    limits: Limits,
    cap: &Cap,
    mut make: M,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    M: FnMut(Addresses) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut serving = Serving::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut slot = None;
    loop {
        tokio::select! {
            () = serving.reap() => {}
            got = cap.slot(), if slot.is_none() => match got {
                Some(got) => slot = Some(got),
                None => break,
            },
            accepted = listener.accept(), if slot.is_some() => match accepted {
                Ok((stream, peer)) => {
                    let Some(held) = slot.take() else { continue };
                    let Ok(local) = stream.local_addr() else { continue };
                    let service = make(Addresses { local, peer });
                    serving.serve(stream, service, limits, held);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    serving.drain(grace).await;
    Ok(())
}

/// What the proxy's answers on `listening` need to know of it: the `Host` names it answers,
/// and that a kept request body gets as long as a request head does.
fn door_of(listening: &Listening) -> Door {
    Door {
        hosts: listening.allowed_hosts.clone(),
        body_timeout: listening.limits.header_timeout,
    }
}

/// The proxy's service for one client connection that arrived on `local`.
fn proxy_service(
    shared: &Arc<Shared>,
    door: &Arc<Door>,
    local: SocketAddr,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future: Send + 'static,
>
+ Send
+ 'static
+ use<> {
    let (shared, door) = (Arc::clone(shared), Arc::clone(door));
    service_fn(move |req| {
        let (shared, door) = (Arc::clone(&shared), Arc::clone(&door));
        async move { handle(&shared, &door, local, req).await }
    })
}

/// How long a listener must stay below its connection cap for the episode to be over: a
/// load that hovers at the cap, or a burst that drains the backlog into it again, is one
/// episode and one WARN.
const CAP_QUIET: Duration = Duration::from_secs(1);

/// The connection cap of one listening socket: a slot per open connection, shared (cloned)
/// by the event loops that accept on it.
#[derive(Clone)]
struct Cap {
    slots: Arc<Semaphore>,
    max: usize,
    /// When the cap was last found full, while an episode lasts: one WARN per episode,
    /// whichever loop finds it.
    full_at: Arc<std::sync::Mutex<Option<Instant>>>,
    listen: Option<SocketAddr>,
}

impl Cap {
    fn new(max: usize, listen: Option<SocketAddr>) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            full_at: Arc::default(),
            listen,
        }
    }

    fn listen(&self) -> String {
        self.listen
            .map_or_else(|| "a listener".to_owned(), |a| a.to_string())
    }

    /// A slot for the next connection: at once below the cap; at the cap, a WARN (the first
    /// time in an episode) and a wait until a connection closes. `None` only if the slots are
    /// gone, which they never are while the listener runs.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let full_at = || lock(&self.full_at);
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            let mut full_at = full_at();
            if full_at.is_some_and(|t| t.elapsed() >= CAP_QUIET) {
                *full_at = None;
                tracing::info!("{}: below the connection cap again", self.listen());
            }
            return Some(slot);
        }
        if full_at().replace(Instant::now()).is_none() {
            tracing::warn!(
                "{}: {} connections open, the most allowed (max connections); new ones wait in the backlog until one closes",
                self.listen(),
                self.max
            );
        }
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok();
        *full_at() = Some(Instant::now());
        slot
    }
}

/// The client connections one event loop serves, each watched for graceful shutdown.
#[derive(Default)]
struct Serving {
    graceful: GracefulShutdown,
    connections: JoinSet<()>,
}

impl Serving {
    /// Serves one client connection with `service` on the current runtime, holding `slot`
    /// of the connection cap until it ends.
    fn serve<S, B>(
        &mut self,
        stream: tokio::net::TcpStream,
        service: S,
        limits: Limits,
        slot: OwnedSemaphorePermit,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let _ = stream.set_nodelay(true);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        // The caller's span goes with each connection: the agent's names the proxy's profile.
        let span = tracing::Span::current();
        self.connections.spawn(tracing::Instrument::instrument(
            async move {
                let _slot = slot;
                if let Err(e) = connection.await {
                    tracing::debug!("client connection ended: {e}");
                }
            },
            span,
        ));
    }

    /// Completes when a connection has ended (never while none is open), so that the set
    /// holds only live ones.
    async fn reap(&mut self) {
        match self.connections.join_next().await {
            Some(_) => {}
            None => std::future::pending().await,
        }
    }

    /// Lets requests in flight finish for up to `grace`, then aborts what is left: on a
    /// runtime that goes on (the agent's, after a reload) it would otherwise stay open for
    /// good.
    async fn drain(self, grace: Duration) {
        if tokio::time::timeout(grace, self.graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still running after the {} s grace period were cut off",
                grace.as_secs()
            );
        }
        drop(self.connections);
    }
}

/// Serves `proxy` on `threads` OS threads, each with a single-threaded runtime and its own
/// upstream pool (as nginx's workers do): a request and its upstream call stay on one thread,
/// with no cross-thread wake-ups. Each thread runs the same accept loop as [`run`] on its own
/// handle of the one listening socket; the connection cap of `listening` counts them all.
/// Returns once `shutdown` is signaled and every thread has drained.
pub fn run_threaded(
    listener: std::net::TcpListener,
    proxy: &Proxy,
    threads: usize,
    listening: &Listening,
    shutdown: &freshtoken::drain::Watch,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let cap = Cap::new(listening.limits.max_connections, listener.local_addr().ok());
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let proxy = proxy.for_another_thread().map_err(std::io::Error::other)?;
        let (listening, cap, shutdown) = (listening.clone(), cap.clone(), shutdown.clone());
        let handle = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        let door = Arc::new(door_of(&listening));
                        let make =
                            move |at: Addresses| proxy_service(&proxy.shared, &door, at.local);
                        let signaled = shutdown.clone().into_signaled();
                        let served = serve_capped(
                            listener,
                            listening.limits,
                            &cap,
                            make,
                            signaled,
                            listening.grace,
                        )
                        .await;
                        // Held until drained: the signal's drain waits for this.
                        drop(shutdown);
                        served
                    })
            })?;
        handles.push(handle);
    }
    drop(listener);
    for h in handles {
        h.join()
            .map_err(|_| std::io::Error::other("a proxy thread panicked"))??;
    }
    Ok(())
}

/// A proxy serving in the background of the current runtime on an ephemeral loopback port,
/// for a child process (`exec --proxy`) or a demo; stopped with [`Background::stop`].
pub struct Background {
    addr: SocketAddr,
    url: String,
    stop: freshtoken::drain::Signal,
}

impl Background {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(proxy: Proxy) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let (stop, watch) = freshtoken::drain::channel();
        let listening = Listening {
            grace: Duration::from_secs(1),
            ..Listening::default()
        };
        tokio::spawn(async move {
            let signaled = watch.clone().into_signaled();
            if let Err(e) = run(listener, proxy, &listening, signaled).await {
                tracing::warn!("the proxy stopped: {e}");
            }
            // Held until drained: [`Background::stop`] waits for this.
            drop(watch);
        });
        Ok(Self { addr, url, stop })
    }

    /// The address it listens on (127.0.0.1 and a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting and waits (up to a second) for requests in flight.
    pub async fn stop(self) {
        self.stop.drain().await;
    }
}
