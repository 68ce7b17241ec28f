//! `freshtoken agent` as a whole process against the dev-server: sinks under SIGKILL, the
//! token endpoint, /metrics against the server's own counts, SIGHUP reloads, `--check` and
//! its exit codes, and who may reach the endpoint.
//!
//! What needs no process of its own runs in process, on a manual clock, in
//! crates/freshtoken-agent/tests/it (sinks across rotations, expiry with no new token, the
//! warning per failure streak, `min_ttl` near the lifetime, readiness, a proxy's 401 storm,
//! reloads, a reload's drain).
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use freshtoken_devserver::Config;
use freshtoken_testkit::*;

/// Three clients, so each profile is its own client.
fn server(ttl: Duration) -> Server {
    Server::start_with(Config {
        ttl,
        clients: ["a", "b", "c"]
            .iter()
            .map(|c| ((*c).to_owned(), format!("{SECRET}-{c}")))
            .chain([(CLIENT_ID.to_owned(), SECRET.to_owned())])
            .collect(),
        ..Config::default()
    })
}

/// A profile of client `c` (secret from $SECRET_C), with `extra` lines after it.
fn profile(server: &Server, c: &str, extra: &str) -> String {
    format!(
        "[profiles.{c}]\ntoken_url = \"{}\"\nclient_id = \"{c}\"\nclient_secret = {{ env = \"SECRET_{}\" }}\nretry_for = \"0s\"\n{extra}\n",
        server.token_url(),
        c.to_uppercase()
    )
}

fn agent_section(sb: &Sandbox) -> String {
    format!(
        "[agent]\nsocket = \"{}\"\n",
        sb.path().join("run/agent.sock").display()
    )
}

