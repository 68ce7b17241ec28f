//! `freshtoken proxy` as a whole process, with real clients (curl, Python's urllib) and the
//! dev-server as upstream.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use freshtoken_devserver::Faults;
use freshtoken_testkit::*;

/// A running `freshtoken proxy`; stopped with SIGTERM when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(sb: &Sandbox, server: &Server, extra: &[&str]) -> Self {
        let mut cmd = sb.cmd_for(server);
        cmd.args(["-v", "proxy", "--upstream", &server.base_url()])
            .args(extra);
        Self::spawn(cmd)
    }

    /// Starts `cmd` (a `proxy` command line) and reads the address it prints.
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = proxy_url(&mut child);
        Self { child, url }
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Its stderr, line by line as it is written (read on a thread of its own).
    fn stderr_lines(&mut self) -> mpsc::Receiver<String> {
        let stderr = self.child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    }

    /// SIGTERM, then its exit status.
    fn terminate(&mut self) -> ExitStatus {
        terminate(&self.child);
        wait(&mut self.child, "the proxy after SIGTERM")
    }

    /// SIGTERM, then its exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let status = self.terminate();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // A test that fails half way must not leave its proxy running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let o = run(Command::new("curl").args(["-s", "-S"]).args(args));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn curl_and_python_see_no_401_across_five_token_lifetimes() {
    let server = Server::start(Duration::from_secs(1));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    // Both clients send the token-less requests they always sent, for about 6 s: six lifetimes.
    let curl_loop = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 40); do curl -s -o /dev/null -w '%{{http_code}}\\n' -X PUT -d '{{\"i\":'$i'}}' {}/api/items/$i; sleep 0.15; done",
            proxy.url
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let python = Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import time, urllib.request, urllib.error
codes = []
end = time.time() + 6
while time.time() < end:
    try:
        with urllib.request.urlopen("{}/api/v2/users/me") as r:
            codes.append(r.status)
    except urllib.error.HTTPError as e:
        codes.append(e.code)
    time.sleep(0.05)
print(" ".join(map(str, codes)))
"#,
            proxy.url
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed");
    let curl_codes = String::from_utf8(curl_loop.wait_with_output().unwrap().stdout).unwrap();
    let py_codes = String::from_utf8(python.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(curl_codes.lines().count(), 40);
    assert!(
        curl_codes.lines().all(|c| c == "200"),
        "curl saw: {curl_codes}"
    );
    let py: Vec<&str> = py_codes.split_whitespace().collect();
    assert!(py.len() > 40, "{py_codes}");
    assert!(py.iter().all(|c| *c == "200"), "python saw: {py_codes}");
    let stats = server.stats();
    assert!(
        stats.tokens_issued >= 5,
        "crossed at least 5 lifetimes: {stats:?}"
    );

    let (status, log) = proxy.stop();
    assert!(status.success(), "SIGTERM: exit 0 ({status:?})");
    assert!(
        log.contains("proxied method=PUT path=/api/items/1 status=200"),
        "{log}"
    );
    assert!(!log.contains("dev-"), "no token in the access log:\n{log}");
}

#[test]
fn a_revoked_token_is_replayed_once_with_the_same_body() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    assert!(
        curl(&[
            "-X",
            "PUT",
            "-d",
            r#"{"n":1}"#,
            &format!("{}/api/config/1", proxy.url)
        ])
        .contains("\"body_bytes\":7")
    );
    server.state().revoke_all();
    let body = r#"{"enabled":true,"n":2}"#;
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "-H",
        "content-type: application/json",
        "-d",
        body,
        &format!("{}/api/config/2", proxy.url),
    ]);
    assert!(out.ends_with(" 200"), "{out}");
    let seen: Vec<_> = server
        .state()
        .api_log()
        .into_iter()
        .filter(|r| r.path == "/api/config/2")
        .collect();
    assert_eq!(seen.len(), 2, "sent, refused, replayed: {seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.method == "PUT" && r.body == body.as_bytes()),
        "the same body twice: {seen:?}"
    );
    assert_eq!(server.stats().api_401, 1);
    let (_, log) = proxy.stop();
    assert!(
        log.contains("path=/api/config/2 status=200") && log.contains("replayed=true"),
        "{log}"
    );
}

