//! The token endpoint over the socket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::output::TokenFormat;
use freshtoken_agent::{Agent, OnExpiry, Sink};

use crate::support::*;

/// Issue 12: a `min_ttl` near the lifetime made every call to the endpoint a token request.
///
/// Replaces the whole-process test that bounded token requests by the real time 100 calls
/// took: on a manual clock the counts are exact. A `min_ttl` all but 1 ms of the lifetime
/// costs no token request while the held token meets it, is refused with `Retry-After`
/// until a quarter of the lifetime has passed, then costs one token request for 50
/// concurrent callers; one as long as the lifetime, or longer, is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_ttl_near_or_beyond_the_lifetime_does_not_make_each_call_a_token_request()
-> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("a".to_owned(), ProfileSpec::new("a", Vec::new()))]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    until(&handle, "a token", || {
        handle.source("a").is_some_and(|s| s.peek_valid().is_some())
    })
    .await;
    let requests = || server.state().stats().token_requests;
    assert_eq!(requests(), 1);
    let fifty = |path: &'static str| {
        let socket = socket.clone();
        async move {
            let calls: Vec<_> = (0..50)
                .map(|_| {
                    let socket = socket.clone();
                    tokio::spawn(async move { get(&socket, path).await })
                })
                .collect();
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await.unwrap_or_else(|e| panic!("{e}")));
            }
            answers
        }
    };
    let near = "/v1/token/a?min_ttl=59999ms";
    for (status, _, body) in fifty(near).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(requests(), 1, "the held token meets it");

    advance(&clock, &handle, Duration::from_secs(1));
    for (status, head, body) in fifty(near).await {
        assert_eq!(status, 503, "{body}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 14"),
            "{head}"
        );
        assert!(body.contains("short of min_ttl"), "{body}");
    }
    assert_eq!(
        requests(),
        1,
        "no early fetch before a quarter of the lifetime"
    );

    advance(&clock, &handle, Duration::from_secs(14));
    for (status, _, body) in fifty(near).await {
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        assert!(v["expires_in"].as_u64() >= Some(59), "{body}");
    }
    assert_eq!(requests(), 2, "one early fetch for 50 callers");

    for path in ["/v1/token/a?min_ttl=60s", "/v1/token/a?min_ttl=2m"] {
        let (status, _, body) = get(&socket, path).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("live 60 s"), "{body}");
    }
    let (status, _, body) = get(&socket, "/v1/token/a?min_ttl=soon").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("min_ttl: \\\"soon\\\" is not a duration"),
        "{body}"
    );
    assert_eq!(requests(), 2);
    assert_eq!(get(&socket, "/v1/token/a?min_ttl=10s").await.0, 200);
    running.serve(async {}).await;
    Ok(())
}

/// `/readyz` waits for the sinks: a profile that holds a token but whose sink cannot be
/// written is named, and the one whose sink is written is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_sinks_and_names_a_profile_whose_sink_cannot_be_written()
-> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.token");
    // A sink under a regular file: no directory can be made there, not even by root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "")?;
    let bad = blocker.join("b.token");
    let sink = |path: &std::path::Path| {
        Sink::new(path.to_owned(), TokenFormat::Raw, 0o600, OnExpiry::Remove)
    };
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([
            ("a".to_owned(), ProfileSpec::new("a", vec![sink(&good)?])),
            ("b".to_owned(), ProfileSpec::new("b", vec![sink(&bad)?])),
        ]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    let tried = format!("cannot write sink {}", bad.display());
    // The keepers run side by side: b's failure may come before a's write.
    until(&handle, "both sinks tried", || {
        good.exists() && log().contains(&tried)
    })
    .await;
    assert_eq!(get(&socket, "/v1/token/a").await.0, 200);
    assert_eq!(get(&socket, "/v1/token/b").await.0, 200);
    let (status, _, body) = get(&socket, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("b (its sinks are not written)"), "{body}");
    assert!(!body.contains("a ("), "a is ready: {body}");
    let (_, _, metrics) = get(&socket, "/metrics").await;
    let errors = "freshtoken_sink_writes_total{profile=\"b\",outcome=\"error\"}";
    assert_eq!(crate::expiry::sample(&metrics, errors), 1.0, "{metrics}");
    running.serve(async {}).await;
    Ok(())
}
