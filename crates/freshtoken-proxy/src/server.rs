//! Accepting connections, and stopping cleanly: on shutdown the listener closes, in-flight
//! requests finish under a grace period, then the server returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Proxy;
use crate::forward::handle;

/// How long in-flight requests may run on after shutdown is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Serves `proxy` on `listener` until `shutdown` completes, then drains for up to `grace`.
pub async fn run(
    listener: TcpListener,
    proxy: Proxy,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut serving = Serving::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = serving.reap() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serving.serve(stream, &proxy);
    }
    drop(listener);
    serving.drain(grace).await;
    Ok(())
}

/// The client connections one event loop serves, each watched for graceful shutdown.
#[derive(Default)]
struct Serving {
    graceful: GracefulShutdown,
    connections: JoinSet<()>,
}

impl Serving {
    /// Serves one client connection on the current runtime.
    fn serve(&mut self, stream: tokio::net::TcpStream, proxy: &Proxy) {
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&proxy.shared);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { handle(&shared, req).await }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        self.connections.spawn(async move {
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

/// Serves `proxy` on `threads` OS threads, each with a single-threaded runtime and its own
/// upstream pool (as nginx's workers do): a request and its upstream call stay on one thread,
/// with no cross-thread wake-ups. This thread accepts and deals connections out in turn, so
/// the loops share the load evenly. Returns once `shutdown` turns true and every loop has
/// drained.
pub fn run_threaded(
    listener: std::net::TcpListener,
    proxy: &Proxy,
    threads: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut queues = Vec::new();
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let (queue, mut connections) =
            tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        queues.push(queue);
        let proxy = proxy.for_another_thread().map_err(std::io::Error::other)?;
        let handle = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let mut serving = Serving::default();
                    loop {
                        let stream = tokio::select! {
                            () = serving.reap() => continue,
                            stream = connections.recv() => match stream {
                                Some(stream) => stream,
                                None => break,
                            },
                        };
                        match tokio::net::TcpStream::from_std(stream) {
                            Ok(stream) => serving.serve(stream, &proxy),
                            Err(e) => tracing::warn!("cannot adopt a connection: {e}"),
                        }
                    }
                    serving.drain(grace).await;
                    Ok::<(), std::io::Error>(())
                })
            })?;
        handles.push(handle);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        let mut next = 0usize;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let stream = stream.into_std()?;
                        let _ = queues[next % queues.len()].send(stream);
                        next = next.wrapping_add(1);
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
        let task = tokio::spawn(run(listener, proxy, shutdown, Duration::from_secs(1)));
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