#[test]
fn a_body_over_the_replay_limit_gets_its_401_untouched() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &["--replay-limit", "1KiB"]);
    curl(&[&format!("{}/api/warm", proxy.url)]);
    server.state().revoke_all();
    let big = "x".repeat(4096);
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "--data-binary",
        &big,
        &format!("{}/api/big", proxy.url),
    ]);
    assert!(out.ends_with(" 401"), "{out}");
    assert_eq!(
        server
            .state()
            .api_log()
            .iter()
            .filter(|r| r.path == "/api/big")
            .count(),
        1,
        "not replayed"
    );
    // A small one after it is replayed as usual.
    server.state().revoke_all();
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "-d",
        "small",
        &format!("{}/api/small", proxy.url),
    ]);
    assert!(out.ends_with(" 200"), "{out}");
}

#[test]
fn two_hundred_megabytes_each_way_with_memory_well_under_100_mb() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    const SIZE: u64 = 200 * 1024 * 1024;
    let down = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{http_code}",
        &format!("{}/api/blob/{SIZE}", proxy.url),
    ]);
    assert_eq!(down, format!("{SIZE} 200"));
    let up = run(Command::new("sh").arg("-c").arg(format!(
        "head -c {SIZE} /dev/zero | curl -s -S -T - {}/api/sink",
        proxy.url
    )));
    let up = String::from_utf8_lossy(&up.stdout);
    assert!(up.contains(&format!("\"received_bytes\":{SIZE}")), "{up}");
    let peak = proxy.peak_rss_kib();
    eprintln!("proxy peak resident memory after 200 MiB each way: {peak} KiB");
    assert!(peak < 100 * 1024, "peak resident memory {peak} KiB");
    let (status, _) = proxy.stop();
    assert!(status.success());
}

/// The upstream's host name goes through freshtoken's own resolver (the library's `dns`
/// module, wired into the proxy's connector): `localhost` reaches the dev-server on loopback.
#[test]
fn an_upstream_given_by_name_is_resolved_and_reached() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let by_name = server.base_url().replace("127.0.0.1", "localhost");
    let mut cmd = sb.cmd_for(&server);
    cmd.args(["proxy", "--upstream", &by_name]);
    let proxy = Proxy::spawn(cmd);
    let out = curl(&[
        "-w",
        " %{http_code}",
        &format!("{}/api/v2/users/me", proxy.url),
    ]);
    assert!(out.ends_with(" 200"), "{out}");
    assert_eq!(server.stats().token_requests, 1);
}

#[test]
fn not_an_open_proxy_and_redirects_are_not_followed() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    // Absolute-form request for another host.
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-x",
        &proxy.url,
        "http://example.com/steal",
    ]);
    assert!(
        out.contains("forwards only to") && out.ends_with(" 403"),
        "{out}"
    );
    // CONNECT.
    let addr = proxy.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    let mut reply = [0u8; 256];
    let n = s.read(&mut reply).unwrap();
    assert!(
        String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&reply[..n])
    );
    // An upstream redirect to another host reaches the client; nothing reaches that host.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!("http://{}/collect", elsewhere.local_addr().unwrap());
    let out = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{}/api/redirect?to={target}", proxy.url),
    ]);
    assert!(out.starts_with("HTTP/1.1 302"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("location: {target}")),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        elsewhere.accept().is_err(),
        "the proxy must not follow the redirect"
    );
}

