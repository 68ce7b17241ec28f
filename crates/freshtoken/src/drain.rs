//! Stopping servers cleanly, one way everywhere: the proxy, the agent's endpoint and
//! proxies, the dev-server and `exec`'s proxy all stop with this (after linkerd's `drain`).
//!
//! [`channel`] gives a [`Signal`], kept by whoever decides when to stop, and a [`Watch`],
//! cloned into everything that serves. A server waits on [`Watch::signaled`] to stop
//! accepting, finishes what is in flight, then drops its watch; [`Signal::drain`] tells every
//! watch and returns once all of them are dropped — so the caller knows the work is done,
//! not merely asked to end.

use tokio::sync::watch;

/// Tells the watches to drain, and waits until they have.
#[derive(Debug)]
pub struct Signal {
    tx: watch::Sender<bool>,
}

/// Held by each server (and cloned into each task that must finish before the drain does).
#[derive(Debug, Clone)]
pub struct Watch {
    rx: watch::Receiver<bool>,
}

/// A signal and its first watch.
pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    (Signal { tx }, Watch { rx })
}

impl Signal {
    /// Tells every watch to drain and waits until all of them are dropped.
    pub async fn drain(self) {
        self.tx.send_replace(true);
        self.tx.closed().await;
    }

    /// Tells every watch to drain, without waiting (for a caller that waits otherwise, say by
    /// joining the threads that hold them).
    pub fn signal(&self) {
        self.tx.send_replace(true);
    }
}

impl Watch {
    /// Completes once draining has begun. If the signal is dropped without draining, this
    /// completes too: nothing is left to say when to stop, so the server stops now rather
    /// than never.
    pub async fn signaled(&mut self) {
        // `wait_for` errs only when the signal is gone, which counts as the signal.
        let _ = self.rx.wait_for(|draining| *draining).await;
    }

    /// [`Watch::signaled`] as a future that owns the watch, for servers that take a shutdown
    /// future: the watch is dropped when that future is, after the server has drained.
    pub async fn into_signaled(mut self) {
        self.signaled().await;
    }

    /// Whether draining has begun.
    pub fn is_signaled(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_every_watch_and_no_longer() {
        let (signal, watch) = channel();
        let mut done = Vec::new();
        for i in 0..3u64 {
            let mut w = watch.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            done.push(rx);
            tokio::spawn(async move {
                w.signaled().await;
                // Finishing in-flight work takes a while, and longer for some.
                tokio::time::sleep(Duration::from_secs(i + 1)).await;
                let _ = tx.send(i);
                drop(w);
            });
        }
        assert!(!watch.is_signaled());
        drop(watch);
        let started = tokio::time::Instant::now();
        signal.drain().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        for rx in done {
            assert!(rx.await.is_ok(), "drain returned before a watch finished");
        }
    }

    #[tokio::test]
    async fn a_dropped_signal_stops_the_watches_rather_than_never() {
        let (signal, mut watch) = channel();
        drop(signal);
        tokio::time::timeout(Duration::from_secs(5), watch.signaled())
            .await
            .expect("signaled");
    }
}
