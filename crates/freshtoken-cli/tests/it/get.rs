//! `freshtoken get` as a whole process, against a real dev-server.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, SystemTime};

use freshtoken::{ExpirySource, FileStore, Token, TokenRequest, TokenStore};
use freshtoken_devserver::Faults;
use freshtoken_testkit::*;
use secrecy::SecretString;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn prints_the_token_and_nothing_else() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    let token = stdout(&o);
    assert!(
        token.starts_with("dev-") && token.ends_with('\n') && token.lines().count() == 1,
        "{token:?}"
    );
    assert!(
        server.state().check(token.trim()).is_some(),
        "the printed token is one the server issued"
    );
    assert_eq!(stderr(&o), "", "nothing on stderr on success");
}

#[test]
fn formats() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let raw = stdout(&run(sb.cmd_for(&server).arg("get")))
        .trim()
        .to_owned();

    let o = run(sb.cmd_for(&server).args(["get", "--format", "json"]));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["access_token"], raw.as_str());
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{v}");

    let o = run(sb.cmd_for(&server).args(["get", "--format", "header"]));
    assert_eq!(stdout(&o), format!("Authorization: Bearer {raw}\n"));

    let o = run(sb.cmd_for(&server).args(["get", "--format", "env"]));
    assert!(
        stdout(&o).starts_with(&format!(
            "FRESHTOKEN_ACCESS_TOKEN='{raw}'\nFRESHTOKEN_EXPIRES_AT="
        )),
        "{}",
        stdout(&o)
    );

    assert_eq!(
        server.stats().token_requests,
        1,
        "all four came from the file cache after the first"
    );
}

#[test]
fn the_file_cache_serves_later_processes_and_status_shows_it() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let first = stdout(&run(sb.cmd_for(&server).arg("get")));
    let second = stdout(&run(sb.cmd_for(&server).arg("get")));
    assert_eq!(first, second);
    assert_eq!(server.stats().token_requests, 1);

    let o = run(sb.cmd_for(&server).arg("status"));
    assert_code(&o, 0);
    let status = stdout(&o);
    assert!(
        status.contains("token:       cached in file (fingerprint"),
        "{status}"
    );
    assert!(
        status.contains(&sb.cache_dir().display().to_string()),
        "{status}"
    );
    assert!(
        !status.contains(first.trim()),
        "status never prints the token: {status}"
    );

    let o = run(sb.cmd_for(&server).arg("invalidate"));
    assert_fails_with(&o, 0, "dropped the cached token");
    let third = stdout(&run(sb.cmd_for(&server).arg("get")));
    assert_ne!(third, first);
    assert_eq!(server.stats().token_requests, 2);
}

#[test]
fn memory_cache_fetches_every_time() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    for _ in 0..2 {
        assert_code(
            &run(sb.cmd_for(&server).args(["get", "--cache", "memory"])),
            0,
        );
    }
    assert_eq!(server.stats().token_requests, 2);
    assert!(!sb.cache_dir().exists());
}

#[test]
fn client_secret_post_and_secret_sources() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // client_secret_post, secret from a file.
    let secret_file = sb.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let o = run(sb
        .cmd_for(&server)
        .env_remove("FRESHTOKEN_CLIENT_SECRET")
        .args([
            "get",
            "--cache",
            "memory",
            "--auth-method",
            "client_secret_post",
            "--client-secret-file",
        ])
        .arg(&secret_file));
    assert_code(&o, 0);
    // Secret from stdin.
    let mut cmd = sb.cmd_for(&server);
    cmd.env_remove("FRESHTOKEN_CLIENT_SECRET").args([
        "get",
        "--cache",
        "memory",
        "--client-secret-stdin",
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SECRET.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
    assert_eq!(server.stats().tokens_issued, 2);
}

#[test]
fn config_file_profiles_with_env_file_and_command_secrets() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("secret"), SECRET).unwrap();
    let config = format!(
        r#"
[profiles.default]
token_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "MY_SECRET" }}
cache = "memory"

