//! Who may use freshtoken's TCP listeners, and what a client can hold there (issue 13, items
//! 7 and 11 of docs/SECURITY.md): the proxy answers only a `Host` naming its own address, and
//! half-sent or idle connections are bounded in time and number. Real curl and a real proxy
//! against the dev-server. Every
//! test here was first seen failing against the code before its defence.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const HOUR: Duration = Duration::from_secs(3600);

/// What the proxy logs once when its connection cap is reached.
const AT_CAP: &str = "the most allowed";

/// A `freshtoken` daemon whose stderr goes to a file; killed when dropped.
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
        // SAFETY: kill with a pid this test spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
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

/// `curl ARGS` (silent, bounded): the status code and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-m", "10", "-w", "\n%{http_code}"])
        .args(args);
    let out = run(&mut cmd);
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("curl {args:?} printed no status: {text:?} {}", stderr(&out)));
    (code, body.to_owned())
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
