//! Who may use freshtoken's TCP listeners, and what a client can hold there (issue 13, items
//! 6, 7 and 11 of docs/SECURITY.md): the agent's loopback token endpoint serves tokens only
//! to a holder of its credential, the proxy and the endpoint answer only a `Host` naming
//! their own address, and half-sent or idle connections are bounded in time and number.
//! Real curl, curl as another user, a real agent and proxy against the dev-server. Every
//! test here was first seen failing against the code before its defence.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_testkit::*;

const HOUR: Duration = Duration::from_secs(3600);

/// What the proxy logs once when its connection cap is reached.
const AT_CAP: &str = "the most allowed";

/// A `freshtoken` daemon (proxy or agent) whose stderr goes to a file; killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(sb: &Sandbox, mut cmd: Command) -> Self {
        let log = sb
            .path()
            .join(format!("daemon-{}.log", rand::random::<u32>()));
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; then whether it exited cleanly, and its log.
    fn stop(mut self) -> (bool, String) {
        terminate(&self.child);
        let status = wait(&mut self.child, "the daemon after SIGTERM");
        (status.success(), self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `freshtoken proxy` to the dev-server with `extra` flags, and the port it listens on.
fn proxy(sb: &Sandbox, server: &Server, extra: &[&str]) -> (Daemon, u16) {
    let mut cmd = sb.cmd_for(server);
    cmd.args(["-v", "proxy", "--upstream", &server.base_url()])
        .args(extra);
    let mut daemon = Daemon::spawn(sb, cmd);
    let line = try_first_line(&mut daemon.child, "the proxy")
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.log()));
    let port = line
        .split_whitespace()
        .nth(3)
        .and_then(|url| url.strip_prefix("http://127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the proxy said {line:?}"));
    (daemon, port)
}