#[test]
fn https_upstreams_get_http2_or_http1_by_alpn_and_their_certificate_is_checked() {
    let server = Server::start(Duration::from_secs(3600));
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let http1: &[&[u8]] = &[b"http/1.1"];
    for (alpn, version) in [(both, "HTTP/2.0"), (http1, "HTTP/1.1")] {
        let sb = Sandbox::new();
        let upstream = tls::TlsUpstream::start(sb.path(), alpn);
        let mut cmd = sb.cmd_for(&server);
        cmd.env("SSL_CERT_FILE", &upstream.ca_file).args([
            "-v",
            "proxy",
            "--upstream",
            &upstream.url,
        ]);
        let proxy = Proxy::spawn(cmd);
        for _ in 0..3 {
            let out = curl(&[
                "-w",
                " %{http_code}",
                "-H",
                "Authorization: Bearer from-the-client",
                &format!("{}/v2/things", proxy.url),
            ]);
            assert_eq!(out, format!("{version}\n 200"));
        }
        let put = curl(&[
            "-w",
            " %{http_code}",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"n":1}"#,
            &format!("{}/v2/things/1", proxy.url),
        ]);
        assert!(put.ends_with(" 200"), "{put}");
        let seen = upstream.seen();
        assert_eq!(seen.len(), 4, "{seen:?}");
        let authority = upstream.url.trim_start_matches("https://");
        for s in &seen {
            assert_eq!(format!("{:?}", s.version), version, "{s:?}");
            assert_eq!(s.authority.as_deref(), Some(authority), "{s:?}");
            let token = s
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_else(|| panic!("no bearer token: {s:?}"));
            assert!(
                server.state().check(token).is_some(),
                "the upstream got a token the dev-server did not issue: {s:?}"
            );
        }
        assert_eq!(seen[3].body_len, 7, "the PUT body crossed whole");
        let (status, _) = proxy.stop();
        assert!(status.success());
    }

    // The same upstream without its CA among the roots: refused, with the reason, and
    // nothing reaches it.
    let sb = Sandbox::new();
    let upstream = tls::TlsUpstream::start(sb.path(), both);
    let mut cmd = sb.cmd_for(&server);
    cmd.args(["-v", "proxy", "--upstream", &upstream.url]);
    let proxy = Proxy::spawn(cmd);
    let out = curl(&["-w", " %{http_code}", &format!("{}/v2/things", proxy.url)]);
    assert!(
        out.ends_with(" 502") && out.contains("certificate"),
        "{out}"
    );
    assert!(upstream.seen().is_empty());
}

#[test]
fn listening_beyond_loopback_needs_allow_remote() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).args([
        "proxy",
        "--listen",
        "0.0.0.0:0",
        "--upstream",
        &server.base_url(),
    ]));
    assert_fails_with(&o, 2, "--allow-remote");
}

#[test]
fn ca_file_trusts_a_private_ca_for_the_token_endpoint_and_the_upstream() {
    let sb = Sandbox::new();
    let private = tls::TlsUpstream::start(sb.path(), &[b"http/1.1"]);
    let get = |ca_file: Option<&std::path::Path>| {
        let mut cmd = sb.cmd();
        cmd.env(
            "FRESHTOKEN_TOKEN_URL",
            format!("{}/oauth/token", private.url),
        )
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .env("FRESHTOKEN_RETRY_FOR", "0")
        .args(["get", "--cache", "memory"]);
        if let Some(path) = ca_file {
            cmd.arg("--ca-file").arg(path);
        }
        run(&mut cmd)
    };
    // The platform's roots alone do not know the CA: refused, and the error says why.
    let o = get(None);
    assert_fails_with(
        &o,
        4,
        "invalid peer certificate: UnknownIssuer (a private CA? trust it with --ca-file PATH",
    );
    // With the CA's certificate named, the same endpoint is trusted.
    let o = get(Some(&private.ca_file));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "from-the-private-ca\n");
    // A file that holds no certificate is a configuration error naming the file.
    let not_pem = sb.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let o = get(Some(&not_pem));
    assert_fails_with(&o, 2, "not-a-ca.pem: holds no PEM certificate");

    // The proxy trusts the same file for its upstream (tokens from the plain dev-server).
    let server = Server::start(Duration::from_secs(3600));
    let through = |ca_file: Option<&std::path::Path>| {
        let mut cmd = sb.cmd_for(&server);
        cmd.args(["proxy", "--upstream", &private.url]);
        if let Some(path) = ca_file {
            cmd.arg("--ca-file").arg(path);
        }
        let proxy = Proxy::spawn(cmd);
        curl(&["-w", " %{http_code}", &format!("{}/v2/things", proxy.url)])
    };
    assert!(through(None).ends_with(" 502"), "without the CA file");
    assert_eq!(through(Some(&private.ca_file)), "HTTP/1.1\n 200");
}

