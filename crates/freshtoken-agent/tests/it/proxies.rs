//! The agent's proxies.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::{Agent, ProxySpec};
use freshtoken_devserver::Faults;
use freshtoken_proxy::{AllowedHosts, DEFAULT_REPLAY_LIMIT};

use crate::support::*;

/// A proxy of profile `a` on `port` to `upstream`.
fn proxy(port: u16, upstream: &str, replay_limit: usize) -> Result<ProxySpec, url::ParseError> {
    Ok(ProxySpec {
        profile: "a".into(),
        listen: ([127, 0, 0, 1], port).into(),
        upstream: upstream.parse()?,
        replay_limit,
        allowed_hosts: AllowedHosts::default(),
        ca_file: None,
        gateway: None,
        client_identity: None,
    })
}

/// A free loopback port, for a proxy to listen on.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A proxy is the same proxy as `freshtoken proxy`: an upstream that refuses every token
/// gets its 401s back to the clients without a token request each.
///
/// Replaces the whole-process test that allowed one token request per backoff step of the
/// real time 100 requests took: the clock does not move here, so exactly one refresh (the
/// replay after the first 401) is allowed, and made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_proxy_in_a_401_storm_makes_one_token_request() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("a".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: vec![proxy(port, &server.base_url(), DEFAULT_REPLAY_LIMIT)?],
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    assert_eq!(handle.proxies(), [([127, 0, 0, 1], port).into()]);
    until(&handle, "a token", || {
        handle.source("a").is_some_and(|s| s.peek_valid().is_some())
    })
    .await;
    server.state().set_faults(Faults {
        reject_api: true,
        ..Faults::default()
    });
    let before = server.state().stats().token_requests;
    let codes = curl(port, 100).await?;
    assert_eq!(
        codes.lines().filter(|c| *c == "401").count(),
        100,
        "{codes}"
    );
    let fetched = server.state().stats().token_requests - before;
    assert_eq!(
        fetched, 1,
        "{fetched} token requests for 100 refused requests"
    );
    assert!(
        log().contains("the upstream refused a new token too (401)"),
        "{}",
        log()
    );

    // The backoff is judged on the agent's clock: once it has passed, the next 401 is worth
    // one more token request, and one only.
    advance(&clock, &handle, Duration::from_secs(61));
    assert_eq!(curl(port, 1).await?.trim(), "401");
    let more = server.state().stats().token_requests - before - fetched;
    assert_eq!(more, 1, "after the backoff, on the agent's clock");
    running.serve(async {}).await;
    Ok(())
}

/// `n` requests through the proxy on `port` with real curl, ten at a time: their status
/// codes, one a line.
async fn curl(port: u16, n: usize) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let out = tokio::task::spawn_blocking(move || {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-s", "-m", "10", "-w", "%{http_code}\n"]);
        curl.args(["--parallel", "--parallel-max", "10"]);
        for i in 0..n {
            curl.arg(format!("http://127.0.0.1:{port}/api/x/{i}"));
            curl.args(["-o", "/dev/null"]);
        }
        curl.output()
    })
    .await??;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Replaces the whole-process test that waited out the real 10 s grace period: with a
/// grace of 300 ms, a reload that restarts a proxy drains the request in flight while
/// `/metrics` keeps answering, cuts the request off once the grace is over, and starts the
/// changed proxy on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_during_a_reload_drain_and_the_drain_cuts_off_what_outlives_it() -> TestResult
{
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    // An upstream that takes requests and never answers them.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0")?;
    let upstream_url = format!("http://{}", upstream.local_addr()?);
    let (arrived, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in upstream.incoming().flatten() {
            let mut buf = [0u8; 1024];
            if conn.read(&mut buf).is_ok_and(|n| n > 0) {
                let _ = arrived.send(());
            }
            held.push(conn);
        }
    });
    let port = free_port()?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("a".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: vec![proxy(port, &upstream_url, 1024 * 1024)?],
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let agent =
        Agent::new(loader.clone(), Arc::new(clock.clone())).grace(Duration::from_millis(300));
    let running = agent.start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    let client = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        write!(s, "GET /slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        Ok(())
    });
    tokio::task::spawn_blocking(move || requests.recv_timeout(Duration::from_secs(10)))
        .await?
        .map_err(|_| "the request never reached the upstream")?;

    // A changed entry restarts its proxy; the stopped one drains the request in flight.
    loader.edit(|s| s.proxies[0].replay_limit = 2048);
    let reload = tokio::spawn({
        let handle = handle.clone();
        async move { handle.reload().await }
    });
    until(&handle, "the old proxy stopping", || {
        handle.proxies().is_empty()
    })
    .await;
    let (status, _, body) = get(&socket, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !reload.is_finished(),
        "/metrics answered only once the drain was over"
    );
    // The drain gives up after its grace period and cuts the request off.
    tokio::time::timeout(Duration::from_secs(10), reload)
        .await
        .map_err(|_| "the drain outlived its grace period")???;
    let cut = tokio::task::spawn_blocking(move || client.join()).await?;
    assert!(matches!(cut, Ok(Ok(()))), "{cut:?}");
    assert_eq!(handle.proxies(), [([127, 0, 0, 1], port).into()]);
    running.serve(async {}).await;
    Ok(())
}

/// `[[proxy]] gateway = true`: the agent's proxy answers the login path's token endpoint for
/// the profile's own client with the token the agent keeps, and nobody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gateway_answers_its_own_client_with_the_kept_token() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let secret = secret_of("a");
    let mut spec = proxy(port, &server.base_url(), DEFAULT_REPLAY_LIMIT)?;
    spec.gateway = Some(freshtoken_proxy::Gateway::new(
        "a",
        &secrecy::SecretString::from(secret.clone()),
        "login",
        "",
    ));
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("a".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: vec![spec],
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    until(&handle, "a token", || {
        handle.source("a").is_some_and(|s| s.peek_valid().is_some())
    })
    .await;
    let kept = handle
        .source("a")
        .and_then(|s| s.peek_valid())
        .map(|t| t.expose_secret().to_owned())
        .ok_or("no token")?;
    let ask = |user: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "10",
                    "-u",
                    &user,
                    "-d",
                    "grant_type=client_credentials",
                ])
                .arg(format!("http://127.0.0.1:{port}/login/oauth/token"))
                .output()
        })
    };
    let own = ask(format!("a:{secret}")).await??;
    let own = String::from_utf8_lossy(&own.stdout).into_owned();
    assert!(
        own.contains(&format!("\"access_token\":\"{kept}\"")),
        "{own}"
    );
    let other = ask("a:wrong".to_owned()).await??;
    let other = String::from_utf8_lossy(&other.stdout).into_owned();
    assert!(
        other.contains("invalid_client") && !other.contains(&kept),
        "{other}"
    );
    assert_eq!(
        server.state().stats().token_requests,
        1,
        "only the agent's own"
    );
    running.serve(async {}).await;
    Ok(())
}