[profiles.fromfile]
token_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret = {{ file = "secret" }}
cache = "memory"

[profiles.fromcommand]
token_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret = {{ command = ["cat", "secret"] }}
auth_method = "client_secret_post"
cache = "memory"
"#,
        url = server.token_url()
    );
    sb.write_user_config(&config);
    assert_code(&run(sb.cmd().env("MY_SECRET", SECRET).arg("get")), 0);
    assert_code(&run(sb.cmd().args(["--profile", "fromfile", "get"])), 0);
    assert_code(&run(sb.cmd().args(["get", "--profile", "fromcommand"])), 0);
    assert_eq!(server.stats().tokens_issued, 3);

    // Flags beat the environment, which beats the file.
    let o = run(sb
        .cmd()
        .env("MY_SECRET", SECRET)
        .env("FRESHTOKEN_CLIENT_ID", "nobody")
        .arg("get"));
    assert_code(&o, 3);
    let o = run(sb
        .cmd()
        .env("MY_SECRET", SECRET)
        .env("FRESHTOKEN_CLIENT_ID", "nobody")
        .args(["get", "--client-id", CLIENT_ID]));
    assert_code(&o, 0);

    let o = run(sb.cmd().args(["--profile", "nope", "get"]));
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("no profile \"nope\"") && stderr(&o).contains("fromcommand"),
        "{}",
        stderr(&o)
    );
    let o = run(sb.cmd().arg("get"));
    assert_fails_with(&o, 2, "$MY_SECRET, which is not set");
}

#[test]
fn config_errors_name_file_and_line() {
    let sb = Sandbox::new();
    sb.write_user_config("[profiles.default]\nclient_id = \"x\"\ntokn_url = \"y\"\n");
    let o = run(sb.cmd().arg("get"));
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains("freshtoken/config.toml:3:1: unknown field `tokn_url`"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    sb.write_user_config("[profiles.default]\nclient_secret = \"hunter2-plain\"\n");
    let o = run(sb.cmd().arg("get"));
    assert_fails_with(&o, 2, "not a plain string");
    assert!(!stderr(&o).contains("hunter2-plain"), "{}", stderr(&o));
}

#[test]
fn exit_codes() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // 2: nothing configured.
    let o = run(sb.cmd().arg("get"));
    assert_fails_with(&o, 2, "no client id");
    let o = run(sb.cmd().env("FRESHTOKEN_CLIENT_ID", "x").arg("get"));
    assert_fails_with(&o, 2, "no token endpoint");
    // 2: an issuer that is not an https URL with a host, named at once instead of failing
    // later as an unreachable host (exit 4).
    for (issuer, said) in [
        ("httpss://idp.example", "not an https URL with a host"),
        (
            "http://idp.example/realms/ci",
            "plain http to a non-loopback host",
        ),
    ] {
        let o = run(sb
            .cmd()
            .env("FRESHTOKEN_CLIENT_ID", "x")
            .env("FRESHTOKEN_CLIENT_SECRET", "y")
            .args(["get", "--issuer", issuer]));
        assert_fails_with(&o, 2, said);
    }
    // 2: bad flag value.
    assert_code(
        &run(sb.cmd_for(&server).args(["get", "--format", "xml"])),
        2,
    );
    assert_code(
        &run(sb.cmd_for(&server).args(["get", "--min-ttl", "soon"])),
        2,
    );
    // 2: a min-ttl the server's tokens can never meet.
    let o = run(sb.cmd_for(&server).args(["get", "--min-ttl", "2h"]));
    assert_fails_with(&o, 2, "less than the 7200.0 s asked for");
    // 3: wrong secret, with the server's OAuth error; not retried.
    let before = server.stats().token_requests;
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_CLIENT_SECRET", "wrong")
        .env("FRESHTOKEN_RETRY_FOR", "30s")
        .args(["get", "--cache", "memory"]));
    assert_fails_with(&o, 3, "invalid_client (client authentication failed)");
    assert_eq!(
        server.stats().token_requests,
        before + 1,
        "invalid_client is not retried"
    );
    // 4: nothing listening.
    let o = run(sb.cmd_for(&server).args([
        "get",
        "--cache",
        "memory",
        "--token-url",
        "http://127.0.0.1:9/token",
    ]));
    assert_fails_with(&o, 4, "cannot connect to 127.0.0.1:9");
    // 0 and usage on --help.
    let o = run(sb.cmd().args(["get", "--help"]));
    assert_code(&o, 0);
    assert!(stdout(&o).contains("Exit codes:"), "{}", stdout(&o));
}