/// Status codes of `urls` fetched by one curl, one after another on one connection or all at
/// once (`--parallel`).
fn curl_codes(urls: &[String], parallel: bool) -> Vec<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-w", "%{http_code}\n"]);
    if parallel {
        cmd.args(["--parallel", "--parallel-immediate", "--parallel-max", "50"]);
    }
    for url in urls {
        cmd.args([url.as_str(), "-o", "/dev/null"]);
    }
    let o = run(&mut cmd);
    stdout(&o).lines().map(str::to_owned).collect()
}

/// How many steps of the proxy's 401 backoff (1 s, 2 s, 4 s … up to 60 s) can have ended
/// within `elapsed`: each one allows one more token request.
fn backoff_steps_within(elapsed: Duration) -> u64 {
    let (mut steps, mut ended, mut step) = (0, Duration::ZERO, freshtoken_proxy::FIRST_BACKOFF);
    loop {
        ended += step;
        if ended > elapsed {
            return steps;
        }
        steps += 1;
        step = (step * 2).min(freshtoken_proxy::MAX_BACKOFF);
    }
}

/// Issue 12: an upstream that answered 401 to everything made the proxy fetch a token for
/// every client request (16,306 requests, 16,308 token requests in 5 s).
#[test]
fn an_upstream_that_refuses_every_token_gets_its_401s_without_a_token_request_each() {
    let server = Server::start(Duration::from_secs(3600));
    server.set_faults(Faults {
        reject_api: true,
        ..Faults::default()
    });
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    let urls: Vec<String> = (0..100)
        .map(|i| format!("{}/api/items/{i}", proxy.url))
        .collect();
    let started = Instant::now();
    let mut codes = curl_codes(&urls, false);
    codes.extend(curl_codes(&urls, true));
    let elapsed = started.elapsed();
    assert_eq!(codes.len(), 200, "{codes:?}");
    assert!(
        codes.iter().all(|c| c == "401"),
        "every client gets the upstream's 401: {codes:?}"
    );
    let stats = server.stats();
    let bound = 2 + backoff_steps_within(elapsed);
    eprintln!(
        "200 refused requests in {elapsed:?}: {} token requests (bound {bound})",
        stats.token_requests
    );
    assert!(
        stats.token_requests <= bound,
        "the first token, one refresh, then one per backoff step ({elapsed:?}): {stats:?}"
    );

    // The upstream takes tokens again: the held one serves at once, no new token needed.
    server.set_faults(Faults::default());
    let before = server.stats().token_requests;
    let one = |path: &str| {
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}{path}", proxy.url),
        ])
    };
    assert_eq!(one("/api/back"), "200");
    assert_eq!(server.stats().token_requests, before);
    // That answer ended the backoff: a revoked token is replaced and replayed at once.
    server.state().revoke_all();
    assert_eq!(one("/api/revoked"), "200");
    assert_eq!(server.stats().token_requests, before + 1);
    let (status, log) = proxy.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("the upstream refused a new token too (401)"),
        "{log}"
    );
}

/// An HTTP/1.1 GET of `path` from `base` (`http://HOST:PORT`); the status code.
async fn status_of(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_owned();
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the proxy answers within 10 s")
        .expect("the proxy answers");
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {:?}", String::from_utf8_lossy(&answer)))
}

