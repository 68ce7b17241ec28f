//! The real Genesys Cloud SDKs as clients: the Python SDK (`PureCloudPlatformClientV2`, pinned
//! in tests/sdk/requirements.txt, in target/genesys-venv) and the JavaScript SDK
//! (`purecloud-platform-client-v2`, pinned in tests/interop/package.json), each running a bulk
//! job of GETs and PATCHes (tests/sdk/genesys_bulk.py, tests/interop/genesys_bulk.mjs) against
//! the dev-server speaking Genesys.
//!
//! The job runs with `host=` the dev-server and a token from `freshtoken get`, and in gateway
//! mode (`set_gateway` / `setGateway` and the SDK's own client-credentials login) against
//! `freshtoken proxy --gateway` in front of the dev-server, across several token lifetimes and
//! a revocation. `scripts/test.sh` installs both SDKs first.

// Real elapsed-time bounds ("did not hang"): the clock is the point.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshtoken::ManualClock;
use freshtoken_devserver::{Config, Faults};
use freshtoken_testkit::*;
use serde_json::Value;

/// The pinned versions; the drivers report them too.
const PYTHON_SDK: &str = "269.0.0";
const JS_SDK: &str = "262.0.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, with the pinned SDK in it; otherwise the test fails saying how to
/// install it.
fn python() -> PathBuf {
    let py = repo().join("target/genesys-venv/bin/python");
    let how = "run scripts/test.sh, or: python3 -m venv target/genesys-venv && \
               target/genesys-venv/bin/pip install --require-hashes -r tests/sdk/requirements.txt";
    assert!(
        py.exists(),
        "the Genesys Python SDK's virtualenv is missing: {how}"
    );
    let out = run(Command::new(&py).args([
        "-c",
        "import importlib.metadata as m; print(m.version('PureCloudPlatformClientV2'))",
    ]));
    assert_eq!(
        stdout(&out).trim(),
        PYTHON_SDK,
        "PureCloudPlatformClientV2=={PYTHON_SDK} is not what target/genesys-venv holds: {how}\n{}",
        stderr(&out)
    );
    py
}

/// node, with the pinned SDK installed under tests/interop.
fn node_with_sdk() -> Command {
    let package =
        repo().join("tests/interop/node_modules/purecloud-platform-client-v2/package.json");
    let how = "run scripts/test.sh, or: npm ci --prefix tests/interop (Node.js 20+ and npm)";
    let text = std::fs::read_to_string(&package)
        .unwrap_or_else(|_| panic!("the Genesys JavaScript SDK is not installed: {how}"));
    let version = serde_json::from_str::<Value>(&text).unwrap()["version"].clone();
    assert_eq!(
        version, JS_SDK,
        "purecloud-platform-client-v2@{JS_SDK} is not what tests/interop holds: {how}"
    );
    let mut c = Command::new("node");
    c.arg(repo().join("tests/interop/genesys_bulk.mjs"));
    c
}

fn python_driver() -> Command {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/sdk/genesys_bulk.py"));
    c
}

/// A dev-server speaking Genesys on a clock the test moves.
fn genesys_server(ttl: Duration) -> (Server, ManualClock) {
    let clock = ManualClock::starting_now();
    let server = Server::start_with(Config {
        ttl,
        genesys: true,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        clock: Arc::new(clock.clone()),
        ..Config::default()
    });
    (server, clock)
}

/// A token from `freshtoken get`, as a pipeline step would hand it to a script.
fn token_from_get(sandbox: &Sandbox, server: &Server) -> String {
    let out = run(sandbox.cmd_for(server).arg("get"));
    assert_code(&out, 0);
    stdout(&out).trim().to_owned()
}

/// A driver's environment: nothing of the test's, HOME in the sandbox (the SDKs read their
/// config files from there).
fn clean(driver: &mut Command, sandbox: &Sandbox) {
    driver
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sandbox.path())
        .current_dir(sandbox.path());
}

fn parse(out: &Output) -> Value {
    assert_code(out, 0);
    let line = stdout(out);
    serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("driver printed {line:?}: {e}\nstderr: {}", stderr(out)))
}

