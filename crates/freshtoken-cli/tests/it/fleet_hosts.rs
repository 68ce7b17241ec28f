//! Hosts, not folders: the fleet with each "machine" in a network namespace of its own, and
//! Redis (a single node, a Redis Cluster, or Sentinel) and the dev-server in another, so
//! every call to them crosses a real (virtual) interface and a bridge. Needs root, as CI has; without it the test fails and says why.
//! Time moves with FRESHTOKEN_CLOCK_SKEW, never by sleeping.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_devserver::{Config, Faults};
use freshtoken_testkit::*;

const HOSTS: usize = 4;

/// `n` processes spread over the hosts, all at once, `skew` into the future; each host has
/// its own file cache, all share Redis at 198.18.0.1. Every one must succeed.
fn wave(
    lab: &NetLab,
    sb: &Sandbox,
    token_url: &str,
    redis: &str,
    n: usize,
    skew: &str,
) -> HashSet<String> {
    wave_in(lab, sb, sb.path(), token_url, redis, n, skew)
}

/// [`wave`] with every host's file cache under `caches`.
fn wave_in(
    lab: &NetLab,
    sb: &Sandbox,
    caches: &std::path::Path,
    token_url: &str,
    redis: &str,
    n: usize,
    skew: &str,
) -> HashSet<String> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let host = i % HOSTS;
            let mut get = sb.cmd();
            get.env("FRESHTOKEN_TOKEN_URL", token_url)
                .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
                .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
                .env("FRESHTOKEN_RETRY_FOR", "0")
                .env("XDG_CACHE_HOME", caches.join(format!("host-{host}")))
                .env("FRESHTOKEN_CACHE", redis)
                .env("FRESHTOKEN_CLOCK_SKEW", skew)
                .arg("get");
            lab.on_host(host, &get)
                .stdin(Stdio::null())
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
                !err.contains("redis cache is not answering"),
                "Redis answers across the bridge: {err}"
            );
            stdout(&o)
        })
        .collect()
}

