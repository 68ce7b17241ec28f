//! The fleet-wide token-request budget: `token_rate = "N/period"` is counted in Redis by an
//! atomic script, so machines that each need a token cannot together ask the IdP more often
//! than it allows. A caller over budget keeps the valid token it holds, or waits for the
//! next window within `--retry-for`, or fails with exit 4 — never one request too many.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freshtoken_testkit::*;

const WINDOW_MS: u128 = 60_000;

/// Skews that put a process at a chosen moment of one budget window (fixed windows of the
/// period, by the processes' clock), however long the test has run so far.
struct Window {
    start_ms: u128,
}

impl Window {
    /// The next window that starts at least a second from now.
    fn next() -> Self {
        let now = now_ms();
        Self {
            start_ms: (now / WINDOW_MS + 1) * WINDOW_MS
                + if now % WINDOW_MS > 59_000 {
                    WINDOW_MS
                } else {
                    0
                },
        }
    }

    /// `FRESHTOKEN_CLOCK_SKEW` for "`at` into the window, now".
    fn skew(&self, at: Duration) -> String {
        let target = self.start_ms + at.as_millis();
        let now = now_ms();
        assert!(target > now, "the test fell behind its window");
        format!("{}ms", target - now)
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `freshtoken get` on machine `m` with the profile's budget, at `at` into `window`.
fn get(sb: &Sandbox, server: &Server, window: &Window, m: usize, at: Duration) -> Command {
    let mut c = sb.cmd_for(server);
    c.env("XDG_CACHE_HOME", sb.path().join(format!("machine-{m}")))
        .env("FRESHTOKEN_CLOCK_SKEW", window.skew(at))
        .arg("get");
    c
}

/// Drops the token from Redis, so that the next new machine must ask the IdP.
fn forget_in_redis(redis: &RedisServer) {
    let keys = redis
        .command(&["KEYS", "freshtoken:v1:*"])
        .unwrap_or_default();
    for key in keys
        .lines()
        .filter(|k| k.starts_with("freshtoken:v1:{") && k.ends_with('}'))
    {
        redis.command(&["DEL", key]);
    }
}

#[test]
fn a_fleet_never_exceeds_its_token_rate_and_a_caller_over_it_keeps_its_token_or_waits() {
    let server = Server::start(Duration::from_secs(40));
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    sb.write_user_config(&format!(
        "[profiles.default]\ncache = \"{}\"\ntoken_rate = \"2/min\"\n",
        redis.url()
    ));
    let w = Window::next();
    let s = Duration::from_secs;

    // Two requests in the window: machine 0's, and machine 1's once Redis lost the token.
    let o = run(&mut get(&sb, &server, &w, 0, s(1)));
    assert_code(&o, 0);
    let held = stdout(&o);
    forget_in_redis(&redis);
    let o = run(&mut get(&sb, &server, &w, 1, s(1)));
    assert_code(&o, 0);
    let second = stdout(&o);
    assert_eq!(server.stats().token_requests, 2);

    // Budget spent. Machine 0, with 3 s left of its 40 s token (it must refresh), keeps its token.
    let o = run(&mut get(&sb, &server, &w, 0, s(38)));
    assert_code(&o, 0);
    // (Machine 1's token, in Redis, may be the later-expiring of the two it holds.)
    let served = stdout(&o);
    assert!(
        served == held || served == second,
        "over budget: a token it holds, still valid, not a new one"
    );
    assert_eq!(server.stats().token_requests, 2, "no request over budget");

    // A new machine with nothing to serve fails at once, and says why: the next window is
    // 22 s away, more than half of what the call may take (one 30 s attempt, no --retry-for).
    forget_in_redis(&redis);
    let started = Instant::now();
    let o = run(&mut get(&sb, &server, &w, 2, s(38)));
    assert!(
        started.elapsed() < s(10),
        "did not wait 22 s for the next window"
    );
    assert_fails_with(&o, 4, "token-request budget");
    assert_eq!(stdout(&o), "");
    assert_eq!(server.stats().token_requests, 2, "no request over budget");

    // With --retry-for 30s, it waits for the next window (2 s away) and gets its token then.
    let started = Instant::now();
    let o = run(get(&sb, &server, &w, 3, s(58)).env("FRESHTOKEN_RETRY_FOR", "30s"));
    assert_code(&o, 0);
    assert!(!stdout(&o).is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < s(15),
        "waited for the next window (about 2 s), not the whole --retry-for: {waited:?}"
    );
    assert_eq!(
        server.stats().token_requests,
        3,
        "one request, in the next window"
    );
}
