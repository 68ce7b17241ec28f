//! A sandbox for one run of the `freshtoken` binary: its own HOME, config and cache
//! directories and an environment with nothing inherited, so that no test sees a user's
//! profile, cache or another test's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::server::{CLIENT_ID, SECRET, Server};

/// A sandbox for one test: its own HOME and cache directory, a clean environment.
pub struct Sandbox {
    /// Removed when the sandbox is dropped; public for tests that need the `TempDir` itself.
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh, empty sandbox in a temporary directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory can be made"),
        }
    }

    /// The sandbox's directory: HOME and the working directory of [`Sandbox::cmd`].
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the binary keeps its file cache in the sandbox (`$XDG_CACHE_HOME/freshtoken`).
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
        let mut c = Command::new(freshtoken_bin());
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

/// The `freshtoken` binary cargo built for this test run.
///
/// `env!("CARGO_BIN_EXE_freshtoken")` is set only while cargo compiles the binary's own
/// package's tests, not this kit; so the path is found when the test runs: from the same
/// variable when cargo sets it at run time, else beside the test executable's folder
/// (`target/<profile>/deps/it-…` → `target/<profile>/freshtoken`), where cargo puts the
/// binary before it runs that package's integration tests.
pub fn freshtoken_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_freshtoken") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(format!("freshtoken{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "no freshtoken binary at {} (beside {}): run the tests of freshtoken-cli with cargo test, which builds it",
        bin.display(),
        exe.display()
    );
    bin
}
