//! The fault matrix through the binary: the one-shot surfaces (`get`, `exec`) × the stores a
//! pipeline uses (file, Redis, file + Redis) × the dev-server's faults. Tokens live 20 s;
//! time moves with FRESHTOKEN_CLOCK_SKEW, never by sleeping. Each cell asserts:
//! - while the cached token is valid for the caller's `--min-ttl`, every call exits 0 with it,
//!   the first within the 2 s fallback bound, the next at once;
//! - the endpoint sees one request for the whole burst (the failure note);
//! - once no valid token is left, the documented exit code, one line, nothing on stdout;
//! - recovery: a new token once the fault ends.
//!
//! The long-running surfaces (proxy, agent) are built on the same `CachedSource`; its matrix
//! over every store is `crates/freshtoken/tests/fault_matrix.rs`.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use freshtoken_devserver::{Canned, Config, Faults};
use freshtoken_testkit::*;

const TTL: Duration = Duration::from_secs(20);
/// The fallback bound (2 s) plus the start of a process on a busy machine.
const FIRST_CALL: Duration = Duration::from_millis(3500);
const AT_ONCE: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug)]
enum Store {
    File,
    Redis,
    FileRedis,
}

/// Every fault of the matrix, in the order the rows show them.
const FAULTS: [Fault; 6] = [
    Fault::Outage,
    Fault::RateLimited,
    Fault::GenesysThrottle,
    Fault::Malformed,
    Fault::Slow,
    Fault::Rejected,
];

#[derive(Clone, Copy, Debug)]
enum Fault {
    Outage,
    RateLimited,
    GenesysThrottle,
    Malformed,
    Slow,
    Rejected,
}

impl Fault {
    fn faults(self) -> Faults {
        let canned = |status: u16, content_type: &str, body: &str| Faults {
            canned: Some(Canned {
                status: Some(status),
                content_type: Some(content_type.into()),
                body: body.into(),
                ..Canned::default()
            }),
            ..Faults::default()
        };
        match self {
            Fault::Outage => Faults {
                outage: true,
                ..Faults::default()
            },
            Fault::RateLimited => Faults {
                rate_limit: Some(1),
                ..Faults::default()
            },
            Fault::GenesysThrottle => Faults {
                throttle: Some(1),
                ..Faults::default()
            },
            Fault::Malformed => canned(200, "text/html", "<html><h1>Welcome to nginx</h1></html>"),
            Fault::Slow => Faults {
                delay_ms: 60_000,
                ..Faults::default()
            },
            Fault::Rejected => canned(401, "application/json", r#"{"error":"invalid_client"}"#),
        }
    }

    /// The exit code once no valid token is left.
    fn exit_code(self) -> i32 {
        match self {
            Fault::Rejected => 3,
            _ => 4,
        }
    }
}

struct Cell<'a> {
    sb: Sandbox,
    server: Server,
    store: Store,
    redis: &'a RedisServer,
}

impl Cell<'_> {
    fn cmd(&self, skew: &str) -> Command {
        let mut c = self.sb.cmd_for(&self.server);
        c.env("FRESHTOKEN_CLOCK_SKEW", skew)
            .env("FRESHTOKEN_RETRY_FOR", "60s");
        match self.store {
            Store::File => {}
            Store::Redis => {
                c.env_remove("XDG_CACHE_HOME")
                    .env_remove("HOME")
                    .env("FRESHTOKEN_CACHE", self.redis.url());
            }
            Store::FileRedis => {
                c.env("FRESHTOKEN_CACHE", self.redis.url());
            }
        }
        c
    }

    fn get(&self, skew: &str, min_ttl: &str) -> (Output, Duration) {
        let started = Instant::now();
        let o = run(self.cmd(skew).args(["get", "--min-ttl", min_ttl]));
        (o, started.elapsed())
    }

    fn requests(&self) -> u64 {
        self.server.stats().token_requests
    }
}

fn cell(store: Store, fault: Fault, redis: &RedisServer) -> String {
    let what = format!("{store:?} × {fault:?}");
    redis.command(&["FLUSHALL"]);
    let c = Cell {
        sb: Sandbox::new(),
        server: Server::start_with(Config {
            ttl: TTL,
            clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
            ..Config::default()
        }),
        store,
        redis,
    };
    let (o, _) = c.get("0s", "0s");
    assert_code(&o, 0);
    let token = stdout(&o);
    c.server.set_faults(fault.faults());
    let before = c.requests();

    // 16 s on, 4 s left, the callers need 1 s: served, the first within the bound.
    let (o, took) = c.get("16s", "1s");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), token, "{what}: the held token");
    assert!(took < FIRST_CALL, "{what}: the first call took {took:?}");
    // The burst: the note makes every later call immediate, with no token request. The
    // note's first step is 0.75 s to 1 s (jitter); the burst spends 0.4 s of it by skew and
    // leaves at least 350 ms of real time for five process runs, under the load of the whole
    // suite in one test process (0.7 s by skew left 50 ms and failed there).
    for skew in ["16100ms", "16200ms", "16300ms"] {
        let (o, took) = c.get(skew, "1s");
        assert_code(&o, 0);
        assert_eq!(stdout(&o), token, "{what}");
        assert!(took < AT_ONCE, "{what}: {took:?} while the note holds");
    }
    let exec = run(c.cmd("16400ms").args([
        "exec",
        "--min-ttl",
        "1s",
        "--",
        "sh",
        "-c",
        "printf %s \"$FRESHTOKEN_ACCESS_TOKEN\"",
    ]));
    assert_code(&exec, 0);
    assert_eq!(
        stdout(&exec),
        token.trim_end(),
        "{what}: exec hands the held token over"
    );
    let burst = c.requests() - before;
    assert_eq!(burst, 1, "{what}: one token request for the whole burst");

    // No valid token left: the documented code, one line, nothing printed.
    let o =
        run(c
            .cmd("21s")
            .env("FRESHTOKEN_RETRY_FOR", "500ms")
            .args(["get", "--timeout", "500ms"]));
    assert_code(&o, fault.exit_code());
    assert_eq!(stdout(&o), "", "{what}");
    let err = stderr(&o);
    let errors = err.lines().filter(|l| l.contains("error:")).count();
    assert_eq!(errors, 1, "{what}: one error line: {err}");
    assert!(!stderr(&o).contains(SECRET), "{what}");

    // The fault ends: a new token.
    c.server.set_faults(Faults::default());
    let (o, _) = c.get("21s", "0s");
    assert_code(&o, 0);
    assert_ne!(stdout(&o), token, "{what}: recovered");
    format!(
        "{what}: 5 calls served, {burst} token request, exit {} after expiry, recovered",
        fault.exit_code()
    )
}

