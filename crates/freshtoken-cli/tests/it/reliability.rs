//! The first promise, on the path a Jenkins user meets first: a one-shot `freshtoken get`
//! during an IdP outage serves the token it holds — promptly — and the call never outlasts
//! its one deadline. Each test sits on the boundary it guards: a cached token with less life
//! left than the retry window, a deadline shorter than the attempt, a lock that is never
//! released. Time moves with FRESHTOKEN_CLOCK_SKEW, never by sleeping.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_devserver::{Canned, Faults};
use freshtoken_testkit::*;

/// The dev-server's tokens in these tests: short, so that the retry window (60 s by default)
/// is longer than what a cached token has left.
const TWENTY_S: Duration = Duration::from_secs(20);

/// `get` with the file cache and the default retry window, `skew` ahead of the real clock.
fn get_at(sb: &Sandbox, server: &Server, skew: &str) -> Command {
    let mut c = sb.cmd_for(server);
    c.env("FRESHTOKEN_RETRY_FOR", "60s")
        .env("FRESHTOKEN_CLOCK_SKEW", skew)
        .arg("get");
    c
}

fn timed(cmd: &mut Command) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let o = run(cmd);
    (o, started.elapsed())
}

#[test]
fn an_outage_serves_a_cached_token_shorter_lived_than_the_retry_window_at_once() {
    let server = Server::start_with(freshtoken_devserver::Config {
        ttl: TWENTY_S,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Default::default()
    });
    let sb = Sandbox::new();
    let first = run(&mut get_at(&sb, &server, "0s"));
    assert_code(&first, 0);
    let token = stdout(&first);

    // 16 s later the token has 4 s left, far less than the 60 s retry window; the IdP is down.
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let (o, took) = timed(get_at(&sb, &server, "16s").args(["--min-ttl", "1s"]));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), token, "the held token, not an error");
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(1500),
        "waited at most min(4 s - 1 s, 2 s) for the refresh (plus process start), took {took:?}"
    );
    assert_eq!(
        stderr(&o).matches("WARN").count(),
        1,
        "one warning: {}",
        stderr(&o)
    );
    let requests = server.stats().token_requests;
    assert_eq!(requests, 2, "one fetch, one failed refresh attempt");

    // The failure is remembered beside the token: the next processes serve it at once and
    // leave the endpoint alone until the note's moment (1 s after the failure at most).
    for _ in 0..5 {
        let (o, took) = timed(get_at(&sb, &server, "16s").args(["--min-ttl", "1s"]));
        assert_code(&o, 0);
        assert_eq!(stdout(&o), token);
        assert!(
            took < Duration::from_secs(1),
            "served at once, took {took:?}"
        );
        assert!(
            stderr(&o).contains("the token endpoint is failing"),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(
        server.stats().token_requests,
        requests,
        "no token request while the failure note holds"
    );

    // Past the note's moment, the first caller tries again (once), and serves the token.
    let o = run(get_at(&sb, &server, "18s").args(["--min-ttl", "1s"]));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), token);
    assert_eq!(server.stats().token_requests, requests + 1);

    // With less left than the caller needs, there is no fallback: the error comes at the
    // end of the retry window, with exit 4, and never the token.
    let o = run(get_at(&sb, &server, "19500ms")
        .env("FRESHTOKEN_RETRY_FOR", "2s")
        .args(["--min-ttl", "1s"]));
    assert_code(&o, 4);
    assert_eq!(stdout(&o), "");

    // The IdP comes back: the next call has a new token.
    server.set_faults(Faults::default());
    let o = run(get_at(&sb, &server, "19500ms").args(["--min-ttl", "1s"]));
    assert_code(&o, 0);
    assert_ne!(stdout(&o), token);
}

#[test]
fn the_retry_window_bounds_the_whole_call_even_mid_attempt() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    // Headers, then a body that never ends: each attempt lasts its whole --timeout (3 s).
    // Three attempts would end at 9 s and more; the deadline is 8 s.
    server.set_faults(Faults {
        canned: Some(Canned {
            body: "{".into(),
            endless: true,
            ..Canned::default()
        }),
        ..Faults::default()
    });
    let (o, took) = timed(sb.cmd_for(&server).env("FRESHTOKEN_RETRY_FOR", "8s").args([
        "get",
        "--cache",
        "memory",
        "--timeout",
        "3s",
    ]));
    assert_code(&o, 4);
    assert!(
        took < Duration::from_millis(8_900),
        "the attempt in flight is cut off at the 8 s deadline, took {took:?}"
    );
    assert!(
        took >= Duration::from_secs(7),
        "it did retry, took {took:?}"
    );
}

