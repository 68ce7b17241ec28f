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
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a wave served the held token without waiting out the outage: {:?}",
            started.elapsed()
        );
        requests += 1;
        assert_eq!(
            server.stats().token_requests,
            requests,
            "backoff step {step}: one request from {n} processes"
        );
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