/// A running agent; SIGKILLed if still running when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(sb: &Sandbox, config: &str) -> Self {
        Self::start_with_env(sb, config, &[])
    }

    /// [`Agent::start`] with more environment variables.
    fn start_with_env(sb: &Sandbox, config: &str, env: &[(&str, &Path)]) -> Self {
        let path = sb.path().join("agent.toml");
        std::fs::write(&path, config).unwrap();
        let log = sb
            .path()
            .join(format!("agent-{}.log", rand::random::<u32>()));
        let child = sb
            .cmd()
            .args(["--config", path.to_str().unwrap(), "agent"])
            .env("SECRET_A", format!("{SECRET}-a"))
            .env("SECRET_B", format!("{SECRET}-b"))
            .env("SECRET_C", format!("{SECRET}-c"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut agent = Self {
            child,
            socket: sb.path().join("run/agent.sock"),
            log,
        };
        let started = Instant::now();
        while http(&agent.socket, "/healthz").map(|r| r.0) != Some(200) {
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("the agent exited with {status}: {}", agent.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no agent: {}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(&self.socket, path).unwrap_or_else(|| panic!("agent unreachable: {}", self.log()))
    }

    /// Waits until `/readyz` says every profile holds a token.
    fn wait_ready(&self) {
        wait_until(
            Duration::from_secs(10),
            || self.get("/readyz").0 == 200,
            || format!("never ready: {}", self.log()),
        );
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we spawned.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the agent did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over the socket: `(status, body)`, `None` if nobody answers.
fn http(socket: &Path, path: &str) -> Option<(u16, String)> {
    http_with(socket, path, "application/json")
}

fn http_with(socket: &Path, path: &str, accept: &str) -> Option<(u16, String)> {
    http_full(socket, path, accept).map(|(status, _, body)| (status, body))
}

/// [`http_with`], with the head of the answer: `(status, head, body)`.
fn http_full(socket: &Path, path: &str, accept: &str) -> Option<(u16, String, String)> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(35))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: agent\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[test]
fn sigkill_during_a_sink_write_leaves_the_old_or_the_new_file_whole() {
    let server = server(Duration::from_secs(1));
    let sb = Sandbox::new();
    let dir = sb.path().join("sinks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.tpl");
    // A large file makes each write last long enough to be caught in the middle.
    let padding = "x".repeat(32 * 1024 * 1024);
    let config = format!(
        "{}{}",
        agent_section(&sb),
        profile(
            &server,
            "a",
            &format!(
                "[[profiles.a.sinks]]\npath = \"{}\"\nformat = \"template\"\ntemplate = \"BEGIN {{{{access_token}}}} {padding} END\"\n",
                path.display()
            )
        )
    );
    let whole = |text: &str| {
        text.starts_with("BEGIN dev-") && text.ends_with(" END") && text.len() > padding.len()
    };
    let mut caught = 0;
    for attempt in 0..40 {
        let mut agent = Agent::start(&sb, &config);
        // Wait for a write in progress: its temporary file beside the sink.
        let started = Instant::now();
        let mut killed_mid_write = false;
        while started.elapsed() < Duration::from_secs(5) {
            let temp = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
            if temp {
                agent.signal(libc::SIGKILL);
                killed_mid_write = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if !killed_mid_write {
            agent.signal(libc::SIGKILL);
        }
        agent.wait(Duration::from_secs(5));
        let temp_left = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if killed_mid_write && temp_left {
            caught += 1;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert!(
                whole(&text),
                "attempt {attempt}: a partial sink of {} bytes",
                text.len()
            );
        }
        if caught >= 3 {
            break;
        }
    }
    assert!(
        caught >= 3,
        "the kill landed mid-write only {caught} times in 40 tries"
    );
    // The next start sweeps the temporary files a killed agent left.
    let agent = Agent::start(&sb, &config);
    agent.wait_ready();
    let started = Instant::now();
    while std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "temporary files were never swept"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Parses `/metrics` with a Prometheus text parser: (name, labels) → value.
fn metrics(agent: &Agent) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let (status, text) = agent.get("/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape =
        prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    assert!(!scrape.docs.is_empty(), "no HELP lines");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => ((s.metric, labels), v),
                // The parser gathers a histogram's buckets; its +Inf bucket is the count.
                prometheus_parse::Value::Histogram(buckets) => {
                    let inf = buckets
                        .iter()
                        .find(|b| b.less_than.is_infinite())
                        .expect("+Inf bucket");
                    let metric = s
                        .metric
                        .trim_end_matches("_bucket")
                        .trim_end_matches("_count");
                    ((format!("{metric}_count"), labels), inf.count)
                }
                other => panic!("unexpected sample {other:?}"),
            }
        })
        .collect()
}

fn sum(
    m: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    label: (&str, &str),
) -> f64 {
    m.iter()
        .filter(|((n, l), _)| n == name && l.get(label.0).map(String::as_str) == Some(label.1))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn endpoint_metrics_and_get_agree_with_the_dev_server() {
    let server = server(Duration::from_secs(2));
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}{}{}[[proxy]]\nprofile = \"a\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{}\"\n",
        agent_section(&sb),
        profile(&server, "a", ""),
        profile(&server, "b", ""),
        server.base_url()
    );
    let mut agent = Agent::start(&sb, &config);
    agent.wait_ready();

    // The token endpoint: JSON by default, raw on request, clear refusals.
    let (status, body) = agent.get("/v1/token/a?min_ttl=1s");
    assert_eq!(status, 200, "{body}");
    let token = json(&body)["access_token"].as_str().unwrap().to_owned();
    assert!(server.state().check(&token).is_some());
    let (status, raw) = http_with(&agent.socket, "/v1/token/b", "text/plain").unwrap();
    assert_eq!(status, 200);
    assert!(server.state().check(&raw).is_some(), "raw answer {raw:?}");
    let (status, body) = agent.get("/v1/token/nope");
    assert_eq!(status, 404);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("no profile \"nope\""),
        "{body}"
    );
    // Longer than the tokens live: no token can meet it, and no token request is made for it.
    let (status, body) = agent.get("/v1/token/a?min_ttl=1h");
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"].as_str().unwrap().contains("live 2 s"),
        "{body}"
    );
    let (status, _) = agent.get("/v1/token/a?min_ttl=soon");
    assert_eq!(status, 400);

    // get --agent: the agent's token, with no credentials at all in the environment.
    let out = run(sb.cmd().args([
        "get",
        "--agent",
        agent.socket.to_str().unwrap(),
        "--profile",
        "b",
        "--format",
        "json",
    ]));
    assert_code(&out, 0);
    let from_agent = json(&stdout(&out))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.state().check(&from_agent).is_some());

    // Requests through the agent's proxy, across token rotations.
    let mut ok = 0;
    for _ in 0..30 {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/api/x"),
            ])
            .output()
            .expect("curl runs (apt-get install curl)");
        ok += usize::from(String::from_utf8_lossy(&out.stdout) == "200");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ok, 30);

    // A refresh in flight is counted by the server when it arrives and by the agent when it
    // returns: compare at a moment when none is (a few tries; refreshes are 1.5 s apart).
    let requests = |m: &BTreeMap<(String, BTreeMap<String, String>), f64>| -> f64 {
        ["a", "b"]
            .iter()
            .map(|p| sum(m, "freshtoken_token_requests_total", ("profile", p)))
            .sum()
    };
    let (mut m, mut stats) = (metrics(&agent), server.stats());
    for _ in 0..40 {
        if requests(&m) as u64 == stats.token_requests {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        (m, stats) = (metrics(&agent), server.stats());
    }
    let ours = requests(&m);
    assert_eq!(
        ours as u64, stats.token_requests,
        "token requests: ours vs the dev-server's"
    );
    assert_eq!(
        sum(&m, "freshtoken_token_requests_total", ("outcome", "ok")) as u64,
        stats.tokens_issued
    );
    assert_eq!(
        sum(&m, "freshtoken_proxy_requests_total", ("profile", "a")) as u64,
        stats.api_calls
    );
    assert_eq!(
        sum(&m, "freshtoken_proxy_replays_total", ("profile", "a")),
        0.0
    );
    assert_eq!(sum(&m, "freshtoken_token_valid", ("profile", "a")), 1.0);
    let left = sum(&m, "freshtoken_token_expires_in_seconds", ("profile", "b"));
    assert!(left > 0.0 && left <= 2.0, "{left}");
    let count = sum(
        &m,
        "freshtoken_refresh_duration_seconds_count",
        ("profile", "a"),
    );
    assert!(
        count >= 2.0,
        "over 3 s of 2 s tokens, at least one refresh: {count} requests"
    );

    // SIGTERM: exit 0, socket gone; then get --agent falls back to its own fetch.
    agent.signal(libc::SIGTERM);
    assert!(
        agent.wait(Duration::from_secs(15)).success(),
        "{}",
        agent.log()
    );
    assert!(!agent.socket.exists(), "the socket outlived the agent");
    let before = server.stats().token_requests;
    let out = run(sb
        .cmd_for(&server)
        .args(["get", "--agent", agent.socket.to_str().unwrap()]));
    assert_code(&out, 0);
    assert!(server.state().check(stdout(&out).trim()).is_some());
    assert_eq!(
        server.stats().token_requests,
        before + 1,
        "the fallback fetched on its own"
    );
}