/// A `get` that has taken the file lock and waits on an endpoint that answers in a minute.
fn lock_holder(sb: &Sandbox, server: &Server) -> std::process::Child {
    server.set_faults(Faults {
        delay_ms: 60_000,
        ..Faults::default()
    });
    let holder = sb
        .cmd_for(server)
        .env("FRESHTOKEN_RETRY_FOR", "60s")
        .arg("get")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        || server.stats().token_requests == 1,
        || "the holder never asked for a token".into(),
    );
    holder
}

#[test]
fn a_lock_held_by_a_stopped_process_is_taken_over_within_the_deadline() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    // The holder takes the file lock and waits on a slow endpoint; then it is stopped
    // (SIGSTOP), keeping the lock for as long as it stays stopped.
    let mut holder = lock_holder(&sb, &server);
    send_signal(holder.id(), libc::SIGSTOP);
    server.set_faults(Faults::default());

    let (o, took) = timed(
        sb.cmd_for(&server)
            .args(["get", "--timeout", "2s", "--retry-for", "0"]),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_code(&o, 0);
    assert!(
        took < Duration::from_secs(4),
        "the lock is taken over at half the 2 s deadline, not after 90 s; took {took:?}"
    );
}

#[test]
fn a_redis_lock_left_without_a_lease_gets_one_and_is_taken_over() {
    let server = Server::start(Duration::from_secs(3600));
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    let mut cmd = sb.cmd_for(&server);
    cmd.env("FRESHTOKEN_CACHE", redis.url())
        .env("FRESHTOKEN_REDIS_LEASE", "1s");
    // Learn the key, then plant a lock without TTL (a crash between SET and PEXPIRE of an
    // old client, or a hand-made SET), and drop the token so the next get must refresh.
    assert_code(
        &run(sb
            .cmd_for(&server)
            .env("FRESHTOKEN_CACHE", redis.url())
            .arg("get")),
        0,
    );
    let keys = redis
        .command(&["KEYS", "freshtoken:v1:*"])
        .unwrap_or_default();
    let key = keys
        .lines()
        .find(|l| l.starts_with("freshtoken:v1:") && l.matches(':').count() == 2)
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(key.starts_with("freshtoken:v1:"), "no token key in {keys}");
    redis.command(&["DEL", &key]);
    std::fs::remove_dir_all(sb.cache_dir()).unwrap();
    redis.command(&["SET", &format!("{key}:lock"), "planted"]);
    assert_eq!(
        redis.command(&["PTTL", &format!("{key}:lock")]).as_deref(),
        Some(":-1")
    );

    let (o, took) = timed(cmd.args(["get", "--timeout", "2s", "--retry-for", "0"]));
    assert_code(&o, 0);
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}, the bug took 90 s"
    );
    let pttl = redis
        .command(&["PTTL", &format!("{key}:lock")])
        .unwrap_or_default();
    assert_ne!(pttl, ":-1", "the planted lock was given a lease");
}

#[test]
fn errors_that_waiting_cannot_fix_fail_at_once() {
    let sb = Sandbox::new();
    // A typo in the token host: the name does not exist.
    let (o, took) = timed(
        sb.cmd()
            .env(
                "FRESHTOKEN_TOKEN_URL",
                "https://login.mypurecloud.comm/oauth/token",
            )
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "60s")
            .args(["get", "--cache", "memory"]),
    );
    assert_fails_with(&o, 4, "login.mypurecloud.comm");
    assert!(
        !stderr(&o).contains("gave up after"),
        "not retried: {}",
        stderr(&o)
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}; the bug took 53 s"
    );

    // OAuth 4xx (a wrong secret): at once, exit 3, once.
    let server = Server::start(Duration::from_secs(3600));
    let (o, took) = timed(
        sb.cmd_for(&server)
            .env("FRESHTOKEN_CLIENT_SECRET", "wrong")
            .env("FRESHTOKEN_RETRY_FOR", "60s")
            .args(["get", "--cache", "memory"]),
    );
    assert_fails_with(&o, 3, "invalid_client");
    assert_eq!(server.stats().token_requests, 1);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_lock_holder_killed_mid_fetch_leaves_nothing_behind() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let mut holder = lock_holder(&sb, &server);
    holder.kill().unwrap();
    let _ = holder.wait();
    server.set_faults(Faults::default());
    // The kernel dropped the dead holder's file lock: the next step neither waits for it
    // nor finds a half-written cache.
    let (o, took) = timed(sb.cmd_for(&server).args(["get", "--timeout", "2s"]));
    assert_code(&o, 0);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(!stderr(&o).contains("ignoring"), "{}", stderr(&o));
    let again = run(sb.cmd_for(&server).arg("get"));
    assert_eq!(stdout(&again), stdout(&o), "the new token was cached whole");
}
