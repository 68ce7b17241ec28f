//! `inspect`, `dev-server` and `demo` as whole processes.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use freshtoken_testkit::*;

#[test]
fn inspect_reads_jwts_and_says_when_a_token_is_opaque() {
    let sb = Sandbox::new();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        b.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        b.encode(format!(r#"{{"sub":"pipeline","exp":{exp}}}"#))
    );

    let o = run(sb.cmd().args(["inspect", &jwt]));
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("\"kid\": \"k1\"") && out.contains("\"sub\": \"pipeline\""),
        "{out}"
    );
    assert!(
        out.contains("time left   9m") || out.contains("time left   10m"),
        "{out}"
    );

    let mut cmd = sb.cmd();
    cmd.args(["inspect", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{jwt}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kind"], "jwt");
    assert_eq!(v["claims"]["exp"], exp);

    let o = run(sb.cmd().args(["inspect", "opaque-genesys-style-token"]));
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("opaque token: 26 characters"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("opaque-genesys-style-token"));

    let o = run(sb.cmd().args(["inspect", ""]));
    assert_code(&o, 2);
}

#[test]
fn dev_server_command_serves_tokens_and_stats() {
    let sb = Sandbox::new();
    let mut child = sb
        .cmd()
        .args([
            "dev-server",
            "--ttl",
            "2s",
            "--client",
            &format!("{CLIENT_ID}:{SECRET}"),
            "--fault",
            "outage-next=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = announced_url(&mut child);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_TOKEN_URL", format!("{base}/oauth/token"))
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .args(["get", "--format", "json", "--cache", "memory"]));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["expires_in"].as_u64().unwrap() <= 2, "{v}");

    let stats: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/__stats"))).unwrap();
    assert_eq!(
        stats["token_requests"], 2,
        "one 503 (the fault), then one token: {stats}"
    );

    // Fault switches at run time: an outage on, then off; unknown switches are refused.
    let get = || {
        run(sb
            .cmd()
            .env("FRESHTOKEN_TOKEN_URL", format!("{base}/oauth/token"))
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "0")
            .args(["get", "--cache", "memory"]))
    };
    assert_eq!(
        http(
            &format!("{base}/__faults"),
            "POST",
            r#"{"outage":true}"#,
            None
        )
        .0,
        200
    );
    assert_code(&get(), 4);
    assert!(http_get(&format!("{base}/__faults")).contains("\"outage\":true"));
    assert_eq!(
        http(
            &format!("{base}/__faults"),
            "POST",
            r#"{"outage":false}"#,
            None
        )
        .0,
        200
    );
    let o = get();
    assert_code(&o, 0);
    let (status, body) = http(
        &format!("{base}/__faults"),
        "POST",
        r#"{"meteor":true}"#,
        None,
    );
    assert_eq!(status, 400, "{body}");

    // The protected API: 401 without a valid token, an echo with one.
    let token = stdout(&o).trim().to_owned();
    assert_eq!(
        http(&format!("{base}/api/v2/users/me"), "GET", "", None).0,
        401
    );
    assert_eq!(
        http(
            &format!("{base}/api/v2/users/me"),
            "GET",
            "",
            Some("dev-forged")
        )
        .0,
        401
    );
    let (status, echo) = http(
        &format!("{base}/api/v2/users/me"),
        "PUT",
        "{}",
        Some(&token),
    );
    assert_eq!(status, 200, "{echo}");
    assert!(
        echo.contains("\"path\":\"/api/v2/users/me\"") && echo.contains(CLIENT_ID),
        "{echo}"
    );

    terminate(&child);
    let status = wait(&mut child, "the dev-server after SIGTERM");
    assert!(status.success(), "SIGTERM stops it cleanly: {status:?}");

    let o = run(sb.cmd().args(["dev-server", "--listen", "0.0.0.0:0"]));
    assert_fails_with(&o, 2, "only listens on loopback");
}

#[test]
fn demo_crosses_several_expiries_without_a_401() {
    let sb = Sandbox::new();
    let o = run(sb.cmd().args([
        "demo",
        "--ttl",
        "1s",
        "--duration",
        "4s",
        "--calls",
        "200",
        "--workers",
        "3",
    ]));
    assert_code(&o, 0);
    let out = stdout(&o);
    let rotations = out.lines().filter(|l| l.contains("rotated to")).count();
    assert!(
        rotations >= 3,
        "a 1 s token over 4 s rotates at least 3 times:\n{out}"
    );
    assert!(
        out.contains("200 API calls") && out.contains(": 0 answered 401 to the job"),
        "{out}"
    );
    assert!(out.contains("the dev-server revokes every token"), "{out}");
    let replayed: u64 = out
        .split(" replayed by the proxy")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        replayed >= 1,
        "the revocation was absorbed by replays:\n{out}"
    );
    // Side by side: the same job the naive way (token fetched once) is refused after the
    // first expiry; through freshtoken, never.
    let row = |name: &str| -> Vec<u64> {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} row:\n{out}"));
        line[name.len()..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert!(out.contains("the naive way (token fetched once)"), "{out}");
    assert_eq!(row("API calls"), [200, 200], "{out}");
    let unauthorized = row("answered 401");
    assert_eq!(unauthorized[0], 0, "{out}");
    assert!(
        unauthorized[1] >= 100,
        "a 1 s token over 4 s fails most of the naive job's calls:\n{out}"
    );
    the_demos_closing_commands_work(&sb, &out);
}