#[test]
fn sighup_adds_and_removes_profiles_keeps_valid_tokens_and_survives_a_broken_config() {
    let server = server(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let sink = |n: &str| sb.path().join(n);
    let with_sink = |c: &str| {
        format!(
            "[[profiles.{c}.sinks]]\npath = \"{}\"\n",
            sink(&format!("{c}.token")).display()
        )
    };
    let config_ab = format!(
        "{}{}{}",
        agent_section(&sb),
        profile(&server, "a", &with_sink("a")),
        profile(&server, "b", &with_sink("b"))
    );
    let agent = Agent::start(&sb, &config_ab);
    agent.wait_ready();
    let token_a = json(&agent.get("/v1/token/a").1)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let requests = server.stats().token_requests;
    assert_eq!(requests, 2);

    // b removed, c added; a untouched.
    let config_ac = format!(
        "{}{}{}",
        agent_section(&sb),
        profile(&server, "a", &with_sink("a")),
        profile(&server, "c", &with_sink("c"))
    );
    std::fs::write(sb.path().join("agent.toml"), &config_ac).unwrap();
    agent.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        || sink("c.token").exists() && !sink("b.token").exists(),
        || format!("reload not applied: {}", agent.log()),
    );
    assert_eq!(agent.get("/v1/token/b").0, 404);
    assert_eq!(agent.get("/v1/token/c").0, 200);
    let after = json(&agent.get("/v1/token/a").1)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        after, token_a,
        "the unchanged profile's valid token was dropped"
    );
    assert_eq!(
        server.stats().token_requests,
        requests + 1,
        "only the new profile fetched"
    );

    // A config that does not parse: the running one stays, and the log says why.
    std::fs::write(sb.path().join("agent.toml"), "[profiles.a\nclient_id = ").unwrap();
    agent.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        || agent.log().contains("kept the running config"),
        || format!("no word of the broken config: {}", agent.log()),
    );
    assert!(
        agent.log().contains("agent.toml:"),
        "the error names the file: {}",
        agent.log()
    );
    assert_eq!(agent.get("/v1/token/a").0, 200);
    assert_eq!(agent.get("/v1/token/c").0, 200);
    assert_eq!(
        std::fs::read_to_string(sink("a.token")).unwrap().trim(),
        token_a
    );
    let m = metrics(&agent);
    assert_eq!(
        sum(&m, "freshtoken_config_reloads_total", ("outcome", "ok")),
        1.0
    );
    assert_eq!(
        sum(&m, "freshtoken_config_reloads_total", ("outcome", "error")),
        1.0
    );

    // A config that parses but cannot work (a secret that is not there) is refused whole.
    let broken = format!(
        "{}{}[profiles.d]\ntoken_url = \"{}\"\nclient_id = \"d\"\nclient_secret = {{ env = \"NOT_SET_ANYWHERE\" }}\n",
        agent_section(&sb),
        profile(&server, "a", &with_sink("a")),
        server.token_url()
    );
    std::fs::write(sb.path().join("agent.toml"), broken).unwrap();
    agent.signal(libc::SIGHUP);
    let started = Instant::now();
    while sum(
        &metrics(&agent),
        "freshtoken_config_reloads_total",
        ("outcome", "error"),
    ) < 2.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(agent.log().contains("NOT_SET_ANYWHERE"), "{}", agent.log());
    assert_eq!(
        agent.get("/v1/token/c").0,
        200,
        "profile c must survive a refused reload"
    );
}