/// Runs a driver in host mode (clean environment, the token in it) and parses its line.
fn run_host_mode(
    mut driver: Command,
    sandbox: &Sandbox,
    server: &Server,
    token: &str,
    count: u32,
) -> (Value, Output) {
    clean(&mut driver, sandbox);
    driver
        .env("GENESYSCLOUD_ACCESS_TOKEN", token)
        .args(["--mode", "host", "--base", &server.base_url()])
        .args(["--count", &count.to_string(), "--pause", "0.2"]);
    let out = run(&mut driver);
    (parse(&out), out)
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// The bulk job of one SDK within one token lifetime: every call succeeds, no 401 reaches the
/// script or leaves the dev-server, the job makes no token request of its own. Then, with the
/// server's clock moved past the token's expiry, the same job sees every call refused: the
/// counts are able to show a 401, and the SDK does nothing about one.
fn bulk_job_within_one_lifetime(driver: impl Fn() -> Command, sdk: &str) {
    let ttl = Duration::from_secs(60);
    let (server, clock) = genesys_server(ttl);
    let sandbox = Sandbox::new();
    let token = token_from_get(&sandbox, &server);
    let rounds = 12;
    let started = Instant::now();
    let (counts, out) = run_host_mode(driver(), &sandbox, &server, &token, rounds);
    let took = started.elapsed();
    eprintln!("{sdk}: {counts} in {took:?}");
    let calls = 1 + 2 * u64::from(rounds);
    assert_eq!(counts["sdk"], sdk);
    assert_eq!(
        (count(&counts, "calls"), count(&counts, "ok")),
        (calls, calls),
        "{counts}\nstderr: {}",
        stderr(&out)
    );
    assert_eq!(count(&counts, "unauthorized"), 0, "{counts}");
    assert_eq!(count(&counts, "errors"), 0, "{counts}");
    // The SDK read Genesys' models from the answers: whom the token belongs to, and the
    // version each PATCH moved a user to (12 rounds over 3 users: 4 updates each, from 1).
    assert_eq!(counts["token_client"], CLIENT_ID, "{counts}");
    assert_eq!(count(&counts, "max_version"), 5, "{counts}");
    // What the dev-server saw agrees, path by path, and the only token request was `get`'s.
    let paths = server.state().path_stats();
    let seen: u64 = paths.values().map(|p| p.calls).sum();
    let refused: u64 = paths.values().map(|p| p.unauthorized).sum();
    assert_eq!((seen, refused), (calls, 0), "{paths:?}");
    assert_eq!(paths["/api/v2/tokens/me"].ok, 1, "{paths:?}");
    let patches = server
        .state()
        .api_log()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(
        patches, rounds as usize,
        "each round PATCHes at the version it read"
    );
    assert_eq!(server.stats().token_requests, 1);
    assert!(
        !stderr(&out).contains(&token),
        "the driver printed the token"
    );
    // A run of 12 rounds paced at 0.2 s: far below the token's lifetime.
    assert!(took < ttl / 2, "{took:?}");

    clock.advance(ttl);
    let (expired, _) = run_host_mode(driver(), &sandbox, &server, &token, 2);
    assert_eq!(
        (count(&expired, "unauthorized"), count(&expired, "ok")),
        (count(&expired, "calls"), 0),
        "{expired}"
    );
    assert_eq!(
        expired["first_error"], "401 bad.credentials",
        "Genesys' 401 body: {expired}"
    );
    let refused: u64 = server
        .state()
        .path_stats()
        .values()
        .map(|p| p.unauthorized)
        .sum();
    assert_eq!(refused, count(&expired, "calls"));
    assert_eq!(
        server.stats().token_requests,
        1,
        "the SDK requested no token of its own"
    );
}

#[test]
fn python_sdk_bulk_job_sees_no_401_within_one_token_lifetime() {
    bulk_job_within_one_lifetime(python_driver, "python");
}

#[test]
fn javascript_sdk_bulk_job_sees_no_401_within_one_token_lifetime() {
    bulk_job_within_one_lifetime(node_with_sdk, "javascript");
}

/// Runs a driver in gateway mode against `127.0.0.1:port` over plain HTTP, with the
/// client's credentials in its environment: the SDK logs in by itself (`set_gateway` /
/// `setGateway`, then its own client-credentials grant) and runs `count` rounds unpaced.
/// `prefixes` are the login and API path prefixes, if any. When `proxy --gateway` lands,
/// its port goes here.
fn run_gateway_mode(
    driver: Command,
    sandbox: &Sandbox,
    port: u16,
    prefixes: Option<(&str, &str)>,
    count: u32,
) -> Output {
    run_gateway_mode_paced(driver, sandbox, port, prefixes, count, 0.0)
}

/// [`run_gateway_mode`] with `pause` seconds between rounds.
fn run_gateway_mode_paced(
    mut driver: Command,
    sandbox: &Sandbox,
    port: u16,
    prefixes: Option<(&str, &str)>,
    count: u32,
    pause: f64,
) -> Output {
    clean(&mut driver, sandbox);
    driver
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", SECRET)
        .args(["--mode", "gateway", "--gateway-host", "127.0.0.1"])
        .args([
            "--gateway-port",
            &port.to_string(),
            "--gateway-protocol",
            "http",
        ])
        .args(["--count", &count.to_string(), "--pause", &pause.to_string()]);
    if let Some((login, api)) = prefixes {
        driver.args(["--path-login", login, "--path-api", api]);
    }
    let out = run(&mut driver);
    assert!(
        !stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET),
        "the driver printed the secret"
    );
    out
}

