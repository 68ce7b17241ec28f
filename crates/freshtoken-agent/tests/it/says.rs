//! The agent says what it does (issue 16): `/readyz` names why a profile is not ready, its
//! log lines name their profile, and a proxy on port 0 tells the port it bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::output::TokenFormat;
use freshtoken_agent::{Agent, OnExpiry, ProxySpec, Sink};
use freshtoken_proxy::{AllowedHosts, DEFAULT_REPLAY_LIMIT};

use crate::support::*;

/// A profile refused by the server: `/readyz` gives the server's error, not only "no valid
/// token".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_last_error_of_a_profile_that_is_not_ready() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let mut refused = ProfileSpec::new("b", Vec::new());
    refused.secret = "not-the-secret-of-b".into();
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([
            ("fine".to_owned(), ProfileSpec::new("a", Vec::new())),
            ("turned-away".to_owned(), refused),
        ]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    until(
        &handle,
        "a token for fine and a refusal for turned-away",
        || {
            handle
                .source("fine")
                .is_some_and(|s| s.peek_valid().is_some())
                && server.state().stats().token_requests >= 2
        },
    )
    .await;
    let (status, _, body) = get(&socket, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let line = body.trim();
    assert!(line.contains("turned-away (no valid token: "), "{line}");
    assert!(line.contains("invalid_client"), "{line}");
    assert!(
        !line.contains("fine"),
        "a ready profile is not listed: {line}"
    );
    assert!(!line.contains("not-the-secret"), "{line}");
    running.serve(async {}).await;
    Ok(())
}

/// The keeper's refresh and its sink writes are logged with `profile=`, so that one agent's
/// log of many profiles can be read per profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_sink_lines_name_their_profile() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let sink = Sink::new(
        dir.path().join("talkative.token"),
        TokenFormat::Raw,
        0o600,
        OnExpiry::Remove,
    )?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("talkative".to_owned(), ProfileSpec::new("a", vec![sink]))]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    until(&handle, "ready", || handle.ready()).await;
    let ours = |text: &str| {
        log()
            .lines()
            .filter(|l| l.contains("profile=talkative") && l.contains(text))
            .count()
    };
    // Both are logged before the sinks count as written: no wait needed, but no harm.
    until(&handle, "the refresh logged", || {
        ours("refreshed the token") >= 1
    })
    .await;
    assert_eq!(ours("wrote 1 sink"), 1, "{}", log());
    // A refresh a lifetime later: one more of each.
    advance(&clock, &handle, Duration::from_secs(55));
    until(&handle, "the second refresh logged", || {
        ours("refreshed the token") >= 2 && ours("wrote 1 sink") >= 2
    })
    .await;
    running.serve(async {}).await;
    Ok(())
}

/// A proxy of profile `a` on `port`.
fn proxy(port: u16, upstream: &str) -> Result<ProxySpec, url::ParseError> {
    Ok(ProxySpec {
        profile: "a".into(),
        listen: ([127, 0, 0, 1], port).into(),
        upstream: upstream.parse()?,
        replay_limit: DEFAULT_REPLAY_LIMIT,
        allowed_hosts: AllowedHosts::default(),
        ca_file: None,
        gateway: None,
        client_identity: None,
    })
}

/// Two `[[proxy]]` entries on port 0 each bind a free port of their own, and the agent
/// tells which: `Handle::proxies`, the "proxy started" log line and the `listen` label of
/// `/metrics` give the bound address, never `127.0.0.1:0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_on_port_0_log_and_expose_the_port_they_bound() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("a".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: vec![
            proxy(0, &server.base_url())?,
            proxy(0, &format!("{}/other", server.base_url()))?,
        ],
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let bound = handle.proxies();
    assert_eq!(bound.len(), 2, "{bound:?}");
    assert!(bound.iter().all(|a| a.port() != 0), "{bound:?}");
    assert_ne!(bound[0], bound[1]);
    until(&handle, "a token", || {
        handle.source("a").is_some_and(|s| s.peek_valid().is_some())
    })
    .await;
    for addr in &bound {
        // The port is really bound: a request goes through.
        let addr = *addr;
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                s,
                "GET /api/v2/says HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .await??;
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    let log = log();
    for addr in &bound {
        assert!(
            log.lines()
                .any(|l| l.contains("proxy started") && l.contains(&format!("listen={addr}"))),
            "{log}"
        );
    }
    // What a proxy logs per request names its profile and address too.
    for addr in &bound {
        assert!(
            log.lines().any(|l| l.contains("proxied")
                && l.contains("profile=a")
                && l.contains(&format!("listen={addr}"))),
            "{log}"
        );
    }
    let (_, _, metrics) = get(&endpoint(dir.path()).socket, "/metrics").await;
    for addr in &bound {
        let sample = format!("freshtoken_proxy_requests_total{{profile=\"a\",listen=\"{addr}\"}}");
        assert!(metrics.contains(&sample), "{metrics}");
    }
    assert!(!metrics.contains("127.0.0.1:0\""), "{metrics}");
    // A reload that changes nothing keeps them on the same ports.
    handle.reload().await?;
    assert_eq!(handle.proxies(), bound);
    running.serve(async {}).await;
    Ok(())
}

/// `GET /v1/status` follows the held token through its states on the agent's clock: fresh,
/// stale once refresh-ahead is due and the refresh fails (with the error), expired once it
/// is past; never the token itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_status_follows_a_token_from_fresh_to_stale_to_expired() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("aging".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    let status = || async {
        let (code, _, body) = get(&socket, "/v1/status").await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["profiles"][0].clone()
    };
    until(&handle, "a token", || handle.ready()).await;
    let token = handle
        .source("aging")
        .and_then(|s| s.peek_valid())
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_default();
    let fresh = status().await;
    assert_eq!(fresh["profile"], "aging");
    assert_eq!(fresh["state"], "fresh", "{fresh}");
    assert_eq!(fresh["expires_in"], 60, "{fresh}");
    assert!(fresh["last_error"].is_null(), "{fresh}");
    assert!(!fresh.to_string().contains(&token));

    server.state().set_faults(freshtoken_devserver::Faults {
        outage: true,
        ..freshtoken_devserver::Faults::default()
    });
    let failed = || server.state().stats().token_requests >= 2;
    advance(&clock, &handle, Duration::from_secs(50));
    until(&handle, "a failed refresh", failed).await;
    let stale = status().await;
    assert_eq!(stale["state"], "stale", "{stale}");
    assert_eq!(stale["expires_in"], 10, "{stale}");
    assert!(
        stale["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{stale}"
    );

    advance(&clock, &handle, Duration::from_secs(11));
    let expired = status().await;
    assert_eq!(expired["state"], "expired", "{expired}");
    assert!(
        expired["fingerprint"].is_null() && expired["expires_at"].is_null(),
        "{expired}"
    );
    running.serve(async {}).await;
    Ok(())
}