#[test]
fn the_endpoint_is_for_this_user_on_this_machine_only() {
    let server = server(Duration::from_secs(3600));
    let sb = Sandbox::new();
    // TCP beyond loopback is refused outright.
    std::fs::write(
        sb.path().join("remote.toml"),
        format!(
            "[agent]\nlisten = \"0.0.0.0:8765\"\nsocket = \"{}\"\n{}",
            sb.path().join("r.sock").display(),
            profile(&server, "a", "")
        ),
    )
    .unwrap();
    let out = run(sb
        .cmd()
        .args(["--config", "remote.toml", "agent"])
        .env("SECRET_A", "x"));
    assert_fails_with(&out, 2, "loopback only");

    // Loopback TCP answers, and the socket is 0600 in a 0700 directory the agent made.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}listen = \"127.0.0.1:{port}\"\n{}",
        agent_section(&sb),
        profile(&server, "a", "")
    );
    let agent = Agent::start(&sb, &config);
    agent.wait_ready();
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/readyz")])
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&agent.socket), 0o600);
    assert_eq!(mode(agent.socket.parent().unwrap()), 0o700);

    // Another user cannot connect through the socket's mode. Only root can try as another
    // user; the directory is opened up so that only the socket's own mode stands in the way.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: checked the modes only");
        return;
    }
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        agent.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let connect_as_nobody = |socket: &Path| {
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print('connected')\nexcept PermissionError: print('refused')",
                socket.to_str().unwrap(),
            ])
            .uid(65534)
            .gid(65534)
            .output()
            .expect("python3 runs (apt-get install python3)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(connect_as_nobody(&agent.socket), "refused");
    // The control: the same attempt succeeds once the mode allows it, so the check can fail.
    std::fs::set_permissions(&agent.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(connect_as_nobody(&agent.socket), "connected");
}

#[test]
fn sighup_reads_a_secret_file_again_when_only_its_contents_changed() {
    let server = server(Duration::from_secs(60));
    let sb = Sandbox::new();
    let secret = sb.path().join("secret-a");
    let write_secret = |text: &str| {
        std::fs::write(&secret, text).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_secret("not-the-secret\n");
    let config = format!(
        "{}[profiles.a]\ntoken_url = \"{}\"\nclient_id = \"a\"\nclient_secret = {{ file = \"{}\" }}\nretry_for = \"0s\"\n",
        agent_section(&sb),
        server.token_url(),
        secret.display()
    );
    let agent = Agent::start(&sb, &config);
    wait_until(
        Duration::from_secs(10),
        || agent.get("/readyz").1.contains("invalid_client"),
        || format!("the wrong secret was never refused: {}", agent.log()),
    );
    // The file is fixed in place (as a secret manager rotates it); the config is unchanged.
    write_secret(&format!("{SECRET}-a\n"));
    agent.signal(libc::SIGHUP);
    agent.wait_ready();
    let (status, body) = agent.get("/v1/token/a");
    assert_eq!(status, 200, "{body}");
    assert!(
        server
            .state()
            .check(json(&body)["access_token"].as_str().unwrap())
            .is_some(),
        "{body}"
    );
}

#[test]
fn a_secret_command_runs_once_at_start_and_once_per_reload() {
    let server = server(Duration::from_secs(60));
    let sb = Sandbox::new();
    let runs = sb.path().join("runs");
    let config = |extra: &str| {
        format!(
            "{}[profiles.a]\ntoken_url = \"{}\"\nclient_id = \"a\"\nclient_secret = {{ command = [\"sh\", \"-c\", \"echo run >> {}; printf %s {SECRET}-a\"] }}\nretry_for = \"0s\"\n{extra}",
            agent_section(&sb),
            server.token_url(),
            runs.display()
        )
    };
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let reloads = |agent: &Agent| {
        sum(
            &metrics(agent),
            "freshtoken_config_reloads_total",
            ("outcome", "ok"),
        )
    };
    let agent = Agent::start(&sb, &config(""));
    agent.wait_ready();
    assert_eq!(count(), 1, "at start");

    // Nothing changed: the secret is read to see that, and the profile keeps its source.
    agent.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        || reloads(&agent) == 1.0,
        || agent.log(),
    );
    assert_eq!(count(), 2, "after a reload that changed nothing");

    // The profile changed: it is renewed from the same reading.
    std::fs::write(sb.path().join("agent.toml"), config("timeout = \"20s\"\n")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        || reloads(&agent) == 2.0,
        || agent.log(),
    );
    assert_eq!(count(), 3, "after a reload that renewed the profile");
    let (status, body) = agent.get("/v1/token/a");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.stats().token_requests,
        2,
        "one token per source built"
    );
}

#[test]
fn a_proxy_trusts_its_profiles_ca_file_for_the_upstream() {
    let server = server(Duration::from_secs(60));
    let sb = Sandbox::new();
    let private = freshtoken_testkit::tls::TlsUpstream::start(sb.path(), &[b"http/1.1"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}{}[[proxy]]\nprofile = \"a\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{}\"\n",
        agent_section(&sb),
        profile(
            &server,
            "a",
            &format!("ca_file = \"{}\"", private.ca_file.display())
        ),
        private.url
    );
    let agent = Agent::start(&sb, &config);
    agent.wait_ready();
    let out = run(std::process::Command::new("curl").args([
        "-s",
        "-m",
        "5",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{port}/v2/things"),
    ]));
    assert_eq!(stdout(&out), "HTTP/1.1\n 200", "{}", agent.log());
    let seen = private.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let token = seen[0].authorization.as_deref().unwrap_or_default();
    assert!(
        server
            .state()
            .check(token.trim_start_matches("Bearer "))
            .is_some(),
        "the upstream got a token of the profile"
    );
}

