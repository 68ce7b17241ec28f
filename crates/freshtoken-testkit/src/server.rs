//! The dev-server harness: a `freshtoken-devserver` on a runtime of its own, so that a test
//! can run blocking processes (the binary, curl) against it freely, with the one client the
//! tests use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use freshtoken_devserver::{Canned, Config, Faults, Running, State, Stats};

/// The client every [`Server::start`] knows, with [`SECRET`].
pub const CLIENT_ID: &str = "ci-pipeline";
/// Long and distinctive, so a leak anywhere in the output is unmistakable.
pub const SECRET: &str = "s3cr3t-Zq8vK2pLmN4xR7tY";

/// A dev-server on its own runtime thread, so tests can run blocking processes freely.
pub struct Server {
    running: Option<Running>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    /// A dev-server for [`CLIENT_ID`] and [`SECRET`] that issues tokens living `ttl`.
    pub fn start(ttl: Duration) -> Self {
        Self::start_with(Config {
            ttl,
            clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
            ..Config::default()
        })
    }

    /// A dev-server with `config` (clients, faults, lifetimes of the test's choosing).
    pub fn start_with(config: Config) -> Self {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// A dev-server on `addr`: loopback, or an address of a network namespace the test
    /// made (see [`crate::netns`]); never a real interface.
    pub fn start_at(addr: SocketAddr, config: Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the dev-server");
        let running = runtime
            .block_on(Running::start(addr, config))
            .expect("the dev-server starts on loopback");
        Self {
            running: Some(running),
            runtime,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server is running")
    }

    /// The server's shared state, for faults and counts beyond the shortcuts below.
    pub fn state(&self) -> &Arc<State> {
        self.running().state()
    }

    /// `http://127.0.0.1:PORT/oauth/token`.
    pub fn token_url(&self) -> String {
        self.running().token_url()
    }

    /// `http://127.0.0.1:PORT`: the protected API, for proxy and exec tests.
    pub fn base_url(&self) -> String {
        self.running().base_url()
    }

    /// What reached the server so far (token requests, API calls).
    pub fn stats(&self) -> Stats {
        self.state().stats()
    }

    /// Switches the server's faults (outage, slowness, rejections) from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state().set_faults(faults);
    }

    /// Every token request answered with `status` and `body` from now on.
    pub fn canned(&self, status: u16, body: &str) {
        self.set_faults(Faults {
            canned: Some(Canned {
                status: Some(status),
                body: body.to_owned(),
                ..Canned::default()
            }),
            ..Faults::default()
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.runtime.block_on(r.stop());
        }
    }
}
