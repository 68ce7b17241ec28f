//! Accepting connections, and stopping cleanly: on shutdown the listener closes, in-flight
//! requests finish under a grace period, then the server returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

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
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&proxy.shared);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { handle(&shared, req).await }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("client connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after the {} s grace period were cut off",
            grace.as_secs()
        );
    }
    Ok(())
}