/// The backoff after a refused fresh token, step by step on an injected clock: 1 s, 2 s,
/// 4 s … capped at 60 s, one token request when each step has passed and none before; an
/// accepted token resets it to the first step.
#[test]
fn the_401_backoff_grows_on_the_proxys_clock_and_an_accepted_token_resets_it() {
    use freshtoken::{CachedSource, HttpFetcher, HttpOptions, ManualClock, TokenRequest};
    use freshtoken_devserver::Running;
    use secrecy::SecretString;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Running::start(
            ([127, 0, 0, 1], 0).into(),
            freshtoken_devserver::Config {
                clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
                faults: Faults {
                    reject_api: true,
                    ..Faults::default()
                },
                ..freshtoken_devserver::Config::default()
            },
        )
        .await
        .unwrap();
        let request = TokenRequest::new(
            server.token_url().parse().unwrap(),
            CLIENT_ID,
            Some(SecretString::from(SECRET.to_owned())),
        );
        let clock = ManualClock::starting_now();
        let source =
            CachedSource::builder(HttpFetcher::new(request, HttpOptions::default()).unwrap())
                .clock(Arc::new(clock.clone()))
                .build();
        let proxy = freshtoken_proxy::Proxy::with_clock(
            source,
            freshtoken_proxy::Config {
                upstream: server.base_url().parse().unwrap(),
                replay_limit: freshtoken_proxy::DEFAULT_REPLAY_LIMIT,
                ca_file: None,
                gateway: None,
                client_identity: None,
            },
            Arc::new(clock.clone()),
        )
        .unwrap();
        let background = freshtoken_proxy::Background::start(proxy).await.unwrap();
        let url = background.url().to_owned();
        let tokens = || server.state().stats().token_requests;

        assert_eq!(status_of(&url, "/api/first").await, 401);
        assert_eq!(tokens(), 2, "the first token and one refresh");
        let many: Vec<_> = (0..40)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move { status_of(&url, &format!("/api/many/{i}")).await })
            })
            .collect();
        for request in many {
            assert_eq!(request.await.unwrap(), 401);
        }
        assert_eq!(tokens(), 2, "40 concurrent 401s during the first step");

        let mut expected = 2;
        for step in [1, 2, 4, 8, 16, 32, 60, 60] {
            clock.advance(Duration::from_secs(step - 1));
            assert_eq!(status_of(&url, "/api/early").await, 401);
            assert_eq!(tokens(), expected, "a second before the {step} s step ends");
            clock.advance(Duration::from_secs(1));
            assert_eq!(status_of(&url, "/api/due").await, 401);
            expected += 1;
            assert_eq!(tokens(), expected, "once the {step} s step has passed");
        }

        // The upstream accepts the held token again: 200 at once, with no token request.
        server.state().set_faults(Faults::default());
        assert_eq!(status_of(&url, "/api/back").await, 200);
        assert_eq!(tokens(), expected);
        // The backoff is over: a revoked token is replaced and replayed at once...
        server.state().revoke_all();
        assert_eq!(status_of(&url, "/api/revoked").await, 200);
        expected += 1;
        assert_eq!(tokens(), expected);
        // ...and a new storm starts again from the first step, not from the cap.
        server.state().set_faults(Faults {
            reject_api: true,
            ..Faults::default()
        });
        assert_eq!(status_of(&url, "/api/again").await, 401);
        expected += 1;
        assert_eq!(tokens(), expected);
        clock.advance(Duration::from_secs(1));
        assert_eq!(status_of(&url, "/api/again").await, 401);
        expected += 1;
        assert_eq!(tokens(), expected, "the first step is 1 s again");
        background.stop().await;
        server.stop().await.unwrap();
    });
}

