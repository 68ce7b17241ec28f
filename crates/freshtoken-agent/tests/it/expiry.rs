//! A token that expires with no new one, and the keeper's failure streaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::output::TokenFormat;
use freshtoken_agent::{Agent, OnExpiry, Sink};
use freshtoken_devserver::Faults;

use crate::support::*;

/// How many lines of the log of `profile` contain `text`.
fn logged(profile: &str, text: &str) -> usize {
    let tag = format!("profile={profile}");
    log()
        .lines()
        .filter(|l| l.contains(&tag) && l.contains(text))
        .count()
}

/// The value of the sample `name{labels}` in a `/metrics` text, 0 when absent.
pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Replaces the whole-process test that waited seconds of real time for 2 s tokens to
/// expire and for the keeper's backoff: an outage outlasts the token, both sinks are
/// cleared as configured (removed, emptied), the endpoint and `/readyz` say why, and once
/// the server recovers the keeper's next try writes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_with_no_new_one_leaves_the_sinks_and_comes_back_after() -> TestResult
{
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let removed = dir.path().join("removed.token");
    let emptied = dir.path().join("emptied.token");
    let sinks = vec![
        Sink::new(removed.clone(), TokenFormat::Raw, 0o600, OnExpiry::Remove)?,
        Sink::new(emptied.clone(), TokenFormat::Raw, 0o600, OnExpiry::Empty)?,
    ];
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("expiring".to_owned(), ProfileSpec::new("a", sinks))]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;
    let holds_token =
        |p: &std::path::Path| read(p).is_some_and(|t| server.state().check(t.trim()).is_some());
    until(&handle, "sinks written", || {
        holds_token(&removed) && holds_token(&emptied) && handle.ready()
    })
    .await;
    assert_eq!(get(&socket, "/readyz").await.0, 200);

    server.state().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    // The keeper logs each failed try before it notifies, and only then schedules the next:
    // the clock moves once it has (moved earlier, the next try would be scheduled past it).
    let failures = || logged("expiring", "could not refresh") + logged("expiring", "still no new");
    // Stale: the refresh fails, the sinks keep the still valid token.
    advance(&clock, &handle, Duration::from_secs(50));
    until(&handle, "a failed refresh", || failures() >= 1).await;
    assert!(holds_token(&removed), "a stale token is kept while valid");
    // Expired with no new one: out of the sinks.
    advance(&clock, &handle, Duration::from_secs(11));
    until(&handle, "sinks cleared and the next try failed", || {
        !removed.exists() && read(&emptied).is_some_and(|t| t.is_empty()) && failures() >= 2
    })
    .await;
    let (status, _, body) = get(&socket, "/v1/token/expiring").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("503"), "{body}");
    let (status, _, body) = get(&socket, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("expiring (no valid token"), "{body}");
    assert!(log().contains("sinks cleared"), "{}", log());
    let (_, _, metrics) = get(&socket, "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "freshtoken_sink_clears_total{profile=\"expiring\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &metrics,
            "freshtoken_token_requests_total{profile=\"expiring\",outcome=\"unavailable\"}"
        ) >= 1.0,
        "{metrics}"
    );

    // The server recovers: the keeper's next try (its backoff is under a minute and a
    // quarter) writes the sinks again.
    server.state().set_faults(Faults::default());
    advance(&clock, &handle, Duration::from_secs(75));
    // A try already under way when the endpoint recovered (the token endpoint's own request
    // above may have started one the keeper then queues behind) ends on the agent's clock:
    // step it on, a second at a time, until the sinks are back (a CI run once waited here).
    let back = || holds_token(&removed) && holds_token(&emptied) && handle.ready();
    for _ in 0..60 {
        if back() {
            break;
        }
        let mut changes = handle.changes();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), changes.wait_for(|_| back())).await;
        if !back() {
            advance(&clock, &handle, Duration::from_secs(1));
        }
    }
    until(&handle, "the sinks came back", back).await;
    assert_eq!(get(&socket, "/readyz").await.0, 200);
    running.serve(async {}).await;
    Ok(())
}

/// Replaces the whole-process test that waited up to 20 s of real time for three refused
/// tries: a refused secret is logged at WARN with the server's error once per failure
/// streak, the further tries (1 s, 2 s … later) at info, and never with the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_warns_once_per_failure_streak() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir()?;
    let mut refused = ProfileSpec::new("a", Vec::new());
    refused.secret = "not-the-secret-Kd2".into();
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles: BTreeMap::from([("refused".to_owned(), refused)]),
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    // Each try is logged before the keeper notifies: count the logged ones.
    let tries = || logged("refused", "could not refresh") + logged("refused", "still no new");
    until(&handle, "a first try", || tries() >= 1).await;
    for n in 2..=4 {
        // Past the longest pause of the streak so far (1 s, 2 s, 4 s, each ±20 %).
        advance(&clock, &handle, Duration::from_secs(5));
        until(&handle, "one more try", || tries() >= n).await;
    }
    assert_eq!(server.state().stats().token_requests, 4);
    let log = log();
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("profile=refused"))
        .collect();
    let warnings: Vec<&&str> = ours.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("invalid_client"), "{log}");
    let infos = ours
        .iter()
        .filter(|l| l.contains("INFO") && l.contains("still no new token"))
        .count();
    assert!(infos >= 3, "{log}");
    assert!(!log.contains("not-the-secret"), "{log}");
    running.serve(async {}).await;
    Ok(())
}