/// Issue 12: a profile with `issuer =` crashed the agent at start (exit 5, "internal error at
/// discovery.rs"): discovery started a runtime of its own and blocked on it inside the
/// agent's. Discovery now runs on the agent's runtime; `get --issuer` keeps working.
#[test]
fn a_profile_found_by_its_issuer_is_kept_and_get_issuer_works() {
    let server = server(Duration::from_secs(60));
    let sb = Sandbox::new();
    let sink = sb.path().join("a.token");
    let config = format!(
        "{}[profiles.a]\nissuer = \"{}\"\nclient_id = \"a\"\nclient_secret = {{ env = \"SECRET_A\" }}\nretry_for = \"0s\"\n[[profiles.a.sinks]]\npath = \"{}\"\n",
        agent_section(&sb),
        server.base_url(),
        sink.display()
    );
    let agent = Agent::start(&sb, &config);
    agent.wait_ready();
    let token = std::fs::read_to_string(&sink).unwrap();
    assert!(
        server.state().check(token.trim()).is_some(),
        "the sink holds a token the server accepts: {}",
        agent.log()
    );

    let o = run(sb
        .cmd()
        .args([
            "get",
            "--issuer",
            &server.base_url(),
            "--client-id",
            "a",
            "--client-secret-file",
        ])
        .arg({
            let path = sb.path().join("secret");
            std::fs::write(&path, format!("{SECRET}-a")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        }));
    assert_code(&o, 0);
    assert!(server.state().check(stdout(&o).trim()).is_some());
}

/// Issue 12: `agent --check` said "ok" for a secret the server refuses.
#[test]
fn agent_check_gets_a_token_per_profile_and_names_the_refused_one() {
    let server = server(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let path = sb.path().join("agent.toml");
    std::fs::write(
        &path,
        agent_section(&sb) + &profile(&server, "a", "") + &profile(&server, "b", ""),
    )
    .unwrap();
    let check = |secret_b: &str, extra: &[&str]| {
        run(sb
            .cmd()
            .args(["--config", path.to_str().unwrap(), "agent", "--check"])
            .args(extra)
            .env("SECRET_A", format!("{SECRET}-a"))
            .env("SECRET_B", secret_b))
    };
    let o = check("not-the-secret-Pw4", &[]);
    assert_fails_with(&o, 3, "profile \"b\": ");
    assert!(stderr(&o).contains("invalid_client"), "{}", stderr(&o));
    assert!(!stdout(&o).contains(": ok"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("not-the-secret"), "{}", stderr(&o));
    assert_eq!(server.stats().token_requests, 2, "one per profile");

    let o = check("not-the-secret-Pw4", &["--no-fetch"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    assert_eq!(server.stats().token_requests, 2, "--no-fetch asks for none");

    let o = check(&format!("{SECRET}-b"), &[]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("profile \"a\": got a token")
            && stdout(&o).contains("profile \"b\": got a token"),
        "{}",
        stdout(&o)
    );
    assert_eq!(server.stats().token_requests, 4);
}

/// The fault matrix's row for the agent's token endpoint (the rest of the matrix is in
/// fault_matrix.rs): the agent's clock is moved while it runs (FRESHTOKEN_CLOCK_SKEW_FILE).
/// Stale during the fault: every call answered with the held token; must-refresh (1.5 s
/// left): answered too, within the 2 s bound; expired: an error within the deadline; the
/// fault over: a new token.
#[test]
fn the_agent_endpoint_under_every_fault() {
    use freshtoken_devserver::{Canned, Faults};
    let canned = |status: u16, body: &str| Faults {
        canned: Some(Canned {
            status: Some(status),
            body: body.into(),
            ..Canned::default()
        }),
        ..Faults::default()
    };
    let faults = [
        (
            "outage",
            Faults {
                outage: true,
                ..Faults::default()
            },
        ),
        (
            "429",
            Faults {
                rate_limit: Some(1),
                ..Faults::default()
            },
        ),
        (
            "genesys throttle",
            Faults {
                throttle: Some(1),
                ..Faults::default()
            },
        ),
        ("malformed", canned(200, "<html>nginx</html>")),
        (
            "slow",
            Faults {
                delay_ms: 60_000,
                ..Faults::default()
            },
        ),
        ("rejected", canned(401, r#"{"error":"invalid_client"}"#)),
    ];
    for (name, fault) in faults {
        let server = server(Duration::from_secs(20));
        let sb = Sandbox::new();
        let skew = sb.path().join("skew");
        let set_skew = |d: &str| {
            std::fs::write(&skew, d).unwrap();
            std::thread::sleep(Duration::from_millis(100)); // re-read every 20 ms
        };
        set_skew("0s");
        let config = agent_section(&sb) + &profile(&server, "a", "timeout = \"3s\"");
        let agent = Agent::start_with_env(&sb, &config, &[("FRESHTOKEN_CLOCK_SKEW_FILE", &skew)]);
        agent.wait_ready();
        let token = |agent: &Agent| {
            let (status, body) = agent.get("/v1/token/a");
            (
                status,
                (status == 200).then(|| {
                    json(&body)["access_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }),
            )
        };
        let (_, held) = token(&agent);
        let held = held.expect("a token at start");
        server.set_faults(fault);
        let before = server.stats().token_requests;
        set_skew("16s");
        for i in 0..10 {
            assert_eq!(
                token(&agent),
                (200, Some(held.clone())),
                "{name}: stale call {i}: {}",
                agent.log()
            );
        }
        set_skew("18500ms");
        for i in 0..3 {
            let started = Instant::now();
            assert_eq!(
                token(&agent),
                (200, Some(held.clone())),
                "{name}: must-refresh call {i}: {}",
                agent.log()
            );
            assert!(
                started.elapsed() < Duration::from_millis(2500),
                "{name}: {:?}",
                started.elapsed()
            );
        }
        let requests = server.stats().token_requests - before;
        assert!(
            requests <= 3,
            "{name}: {requests} token requests for 13 calls"
        );
        set_skew("21s");
        let started = Instant::now();
        let (expired, _) = token(&agent);
        assert_ne!(expired, 200, "{name}: an expired token is never served");
        assert!(
            started.elapsed() < Duration::from_millis(4500),
            "{name}: {:?}",
            started.elapsed()
        );
        server.set_faults(Faults::default());
        set_skew("80s");
        let (status, fresh) = token(&agent);
        assert_eq!(status, 200, "{name}: recovered: {}", agent.log());
        assert_ne!(fresh, Some(held), "{name}: a new token");
        println!(
            "agent endpoint × {name}: 13 calls answered with the held token, {requests} token requests, {expired} once expired, recovered"
        );
    }
}

/// `status --agent`: what a running agent holds, per profile (state, expiry in the one JSON
/// shape, fingerprint, last error) and proxy (the port a port-0 entry bound), over the
/// socket and over TCP with the credential; never a token. Without the credential the TCP
/// route is refused like `/v1/token`; with no agent, exit 4.
#[test]
fn status_agent_shows_what_the_agent_holds_and_never_a_token() {
    let server = server(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Profile b sends c's secret: refused (invalid_client).
    let refused = format!(
        "[profiles.b]\ntoken_url = \"{}\"\nclient_id = \"b\"\nclient_secret = {{ env = \"SECRET_C\" }}\nretry_for = \"0s\"\n",
        server.token_url()
    );
    let config = format!(
        "{}listen = \"127.0.0.1:{port}\"\n{}{refused}[[proxy]]\nprofile = \"a\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        agent_section(&sb),
        profile(&server, "a", ""),
        server.base_url()
    );
    let agent = Agent::start(&sb, &config);
    let config_path = sb.path().join("agent.toml");
    let status = |args: &[&str]| {
        run(sb
            .cmd()
            .args([
                "--config",
                config_path.to_str().unwrap(),
                "status",
                "--agent",
            ])
            .args(args))
    };
    let seen = std::cell::RefCell::new(serde_json::Value::Null);
    wait_until(
        Duration::from_secs(10),
        || {
            let out = status(&["--format", "json"]);
            let r = json(&String::from_utf8_lossy(&out.stdout));
            let done =
                r["profiles"][0]["state"] == "fresh" && r["profiles"][1]["last_error"].is_string();
            *seen.borrow_mut() = r;
            done
        },
        || {
            format!(
                "no token for a and no error for b: {}\n{}",
                seen.borrow(),
                agent.log()
            )
        },
    );
    let report = seen.into_inner();
    crate::json_shapes::assert_fits("status_agent.json", &report.to_string());
    let token = json(&agent.get("/v1/token/a").1)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = &report["profiles"][0];
    assert_eq!(a["profile"], "a");
    assert!(a["fingerprint"].is_string(), "{report}");
    let unix = a["expires_at_unix"].as_u64().unwrap();
    let at = humantime::parse_rfc3339(a["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        at,
        std::time::UNIX_EPOCH + Duration::from_secs(unix),
        "{report}"
    );
    assert!(a["expires_in"].as_u64().unwrap() > 3500, "{report}");
    assert!(a["last_error"].is_null(), "{report}");
    let b = &report["profiles"][1];
    assert_eq!(b["profile"], "b");
    assert_eq!(b["state"], "none");
    assert!(
        b["expires_at"].is_null() && b["fingerprint"].is_null(),
        "{report}"
    );
    assert!(
        b["last_error"].as_str().unwrap().contains("invalid_client"),
        "{report}"
    );
    let listen = report["proxies"][0]["listen"].as_str().unwrap().to_owned();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{report}"
    );
    assert!(!report.to_string().contains(&token));

    // Text, over TCP with the credential beside the config's socket.
    let out = status(&[&format!("http://127.0.0.1:{port}")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("profile a: fresh, expires in "), "{text}");
    assert!(text.contains("profile b: none\n  last error: "), "{text}");
    assert!(text.contains(&format!("proxy on {listen} to ")), "{text}");
    assert!(!text.contains(&token), "{text}");

    // The TCP route needs the credential, as /v1/token does.
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"])
        .arg(format!("http://127.0.0.1:{port}/v1/status"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    // No agent there: exit 4, one line.
    let out = run(sb
        .cmd()
        .args(["status", "--agent"])
        .arg(sb.path().join("run/nobody.sock")));
    assert_fails_with(&out, 4, "no agent status: no agent on");
}

/// The fleet's counters on `/metrics` and in `status`, with a real Redis shared with a `get`
/// on another "machine" (its own cache folder): which layer answered, a wait for a lock
/// another machine holds, a failure note written and one obeyed, a refresh over the fleet's
/// `token_rate`. Each step checks that its counter moved and that the others did not. The
/// agent's clock is moved through FRESHTOKEN_CLOCK_SKEW_FILE.
#[test]
fn fleet_metrics_count_layers_lock_waits_notes_and_budget() {
    use freshtoken_devserver::Faults;
    let server = server(Duration::from_secs(60));
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    let skew = sb.path().join("skew");
    let set_skew = |d: &str| {
        std::fs::write(&skew, d).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // re-read every 20 ms
    };
    set_skew("0s");
    // A window of a year: the test never crosses into the next one.
    let extra = format!(
        "cache = \"{}\"\ntoken_rate = \"3/8760h\"\ntimeout = \"3s\"",
        redis.url()
    );
    let config = agent_section(&sb) + &profile(&server, "a", &extra);
    let config_path = sb.path().join("agent.toml");
    std::fs::write(&config_path, &config).unwrap();
    let machine = |args: &[&str]| {
        let mut c = sb.cmd();
        c.args(["--config", config_path.to_str().unwrap(), "--profile", "a"])
            .args(args)
            .env("SECRET_A", format!("{SECRET}-a"))
            .env("XDG_CACHE_HOME", sb.path().join("machine-1"));
        c
    };
    assert_code(&run(&mut machine(&["get"])), 0);

    let agent = Agent::start_with_env(&sb, &config, &[("FRESHTOKEN_CLOCK_SKEW_FILE", &skew)]);
    agent.wait_ready();
    let p = ("profile", "a");
    let layer = |m: &BTreeMap<_, _>, l: &str| {
        m.iter()
            .filter(
                |((n, labels), _): &(&(String, BTreeMap<String, String>), _)| {
                    n == "freshtoken_cache_answers_total"
                        && labels.get("layer").map(String::as_str) == Some(l)
                },
            )
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let counts = |m: &BTreeMap<_, _>| {
        [
            "freshtoken_lock_waits_total",
            "freshtoken_failure_notes_seen_total",
            "freshtoken_failure_notes_written_total",
            "freshtoken_budget_over_total",
        ]
        .map(|name| sum(m, name, p))
    };
    let fetched = |m: &BTreeMap<_, _>| sum(m, "freshtoken_token_requests_total", p);

    // The other machine's token, from Redis: no request, Redis answered, nothing else moved.
    let m = metrics(&agent);
    assert_eq!(
        [layer(&m, "memory"), layer(&m, "file"), layer(&m, "redis")],
        [0.0, 0.0, 1.0],
        "{}",
        agent.log()
    );
    assert_eq!(fetched(&m), 0.0);
    assert_eq!(counts(&m), [0.0; 4]);
    assert_eq!(sum(&m, "freshtoken_budget_spent", p), 1.0);
    assert_eq!(sum(&m, "freshtoken_budget_limit", p), 3.0);

    // Another machine holds the refresh lock when the token turns stale: the agent waits for
    // it, then takes the lock and fetches.
    let keys = redis.command(&["KEYS", "freshtoken:v1:*"]).unwrap();
    let token_key = keys
        .lines()
        .find(|k| k.starts_with("freshtoken:v1:{") && k.ends_with('}'))
        .unwrap_or_else(|| panic!("no token key in {keys}"))
        .to_owned();
    let lock_key = format!("{token_key}:lock");
    redis.command(&["SET", &lock_key, "another-machine", "PX", "60000"]);
    let evals = || {
        let info = redis.command(&["INFO", "commandstats"]).unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = evals();
    set_skew("50s");
    assert_eq!(agent.get("/v1/token/a").0, 200);
    wait_until(
        Duration::from_secs(10),
        || evals() > before,
        || format!("the agent never tried the lock: {}", agent.log()),
    );
    redis.command(&["DEL", &lock_key]);
    wait_until(
        Duration::from_secs(10),
        || fetched(&metrics(&agent)) == 1.0,
        || format!("no refresh after the lock: {}", agent.log()),
    );
    let m = metrics(&agent);
    assert_eq!(counts(&m), [1.0, 0.0, 0.0, 0.0]);
    let waited = sum(&m, "freshtoken_lock_wait_seconds_total", p);
    assert!(waited > 0.0 && waited < 20.0, "waited {waited} s");
    assert_eq!(sum(&m, "freshtoken_lock_wait_seconds_max", p), waited);
    assert_eq!(
        layer(&m, "redis"),
        1.0,
        "its own fetch is no layer's answer"
    );
    assert_eq!(server.stats().token_requests, 2);

    // The IdP fails the next refresh: the agent leaves a note for the fleet.
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    set_skew("100s");
    assert_eq!(agent.get("/v1/token/a").0, 200, "the stale token is served");
    wait_until(
        Duration::from_secs(10),
        || fetched(&metrics(&agent)) == 2.0,
        || format!("no failed refresh: {}", agent.log()),
    );
    assert_eq!(counts(&metrics(&agent)), [1.0, 0.0, 1.0, 0.0]);
    // While the note holds (a second's backoff: the clock steps back two, so that this is
    // no race with it), a caller that needs more than the token has left fails at once.
    set_skew("98s");
    let (status, body) = agent.get("/v1/token/a?min_ttl=30");
    assert_ne!(status, 200, "{body}");
    let m = metrics(&agent);
    assert_eq!(counts(&m), [1.0, 1.0, 1.0, 0.0], "{}", agent.log());
    assert_eq!(fetched(&m), 2.0, "the note held the agent back");

    // The IdP is back, the note is over, but the fleet's 3 requests are spent (the other
    // machine's, the agent's, the failed one): the agent serves what it holds, asks nothing.
    server.set_faults(Faults::default());
    set_skew("105s");
    agent.get("/v1/token/a");
    wait_until(
        Duration::from_secs(10),
        || counts(&metrics(&agent))[3] == 1.0,
        || format!("never over budget: {}", agent.log()),
    );
    let m = metrics(&agent);
    assert_eq!(fetched(&m), 2.0, "no request over budget");
    assert_eq!(server.stats().token_requests, 3);
    assert_eq!(sum(&m, "freshtoken_budget_spent", p), 3.0);
    assert_eq!(sum(&m, "freshtoken_budget_refused", p), 1.0);

    // `status --agent` says the same, in the one JSON shape; `status` shows the fleet's budget.
    let out = run(sb.cmd().args([
        "--config",
        config_path.to_str().unwrap(),
        "status",
        "--agent",
        "--format",
        "json",
    ]));
    let report = json(&String::from_utf8_lossy(&out.stdout));
    crate::json_shapes::assert_fits("status_agent.json", &report.to_string());
    let cache = &report["profiles"][0]["cache"];
    assert_eq!(cache["answers"]["redis"], 1, "{report}");
    assert_eq!(cache["lock_waits"]["count"], 1, "{report}");
    assert_eq!(cache["failure_notes"]["seen"], 1, "{report}");
    assert_eq!(cache["failure_notes"]["written"], 1, "{report}");
    assert_eq!(cache["budget"]["over"], 1, "{report}");
    assert_eq!(cache["budget"]["spent"], 3, "{report}");
    assert_eq!(cache["budget"]["limit"], 3, "{report}");
    let out = run(sb.cmd().args([
        "--config",
        config_path.to_str().unwrap(),
        "status",
        "--agent",
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("  answered by: memory 0, file 0, redis 1\n"),
        "{text}"
    );
    assert!(text.contains("  lock waits: 1 ("), "{text}");
    assert!(
        text.contains("  failure notes: 1 seen, 1 written\n"),
        "{text}"
    );
    assert!(text.contains("  budget: 3 of 3 used in this window (1 refused fleet-wide), over budget 1 times here\n"), "{text}");
    let out = run(&mut machine(&["status", "--format", "json"]));
    let status = json(&String::from_utf8_lossy(&out.stdout));
    crate::json_shapes::assert_fits("status.json", &status.to_string());
    assert_eq!(status["budget"]["spent"], 3, "{status}");
    assert_eq!(status["budget"]["limit"], 3, "{status}");
    assert_eq!(status["budget"]["refused"], 1, "{status}");
    let out = run(&mut machine(&["status"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("budget:      3 of 3 token requests per "),
        "{text}"
    );

    // A reload that changes the profile builds it a new source: the counters carry on from
    // the old one's, they do not start again from zero.
    std::fs::write(
        &config_path,
        config.replace("timeout = \"3s\"", "timeout = \"4s\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(10),
        || {
            sum(
                &metrics(&agent),
                "freshtoken_config_reloads_total",
                ("outcome", "ok"),
            ) == 1.0
        },
        || format!("no reload: {}", agent.log()),
    );
    assert!(agent.log().contains("profile changed"), "{}", agent.log());
    let m = metrics(&agent);
    let kept = counts(&m);
    assert!(
        kept.iter().all(|n| *n >= 1.0) && layer(&m, "redis") >= 1.0,
        "counters kept across the reload: {kept:?}"
    );
}