/// `redis-cli ARGS` run on host 0.
fn redis_cli_on_host(lab: &NetLab, args: &[&str]) -> String {
    let mut cli = Command::new("redis-cli");
    cli.args(args);
    let o = lab.on_host(0, &cli).output().expect("redis-cli on a host");
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn sixty_processes_on_four_namespace_hosts_make_one_request_per_lifetime_and_per_backoff_step() {
    let lab = NetLab::new(HOSTS);
    let (server, token_url) = lab.dev_server(Config {
        ttl: Duration::from_secs(3600),
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    });
    let redis = lab.redis();
    let redis_url = format!("redis://{SERVICES}:{}/0", redis.port);
    let sb = Sandbox::new();
    let n = 60;

    let cold = wave(&lab, &sb, &token_url, &redis_url, n, "0s");
    assert_eq!(cold.len(), 1, "one token for every host");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");

    // The hosts reach Redis across the bridge only: it is not on their own loopback.
    let port = redis.port.to_string();
    let keys = redis_cli_on_host(&lab, &["-h", &SERVICES.to_string(), "-p", &port, "--scan"]);
    assert!(keys.contains("freshtoken:v1:{"), "{keys}");
    let local = redis_cli_on_host(&lab, &["-h", "127.0.0.1", "-p", &port, "PING"]);
    assert!(
        !local.contains("PONG"),
        "Redis is not on the host's loopback: {local}"
    );

    // The refresh window: one request for all hosts.
    let second = wave(&lab, &sb, &token_url, &redis_url, n, "3000s");
    assert_eq!(second.len(), 1);
    assert_ne!(second, cold);
    assert_eq!(
        server.stats().token_requests,
        2,
        "first refresh window: one request"
    );

    // The IdP down in the next refresh window: one try per backoff step for all hosts,
    // each serving the token it holds; back up, one request serves them all.
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let mut requests = 2;
    for (step, skew) in [(1, "6000s"), (2, "6040s")] {
        let started = Instant::now();
        assert_eq!(wave(&lab, &sb, &token_url, &redis_url, n, skew), second);
        let (took, made) = (started.elapsed(), server.stats().token_requests - requests);
        let most = crate::fleet_backoff::one_per_step(step, took);
        assert!(
            (1..=most).contains(&made),
            "outage, backoff step {step}: {made} requests from {n} processes on {HOSTS} hosts \
             in {took:?} (at most one per step that passed: {most})"
        );
        requests += made;
    }
    server.set_faults(Faults::default());
    let back = wave(&lab, &sb, &token_url, &redis_url, n, "6080s");
    assert_eq!(back.len(), 1);
    assert_ne!(back, second);
    assert_eq!(
        server.stats().token_requests,
        requests + 1,
        "the IdP back: one request"
    );
}

/// [`wave`] on hosts with empty file caches: every process needs Redis (or the IdP).
fn fresh_wave(
    lab: &NetLab,
    sb: &Sandbox,
    token_url: &str,
    redis: &str,
    n: usize,
    skew: &str,
) -> HashSet<String> {
    let caches = tempfile::tempdir_in(sb.path()).unwrap();
    wave_in(lab, sb, caches.path(), token_url, redis, n, skew)
}

fn hour_server(lab: &NetLab) -> (Server, String) {
    lab.dev_server(Config {
        ttl: Duration::from_secs(3600),
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    })
}

/// A Redis Cluster in the services namespace: the hosts reach its nodes across the bridge
/// only (the nodes announce 198.18.0.1, so redirections send clients there), and share one
/// token per lifetime through a planned failover and a primary killed with SIGKILL.
#[test]
fn a_redis_cluster_across_namespace_hosts_makes_one_request_per_lifetime_through_failovers() {
    let lab = NetLab::new(HOSTS);
    let (server, token_url) = hour_server(&lab);
    let mut cluster = lab.redis_cluster();
    let url = cluster.url();
    assert!(url.contains(&SERVICES.to_string()), "{url}");
    let sb = Sandbox::new();
    let n = 24;

    let cold = fresh_wave(&lab, &sb, &token_url, &url, n, "0s");
    assert_eq!(cold.len(), 1, "one token for every host");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");
    let port = url.rsplit(':').next().unwrap().to_owned();
    let local = redis_cli_on_host(&lab, &["-h", "127.0.0.1", "-p", &port, "PING"]);
    assert!(
        !local.contains("PONG"),
        "no node on the host's loopback: {local}"
    );

    let keys = cluster.keys();
    let key = keys
        .iter()
        .find(|k| k.starts_with("freshtoken:v1:{") && k.ends_with('}'))
        .unwrap_or_else(|| panic!("no token key in {keys:?}"))
        .clone();
    cluster.fail_over(&key);
    assert_eq!(fresh_wave(&lab, &sb, &token_url, &url, n, "60s"), cold);
    cluster.kill_primary(&key);
    assert_eq!(fresh_wave(&lab, &sb, &token_url, &url, n, "120s"), cold);
    assert_eq!(
        server.stats().token_requests,
        1,
        "failovers: the token came through both, no step failed"
    );

    let refreshed = fresh_wave(&lab, &sb, &token_url, &url, n, "3000s");
    assert_eq!(refreshed.len(), 1);
    assert_ne!(refreshed, cold);
    assert_eq!(
        server.stats().token_requests,
        2,
        "refresh window: one request"
    );
}

/// Sentinel in the services namespace: the sentinels name the primary by 198.18.0.1, the
/// hosts follow the promotion after the primary is killed, and no step fails.
#[test]
fn behind_sentinel_across_namespace_hosts_the_fleet_follows_a_promotion() {
    let lab = NetLab::new(HOSTS);
    let (server, token_url) = hour_server(&lab);
    let mut sentinel = lab.redis_sentinel();
    let url = sentinel.url();
    assert!(url.contains(&SERVICES.to_string()), "{url}");
    let sb = Sandbox::new();
    let n = 24;

    let cold = fresh_wave(&lab, &sb, &token_url, &url, n, "0s");
    assert_eq!(cold.len(), 1, "one token for every host");
    assert_eq!(server.stats().token_requests, 1, "cold start: one request");

    sentinel.crash_primary();
    sentinel.await_promotion();
    assert_eq!(fresh_wave(&lab, &sb, &token_url, &url, n, "60s"), cold);
    assert_eq!(
        server.stats().token_requests,
        1,
        "the promoted replica had the token: no step failed, no request"
    );

    let refreshed = fresh_wave(&lab, &sb, &token_url, &url, n, "3000s");
    assert_eq!(refreshed.len(), 1);
    assert_ne!(refreshed, cold);
    assert_eq!(
        server.stats().token_requests,
        2,
        "refresh window: one request"
    );
}
