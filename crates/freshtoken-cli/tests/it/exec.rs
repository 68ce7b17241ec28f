//! `freshtoken exec` as a whole process.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use freshtoken_testkit::*;

#[test]
fn passes_the_exit_code_and_a_valid_token() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let out = sb.path().join("seen");
    let o = run(sb
        .cmd_for(&server)
        .args([
            "exec",
            "--env",
            "GENESYSCLOUD_ACCESS_TOKEN",
            "--env",
            "API_TOKEN",
            "--",
        ])
        .args([
            "sh",
            "-c",
            &format!(
                "printf '%s %s' \"$GENESYSCLOUD_ACCESS_TOKEN\" \"$API_TOKEN\" > {}; exit 7",
                out.display()
            ),
        ]));
    assert_code(&o, 7);
    let seen = std::fs::read_to_string(&out).unwrap();
    let (a, b) = seen.split_once(' ').unwrap();
    assert_eq!(a, b);
    assert!(
        server.state().check(a).is_some(),
        "the child got a token the server accepts"
    );

    let o = run(sb.cmd_for(&server).args([
        "exec",
        "--",
        "sh",
        "-c",
        "test -n \"$FRESHTOKEN_ACCESS_TOKEN\"",
    ]));
    assert_code(&o, 0);
    let o = run(sb
        .cmd_for(&server)
        .args(["exec", "--", "/nonexistent/program"]));
    assert_fails_with(&o, 127, "cannot run");
    // stdin and stdout pass through.
    let mut child = sb
        .cmd_for(&server)
        .args(["exec", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through\n").unwrap();
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "THROUGH\n");
}

#[test]
fn an_explicit_min_ttl_longer_than_the_token_lives_is_refused_before_running() {
    let server = Server::start(Duration::from_secs(3));
    let sb = Sandbox::new();
    let marker = sb.path().join("ran");
    let o = run(sb
        .cmd_for(&server)
        .args(["exec", "--min-ttl", "10m", "--"])
        .args(["touch", marker.to_str().unwrap()]));
    assert_fails_with(&o, 2, "less than the 600.0 s asked for (--min-ttl)");
    assert!(!marker.exists(), "the command did not run");
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// Issue 12: exec's default minimum was a flat 5 minutes, so tokens that live less made every
/// exec fail with exit 2 over a --min-ttl nobody gave; --proxy too, whose child needs none.
#[test]
fn exec_on_its_defaults_runs_with_tokens_shorter_than_five_minutes() {
    let server = Server::start(Duration::from_secs(3));
    let sb = Sandbox::new();
    let seen = sb.path().join("seen");
    let o = run(sb
        .cmd_for(&server)
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "printf %s \"$FRESHTOKEN_ACCESS_TOKEN\" > {}",
            seen.display()
        )));
    assert_code(&o, 0);
    let token = std::fs::read_to_string(&seen).unwrap();
    assert!(
        server.state().check(&token).is_some(),
        "the child got a token the server accepts: {token:?}"
    );

    let o = run(sb.cmd_for(&server).args([
        "exec",
        "--proxy",
        "--upstream",
        &server.base_url(),
        "--",
        "sh",
        "-c",
        "test -n \"$FRESHTOKEN_ACCESS_TOKEN\" && curl -sf -o /dev/null \"$FRESHTOKEN_PROXY_URL/api/items/1\"",
    ]));
    assert_code(&o, 0);
}

/// The child's token and the proxy beside it come from one source: a run whose child makes a
/// proxied request costs one token request, not one for the child and one for the proxy.
#[test]
fn exec_proxy_fetches_once_for_the_child_and_its_proxy() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).args([
        "exec",
        "--proxy",
        "--upstream",
        &server.base_url(),
        "--",
        "sh",
        "-c",
        "curl -sf -o /dev/null \"$FRESHTOKEN_PROXY_URL/api/items/1\"",
    ]));
    assert_code(&o, 0);
    assert_eq!(server.stats().token_requests, 1, "{:?}", server.stats());
}

/// With 300 s tokens (the Genesys Cloud minimum) a 5-minute default was never met by a cached
/// token, so every exec fetched. Half the lifetime is asked for instead: a second exec right
/// after the first uses the cached token, one 140 s later still does (160 s left), one 160 s
/// later (140 s left, under half the lifetime) gets a new one.
#[test]
fn exec_on_its_defaults_reuses_a_cached_token_while_half_its_life_is_left() {
    let server = Server::start(Duration::from_secs(300));
    let sb = Sandbox::new();
    let exec = |skew: &str| {
        let o = run(sb
            .cmd_for(&server)
            .env("FRESHTOKEN_CLOCK_SKEW", skew)
            .args([
                "exec",
                "--",
                "sh",
                "-c",
                "test -n \"$FRESHTOKEN_ACCESS_TOKEN\"",
            ]));
        assert_code(&o, 0);
        server.stats().token_requests
    };
    assert_eq!(exec("0s"), 1);
    assert_eq!(exec("0s"), 1, "the second exec used the cached token");
    assert_eq!(exec("140s"), 1, "160 s left of 300 s is enough");
    assert_eq!(
        exec("160s"),
        2,
        "140 s left of 300 s is under half: refreshed"
    );
}

#[test]
fn sigterm_is_forwarded_to_the_child() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let ready = sb.path().join("ready");
    let mut child = sb
        .cmd_for(&server)
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "trap 'exit 42' TERM; touch {}; while :; do sleep 0.05; done",
            ready.display()
        ))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the child never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(&child);
    let status = wait(&mut child, "exec after SIGTERM");
    assert_eq!(
        status.code(),
        Some(42),
        "the child's trap ran and its code came back"
    );
}

#[test]
fn exec_proxy_keeps_a_long_child_working_across_token_lifetimes() {
    let server = Server::start(Duration::from_secs(1));
    let sb = Sandbox::new();
    // The child outlives four 1 s tokens and never sends a token itself.
    let script = "for i in $(seq 25); do curl -s -o /dev/null -w '%{http_code}\\n' \"$FRESHTOKEN_PROXY_URL/api/items/$i\"; sleep 0.15; done";
    let o = run(sb.cmd_for(&server).args([
        "exec",
        "--min-ttl",
        "500ms",
        "--proxy",
        "--upstream",
        &server.base_url(),
        "--",
        "bash",
        "-c",
        script,
    ]));
    assert_code(&o, 0);
    let codes = stdout(&o);
    assert_eq!(codes.lines().count(), 25);
    assert!(codes.lines().all(|c| c == "200"), "{codes}");
    assert!(server.stats().tokens_issued >= 4, "{:?}", server.stats());
}

/// Issue 16: as shells do, 126 for a CMD that is there but cannot be run (not executable, a
/// folder), 127 for one that is not there (a path, or a name not on PATH).
#[test]
fn exec_exits_126_for_a_file_it_cannot_run_and_127_for_one_not_found() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let script = sb.path().join("job.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let folder = sb.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    for (cmd, code, says) in [
        (script.to_str().unwrap(), 126, "not executable"),
        (folder.to_str().unwrap(), 126, "not executable"),
        ("/nonexistent/program", 127, "not found"),
        ("no-such-program-on-path-x7", 127, "not found"),
    ] {
        let o = run(sb.cmd_for(&server).args(["exec", "--", cmd]));
        assert_fails_with(&o, code, says);
        assert!(!stdout(&o).contains("ran"), "{cmd}");
    }
    let o = run(sb.cmd_for(&server).args(["exec", "--help"]));
    assert!(
        stdout(&o).contains("126") && stdout(&o).contains("127"),
        "{}",
        stdout(&o)
    );
}
