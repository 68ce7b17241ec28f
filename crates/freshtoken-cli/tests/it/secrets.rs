//! No secret and no token in anything freshtoken prints to stderr, at the most verbose level,
//! on success and on failure.

use std::time::Duration;

use freshtoken_devserver::Faults;
use freshtoken_testkit::*;

fn assert_clean(stderr: &str, token: Option<&str>) {
    assert!(
        !stderr.contains(SECRET),
        "the client secret leaked into stderr:\n{stderr}"
    );
    if let Some(token) = token {
        let token = token.trim();
        assert!(!token.is_empty());
        assert!(
            !stderr.contains(token),
            "the token leaked into stderr:\n{stderr}"
        );
        // Not even its distinctive half.
        assert!(
            !stderr.contains(&token[token.len() / 2..]),
            "part of the token leaked:\n{stderr}"
        );
    }
    // The Basic credentials in base64 would be a leak too.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    assert!(
        !stderr.contains(&basic),
        "the Basic credentials leaked:\n{stderr}"
    );
}

#[test]
fn trace_logs_hold_neither_secret_nor_token() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    for method in ["client_secret_basic", "client_secret_post"] {
        let o = run(sb.cmd_for(&server).env("RUST_LOG", "trace").args([
            "get",
            "--cache",
            "memory",
            "--auth-method",
            method,
        ]));
        assert_code(&o, 0);
        let err = stderr(&o);
        assert!(
            err.contains("TRACE") && err.contains("requesting a token"),
            "trace logging is on:\n{err}"
        );
        assert_clean(&err, Some(&stdout(&o)));
    }
    // File cache, status, inspect of the cached token, invalidate: all at trace level.
    let o = run(sb.cmd_for(&server).args(["-vvv", "get"]));
    let token = stdout(&o);
    for args in [
        &["-vvv", "get"][..],
        &["-vvv", "status"],
        &["-vvv", "inspect"],
        &["-vvv", "invalidate"],
    ] {
        let o = run(sb.cmd_for(&server).args(args));
        assert_code(&o, 0);
        assert_clean(&stderr(&o), Some(&token));
        if args[1] != "get" {
            assert!(
                !stdout(&o).contains(token.trim()),
                "{args:?} printed the token"
            );
        }
    }
}

#[test]
fn errors_hold_no_secret_even_when_the_server_echoes_it() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    // A server that echoes the request body (with the secret, for client_secret_post).
    server.canned(400, &format!(r#"{{"error":"invalid_request","error_description":"bad body: client_secret={SECRET}"}}"#));
    let o = run(sb.cmd_for(&server).env("RUST_LOG", "trace").args([
        "get",
        "--cache",
        "memory",
        "--auth-method",
        "client_secret_post",
    ]));
    assert_fails_with(&o, 3, "[REDACTED]");
    assert_clean(&stderr(&o), None);

    server.canned(200, &format!("<html>debug: {SECRET}</html>"));
    let o = run(sb
        .cmd_for(&server)
        .env("RUST_LOG", "trace")
        .args(["get", "--cache", "memory"]));
    assert_code(&o, 4);
    assert_clean(&stderr(&o), None);

    // During retries too.
    server.set_faults(Faults {
        outage_next: 1,
        ..Faults::default()
    });
    let o = run(sb
        .cmd_for(&server)
        .env("RUST_LOG", "trace")
        .env("FRESHTOKEN_RETRY_FOR", "10s")
        .args(["get", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_clean(&stderr(&o), Some(&stdout(&o)));
}

#[test]
fn the_cache_key_and_file_names_hold_no_secret_or_client_id() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    assert_code(&run(sb.cmd_for(&server).arg("get")), 0);
    for entry in std::fs::read_dir(sb.cache_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.contains(SECRET) && !name.contains(CLIENT_ID),
            "{name}"
        );
    }
}