/// One row: every fault against `store`.
fn row(store: Store) {
    let redis = RedisServer::start();
    for fault in FAULTS {
        println!("{}", cell(store, fault, &redis));
    }
}

#[test]
fn get_and_exec_with_the_file_cache_under_every_fault() {
    row(Store::File);
}

#[test]
fn get_and_exec_with_redis_alone_under_every_fault() {
    row(Store::Redis);
}

#[test]
fn get_and_exec_with_file_and_redis_under_every_fault() {
    row(Store::FileRedis);
}

/// The proxy, a long-running surface: its clock is moved through FRESHTOKEN_CLOCK_SKEW_FILE
/// while it runs. Stale during the outage (16 s of 20): every request forwarded with the held
/// token; must-refresh (1.5 s left): forwarded too, within the 2 s bound; expired: 503 within
/// the 3 s deadline, never the expired token; once the fault ends and the note's step has
/// passed: a new token.
fn proxy_cell(fault: Fault) -> String {
    let what = format!("proxy × {fault:?}");
    let server = Server::start_with(Config {
        ttl: TTL,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    });
    let sb = Sandbox::new();
    let skew = sb.path().join("skew");
    let set_skew = |d: &str| {
        std::fs::write(&skew, d).unwrap();
        // The proxy reads the file again every 20 ms.
        std::thread::sleep(Duration::from_millis(100));
    };
    set_skew("0s");
    let mut cmd = sb.cmd_for(&server);
    cmd.env("FRESHTOKEN_CLOCK_SKEW_FILE", &skew).args([
        "-v",
        "proxy",
        "--upstream",
        &server.base_url(),
        "--timeout",
        "3s",
        "--retry-for",
        "3s",
    ]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(sb.path().join("proxy.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(sb.path().join("proxy.log")).unwrap_or_default();
    let url = proxy_url(&mut child);
    let status = |n: usize| -> (Vec<String>, Duration) {
        let started = Instant::now();
        let o = run(Command::new("bash").arg("-c").arg(format!(
            "for i in $(seq {n}); do curl -s -o /dev/null -w '%{{http_code}}\\n' {url}/api/v2/users/me; done"
        )));
        (
            stdout(&o).lines().map(str::to_owned).collect(),
            started.elapsed(),
        )
    };
    let ok = |codes: &[String]| codes.iter().all(|c| c == "200");

    // The token's age is the skew plus the real time since it was fetched: under the load of
    // the whole suite, 30 curl runs can take most of the 1.5 s the must-refresh step leaves.
    // So each step sets the age, taking off the real time gone by (a little more than the
    // token's, so it is never older than meant).
    let fetched = Instant::now();
    let at_age = |age: Duration| {
        let skew = age.saturating_sub(fetched.elapsed());
        set_skew(&format!("{}ms", skew.as_millis()));
    };
    let (codes, _) = status(1);
    assert!(ok(&codes), "{what}: warm {codes:?}");
    server.set_faults(fault.faults());
    let before = server.stats().token_requests;
    let burst_started = Instant::now();

    at_age(Duration::from_secs(16));
    let (codes, _) = status(30);
    assert!(ok(&codes), "{what}: stale, held token forwarded: {codes:?}");
    at_age(Duration::from_millis(18500));
    let (codes, took) = status(3);
    assert!(
        ok(&codes),
        "{what}: must refresh, held token forwarded: {codes:?}\n{}",
        log()
    );
    assert!(
        took < Duration::from_millis(3 * 2000 + 1500),
        "{what}: {took:?}"
    );
    let burst = server.stats().token_requests - before;
    // The failure backoff runs in real time (1 s, then 2 s, 4 s …): a burst that outlasts a
    // step under a loaded runner may rightly try once more per step that passed, never once
    // per request.
    let spent = burst_started.elapsed().as_secs_f64();
    let steps = (0..8)
        .take_while(|n| spent >= f64::from((2u32 << n) - 1))
        .count();
    let allowed = 2 + u64::try_from(steps).unwrap_or(0);
    assert!(
        burst <= allowed,
        "{what}: {burst} token requests for 33 requests in {spent:.1} s (at most {allowed})"
    );

    set_skew("21s");
    let (codes, took) = status(1);
    assert_eq!(codes, ["503"], "{what}: no valid token left");
    assert!(took < Duration::from_millis(4500), "{what}: {took:?}");

    server.set_faults(Faults::default());
    set_skew("80s");
    let (codes, _) = status(1);
    assert!(ok(&codes), "{what}: recovered: {codes:?}");
    let _ = child.kill();
    let _ = child.wait();
    format!("{what}: 33 requests forwarded, {burst} token requests, 503 after expiry, recovered")
}

#[test]
fn the_proxy_under_every_fault() {
    for fault in FAULTS {
        println!("{}", proxy_cell(fault));
    }
}