#[test]
fn malformed_answers_get_a_clear_error_and_exit_4() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let rows: &[(u16, &str, &str)] = &[
        (
            200,
            "<html><body><h1>Welcome to nginx</h1></body></html>",
            "HTML or XML: Welcome to nginx",
        ),
        (200, "", "the body is empty"),
        (
            200,
            r#"{"token_type":"bearer","expires_in":3600}"#,
            "no `access_token`",
        ),
        (
            200,
            r#"{"access_token":"x","token_type":"bearer","expires_in":0}"#,
            "`expires_in` is 0",
        ),
        (
            200,
            r#"{"access_token":"x","token_type":"bearer","expires_in":-60}"#,
            "`expires_in` is -60",
        ),
        (
            200,
            r#"{"access_token":"x","token_type":"mac","expires_in":60}"#,
            "only Bearer",
        ),
        (200, "{\"access_token\":", "not JSON"),
        (
            502,
            "<html><title>502 Bad Gateway</title></html>",
            "HTTP 502: 502 Bad Gateway",
        ),
    ];
    for (status, body, want) in rows {
        server.canned(*status, body);
        let o = run(sb.cmd_for(&server).args(["get", "--cache", "memory"]));
        assert_code(&o, 4);
        let e = stderr(&o);
        assert!(e.contains(want), "{body:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

#[test]
fn oversized_endless_and_slow_answers_are_cut_off() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // 2 MiB body: over the 1 MiB cap.
    server.set_faults(Faults {
        canned: Some(freshtoken_devserver::Canned {
            body: "x".repeat(1024),
            repeat: Some(2048),
            ..Default::default()
        }),
        ..Faults::default()
    });
    let o = run(sb.cmd_for(&server).args(["get", "--cache", "memory"]));
    assert_fails_with(&o, 4, "larger than 1048576 bytes");
    // A body that never ends: the timeout ends it.
    server.set_faults(Faults {
        canned: Some(freshtoken_devserver::Canned {
            body: "{".into(),
            endless: true,
            ..Default::default()
        }),
        ..Faults::default()
    });
    let o = run(sb
        .cmd_for(&server)
        .args(["get", "--cache", "memory", "--timeout", "1s"]));
    assert_code(&o, 4);
    // Reading stops at the size cap or the timeout, whichever comes first.
    assert!(
        stderr(&o).contains("within 1 s") || stderr(&o).contains("larger than"),
        "{}",
        stderr(&o)
    );
    // A slow server.
    server.set_faults(Faults {
        delay_ms: 3000,
        ..Faults::default()
    });
    let o = run(sb
        .cmd_for(&server)
        .args(["get", "--cache", "memory", "--timeout", "500ms"]));
    assert_fails_with(&o, 4, "no answer from 127.0.0.1");
}

#[test]
fn retries_outages_and_throttling_then_succeeds() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    server.set_faults(Faults {
        outage_next: 2,
        ..Faults::default()
    });
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_RETRY_FOR", "20s")
        .args(["get", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_eq!(server.stats().token_requests, 3, "two 503s, then a token");
    assert!(stderr(&o).contains("retrying"), "{}", stderr(&o));

    // Genesys Cloud's throttle: 400 invalid_request "Rate limit exceeded", Retry-After 1.
    server.set_faults(Faults {
        throttle: Some(1),
        ..Faults::default()
    });
    let before = server.stats().token_requests;
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_RETRY_FOR", "2500ms")
        .args(["get", "--cache", "memory"]));
    assert_fails_with(&o, 4, "Rate limit exceeded");
    let attempts = server.stats().token_requests - before;
    assert!(
        (2..=3).contains(&attempts),
        "Retry-After of 1 s within 2.5 s allows 2 or 3 attempts, saw {attempts}"
    );

    // 429 with Retry-After longer than the deadline: no pointless waiting.
    server.set_faults(Faults {
        rate_limit: Some(60),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_RETRY_FOR", "5s")
        .args(["get", "--cache", "memory"]));
    assert_fails_with(&o, 4, "HTTP 429");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up at once rather than sleeping past the deadline"
    );
}

/// Puts a token in the sandbox's file cache as if fetched `age` ago with `lifetime`.
fn seed_cache(sb: &Sandbox, server: &Server, value: &str, age: Duration, lifetime: Duration) {
    let request = TokenRequest::new(server.token_url().parse().unwrap(), CLIENT_ID, None);
    let received = SystemTime::now() - age;
    let token = Token::new(
        SecretString::from(value.to_owned()),
        received,
        received + lifetime,
        ExpirySource::ExpiresIn,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(FileStore::new(sb.cache_dir()).save(&request.cache_key(), &token))
        .unwrap();
}

#[test]
fn a_stale_cached_token_is_refreshed_now_and_used_as_fallback_during_an_outage() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // 50 of 60 minutes gone: stale.
    seed_cache(
        &sb,
        &server,
        "cached-stale-token",
        Duration::from_secs(3000),
        HOUR,
    );
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    assert_ne!(
        stdout(&o).trim(),
        "cached-stale-token",
        "a stale token is refreshed by one-shot commands"
    );
    assert_eq!(server.stats().token_requests, 1);

    seed_cache(
        &sb,
        &server,
        "cached-stale-token",
        Duration::from_secs(3000),
        HOUR,
    );
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        "cached-stale-token",
        "falls back to the still-valid token"
    );
    assert!(
        stderr(&o).contains("using the current one, valid for"),
        "{}",
        stderr(&o)
    );

    // ... unless the caller needs more than it has left (10 minutes).
    let o = run(sb.cmd_for(&server).args(["get", "--min-ttl", "15m"]));
    assert_code(&o, 4);
    assert_eq!(stdout(&o), "");
}

#[test]
fn an_expired_cached_token_is_never_printed() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    seed_cache(
        &sb,
        &server,
        "cached-expired-token",
        Duration::from_secs(3700),
        HOUR,
    );
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 4);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("HTTP 503"), "{}", stderr(&o));
}

#[test]
fn a_corrupt_cache_file_is_replaced_with_a_warning() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    assert_code(&run(sb.cmd_for(&server).arg("get")), 0);
    let file = std::fs::read_dir(sb.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    std::fs::write(&file, b"{\"v\":1,\"key\":").unwrap();
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("ignoring cache file") && stderr(&o).contains("it will be replaced"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.stats().token_requests, 2);
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_eq!(stderr(&o), "", "the file was replaced by a good one");
    assert_eq!(server.stats().token_requests, 2);
}

#[test]
fn fifty_processes_on_a_cold_cache_make_one_request() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let children: Vec<_> = (0..50)
        .map(|_| {
            sb.cmd_for(&server)
                .arg("get")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert_code(&o, 0);
        tokens.insert(stdout(&o));
    }
    assert_eq!(tokens.len(), 1, "all 50 printed the same token");
    assert_eq!(
        server.stats().token_requests,
        1,
        "50 processes, one token request"
    );
}
