//! The fleet cache: many processes on several "machines" (separate file caches) sharing one
//! real redis-server, against the dev-server. Time moves with FRESHTOKEN_CLOCK_SKEW, never
//! by sleeping.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_devserver::Faults;
use freshtoken_testkit::*;

const HOUR: Duration = Duration::from_secs(3600);

/// `freshtoken get` on machine `m`: its own file cache, the shared Redis.
fn on_machine(sb: &Sandbox, server: &Server, redis: &RedisServer, m: usize) -> Command {
    let mut c = sb.cmd_for(server);
    c.env("XDG_CACHE_HOME", sb.path().join(format!("machine-{m}")))
        .env("FRESHTOKEN_CACHE", redis.url())
        .arg("get");
    c
}

/// Runs `n` processes spread over `machines`, all at once; returns the distinct tokens.
fn fleet(
    sb: &Sandbox,
    server: &Server,
    redis: &RedisServer,
    n: usize,
    machines: usize,
    skew: &str,
) -> HashSet<String> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            on_machine(sb, server, redis, i % machines)
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
            stdout(&o)
        })
        .collect()
}

#[test]
fn two_hundred_processes_on_four_machines_make_one_request_per_token_lifetime() {
    let server = Server::start(HOUR);
    let redis = RedisServer::start();
    let sb = Sandbox::new();

    let cold = fleet(&sb, &server, &redis, 200, 4, "0s");
    assert_eq!(cold.len(), 1, "one token for everyone");
    assert_eq!(
        server.stats().token_requests,
        1,
        "cold start: one request for 200 processes"
    );

    // 50 minutes later (past 75 % of the hour): one refresh for the whole fleet.
    let second = fleet(&sb, &server, &redis, 200, 4, "3000s");
    assert_eq!(second.len(), 1);
    assert_ne!(second, cold);
    assert_eq!(
        server.stats().token_requests,
        2,
        "first refresh window: one request"
    );

    // Another 50 minutes: one more.
    let third = fleet(&sb, &server, &redis, 200, 4, "6000s");
    assert_eq!(third.len(), 1);
    assert_ne!(third, second);
    assert_eq!(
        server.stats().token_requests,
        3,
        "second refresh window: one request"
    );
}

#[test]
fn a_lock_holder_killed_mid_fetch_is_taken_over_within_the_lease() {
    let server = Server::start(HOUR);
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    server.set_faults(Faults {
        delay_ms: 30_000,
        ..Faults::default()
    });

    let mut holder = on_machine(&sb, &server, &redis, 0)
        .env("FRESHTOKEN_REDIS_LEASE", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !redis
        .command(&["KEYS", "freshtoken:v1:*:lock"])
        .unwrap_or_default()
        .contains(":lock")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first process never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_until(
        Duration::from_secs(10),
        || server.stats().token_requests > 0,
        || "the lock holder never asked for a token".to_owned(),
    );
    holder.kill().unwrap(); // SIGKILL, in the middle of its fetch
    wait(&mut holder, "the killed lock holder");
    server.set_faults(Faults::default());

    let taken_over = Instant::now();
    let o = run(on_machine(&sb, &server, &redis, 1).env("FRESHTOKEN_REDIS_LEASE", "2s"));
    assert_code(&o, 0);
    assert!(
        taken_over.elapsed() < Duration::from_secs(2) + Duration::from_secs(3),
        "finished within the lease (2 s) and a fetch: {:?}",
        taken_over.elapsed()
    );
    assert_eq!(
        server.stats().tokens_issued,
        1,
        "the dead holder's request never completed; the second one did"
    );
}

#[test]
fn redis_stopping_and_coming_back_fails_no_step() {
    let server = Server::start(HOUR);
    let mut redis = RedisServer::start();
    let sb = Sandbox::new();
    // Every step is a fresh machine, so it needs Redis (or the token endpoint) every time.
    let mut step = 0;
    let mut run_step = |redis: &RedisServer| {
        step += 1;
        let o = run(&mut on_machine(&sb, &server, redis, 100 + step));
        assert_code(&o, 0);
        stderr(&o)
    };
    for _ in 0..3 {
        assert_eq!(run_step(&redis), "");
    }
    redis.stop();
    for _ in 0..3 {
        let err = run_step(&redis);
        assert_eq!(
            err.matches("redis cache is not answering").count(),
            1,
            "warned once: {err}"
        );
    }
    redis.restart();
    for _ in 0..3 {
        assert_eq!(run_step(&redis), "");
    }
    // Up: 1 request; down: one each (no shared cache); back: 1 request, then shared again.
    assert_eq!(server.stats().token_requests, 1 + 3 + 1);
}

#[test]
fn redis_holds_neither_token_nor_client_id_nor_secret() {
    let server = Server::start(HOUR);
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    let o = run(&mut on_machine(&sb, &server, &redis, 0));
    assert_code(&o, 0);
    let token = stdout(&o).trim().to_owned();

    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli comes with redis-server (apt-get install redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let keys = cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("freshtoken:v1:{")
            && keys[0].ends_with('}')
            && keys[0].len() == "freshtoken:v1:{}".len() + 64,
        "{keys:?}"
    );
    let value = cli(&["GET", keys[0]]);
    let ttl: i64 = cli(&["PTTL", keys[0]]).trim().parse().unwrap();
    assert!(
        ttl > 3_500_000 && ttl <= 3_570_000,
        "TTL is the token's life minus the refresh margin, in ms: {ttl}"
    );
    for (what, secret) in [
        ("token", token.as_str()),
        ("client id", CLIENT_ID),
        ("secret", SECRET),
    ] {
        assert!(
            !keys[0].contains(secret) && !value.contains(secret),
            "the {what} is readable in Redis: {keys:?} {value}"
        );
    }
    assert!(value.starts_with("v1."), "sealed: {value}");

    // status names the layers and the key's TTL, and never the token.
    let o = run(sb
        .cmd_for(&server)
        .env("XDG_CACHE_HOME", sb.path().join("machine-0"))
        .env("FRESHTOKEN_CACHE", redis.url())
        .arg("status"));
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("cache:       redis redis://127.0.0.1") && out.contains("key TTL"),
        "{out}"
    );
    assert!(out.contains("token:       cached in file"), "{out}");
    assert!(!out.contains(&token), "{out}");
}