/// Runs the commands the demo ends with, as a user would paste them: the dev-server it names
/// (on a free port in place of 8080), then each command with bash, from a clean environment.
fn the_demos_closing_commands_work(sb: &Sandbox, out: &str) {
    let tail = out
        .split("in another terminal: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no closing commands:\n{out}"));
    let mut lines = tail.lines();
    let server_cmd = lines.next().unwrap();
    let steps: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(steps.len(), 4, "an export and three commands:\n{tail}");
    let args: Vec<&str> = server_cmd
        .strip_prefix("freshtoken ")
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .leak()
        .split_whitespace()
        .collect();
    let mut server = sb.cmd().args(&args).stdout(Stdio::piped()).spawn().unwrap();
    let first = first_line(&mut server, "the demo's dev-server");
    let addr = first.trim().rsplit("http://").next().unwrap().to_owned();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_freshtoken"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut script = String::from("set -eu\n");
    for (i, step) in steps.iter().enumerate() {
        script += &step.replace("127.0.0.1:8080", &addr);
        // Every command's output on a line of its own, so that the test can tell them apart.
        script += &format!("\necho; echo '--- {i}'\n");
    }
    let o = run(std::process::Command::new("bash")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", path)
        .env("HOME", sb.path())
        .env("XDG_CACHE_HOME", sb.path().join("cache-closing"))
        .current_dir(sb.path())
        .stdin(Stdio::null()));
    terminate(&server);
    let _ = wait(&mut server, "the demo's dev-server");
    assert_code(&o, 0);
    let got = stdout(&o);
    let parts: Vec<&str> = got.split("--- ").collect();
    assert!(parts[1].trim().len() > 20, "get printed a token:\n{got}");
    for n in [2, 3] {
        assert!(
            parts[n].contains("\"path\":\"/api/items/"),
            "the call went through:\n{got}"
        );
    }
}

#[test]
fn dev_server_accepts_private_key_jwt_from_the_binary() {
    let sb = Sandbox::new();
    let key = sb.path().join("key.pem");
    let public = sb.path().join("key.pub.pem");
    let openssl = |args: &[&std::ffi::OsStr]| {
        let s = std::process::Command::new("openssl")
            .args(args)
            .status()
            .expect("openssl is needed to generate test keys: apt-get install openssl");
        assert!(s.success());
    };
    openssl(&[
        "genpkey".as_ref(),
        "-quiet".as_ref(),
        "-algorithm".as_ref(),
        "EC".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-384".as_ref(),
        "-out".as_ref(),
        key.as_os_str(),
    ]);
    openssl(&[
        "pkey".as_ref(),
        "-pubout".as_ref(),
        "-in".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    let mut child = sb
        .cmd()
        .args(["dev-server", "--client-key"])
        .arg(format!("pipeline:{}", public.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base = announced_url(&mut child);
    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_TOKEN_URL", format!("{base}/oauth/token"))
        .env("FRESHTOKEN_CLIENT_ID", "pipeline")
        .env(
            "FRESHTOKEN_PRIVATE_KEY",
            std::fs::read_to_string(&key).unwrap(),
        )
        .args([
            "get",
            "--cache",
            "memory",
            "--auth-method",
            "private_key_jwt",
            "--key-id",
            "k1",
        ]));
    assert_code(&o, 0);
    let (status, _) = http(
        &format!("{base}/api/ping"),
        "GET",
        "",
        Some(stdout(&o).trim()),
    );
    assert_eq!(status, 200);
    terminate(&child);
    assert!(wait(&mut child, "the dev-server after SIGTERM").success());
}

/// The base URL a dev-server process prints on its first line.
fn announced_url(child: &mut std::process::Child) -> String {
    let first = first_line(child, "the dev-server");
    first.trim().rsplit(' ').next().unwrap().to_owned()
}

/// `freshtoken status | head -1`: a reader that goes away ends the command quietly, not as
/// "internal error" with exit 5 (println! panicked on the closed pipe).
#[test]
fn a_reader_that_goes_away_ends_status_and_inspect_quietly() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    assert_code(&run(sb.cmd_for(&server).arg("get")), 0);
    for args in [&["status"][..], &["status", "--json"], &["inspect"]] {
        let mut child = sb
            .cmd_for(&server)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = wait(&mut child, "freshtoken");
        assert!(!err.contains("internal error"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
}
