//! Helpers for tests that run the real `freshtoken` binary against a real dev-server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use freshtoken_devserver::{Canned, Config, Faults, Running, State, Stats};

pub const CLIENT_ID: &str = "ci-pipeline";
/// Long and distinctive, so a leak anywhere in the output is unmistakable.
pub const SECRET: &str = "s3cr3t-Zq8vK2pLmN4xR7tY";

/// A dev-server on its own runtime thread, so tests can run blocking processes freely.
pub struct Server {
    running: Option<Running>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start(ttl: Duration) -> Self {
        Self::start_with(Config {
            ttl,
            clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
            ..Config::default()
        })
    }

    pub fn start_with(config: Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime
            .block_on(Running::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                config,
            ))
            .unwrap();
        Self {
            running: Some(running),
            runtime,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server is running")
    }

    pub fn state(&self) -> &Arc<State> {
        self.running().state()
    }

    pub fn token_url(&self) -> String {
        self.running().token_url()
    }

    pub fn base_url(&self) -> String {
        self.running().base_url()
    }

    pub fn stats(&self) -> Stats {
        self.state().stats()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().set_faults(faults);
    }

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

/// A sandbox for one test: its own HOME and cache directory, a clean environment.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("cache").join("freshtoken")
    }

    /// `freshtoken ARGS` with no inherited configuration, in the sandbox.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_freshtoken"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .current_dir(self.path())
            .stdin(Stdio::null());
        c
    }

    /// `freshtoken ARGS` with the dev-server's credentials in the environment.
    pub fn cmd_for(&self, server: &Server) -> Command {
        let mut c = self.cmd();
        c.env("FRESHTOKEN_TOKEN_URL", server.token_url())
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "0");
        c
    }
}

/// Runs and captures; never panics on a non-zero exit.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the freshtoken binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it is wrong.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Asserts the exit code and that stderr holds `needle`, showing the output when not.
#[track_caller]
pub fn assert_fails_with(o: &Output, code: i32, needle: &str) {
    assert_code(o, code);
    assert!(
        stderr(o).contains(needle),
        "stderr lacks {needle:?}:\n{}",
        stderr(o)
    );
}

/// Polls `done` until it holds, failing with `what()` once `limit` has passed: for
/// conditions another process brings about (a file written, a reload applied).
#[track_caller]
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
}