fn port_of(server: &Server) -> u16 {
    server
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The drivers' gateway mode, pointed straight at the dev-server (which answers the login
/// path `/oauth/token` and the API at its root, as a gateway without path prefixes does):
/// each SDK logs in by itself, once, with Basic client credentials, and runs the job with
/// that token. Behind `proxy --gateway` the same run must add no token request at the
/// dev-server; this is the baseline that test will compare against.
fn gateway_mode_against_the_dev_server(driver: impl Fn() -> Command, sdk: &str) {
    let (server, _clock) = genesys_server(Duration::from_secs(60));
    let sandbox = Sandbox::new();
    let out = run_gateway_mode(driver(), &sandbox, port_of(&server), None, 3);
    let counts = parse(&out);
    eprintln!("{sdk} (gateway mode, no gateway): {counts}");
    assert_eq!(counts["sdk"], sdk);
    assert_eq!(count(&counts, "logins"), 1);
    assert_eq!(
        (
            count(&counts, "ok"),
            count(&counts, "unauthorized"),
            count(&counts, "errors")
        ),
        (7, 0, 0),
        "{counts}"
    );
    assert_eq!(counts["token_client"], CLIENT_ID);
    let stats = server.stats();
    assert_eq!(
        (stats.token_requests, stats.tokens_issued),
        (1, 1),
        "the SDK's own login"
    );
}

#[test]
fn python_sdk_gateway_mode_logs_in_by_itself() {
    gateway_mode_against_the_dev_server(python_driver, "python");
}

#[test]
fn javascript_sdk_gateway_mode_logs_in_by_itself() {
    gateway_mode_against_the_dev_server(node_with_sdk, "javascript");
}

/// Neither SDK retries its login: the login server's throttling 400 (with `Retry-After`)
/// ends the script's run after one token request, and the script is left to deal with it.
/// Whatever answers a gateway's `/oauth/token`, an error there is final for these scripts.
fn login_throttle_is_not_retried(driver: impl Fn() -> Command, sdk: &str) {
    let (server, _clock) = genesys_server(Duration::from_secs(60));
    server.set_faults(Faults {
        throttle: Some(1),
        ..Faults::default()
    });
    let sandbox = Sandbox::new();
    let out = run_gateway_mode(driver(), &sandbox, port_of(&server), None, 3);
    assert_code(&out, 1);
    let counts: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{sdk} driver printed {:?}: {e}", stdout(&out)));
    assert_eq!(counts["login_error"], "400 invalid_request", "{counts}");
    assert_eq!(count(&counts, "calls"), 0, "{counts}");
    assert_eq!(server.stats().token_requests, 1, "{sdk} retried its login");
}

#[test]
fn python_sdk_does_not_retry_a_throttled_login() {
    login_throttle_is_not_retried(python_driver, "python");
}

#[test]
fn javascript_sdk_does_not_retry_a_throttled_login() {
    login_throttle_is_not_retried(node_with_sdk, "javascript");
}

/// A `freshtoken proxy --gateway` in front of `server`, as its own process.
struct Gateway {
    child: std::process::Child,
    port: u16,
}

impl Gateway {
    fn start(sandbox: &Sandbox, server: &Server, prefixes: Option<(&str, &str)>) -> Self {
        let mut cmd = sandbox.cmd_for(server);
        cmd.args(["-v", "proxy", "--gateway", "--upstream", &server.base_url()]);
        if let Some((login, api)) = prefixes {
            cmd.args(["--gateway-login-prefix", login, "--gateway-api-prefix", api]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let first = first_line(&mut child, "the gateway");
        let port = first
            .split_whitespace()
            .nth(3)
            .and_then(|url| url.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the gateway said {first:?}"));
        Self { child, port }
    }

    /// SIGTERM; its log.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = wait(&mut self.child, "the gateway after SIGTERM");
        let mut log = String::new();
        use std::io::Read;
        let _ = self.child.stderr.take().unwrap().read_to_string(&mut log);
        assert!(status.success(), "{log}");
        log
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK logs in by itself through `freshtoken proxy --gateway` (with path prefixes, as
/// `set_gateway`'s `path_params_login` and `path_params_api` give them) and runs its bulk job
/// across six 2 s token lifetimes, with every token revoked half way: the script sees no
/// 401, logs in once, and none of its token requests reaches the dev-server (a login there
/// under the `login` prefix would be a 404 and fail the script). The dev-server's token
/// requests are the proxy's own: about one per 75 % of a lifetime, plus the revocation's.
fn bulk_job_through_the_gateway(driver: impl Fn() -> Command, sdk: &str) {
    let ttl = Duration::from_secs(2);
    let server = Server::start_with(Config {
        ttl,
        genesys: true,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    });
    let sandbox = Sandbox::new();
    let prefixes = Some(("login", "gw"));
    let gateway = Gateway::start(&sandbox, &server, prefixes);
    let state = Arc::clone(server.state());
    // Half way through the job by its calls (not by the clock: the SDK's start-up time varies
    // with the machine's load), every token is revoked, as an administrator might.
    let revoker = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while state.stats().api_calls < 48 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        state.revoke_all()
    });
    let rounds = 48;
    let started = Instant::now();
    let out = run_gateway_mode_paced(driver(), &sandbox, gateway.port, prefixes, rounds, 0.25);
    let took = started.elapsed();
    let revoked = revoker.join().unwrap();
    let counts = parse(&out);
    let log = gateway.stop();
    let replays = log.matches("replayed=true").count();
    let stats = server.stats();
    eprintln!(
        "{sdk} through the gateway: {counts} in {took:?}; dev-server: {} token requests, {} API calls, {} API 401s; {replays} replays; {revoked} tokens revoked",
        stats.token_requests, stats.api_calls, stats.api_401
    );
    let calls = 1 + 2 * u64::from(rounds);
    assert!(took > ttl * 5, "the job spans five lifetimes: {took:?}");
    assert!(revoked > 0, "the revocation came mid-run");
    assert_eq!(count(&counts, "logins"), 1, "{counts}");
    assert_eq!(
        (count(&counts, "calls"), count(&counts, "ok")),
        (calls, calls),
        "{counts}\nstderr: {}",
        stderr(&out)
    );
    assert_eq!(count(&counts, "unauthorized"), 0, "{counts}");
    assert_eq!(count(&counts, "errors"), 0, "{counts}");
    assert_eq!(counts["token_client"], CLIENT_ID, "{counts}");
    assert!(replays >= 1, "the revocation's 401 was replayed: {log}");
    let lifetimes = took.as_secs_f64() / ttl.as_secs_f64();
    let bound = (lifetimes / 0.7).ceil() as u64 + 2;
    assert!(
        stats.token_requests <= bound,
        "{} token requests in {lifetimes:.1} lifetimes: more than the proxy's own",
        stats.token_requests
    );
    assert!(!log.contains(SECRET), "the gateway logged the secret");
}

#[test]
fn python_sdk_logs_in_through_the_gateway_and_sees_no_401_across_lifetimes() {
    bulk_job_through_the_gateway(python_driver, "python");
}

#[test]
fn javascript_sdk_logs_in_through_the_gateway_and_sees_no_401_across_lifetimes() {
    bulk_job_through_the_gateway(node_with_sdk, "javascript");
}
