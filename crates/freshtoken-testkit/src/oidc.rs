//! The npm package `oidc-provider` (pinned in tests/interop/package.json) on loopback: an
//! authorization server nobody on this project wrote, with one client per
//! client-authentication method and keys generated at start, for the interop suite.
//! `scripts/test.sh` runs `npm ci` in tests/interop first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::process::try_first_line;
use crate::sandbox::Sandbox;

/// A running oidc-provider; stops when dropped (its stdin closes, and it is killed).
pub struct OidcProvider {
    child: Child,
    /// What the harness printed on start: `issuer`, the endpoints, and per client the files
    /// of its secret or key (`clients.NAME.secret_file`, `key_file`, `kid`).
    pub info: Value,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts tests/interop/server.mjs; fails, saying how to install them, when Node.js or
    /// the npm package is missing.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Like [`OidcProvider::start`], with `env` for the harness: `FRESHTOKEN_INTEROP_CI_ISSUER`
    /// (and `FRESHTOKEN_INTEROP_CI_AUDIENCE`) register the token-exchange grant for a public
    /// client `exchanger`, trusting that CI issuer's JWKS.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
        assert!(
            harness.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci --prefix tests/interop` (scripts/test.sh does) — needs Node.js 20+ and npm"
        );
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        // Node makes the stderr it is given non-blocking, for every process that shares it:
        // given the test's own, it would leave cargo's output pipe non-blocking too. A file of
        // its own keeps that away, and is shown when the server does not come up.
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("the provider's log can be made");
        let mut child = Command::new("node")
            .arg(harness.join("server.mjs"))
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("node runs (install Node.js 20+: apt-get install nodejs npm)");
        let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let line = try_first_line(&mut child, "the oidc-provider harness")
            .unwrap_or_else(|e| panic!("{e}; its log:\n{}", server_log()));
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("harness said {line:?}: {e}; its log:\n{}", server_log()));
        Self {
            child,
            info,
            _dir: dir,
        }
    }

    /// The issuer URL, for discovery (`--issuer`).
    pub fn issuer(&self) -> &str {
        self.field("issuer")
    }

    /// The token endpoint, for `--token-url`.
    pub fn token_endpoint(&self) -> &str {
        self.field("token_endpoint")
    }

    /// The introspection endpoint, to ask the provider whether a token is active.
    pub fn introspection_endpoint(&self) -> &str {
        self.field("introspection_endpoint")
    }

    fn field(&self, name: &str) -> &str {
        self.info[name]
            .as_str()
            .unwrap_or_else(|| panic!("the harness gave no {name}: {}", self.info))
    }

    /// The file the harness wrote for `client`'s `field` (`secret_file`, `key_file`).
    pub fn file(&self, client: &str, field: &str) -> PathBuf {
        PathBuf::from(
            self.info["clients"][client][field]
                .as_str()
                .unwrap_or_else(|| panic!("{client}.{field}")),
        )
    }

    /// `client`'s secret.
    pub fn secret(&self, client: &str) -> String {
        let file = self.file(client, "secret_file");
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    /// `freshtoken get` for `client`, with no cache and no retries.
    pub fn get(&self, sb: &Sandbox, client: &str) -> Command {
        let mut c = sb.cmd();
        c.env("FRESHTOKEN_CLIENT_ID", client)
            .env("FRESHTOKEN_RETRY_FOR", "0")
            .args(["get", "--cache", "memory", "--scope", "api:read"]);
        c
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