/// Issue 12: a proxy whose secret was wrong printed its banner and nothing else; its clients
/// only saw 503s.
#[test]
fn a_proxy_whose_client_is_refused_says_why_once_per_failure_streak() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let mut cmd = sb.cmd_for(&server);
    cmd.env("FRESHTOKEN_CLIENT_SECRET", "not-the-secret-Xq81")
        .args(["proxy", "--upstream", &server.base_url()]);
    let mut proxy = Proxy::spawn(cmd);
    let lines = proxy.stderr_lines();
    let mut log = Vec::new();
    for i in 0..5 {
        let out = curl(&["-w", " %{http_code}", &format!("{}/api/x/{i}", proxy.url)]);
        assert!(
            out.ends_with(" 503") && out.contains("invalid_client"),
            "{out}"
        );
        if i == 0 {
            // Said when it happens, not at exit.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !log.iter().any(|l: &String| l.contains("WARN")) {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) => log.push(line),
                    Err(_) => {
                        panic!("no WARN line within 10 s of a refused token request: {log:?}")
                    }
                }
            }
        }
    }
    let status = proxy.terminate();
    assert!(status.success());
    log.extend(lines.iter());
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning for the streak: {log:#?}");
    assert!(
        warnings[0].contains("invalid_client"),
        "the server's error: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("not-the-secret")),
        "no secret in the log: {log:#?}"
    );
}

// The gateway (issue 15): tools that log in themselves get the shared token.

/// `curl -w` with the status code on a last line of its own.
fn curl_status(args: &[&str]) -> (u16, String) {
    let out = curl(&[args, &["-w", "\n%{http_code}"]].concat());
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_gateway_answers_its_own_client_with_the_shared_token_and_nobody_else() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(
        &sb,
        &server,
        &["--gateway", "--gateway-login-prefix", "login/"],
    );
    let own = format!("{CLIENT_ID}:{SECRET}");
    let token_url = format!("{}/login/oauth/token", proxy.url);
    let grant = ["-d", "grant_type=client_credentials"];
    let (code, body) = curl_status(&[&["-u", &own], &grant[..], &[&token_url]].concat());
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = answer["access_token"].as_str().unwrap().to_owned();
    assert!(
        server.state().check(&token).is_some(),
        "the shared token is a real one"
    );
    assert_eq!(answer["token_type"], "bearer");
    let left = answer["expires_in"].as_u64().unwrap();
    assert!(
        (3590..=3600).contains(&left),
        "the true remaining life: {left}"
    );
    // The form way, and again: the same token, and still only the proxy's own request.
    let form =
        format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}");
    let (code, body) = curl_status(&["-d", &form, &token_url]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&token), "{body}");
    assert_eq!(server.stats().token_requests, 1, "{:?}", server.stats());
    // The API behind it works without a token of the client's own.
    let (code, _) = curl_status(&[&format!("{}/api/items/1", proxy.url)]);
    assert_eq!(code, 200);

    // Anyone else gets what a real server says, and no token.
    for (args, want, error) in [
        (
            vec![
                "-u",
                &format!("{CLIENT_ID}:wrong"),
                "-d",
                "grant_type=client_credentials",
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                "-u",
                &format!("other:{SECRET}"),
                "-d",
                "grant_type=client_credentials",
            ],
            401,
            "invalid_client",
        ),
        (
            vec!["-d", "grant_type=client_credentials"],
            401,
            "invalid_client",
        ),
        (
            vec!["-u", &own, "-d", "grant_type=password"],
            400,
            "unsupported_grant_type",
        ),
        (vec!["-u", &own, "-d", "scope=x"], 400, "invalid_request"),
    ] {
        let (code, body) = curl_status(&[&args[..], &[&token_url]].concat());
        assert_eq!(code, want, "{args:?}: {body}");
        assert!(body.contains(error), "{args:?}: {body}");
        assert!(!body.contains(&token), "{args:?}: {body}");
    }
    let (code, _) = curl_status(&["-u", &own, &format!("{}/login/oauth/authorize", proxy.url)]);
    assert_eq!(code, 404, "other login paths are not forwarded");
    // A body that never ends is refused, not read for good.
    let big = "x".repeat(100 * 1024);
    let (code, _) = curl_status(&["-u", &own, "-d", &big, &token_url]);
    assert_eq!(code, 413);
    assert_eq!(server.stats().token_requests, 1, "{:?}", server.stats());
    let (status, log) = proxy.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains(SECRET) && !log.contains(&token), "{log}");
}

