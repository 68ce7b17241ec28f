//! The fleet benchmark (not a test: `#[ignore]`d, run by `scripts/bench.sh` with
//! `--ignored --nocapture`): token requests and wall time for N `freshtoken get` processes
//! against one Redis on 8 namespace hosts, and against a Redis Cluster and a Sentinel set
//! on loopback ("machines" as file caches), cold and warm; and p50/p99 of one `get` served
//! by the Redis layer. `FRESHTOKEN_FLEET_SIZES` (default `100 1000`) picks N.
// Wall-clock figures are the point of a benchmark.
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_devserver::Config;
use freshtoken_testkit::*;

const HOSTS: usize = 8;
/// Processes alive at once: the 2-core runner's memory, not the fleet, sets this.
const IN_FLIGHT: usize = 250;

/// Runs `n` commands made by `make(i)`, at most [`IN_FLIGHT`] at once; returns the wall time
/// and how many failed.
fn stampede(n: usize, make: impl Fn(usize) -> Command) -> (Duration, usize) {
    let started = Instant::now();
    let mut running: Vec<Child> = Vec::new();
    let mut failed = 0;
    let mut reap = |running: &mut Vec<Child>, all: bool| {
        while !running.is_empty() && (all || running.len() >= IN_FLIGHT) {
            let c = running.remove(0);
            let o = c.wait_with_output().unwrap();
            if !o.status.success() || o.stdout.is_empty() {
                failed += 1;
            }
        }
    };
    for i in 0..n {
        reap(&mut running, false);
        running.push(
            make(i)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    reap(&mut running, true);
    (started.elapsed(), failed)
}

/// p50 and p99 of `runs` single `get`s, each on a new machine (so the Redis layer answers).
fn latency(runs: usize, make: impl Fn(usize) -> Command) -> (Duration, Duration) {
    let mut took: Vec<Duration> = (0..runs)
        .map(|i| {
            let started = Instant::now();
            assert_code(&run(&mut make(i)), 0);
            started.elapsed()
        })
        .collect();
    took.sort();
    (took[runs / 2], took[runs * 99 / 100])
}

fn sizes() -> Vec<usize> {
    std::env::var("FRESHTOKEN_FLEET_SIZES")
        .unwrap_or_else(|_| "100 1000".into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// One engine's rows: for each size, a cold wave then a warm one on the same machines.
fn rows(engine: &str, server: &Server, make: &dyn Fn(usize, &str) -> Command) {
    for n in sizes() {
        let tag = format!("{n}");
        let before = server.stats().token_requests;
        let (cold, cold_failed) = stampede(n, |i| make(i, &tag));
        let cold_requests = server.stats().token_requests - before;
        let (warm, warm_failed) = stampede(n, |i| make(i, &tag));
        let warm_requests = server.stats().token_requests - before - cold_requests;
        println!(
            "| {engine} | {n} | {cold_requests} | {:.2} s | {warm_requests} | {:.2} s | {} | {n} |",
            cold.as_secs_f64(),
            warm.as_secs_f64(),
            cold_failed + warm_failed
        );
    }
}

/// `get` on `machine`; each fleet size asks for its own `scope`, so that its first wave
/// finds Redis cold (the scope is part of the cache key).
fn get_cmd(sb: &Sandbox, token_url: &str, cache: &str, machine: String, scope: &str) -> Command {
    let mut c = sb.cmd();
    c.env("FRESHTOKEN_TOKEN_URL", token_url)
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .env("XDG_CACHE_HOME", sb.path().join(machine))
        .env("FRESHTOKEN_CACHE", cache)
        .env("FRESHTOKEN_SCOPE", scope)
        .arg("get");
    c
}

#[test]
#[ignore = "a benchmark: scripts/bench.sh runs it"]
fn fleet_benchmark() {
    println!(
        "\n| engine | processes | cold: token requests | cold: wall | warm: token requests | warm: wall | failed | shell recipe: requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let config = || Config {
        ttl: Duration::from_secs(3600),
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    };
    let mut latencies = Vec::new();

    // One Redis, 8 namespace hosts.
    {
        let lab = NetLab::new(HOSTS);
        let (server, token_url) = lab.dev_server(config());
        let redis = lab.redis();
        let url = format!("redis://{SERVICES}:{}/0", redis.port);
        let sb = Sandbox::new();
        let make = |i: usize, tag: &str| {
            let host = i % HOSTS;
            let machine = format!("{tag}-h{host}");
            lab.on_host(host, &get_cmd(&sb, &token_url, &url, machine, tag))
        };
        rows("Redis, 8 namespace hosts", &server, &make);
        let (p50, p99) = latency(200, |i| {
            let machine = format!("lat-{i}");
            lab.on_host(0, &get_cmd(&sb, &token_url, &url, machine, "100"))
        });
        latencies.push(("Redis (namespace host, across the bridge)", p50, p99));
    }
    // A Redis Cluster and a Sentinel set on loopback, 8 machines as file caches.
    let cluster = RedisCluster::start();
    let sentinel = RedisSentinel::start();
    for (engine, url) in [
        ("Redis Cluster (6 nodes), 8 machines", cluster.url()),
        ("Sentinel (1+1, 3 sentinels), 8 machines", sentinel.url()),
    ] {
        let server = Server::start_with(config());
        let sb = Sandbox::new();
        let token_url = server.token_url();
        let make = |i: usize, tag: &str| {
            get_cmd(&sb, &token_url, &url, format!("{tag}-m{}", i % HOSTS), tag)
        };
        rows(engine, &server, &make);
        let (p50, p99) = latency(200, |i| {
            get_cmd(&sb, &token_url, &url, format!("lat-{i}"), "100")
        });
        latencies.push((engine, p50, p99));
    }

    println!("\n| get served by the Redis layer (new file layer each run, 200 runs) | p50 | p99 |");
    println!("|---|---:|---:|");
    for (what, p50, p99) in latencies {
        println!(
            "| {what} | {:.1} ms | {:.1} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
