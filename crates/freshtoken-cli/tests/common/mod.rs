//! Helpers for tests that run the real `freshtoken` binary against a real dev-server.

// Real elapsed-time bounds ("did not hang"): the monotonic clock is the point.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code, unreachable_pub)] // helpers shared by test crates that each use a part

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

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

    /// Writes the user's own config file, `$XDG_CONFIG_HOME/freshtoken/config.toml`: the one
    /// read without being named (a file in the working directory is read only when named).
    pub fn write_user_config(&self, text: &str) -> PathBuf {
        let dir = self.path().join("config").join("freshtoken");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
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
///
/// The process gets [`PROCESS_LIMIT`] to end; past that it is killed and the test fails with
/// what it printed, instead of holding the suite until CI gives up on it.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = ended_within_limit(&mut child);
    // A process it left behind may still hold the pipes: a bounded wait, not a join that
    // could last as long as that process.
    let grace = match status {
        Some(_) => PROCESS_LIMIT,
        None => Duration::from_secs(2),
    };
    let (out, err) = (out.recv_timeout(grace), err.recv_timeout(grace));
    let held = out.is_err() || err.is_err();
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: out.unwrap_or_default(),
        stderr: err.unwrap_or_default(),
    };
    assert!(
        status.is_some() && !held,
        "{}\nstdout: {}\nstderr: {}",
        match status {
            None => format!("the process did not end within {PROCESS_LIMIT:?}; killed"),
            Some(_) => "the process ended, but something it started holds its output open".into(),
        },
        stdout(&output),
        stderr(&output)
    );
    output
}

/// How long a process a test starts may take to end, or to print the line that says it is
/// ready. Every wait inside freshtoken is bounded far below this (an HTTP attempt by 30 s, the
/// agent client by 35 s), so reaching it means a hang.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Reads a pipe to its end on a thread of its own, so that a child that fills one pipe while
/// the test waits on the other cannot stall, and a pipe held open for good cannot either.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// Waits for `child` to end; kills it and fails the test once [`PROCESS_LIMIT`] has passed.
#[track_caller]
pub fn wait(child: &mut Child, what: &str) -> ExitStatus {
    ended_within_limit(child)
        .unwrap_or_else(|| panic!("{what} did not end within {PROCESS_LIMIT:?}; killed"))
}

/// The exit status of `child`, or `None` when it had to be killed at [`PROCESS_LIMIT`].
fn ended_within_limit(child: &mut Child) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if started.elapsed() > PROCESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first line `child` prints on stdout, the one that says it is ready and where. Fails the
/// test (killing the child) when none comes within [`PROCESS_LIMIT`]; the rest of stdout is
/// closed.
#[track_caller]
pub fn first_line(child: &mut Child, what: &str) -> String {
    try_first_line(child, what).unwrap_or_else(|e| panic!("{e}"))
}

/// [`first_line`], with the failure returned so that the caller can add what it knows.
pub fn try_first_line(child: &mut Child, what: &str) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(PROCESS_LIMIT) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(format!("cannot read the first line of {what}: {e}")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{what} printed no line within {PROCESS_LIMIT:?}; killed"
            ))
        }
    }
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
