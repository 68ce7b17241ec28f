//! Fleet-wide backoff: the failure note of a failed refresh lives in Redis beside the token,
//! so during an IdP outage the whole fleet (processes on several "machines", separate file
//! caches) makes one token request per backoff step between them, serves the token it
//! holds meanwhile, and when the IdP returns one request serves everyone. Time moves with
//! FRESHTOKEN_CLOCK_SKEW, never by sleeping.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use freshtoken_devserver::Faults;
use freshtoken_testkit::*;

const HOUR: Duration = Duration::from_secs(3600);

/// `n` processes at once over 4 fresh machines, `skew` into the future, all sharing `url`;
/// every one must succeed. Returns the distinct tokens they printed.
fn wave(sb: &Sandbox, server: &Server, url: &str, n: usize, skew: &str) -> HashSet<String> {
    let dir = tempfile::tempdir_in(sb.path()).unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            sb.cmd_for(server)
                .env(
                    "XDG_CACHE_HOME",
                    dir.path().join(format!("machine-{}", i % 4)),
                )
                .env("FRESHTOKEN_CACHE", url)
                .env("FRESHTOKEN_CLOCK_SKEW", skew)
                .arg("get")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert_code(&o, 0);
            stdout(&o)
        })
        .collect()
}

/// The most requests a wave may make after `failures - 1` failures in a row when it lasts
/// `took`: one, and one more for every backoff step that passed meanwhile (the steps are
/// real time: a wave on a loaded 2-core runner can outlast the 1 s first step). The
/// shortest a step can be is three quarters of 1 s · 2^(failures-1).
pub(crate) fn one_per_step(failures: u32, took: Duration) -> u64 {
    let shortest = Duration::from_millis(750) * 2u32.pow(failures.saturating_sub(1).min(5));
    1 + (took.as_millis() / shortest.as_millis()) as u64
}

/// The outage and the return, for a fleet sharing `url`.
fn one_request_per_backoff_step(url: &str, server: &Server) {
    let sb = Sandbox::new();
    let n = 40;
    let held = wave(&sb, server, url, n, "0s");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");

    // Into the refresh window (the token still has 10 minutes), the IdP down. Each wave is
    // past the last backoff step (the longest is 30 s): one try for the whole fleet, which
    // fails, grows the shared note, and everyone serves the token it holds.
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let mut requests = 1;
    let mut skew = 3000;
    for step in 1..=5 {
        let started = Instant::now();
        assert_eq!(
            wave(&sb, server, url, n, &format!("{skew}s")),
            held,
            "step {step}"
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(30),
            "a wave served the held token without waiting out the outage: {took:?}"
        );
        let made = server.stats().token_requests - requests;
        let most = one_per_step(step, took);
        assert!(
            (1..=most).contains(&made),
            "backoff step {step}: {made} requests from {n} processes in {took:?} (at most one \
             per step that passed: {most})"
        );
        requests += made;
        skew += 40;
    }
    // Five failures in a row: the step is 16 s (at least 12 s with jitter). A wave within
    // it leaves the endpoint alone altogether.
    skew -= 40;
    assert_eq!(wave(&sb, server, url, n, &format!("{skew}s")), held);
    assert_eq!(
        server.stats().token_requests,
        requests,
        "inside a backoff step: no request"
    );

    // The IdP returns: past the step, one request serves the whole fleet.
    server.set_faults(Faults::default());
    skew += 40;
    let fresh = wave(&sb, server, url, n, &format!("{skew}s"));
    assert_eq!(fresh.len(), 1, "one new token for everyone: {fresh:?}");
    assert_ne!(fresh, held);
    assert_eq!(
        server.stats().token_requests,
        requests + 1,
        "the IdP back: one request for {n} processes"
    );
    assert_eq!(wave(&sb, server, url, n, &format!("{skew}s")), fresh);
    assert_eq!(server.stats().token_requests, requests + 1);
}

#[test]
fn during_an_outage_a_fleet_on_redis_makes_one_request_per_backoff_step() {
    let server = Server::start(HOUR);
    let redis = RedisServer::start();
    one_request_per_backoff_step(&redis.url(), &server);
}

#[test]
fn during_an_outage_a_fleet_on_a_redis_cluster_makes_one_request_per_backoff_step() {
    let server = Server::start(HOUR);
    let cluster = RedisCluster::start();
    one_request_per_backoff_step(&cluster.url(), &server);
}