/// `freshtoken agent` with `config` (a profile `a` of the dev-server's client); waits until
/// its socket answers `/healthz`.
fn start_agent(sb: &Sandbox, config: &str) -> Daemon {
    let path = sb.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = sb.cmd();
    cmd.args(["--config", path.to_str().unwrap(), "agent"])
        .env("SECRET_A", SECRET);
    let mut daemon = Daemon::spawn(sb, cmd);
    let socket = socket(sb);
    let started = Instant::now();
    while over_socket(&socket, "/healthz").is_none_or(|(status, _)| status != 200) {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("the agent exited with {status}: {}", daemon.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no agent: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

fn socket(sb: &Sandbox) -> PathBuf {
    sb.path().join("run/agent.sock")
}

fn agent_config(sb: &Sandbox, server: &Server, listen: u16, extra: &str) -> String {
    format!(
        "[agent]\nsocket = \"{}\"\nlisten = \"127.0.0.1:{listen}\"\n\n[profiles.a]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"SECRET_A\" }}\nretry_for = \"0s\"\n{extra}",
        socket(sb).display(),
        server.token_url()
    )
}

/// Whether the tools the other-user checks need are there, failing clearly when setpriv is
/// not; `false` (the checks skipped, and said so) when the tests do not run as root.
fn can_act_as_another_user() -> bool {
    let found = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "setpriv is needed to act as another user (apt-get install util-linux)"
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("not root: the checks as another user are skipped");
    }
    root
}

/// How many of `streams` the other side has not closed by `deadline` (a read that gives
/// end of file or a reset is a close; bytes before it are read and ignored).
fn still_open_at(streams: &mut [TcpStream], deadline: Instant) -> usize {
    let mut open = 0;
    let mut buf = [0u8; 512];
    for s in streams.iter_mut() {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                open += 1;
                break;
            }
            s.set_read_timeout(Some(left)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    open += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    open
}

/// `n` connections to `port`, each having sent the first bytes of a request line.
fn half_sent(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /api/x HT").unwrap();
            s
        })
        .collect()
}

// Item 7: the proxy answers any Host.

#[test]
fn the_proxy_answers_only_a_host_that_names_its_listen_address() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let (proxy, port) = proxy(&sb, &server, &["--allow-host", "api.build.internal"]);
    let own = format!("http://127.0.0.1:{port}/api/x");

    // What a browser sends once a page's name is rebound to 127.0.0.1, and a forged Host.
    let (code, body) = curl(&[
        "--resolve",
        &format!("rebound.example:{port}:127.0.0.1"),
        &format!("http://rebound.example:{port}/api/x"),
    ]);
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("nothing was forwarded"), "{body}");
    for host in [
        format!("evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        format!("api.build.internal:{}", port.wrapping_add(1)),
        "127.0.0.1".to_owned(),
    ] {
        let (code, body) = curl(&["-H", &format!("Host: {host}"), &own]);
        assert_eq!(code, 421, "Host {host}: {body}");
    }
    let stats = server.stats();
    assert_eq!(stats.api_calls, 0, "a misdirected request reached the API");
    assert_eq!(
        stats.token_requests, 0,
        "a misdirected request used a token"
    );

    // Its own names, and the one it was told to answer, by Host and by name resolution.
    for host in ["127.0.0.1", "localhost", "[::1]", "API.build.internal"] {
        let (code, body) = curl(&["-H", &format!("Host: {host}:{port}"), &own]);
        assert_eq!(code, 200, "Host {host}: {body}");
    }
    let (code, body) = curl(&[
        "--resolve",
        &format!("api.build.internal:{port}:127.0.0.1"),
        &format!("http://api.build.internal:{port}/api/x"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(server.stats().api_calls, 5);
    let (clean, log) = proxy.stop();
    assert!(clean, "{log}");

    let bad = run(sb.cmd_for(&server).args([
        "proxy",
        "--upstream",
        &server.base_url(),
        "--allow-host",
        "a b",
    ]));
    assert_fails_with(&bad, 2, "--allow-host");
}

// Item 11: no header-read timeout, no connection cap.

#[test]
fn half_sent_requests_are_cut_off_at_the_header_timeout_while_others_are_served() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let (proxy, port) = proxy(&sb, &server, &["--header-timeout", "1s"]);
    let sent = Instant::now();
    let mut half = half_sent(port, 200);
    // Meanwhile a whole request is served.
    let (code, body) = curl(&[&format!("http://127.0.0.1:{port}/api/x")]);
    assert_eq!(code, 200, "{body}");
    let open = still_open_at(&mut half, sent + Duration::from_secs(5));
    assert_eq!(
        open,
        0,
        "{open} of 200 half-sent requests still open 5 s after they were sent, with a header timeout of 1 s: {}",
        proxy.log()
    );
    eprintln!(
        "200 half-sent requests: all closed by the proxy {:?} after they were sent",
        sent.elapsed()
    );
    let (code, _) = curl(&[&format!("http://127.0.0.1:{port}/api/x")]);
    assert_eq!(code, 200);
    drop(proxy);

    for (flag, value, needle) in [
        ("--header-timeout", "31s", "up to 30 s"),
        ("--header-timeout", "0s", "above 0"),
        ("--max-connections", "0", "at least one"),
    ] {
        let out =
            run(sb
                .cmd_for(&server)
                .args(["proxy", "--upstream", &server.base_url(), flag, value]));
        assert_fails_with(&out, 2, needle);
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
}

/// A whole head and then a body a byte at a time (a slow-loris on the body): the proxy keeps
/// a body it may replay in memory, so it must not wait for one for good. Past the header
/// timeout it answers 408 and forwards nothing.
#[test]
fn a_body_that_trickles_in_is_cut_off_at_the_header_timeout() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let (proxy, port) = proxy(&sb, &server, &["--header-timeout", "1s"]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /api/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n0123456789"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sent = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}\n{}",
        sent.elapsed(),
        proxy.log()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(server.stats().api_calls, 0, "nothing was forwarded");
}

#[test]
fn at_the_connection_cap_new_connections_wait_and_the_cap_is_logged_once_per_episode() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let (proxy, port) = proxy(
        &sb,
        &server,
        &[
            "--max-connections",
            "50",
            "--threads",
            "2",
            "--header-timeout",
            "30s",
        ],
    );
    for episode in 1..=2 {
        let idle: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        wait_until(
            Duration::from_secs(5),
            || proxy.log().matches(AT_CAP).count() == episode,
            || {
                format!(
                    "episode {episode}: no WARN at the cap of 50 with 100 connections open: {}",
                    proxy.log()
                )
            },
        );
        // A request beyond the cap waits in the backlog: not answered while the cap is full
        // (a bounded look), answered once the idle connections close.
        let mut waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            waiting,
            "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        waiting
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut answer = Vec::new();
        let early = waiting.read_to_end(&mut answer);
        assert!(
            early.is_err() && answer.is_empty(),
            "episode {episode}: a connection beyond the cap was served at once: {:?}",
            String::from_utf8_lossy(&answer)
        );
        drop(idle);
        waiting
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        waiting.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Well below the cap again: the next time it is reached is a new episode.
        wait_until(
            Duration::from_secs(10),
            || {
                curl(&[&format!("http://127.0.0.1:{port}/api/x")]);
                proxy
                    .log()
                    .matches("below the connection cap again")
                    .count()
                    == episode
            },
            || format!("episode {episode} never ended: {}", proxy.log()),
        );
    }
    let (clean, log) = proxy.stop();
    assert!(clean, "{log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(AT_CAP)).collect();
    assert_eq!(
        warnings.len(),
        2,
        "one WARN per episode, not one per waiting connection: {warnings:#?}"
    );
    assert!(warnings.iter().all(|l| l.contains("WARN")), "{warnings:#?}");
}

// Item 6: the agent's loopback TCP endpoint serves tokens to any local user and any Host.

#[test]
fn the_agents_tcp_endpoint_serves_tokens_only_with_its_credential_and_its_own_host() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let port = free_port();
    let config = agent_config(&sb, &server, port, "");
    let agent = start_agent(&sb, &config);
    let url = format!("http://127.0.0.1:{port}/v1/token/a");
    let file = sb.path().join("run/agent.sock.credential");
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("no credential at {}: {e}: {}", file.display(), agent.log()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let credential = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(credential.len(), 64, "256 bits, in hex");
    let bearer = |c: &str| format!("Authorization: Bearer {c}");

    // Without the credential, or with a wrong one: 401, and no token.
    let (code, body) = curl(&["-D", "-", &url]);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{body}"
    );
    assert!(body.contains("agent.sock.credential"), "{body}");
    assert!(!body.contains("access_token"), "{body}");
    let wrong: String = credential
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let (code, body) = curl(&["-H", &bearer(&wrong), &url]);
    assert_eq!(code, 401, "{body}");

    // With it: the token.
    let (code, body) = curl(&["-H", &bearer(&credential), &url]);
    assert_eq!(code, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        server
            .state()
            .check(token["access_token"].as_str().unwrap())
            .is_some()
    );
    for host in ["localhost", "[::1]"] {
        let (code, body) = curl(&[
            "-H",
            &format!("Host: {host}:{port}"),
            "-H",
            &bearer(&credential),
            &url,
        ]);
        assert_eq!(code, 200, "Host {host}: {body}");
    }

    // Another Host, even with the credential: 421 (a rebound name, a forged Host).
    let (code, body) = curl(&[
        "--resolve",
        &format!("rebound.example:{port}:127.0.0.1"),
        "-H",
        &bearer(&credential),
        &format!("http://rebound.example:{port}/v1/token/a"),
    ]);
    assert_eq!(code, 421, "{body}");
    assert!(!body.contains("access_token"), "{body}");
    let (code, _) = curl(&[
        "-H",
        &format!("Host: evil.example:{port}"),
        "-H",
        &bearer(&credential),
        &url,
    ]);
    assert_eq!(code, 421);
    let (code, _) = curl(&[
        "-H",
        &format!("Host: evil.example:{port}"),
        &format!("http://127.0.0.1:{port}/metrics"),
    ]);
    assert_eq!(code, 421, "the Host check covers every path");
    // What carries no token stays open to probes and scrapers.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, body) = curl(&[&format!("http://127.0.0.1:{port}{path}")]);
        assert_eq!(code, 200, "{path}: {body}");
    }

    // get --agent on the TCP port reads the credential beside the config's socket.
    let before = server.stats().token_requests;
    let out = run(sb.cmd().args([
        "--config",
        sb.path().join("agent.toml").to_str().unwrap(),
        "--profile",
        "a",
        "-v",
        "get",
        "--agent",
        &format!("http://127.0.0.1:{port}"),
    ]));
    assert_code(&out, 0);
    assert!(server.state().check(stdout(&out).trim()).is_some());
    assert_eq!(
        server.stats().token_requests,
        before,
        "the token came from the agent: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(&credential), "{}", stderr(&out));

    // Another user: the credential file is not theirs to read, so 401 — only its mode
    // stands in the way (the folders are opened up); the control shows that it does.
    if can_act_as_another_user() {
        for dir in [sb.path(), &sb.path().join("run")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (code, body) = curl_as(Some(65534), &[&url]);
        assert_eq!(code, 401, "as nobody, no credential: {body}");
        let steal = |file: &Path| {
            let out = run(Command::new("setpriv").args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                "curl -s -m 10 -o /dev/null -w '%{http_code}' -H \"Authorization: Bearer $(cat \"$1\")\" \"$2\"",
                "sh",
                file.to_str().unwrap(),
                &url,
            ]));
            stdout(&out)
        };
        assert_eq!(steal(&file), "401", "nobody read the credential");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            steal(&file),
            "200",
            "the control: readable, the credential works for anyone"
        );
        // Closed again: the agent serves only from a socket folder of mode 0700 (item 8).
        std::fs::set_permissions(
            sb.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }

    // A new credential at every start; the old one no longer serves.
    let (clean, log) = agent.stop();
    assert!(clean, "{log}");
    assert!(!file.exists(), "the credential outlived the agent");
    let agent = start_agent(&sb, &config);
    let renewed = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_ne!(renewed, credential);
    let (code, _) = curl(&["-H", &bearer(&credential), &url]);
    assert_eq!(code, 401);
    let (code, _) = curl(&["-H", &bearer(&renewed), &url]);
    assert_eq!(code, 200);
    assert!(
        !agent.log().contains(&renewed),
        "the credential is in the log"
    );
}

// Items 7 and 11, in the agent: its [[proxy]] entries and its TCP endpoint.

#[test]
fn the_agents_proxies_and_tcp_endpoint_check_the_host_and_cut_off_half_sent_requests() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let (port, proxy_port) = (free_port(), free_port());
    let config = agent_config(
        &sb,
        &server,
        port,
        &format!(
            "\n[[proxy]]\nprofile = \"a\"\nlisten = \"127.0.0.1:{proxy_port}\"\nupstream = \"{}\"\nallow_hosts = [\"api.build.internal\"]\n",
            server.base_url()
        ),
    );
    let agent = start_agent(&sb, &config);
    let proxied = |host: &str| {
        curl(&[
            "--resolve",
            &format!("{host}:{proxy_port}:127.0.0.1"),
            &format!("http://{host}:{proxy_port}/api/x"),
        ])
    };
    assert_eq!(proxied("rebound.example").0, 421);
    assert_eq!(server.stats().api_calls, 0);
    assert_eq!(proxied("api.build.internal").0, 200);
    assert_eq!(proxied("localhost").0, 200);

    // The default header timeout (10 s) on both listeners.
    let sent = Instant::now();
    let mut half = half_sent(port, 20);
    half.extend(half_sent(proxy_port, 20));
    let open = still_open_at(&mut half, sent + Duration::from_secs(15));
    assert_eq!(
        open,
        0,
        "{open} of 40 half-sent requests to the agent's endpoint and proxy still open after 15 s: {}",
        agent.log()
    );
    eprintln!(
        "40 half-sent requests to the agent: all closed {:?} after they were sent",
        sent.elapsed()
    );
    let (clean, log) = agent.stop();
    assert!(clean, "{log}");
}