#[test]
fn exec_proxy_gateway_names_the_gateway_as_terraform_reads_it() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    // CMD logs in to its gateway with what it is given: the client id and a stand-in secret
    // for this run, never the real one (printed here so the test can look for it).
    let script = "test \"$GENESYSCLOUD_GATEWAY_PROTOCOL\" = http && \
        env | grep -c \"$REAL\" >&2; \
        curl -sf -u \"$GENESYSCLOUD_OAUTHCLIENT_ID:$GENESYSCLOUD_OAUTHCLIENT_SECRET\" \
        -d grant_type=client_credentials \
        \"http://$GENESYSCLOUD_GATEWAY_HOST:$GENESYSCLOUD_GATEWAY_PORT/oauth/token\"";
    let o = run(sb.cmd_for(&server).env("REAL", SECRET).args([
        "exec",
        "--proxy",
        "--gateway",
        "--upstream",
        &server.base_url(),
        "--",
        "sh",
        "-c",
        script,
    ]));
    assert_code(&o, 0);
    assert!(stdout(&o).contains("\"access_token\""), "{}", stdout(&o));
    // `grep -c` counts the REAL variable's own line only: no other variable holds the secret.
    assert_eq!(
        stderr(&o).trim(),
        "1",
        "the real secret reached CMD: {}",
        stderr(&o)
    );
    assert_eq!(server.stats().token_requests, 1, "{:?}", server.stats());
    // The real secret is no key to the stand-in's gateway (nor is a guess).
    let script = "curl -s -o /dev/null -w '%{http_code}' -u \"$GENESYSCLOUD_OAUTHCLIENT_ID:$REAL\" \
        -d grant_type=client_credentials \
        \"http://$GENESYSCLOUD_GATEWAY_HOST:$GENESYSCLOUD_GATEWAY_PORT/oauth/token\"";
    let o = run(sb.cmd_for(&server).env("REAL", SECRET).args([
        "exec",
        "--proxy",
        "--gateway",
        "--upstream",
        &server.base_url(),
        "--",
        "sh",
        "-c",
        script,
    ]));
    assert_eq!(stdout(&o), "401");
    let o = run(sb
        .cmd_for(&server)
        .args(["exec", "--gateway", "--", "true"]));
    assert_fails_with(&o, 2, "--gateway needs --proxy");
}

/// The API's own throttling (Genesys Cloud: 429 with `Retry-After`) is the caller's to obey:
/// the proxy hands it on as it came, status and header, and makes no token request for it.
#[test]
fn an_upstream_429_and_its_retry_after_reach_the_caller_unchanged() {
    let server = Server::start(Duration::from_secs(3600));
    let port = free_port();
    let script = format!(
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(429); self.send_header('Retry-After', '7');\n\
         \x20       self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'{{}}')\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let mut upstream = Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let sb = Sandbox::new();
    let mut cmd = sb.cmd_for(&server);
    cmd.args(["proxy", "--upstream", &format!("http://127.0.0.1:{port}")]);
    let proxy = Proxy::spawn(cmd);
    let mut head = String::new();
    for _ in 0..50 {
        head = curl(&["-s", "-i", &format!("{}/api/v2/users", proxy.url)]);
        if head.starts_with("HTTP/1.1 429") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100)); // the upstream is still starting
    }
    let _ = upstream.kill();
    let _ = upstream.wait();
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 7"),
        "{head}"
    );
    assert_eq!(
        server.stats().token_requests,
        1,
        "only the proxy's first token"
    );
}
