//! The fleet on a real six-node Redis Cluster and on a real Sentinel set: processes on several
//! "machines" (separate file caches) share one cluster through `redis+cluster://` (through a
//! planned failover and a primary killed with SIGKILL) or one primary through
//! `redis+sentinel://` (killed, and the sentinels promote its replica). Time moves with
//! FRESHTOKEN_CLOCK_SKEW, never by sleeping.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_testkit::*;

const HOUR: Duration = Duration::from_secs(3600);

/// `freshtoken get` on machine `m` (its own file cache under `dir`), the shared cache `url`.
fn on_machine(sb: &Sandbox, server: &Server, url: &str, dir: &Path, m: usize) -> Command {
    let mut c = sb.cmd_for(server);
    c.env("XDG_CACHE_HOME", dir.join(format!("machine-{m}")))
        .env("FRESHTOKEN_CACHE", url)
        .arg("get");
    c
}

/// Runs `n` processes over `machines` fresh machines, all at once, `skew` into the future;
/// every one must succeed. Returns the distinct tokens they printed.
fn wave(
    sb: &Sandbox,
    server: &Server,
    url: &str,
    n: usize,
    machines: usize,
    skew: &str,
) -> HashSet<String> {
    // Fresh machines each wave: every wave needs the cluster (or the token endpoint).
    let dir = tempfile::tempdir_in(sb.path()).unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            on_machine(sb, server, url, dir.path(), i % machines)
                .env("FRESHTOKEN_CLOCK_SKEW", skew)
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
            assert_eq!(stderr(&o), "", "no warning: the cluster answered");
            stdout(&o)
        })
        .collect()
}

/// The token's key in the cluster (the one without a `:lock` or `:note` suffix).
fn token_key(cluster: &RedisCluster) -> String {
    let keys = cluster.keys();
    keys.iter()
        .find(|k| k.starts_with("freshtoken:v1:{") && k.ends_with('}'))
        .cloned()
        .unwrap_or_else(|| panic!("no token key in {keys:?}"))
}

#[test]
fn fifty_processes_on_a_redis_cluster_make_one_request_per_lifetime_through_failovers() {
    let server = Server::start(HOUR);
    let mut cluster = RedisCluster::start();
    let sb = Sandbox::new();
    let url = cluster.url();

    let cold = wave(&sb, &server, &url, 50, 4, "0s");
    assert_eq!(cold.len(), 1, "one token for everyone");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");
    let key = token_key(&cluster);

    // A planned failover: new machines find the token on the promoted replica.
    cluster.fail_over(&key);
    assert_eq!(
        wave(&sb, &server, &url, 50, 4, "0s"),
        cold,
        "served from the cluster"
    );
    assert_eq!(
        server.stats().token_requests,
        1,
        "after CLUSTER FAILOVER: none"
    );

    // The refresh window on the new primary: one refresh for the fleet.
    let second = wave(&sb, &server, &url, 50, 4, "3000s");
    assert_eq!(second.len(), 1);
    assert_ne!(second, cold);
    assert_eq!(
        server.stats().token_requests,
        2,
        "first refresh window: one request"
    );

    // The primary killed with SIGKILL: its replica takes over the slot, token and all.
    cluster.kill_primary(&key);
    assert_eq!(
        wave(&sb, &server, &url, 50, 4, "3000s"),
        second,
        "served from the cluster"
    );
    assert_eq!(
        server.stats().token_requests,
        2,
        "after the primary was killed: none"
    );

    let third = wave(&sb, &server, &url, 50, 4, "6000s");
    assert_eq!(third.len(), 1);
    assert_ne!(third, second);
    assert_eq!(
        server.stats().token_requests,
        3,
        "second refresh window: one request"
    );
}

/// A primary killed while a wave of new machines starts: no process fails; while the slot
/// has no primary each machine goes on without Redis (at most its own one request, its file
/// lock holding its processes to one), and once the replica is promoted the fleet shares one
/// token again, with no new request.
#[test]
fn a_primary_killed_mid_run_fails_no_step_and_the_fleet_shares_again() {
    let server = Server::start(HOUR);
    let mut cluster = RedisCluster::start();
    let sb = Sandbox::new();
    let url = cluster.url();
    let cold = wave(&sb, &server, &url, 20, 4, "0s");
    assert_eq!(server.stats().token_requests, 1);

    let takeover = cluster.crash_primary(&token_key(&cluster));
    let started = Instant::now();
    let during = wave_tolerating_warnings(&sb, &server, &url, 20, 4);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "Redis missing costs a process its timeouts, not a hang: {:?}",
        started.elapsed()
    );
    assert!(!during.is_empty());
    assert!(
        server.stats().token_requests <= 1 + 4,
        "at most one request per machine while the slot had no primary: {}",
        server.stats().token_requests
    );
    cluster.await_takeover(takeover);

    let before = server.stats().token_requests;
    let after = wave(&sb, &server, &url, 20, 4, "0s");
    // One token for the whole fleet again: the one that came through the crash, or one a
    // machine fetched while the slot had no primary and stored once the replica took over
    // (a promotion during that wave is a race the fleet may win either way).
    assert_eq!(after.len(), 1, "shared again: {after:?}");
    assert!(
        after.is_subset(&cold) || after.is_subset(&during),
        "a token the fleet already had"
    );
    assert_eq!(
        server.stats().token_requests,
        before,
        "shared again: no request"
    );
}

/// Like [`wave`] at no skew, but a process may warn that Redis is not answering: every one
/// must still print a token and succeed.
fn wave_tolerating_warnings(
    sb: &Sandbox,
    server: &Server,
    url: &str,
    n: usize,
    machines: usize,
) -> HashSet<String> {
    let dir = tempfile::tempdir_in(sb.path()).unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            on_machine(sb, server, url, dir.path(), i % machines)
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
            let err = stderr(&o);
            assert!(
                err.is_empty() || err.contains("redis cache is not answering"),
                "{err}"
            );
            stdout(&o)
        })
        .collect()
}

/// Behind Sentinel: the fleet finds the primary through the sentinels, and when it is killed
/// and the sentinels promote its replica, new processes follow the promotion to the token
/// that came through, and the next refresh is one request for all.
#[test]
fn behind_sentinel_the_fleet_follows_a_promotion_and_fails_no_step() {
    let server = Server::start(HOUR);
    let mut set = RedisSentinel::start();
    let sb = Sandbox::new();
    let url = set.url();

    let cold = wave(&sb, &server, &url, 50, 4, "0s");
    assert_eq!(cold.len(), 1, "one token for everyone");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");
    let before = set.primary_port();

    set.crash_primary();
    let started = Instant::now();
    let during = wave_tolerating_warnings(&sb, &server, &url, 20, 4);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "Redis missing costs a process its timeouts, not a hang: {:?}",
        started.elapsed()
    );
    assert!(!during.is_empty());
    assert!(
        server.stats().token_requests <= 1 + 4,
        "at most one request per machine while there was no primary: {}",
        server.stats().token_requests
    );
    set.await_promotion();
    assert_ne!(set.primary_port(), before, "the replica was promoted");

    let after = server.stats().token_requests;
    assert_eq!(
        wave(&sb, &server, &url, 50, 4, "0s"),
        cold,
        "the token came through the crash"
    );
    assert_eq!(
        server.stats().token_requests,
        after,
        "shared again: no request"
    );
    let refreshed = wave(&sb, &server, &url, 50, 4, "3000s");
    assert_eq!(refreshed.len(), 1);
    assert_eq!(
        server.stats().token_requests,
        after + 1,
        "refresh window: one request"
    );
}
