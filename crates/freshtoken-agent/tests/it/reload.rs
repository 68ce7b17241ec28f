//! Reloads through `Handle::reload`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::output::TokenFormat;
use freshtoken_agent::{Agent, AgentError, OnExpiry, Sink};

use crate::expiry::sample;
use crate::support::*;

fn raw(path: std::path::PathBuf) -> Result<Sink, String> {
    Sink::new(path, TokenFormat::Raw, 0o600, OnExpiry::Remove)
}

/// A reload keeps the source (and so the token, with no token request) of a profile whose
/// fingerprint is unchanged, even when its sinks change; rebuilds one whose secret changed;
/// removes a dropped profile's sinks and starts an added one's; and a plan that fails to
/// load keeps everything running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_did_not_change_and_a_failed_one_keeps_everything() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    let sink = |name: &str| dir.path().join(name);
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([
            (
                "a".to_owned(),
                ProfileSpec::new("a", vec![raw(sink("a.token"))?]),
            ),
            (
                "b".to_owned(),
                ProfileSpec::new("b", vec![raw(sink("b.token"))?]),
            ),
        ]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader.clone(), Arc::new(clock.clone()))
        .start()
        .await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    until(&handle, "both sinks", || {
        sink("a.token").exists() && sink("b.token").exists()
    })
    .await;
    let a_token = read(&sink("a.token"));
    let requests = server.state().stats().token_requests;
    assert_eq!((loader.built(), requests), (2, 2));

    // Unchanged: nothing rebuilt, nothing fetched.
    handle.reload().await?;
    assert_eq!(loader.built(), 2);
    // Only a's sink moves: its source (and token) stays, the old file goes.
    loader.edit(|s| {
        if let Some(a) = s.profiles.get_mut("a") {
            a.sinks = vec![raw(sink("a2.token")).unwrap_or_else(|e| panic!("{e}"))];
        }
    });
    handle.reload().await?;
    until(&handle, "a's new sink", || {
        read(&sink("a2.token")) == a_token
    })
    .await;
    assert!(!sink("a.token").exists(), "a dropped sink is cleared");
    assert_eq!(loader.built(), 2);
    assert_eq!(server.state().stats().token_requests, requests);

    // A plan that does not load: the error comes back, everything keeps running.
    loader.edit(|s| s.fail = Some("a config that does not parse".into()));
    let refused = handle.reload().await;
    assert!(
        matches!(&refused, Err(AgentError::Load(e)) if e.to_string() == "a config that does not parse"),
        "{refused:?}"
    );
    assert!(log().contains("kept the running config: a config that does not parse"));
    assert_eq!(read(&sink("a2.token")), a_token);
    assert!(sink("b.token").exists());
    let (_, _, metrics) = get(&socket, "/metrics").await;
    assert_eq!(
        sample(&metrics, "freshtoken_config_reloads_total{outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "freshtoken_config_reloads_total{outcome=\"error\"}"
        ),
        1.0
    );

    // b goes, c comes, a's secret changes (rebuilt: same client, so a token all the same).
    loader.edit(|s| {
        s.fail = None;
        s.profiles.remove("b");
        let c = raw(sink("c.token")).unwrap_or_else(|e| panic!("{e}"));
        s.profiles
            .insert("c".into(), ProfileSpec::new("c", vec![c]));
        if let Some(a) = s.profiles.get_mut("a") {
            a.secret = secret_of("a");
            a.client = "a".into();
        }
    });
    handle.reload().await?;
    until(&handle, "c's sink", || sink("c.token").exists()).await;
    assert!(
        !sink("b.token").exists(),
        "a removed profile's sinks are cleared"
    );
    assert_eq!(loader.built(), 3, "only c is new");
    let (status, _, body) = get(&socket, "/v1/token/b").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("the agent keeps: a, c"), "{body}");
    assert_eq!(handle.profiles(), ["a", "c"]);

    // Two profiles naming one sink: refused, nothing changes.
    loader.edit(|s| {
        if let Some(c) = s.profiles.get_mut("c") {
            c.sinks = vec![raw(sink("a2.token")).unwrap_or_else(|e| panic!("{e}"))];
        }
    });
    let twice = handle.reload().await;
    assert!(
        matches!(&twice, Err(AgentError::Config(m)) if m.contains("is named twice")),
        "{twice:?}"
    );
    assert!(sink("c.token").exists());
    running.serve(async {}).await;
    Ok(())
}
