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
use crate::forward::handle;
use crate::host::AllowedHosts;
use crate::{Proxy, Shared};

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
    let hosts = Arc::new(listening.allowed_hosts.clone());
    serve(
        listener,
        listening.limits,
        move |at| proxy_service(&proxy.shared, &hosts, at.local),
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
    let mut cap = Cap::new(limits.max_connections, listener.local_addr().ok());
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

/// The proxy's service for one client connection that arrived on `local`.
fn proxy_service(
    shared: &Arc<Shared>,
    hosts: &Arc<AllowedHosts>,
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
    let (shared, hosts) = (Arc::clone(shared), Arc::clone(hosts));
    service_fn(move |req| {
        let (shared, hosts) = (Arc::clone(&shared), Arc::clone(&hosts));
        async move { handle(&shared, &hosts, local, req).await }
    })
}

/// How long a listener must stay below its connection cap for the episode to be over: a
/// load that hovers at the cap, or a burst that drains the backlog into it again, is one
/// episode and one WARN.
const CAP_QUIET: Duration = Duration::from_secs(1);

/// The connection cap of one listener: a slot per open connection, shared by the threads
/// that serve them.
struct Cap {
    slots: Arc<Semaphore>,
    max: usize,
    /// When the cap was last found full, while an episode lasts: one WARN per episode.
    full_at: Option<Instant>,
    listen: Option<SocketAddr>,
}

impl Cap {
    fn new(max: usize, listen: Option<SocketAddr>) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            full_at: None,
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
    async fn slot(&mut self) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            if self.full_at.is_some_and(|t| t.elapsed() >= CAP_QUIET) {
                self.full_at = None;
                tracing::info!("{}: below the connection cap again", self.listen());
            }
            return Some(slot);
        }
        if self.full_at.is_none() {
            tracing::warn!(
                "{}: {} connections open, the most allowed (max connections); new ones wait in the backlog until one closes",
                self.listen(),
                self.max
            );
        }
        self.full_at = Some(Instant::now());
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok();
        self.full_at = Some(Instant::now());
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
        self.connections.spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!("client connection ended: {e}");
            }
        });
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

/// A connection accepted by [`run_threaded`]'s accepting thread, with its slot of the cap.
type Dealt = (std::net::TcpStream, OwnedSemaphorePermit);

/// Serves `proxy` on `threads` OS threads, each with a single-threaded runtime and its own
/// upstream pool (as nginx's workers do): a request and its upstream call stay on one thread,
/// with no cross-thread wake-ups. This thread accepts and deals connections out in turn, so
/// the loops share the load evenly; the connection cap of `listening` counts them all.
/// Returns once `shutdown` turns true and every loop has drained.
pub fn run_threaded(
    listener: std::net::TcpListener,
    proxy: &Proxy,
    threads: usize,
    listening: &Listening,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut queues = Vec::new();
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let (queue, connections) = tokio::sync::mpsc::unbounded_channel::<Dealt>();
        queues.push(queue);
        let proxy = proxy.for_another_thread().map_err(std::io::Error::other)?;
        let listening = listening.clone();
        let handle = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || serve_dealt(&proxy, &listening, connections))?;
        handles.push(handle);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        let mut cap = Cap::new(listening.limits.max_connections, listener.local_addr().ok());
        let mut next = 0usize;
        let mut slot = None;
        loop {
            tokio::select! {
                got = cap.slot(), if slot.is_none() => match got {
                    Some(got) => slot = Some(got),
                    None => break,
                },
                accepted = listener.accept(), if slot.is_some() => match accepted {
                    Ok((stream, _)) => {
                        let stream = stream.into_std()?;
                        if let Some(held) = slot.take() {
                            let _ = queues[next % queues.len()].send((stream, held));
                            next = next.wrapping_add(1);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    drop(queues);
    for h in handles {
        h.join()
            .map_err(|_| std::io::Error::other("a proxy thread panicked"))??;
    }
    Ok(())
}

/// One serving thread of [`run_threaded`]: serves what it is dealt until the accepting
/// thread hangs up, then drains.
fn serve_dealt(
    proxy: &Proxy,
    listening: &Listening,
    mut connections: tokio::sync::mpsc::UnboundedReceiver<Dealt>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hosts = Arc::new(listening.allowed_hosts.clone());
    runtime.block_on(async move {
        let mut serving = Serving::default();
        loop {
            let (stream, slot) = tokio::select! {
                () = serving.reap() => continue,
                dealt = connections.recv() => match dealt {
                    Some(dealt) => dealt,
                    None => break,
                },
            };
            let adopted = tokio::net::TcpStream::from_std(stream)
                .and_then(|s| s.local_addr().map(|local| (s, local)));
            match adopted {
                Ok((stream, local)) => {
                    let service = proxy_service(&proxy.shared, &hosts, local);
                    serving.serve(stream, service, listening.limits, slot);
                }
                Err(e) => tracing::warn!("cannot adopt a connection: {e}"),
            }
        }
        serving.drain(listening.grace).await;
        Ok::<(), std::io::Error>(())
    })
}

/// A proxy serving in the background of the current runtime on an ephemeral loopback port,
/// for a child process (`exec --proxy`) or a demo; stopped with [`Background::stop`].
pub struct Background {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Background {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(proxy: Proxy) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let listening = Listening {
            grace: Duration::from_secs(1),
            ..Listening::default()
        };
        let task = tokio::spawn(async move { run(listener, proxy, &listening, shutdown).await });
        Ok(Self { url, stop, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting and waits (up to a second) for requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
