//! The attacks of docs/SECURITY.md, each run as the attacker would: a hostile repository in
//! the working directory, a hostile token endpoint, a hostile upstream. Every test here was
//! first seen failing against the code it guards.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use freshtoken_testkit::*;

const HOUR: Duration = Duration::from_secs(3600);

/// The environment docs/deploy/Jenkinsfile gives a pipeline step: the provider and region
/// from the Jenkinsfile, the client id and secret from the CI's credential store.
fn jenkins(sb: &Sandbox) -> Command {
    let mut c = sb.cmd();
    c.env("FRESHTOKEN_PROVIDER", "genesys")
        .env("FRESHTOKEN_REGION", "us-east-1")
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .env("FRESHTOKEN_RETRY_FOR", "0");
    c
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// A secret command that leaves `marker` behind when it runs.
fn marking_command(marker: &Path, prints: &str) -> String {
    format!(
        "{{ command = [\"sh\", \"-c\", \"touch {}; printf {prints}\"] }}",
        marker.display()
    )
}

/// An OpenID Connect issuer on loopback whose discovery document names `token_endpoint`:
/// an endpoint named in the environment by `FRESHTOKEN_ISSUER`. Serves until the test ends.
fn issuer_for(token_endpoint: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let body =
        serde_json::json!({ "issuer": issuer, "token_endpoint": token_endpoint }).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    issuer
}

// Item 1: a hostile repository.

#[test]
fn a_workspace_config_file_neither_redirects_the_credentials_nor_runs_its_commands() {
    let honest = Server::start(HOUR);
    let attacker = Server::start(HOUR);
    let sb = Sandbox::new();
    let marker = sb.path().join("pwned");
    let workspace = sb.path().join("freshtoken.toml");
    // A pull request adds this file to the repository the pipeline checks out.
    std::fs::write(
        &workspace,
        format!(
            "[profiles.default]\ntoken_url = \"{}\"\nclient_secret = {}\n",
            attacker.token_url(),
            marking_command(&marker, "stolen")
        ),
    )
    .unwrap();

    // Exactly the Jenkinsfile's environment: the endpoint stays Genesys Cloud's.
    let o = run(jenkins(&sb).args(["status", "--json"]));
    assert_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["token_url"], "https://login.mypurecloud.com/oauth/token");
    assert!(!stdout(&o).contains(&attacker.base_url()), "{}", stdout(&o));

    // The endpoint named in the environment by an issuer: the token comes from it.
    let issuer = issuer_for(&honest.token_url());
    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_ISSUER", &issuer)
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .env("FRESHTOKEN_RETRY_FOR", "0")
        .args(["get", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_eq!(honest.stats().tokens_issued, 1);

    // No secret in the environment: the file's command is not the fallback either.
    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_TOKEN_URL", honest.token_url())
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .args(["get", "--cache", "memory"]));
    assert_fails_with(&o, 2, "needs a client secret");

    // A file that switches the auth method so that its own key command is the one used.
    std::fs::write(
        &workspace,
        format!(
            "[profiles.default]\nauth_method = \"private_key_jwt\"\nprivate_key = {}\n",
            marking_command(&marker, "key")
        ),
    )
    .unwrap();
    let o = run(sb.cmd_for(&honest).args(["get", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_eq!(honest.stats().tokens_issued, 2);

    assert_eq!(
        attacker.stats().token_requests,
        0,
        "the credentials went to the workspace file's endpoint"
    );
    assert!(!marker.exists(), "the workspace file's command ran");
}

#[test]
fn a_config_file_is_read_only_when_named_or_the_users_own() {
    let sb = Sandbox::new();
    let profile = |client: &str| {
        format!(
            "[profiles.default]\ntoken_url = \"https://idp.example.com/token\"\nclient_id = \"{client}\"\n"
        )
    };
    let client_id = |o: &std::process::Output| {
        assert_code(o, 0);
        json(o)["client_id"].as_str().unwrap().to_owned()
    };
    std::fs::write(sb.path().join("freshtoken.toml"), profile("workspace")).unwrap();
    let status = || {
        let mut c = sb.cmd();
        c.args(["status", "--json"]);
        c
    };

    // Only in the working directory: not read.
    let o = run(&mut status());
    assert_fails_with(&o, 2, "no client id");
    // Named, it is read.
    let o = run(sb
        .cmd()
        .args(["--config", "./freshtoken.toml", "status", "--json"]));
    assert_eq!(client_id(&o), "workspace");
    let o = run(status().env("FRESHTOKEN_CONFIG", "freshtoken.toml"));
    assert_eq!(client_id(&o), "workspace");

    // The user's own file is read without being named: $XDG_CONFIG_HOME, else ~/.config.
    let xdg = sb.path().join("config/freshtoken");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("config.toml"), profile("xdg")).unwrap();
    assert_eq!(client_id(&run(&mut status())), "xdg");
    let home = sb.path().join(".config/freshtoken");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.toml"), profile("home")).unwrap();
    assert_eq!(
        client_id(&run(status().env_remove("XDG_CONFIG_HOME"))),
        "home"
    );

    // --no-config, or FRESHTOKEN_CONFIG set empty: none at all.
    let o = run(sb.cmd().args(["--no-config", "status", "--json"]));
    assert_fails_with(&o, 2, "no client id");
    let o = run(status().env("FRESHTOKEN_CONFIG", ""));
    assert_fails_with(&o, 2, "no client id");
    let o = run(sb.cmd().env("FRESHTOKEN_CONFIG", "freshtoken.toml").args([
        "--no-config",
        "status",
        "--json",
    ]));
    assert_fails_with(&o, 2, "no client id");
    let o = run(sb.cmd().args(["--no-config", "--profile", "x", "status"]));
    assert_fails_with(&o, 2, "--no-config");
}

#[test]
fn the_endpoint_is_one_unit_from_the_highest_source_that_names_one() {
    let attacker = Server::start(HOUR);
    let sb = Sandbox::new();
    let config = sb.path().join("ci.toml");
    let status = |file: &str| {
        std::fs::write(
            &config,
            format!("[profiles.default]\nclient_id = \"c\"\n{file}"),
        )
        .unwrap();
        let mut c = sb.cmd();
        c.args(["--config", config.to_str().unwrap(), "status", "--json"]);
        c
    };
    let attacker_url = format!("token_url = \"{}\"\n", attacker.token_url());

    // The environment names provider + region; the file's token URL does not replace it.
    let o = run(status(&attacker_url)
        .env("FRESHTOKEN_PROVIDER", "genesys")
        .env("FRESHTOKEN_REGION", "eu-west-1"));
    assert_code(&o, 0);
    assert_eq!(
        json(&o)["token_url"],
        "https://login.mypurecloud.ie/oauth/token"
    );
    // GENESYSCLOUD_REGION beside the provider is the environment's region too.
    let o = run(status(&attacker_url)
        .env("FRESHTOKEN_PROVIDER", "genesys")
        .env("GENESYSCLOUD_REGION", "us-east-1"));
    assert_eq!(
        json(&o)["token_url"],
        "https://login.mypurecloud.com/oauth/token"
    );

    // Flags name provider + region; the environment's token URL does not replace it.
    let o = run(status("")
        .env("FRESHTOKEN_TOKEN_URL", attacker.token_url())
        .args(["--provider", "genesys", "--region", "eu-west-1"]));
    assert_code(&o, 0);
    assert_eq!(
        json(&o)["token_url"],
        "https://login.mypurecloud.ie/oauth/token"
    );

    // The environment names a provider without a region: the file cannot supply one.
    let o = run(status("region = \"ap-southeast-2\"\n").env("FRESHTOKEN_PROVIDER", "genesys"));
    assert_fails_with(&o, 2, "needs a region");
    assert!(stderr(&o).contains("FRESHTOKEN_PROVIDER"), "{}", stderr(&o));

    // A token URL from the environment: the file's provider gives it no API base (which is
    // where `proxy` would send the token).
    let o = run(status("provider = \"genesys\"\nregion = \"eu-west-1\"\n")
        .env("FRESHTOKEN_TOKEN_URL", "https://idp.example.com/token"));
    let v = json(&o);
    assert_eq!(v["token_url"], "https://idp.example.com/token");
    assert_eq!(v["api_base"], serde_json::Value::Null);

    // A higher source may still choose the region of a provider named lower.
    let o =
        run(status("provider = \"genesys\"\nregion = \"eu-west-1\"\n")
            .args(["--region", "us-east-1"]));
    assert_eq!(
        json(&o)["token_url"],
        "https://login.mypurecloud.com/oauth/token"
    );
    // And within one source, the token URL wins over the provider, which gives the API base.
    let o = run(&mut status(&format!(
        "{attacker_url}provider = \"genesys\"\nregion = \"eu-west-1\"\n"
    )));
    let v = json(&o);
    assert_eq!(v["token_url"], attacker.token_url());
    assert_eq!(v["api_base"], "https://api.mypurecloud.ie/");
    assert_eq!(attacker.stats().token_requests, 0);
}

#[test]
fn a_secret_source_is_read_only_when_its_secret_is_used() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let marker = sb.path().join("ran");
    let config = sb.path().join("ci.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsocket = \"{}\"\n\n[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {}\nprivate_key = {}\nretry_for = \"0s\"\n",
            sb.path().join("run/agent.sock").display(),
            server.token_url(),
            marking_command(&marker, "wrong"),
            marking_command(&marker, "key"),
        ),
    )
    .unwrap();
    // The environment gives the secret: the file's command is not run.
    let o = run(sb.cmd().env("FRESHTOKEN_CLIENT_SECRET", SECRET).args([
        "--config",
        config.to_str().unwrap(),
        "get",
        "--cache",
        "memory",
    ]));
    assert_code(&o, 0);
    assert!(!marker.exists(), "the client secret command ran");

    // The agent reads the file alone; client_secret_basic needs no private key.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            &marking_command(&marker, "wrong"),
            "{ env = \"MY_SECRET\" }",
        ),
    )
    .unwrap();
    let o = run(sb.cmd().env("MY_SECRET", SECRET).args([
        "--config",
        config.to_str().unwrap(),
        "agent",
        "--check",
    ]));
    assert_code(&o, 0);
    assert!(!marker.exists(), "the agent ran the private key's command");
}

// Item 2: a hostile token endpoint hides code in a token.

/// Tokens that run `touch MARKER` when pasted unquoted (or badly quoted) into a shell. No
/// spaces: `${IFS}` stands in for them, as an attacker would write it.
fn hostile_tokens(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("x$(touch${{IFS}}{m})"),
        format!("x`touch${{IFS}}{m}`"),
        format!("x;touch${{IFS}}{m}"),
        format!("x'$(touch${{IFS}}{m})'"),
        format!("x\"$(touch${{IFS}}{m})\""),
        format!("x\ntouch {m}"),
    ]
}

/// `sh -c SCRIPT` with the environment `cmd_for` gives freshtoken, and `$FRESHTOKEN` naming
/// the binary: a pipeline step that evaluates what freshtoken prints.
fn shell(sb: &Sandbox, server: &Server, script: &str) -> Command {
    let template = sb.cmd_for(server);
    let mut c = Command::new("sh");
    c.env_clear()
        .current_dir(sb.path())
        .stdin(std::process::Stdio::null());
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.env("FRESHTOKEN", env!("CARGO_BIN_EXE_freshtoken"))
        .args(["-c", script]);
    c
}

/// A careful pipeline step: stops when freshtoken fails, evaluates what it printed.
const EVAL_ENV: &str = "set -e; out=$(\"$FRESHTOKEN\" get --format env \"$@\"); eval \"$out\"; printf %s \"$FRESHTOKEN_ACCESS_TOKEN\"";

#[test]
fn a_token_that_is_not_a_b64token_is_refused_and_never_reaches_a_shell() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let marker = sb.path().join("pwned");
    for token in hostile_tokens(&marker) {
        let body =
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        server.canned(200, &body.to_string());
        let o = run(sb
            .cmd_for(&server)
            .args(["get", "--format", "env", "--cache", "memory"]));
        assert_fails_with(&o, 4, "not an RFC 6750 bearer token");
        assert_eq!(stdout(&o), "", "{token:?}");
        assert!(
            !stderr(&o).contains("touch"),
            "the token is echoed: {}",
            stderr(&o)
        );
        let o = run(shell(&sb, &server, EVAL_ENV).args(["sh", "--cache", "memory"]));
        assert!(!o.status.success(), "{token:?}: {}", stdout(&o));
        assert!(!marker.exists(), "{token:?} ran code");
    }
    // A real token survives the round trip through the shell unchanged.
    server.set_faults(Default::default());
    let o = run(shell(&sb, &server, EVAL_ENV).args(["sh", "--cache", "file"]));
    assert_code(&o, 0);
    let raw = run(sb.cmd_for(&server).arg("get"));
    assert_eq!(stdout(&o), stdout(&raw).trim_end());
}

#[test]
fn a_planted_cache_record_is_checked_like_a_server_answer() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let marker = sb.path().join("pwned");
    let honest = stdout(&run(sb.cmd_for(&server).arg("get")));
    let record = std::fs::read_dir(sb.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a cache record");
    for token in hostile_tokens(&marker) {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        v["access_token"] = token.clone().into();
        std::fs::write(&record, v.to_string()).unwrap();
        let o = run(shell(&sb, &server, EVAL_ENV).arg("sh"));
        assert_code(&o, 0);
        assert!(!marker.exists(), "{token:?} ran code");
        let printed = stdout(&o);
        assert!(
            !printed.contains("touch"),
            "the planted token was served: {printed:?}"
        );
        assert!(
            stderr(&o).contains("not an RFC 6750 bearer token"),
            "{}",
            stderr(&o)
        );
        assert_ne!(
            printed,
            honest.trim_end(),
            "a new token replaces the planted one"
        );
    }
}

#[test]
fn an_agent_env_sink_never_holds_a_token_that_is_not_a_b64token() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let marker = sb.path().join("pwned");
    let sink = sb.path().join("token.env");
    let body = serde_json::json!({"access_token": format!("x$(touch${{IFS}}{})", marker.display()), "expires_in": 3600});
    server.canned(200, &body.to_string());
    let config = sb.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsocket = \"{}\"\n\n[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"MY_SECRET\" }}\nretry_for = \"0s\"\n\n[[profiles.default.sinks]]\npath = \"{}\"\nformat = \"env\"\n",
            sb.path().join("run/agent.sock").display(),
            server.token_url(),
            sink.display()
        ),
    )
    .unwrap();
    let log = sb.path().join("agent.log");
    let mut agent = sb
        .cmd()
        .env("MY_SECRET", SECRET)
        .args(["--config", config.to_str().unwrap(), "agent"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(20),
        || sink.exists() || log_text().contains("not an RFC 6750 bearer token"),
        || {
            format!(
                "the agent neither wrote the sink nor refused the token: {}",
                log_text()
            )
        },
    );
    if sink.exists() {
        // What a job does with an env sink.
        let _ = run(Command::new("sh")
            .arg("-c")
            .arg(format!(". {}", sink.display()))
            .current_dir(sb.path()));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!marker.exists(), "sourcing the sink ran the token's code");
    assert!(
        !sink.exists(),
        "the sink holds a token that is not a b64token"
    );
    assert!(
        !log_text().contains("touch"),
        "the token is in the log: {}",
        log_text()
    );
}

// Item 3: a hostile or broken token endpoint echoes credentials into its answers.

/// A secret whose form-urlencoded, JSON-escaped and Basic spellings all differ from it.
const TRICKY_SECRET: &str = "p@ss w/rd+=&:Zq8vK2pLmN4xR7tY";

/// Every way the secret could come back: as sent in a form (`+` or `%20` for the space), in
/// the Basic header, and JSON-escaped (`\/`) as some servers write it.
fn secret_spellings() -> Vec<String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = b64(&format!("{}:{}", form(CLIENT_ID), form(TRICKY_SECRET)));
    vec![
        TRICKY_SECRET.to_owned(),
        form(TRICKY_SECRET),
        form(TRICKY_SECRET).replace('+', "%20"),
        TRICKY_SECRET.replace('/', "\\/"),
        basic.replace('/', "\\/"),
        basic,
    ]
}

#[test]
fn bodies_echoed_in_errors_hold_no_token_and_no_spelling_of_the_secret() {
    let server = Server::start_with(freshtoken_devserver::Config {
        ttl: HOUR,
        clients: vec![(CLIENT_ID.to_owned(), TRICKY_SECRET.to_owned())],
        ..freshtoken_devserver::Config::default()
    });
    let sb = Sandbox::new();
    let [plain, form, form20, json_escaped, basic_escaped, basic] =
        <[String; 6]>::try_from(secret_spellings()).unwrap();
    let tokens = [
        "REAL-access-7f3a9c2e5b",
        "REAL-refresh-b81d44c0aa",
        "REAL-id-e2c19f7d33",
        "REAL-assertion-9d0b7e6a1c",
        "REAL-jwt-bearer-5a8f2c4e0d",
    ];
    let [at, rt, it, ca, assertion] = tokens;
    let cases: Vec<(u16, String, i32)> = vec![
        // A form-encoded success: not JSON, so echoed as an excerpt.
        (
            200,
            format!(
                "access_token={at}&token_type=bearer&expires_in=3600&refresh_token={rt}&id_token={it}"
            ),
            4,
        ),
        // JSON with a trailing comma: malformed, so only a textual redaction can help.
        (
            200,
            format!("{{\"access_token\":\"{at}\",\"id_token\": \"{it}\",\"expires_in\":3600,}}"),
            4,
        ),
        (200, format!("[{{\"access_token\":\"{at}\"}}]"), 4),
        // A 500 whose body holds a whole token response.
        (
            500,
            format!("{{\"access_token\":\"{at}\",\"refresh_token\":\"{rt}\",\"expires_in\":3600}}"),
            4,
        ),
        (
            502,
            format!(
                "<html><body><pre>access_token: {at}\nrefresh_token = '{rt}'</pre></body></html>"
            ),
            4,
        ),
        // OAuth errors that echo the request.
        (
            400,
            format!(
                "{{\"error\":\"invalid_request\",\"error_description\":\"bad body: grant_type=client_credentials&client_assertion={ca}&assertion={assertion}\"}}"
            ),
            3,
        ),
        (
            401,
            format!(
                "{{\"error\":\"invalid_client\",\"error_description\":\"Authorization: Basic {basic_escaped} is not valid\"}}"
            ),
            3,
        ),
        (
            400,
            format!(
                "{{\"error\":\"invalid_client\",\"error_description\":\"client_secret={form} / {form20} is wrong\"}}"
            ),
            3,
        ),
        (
            503,
            format!("<html>echo: Basic {basic} client_secret={form}</html>"),
            4,
        ),
        (
            500,
            format!("{{\"echo\":\"{json_escaped}\",\"raw\":\"{plain}\"}}"),
            4,
        ),
    ];
    let mut leaks = Vec::new();
    for (status, body, code) in cases {
        server.canned(status, &body);
        let o = run(sb
            .cmd()
            .env("FRESHTOKEN_TOKEN_URL", server.token_url())
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", TRICKY_SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "0")
            .env("RUST_LOG", "trace")
            .args(["get", "--cache", "memory"]));
        assert_code(&o, code);
        let err = stderr(&o);
        for leak in tokens
            .iter()
            .map(|t| t.to_string())
            .chain(secret_spellings())
        {
            if err.contains(&leak) || err.contains(&leak[leak.len() / 2..]) {
                leaks.push(format!("HTTP {status} {body:?}: {leak:?} leaked"));
            }
        }
        if !err.contains("[REDACTED]") {
            leaks.push(format!("HTTP {status} {body:?}: no [REDACTED] in {err}"));
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

// Item 4: lifetimes a token cannot be used for.

/// An unsigned JWT whose claims are `claims` (freshtoken reads `exp`, never verifies).
fn jwt(claims: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        b.encode(r#"{"alg":"RS256"}"#),
        b.encode(claims)
    )
}

#[test]
fn a_token_that_has_expired_or_lives_under_a_second_is_refused() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let refused = [
        (
            format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":-1}"#)),
            "JWT `exp`",
        ),
        (
            format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":-1e12}"#)),
            "JWT `exp`",
        ),
        (
            format!(
                r#"{{"access_token":"{}"}}"#,
                jwt(&format!(r#"{{"exp":{}}}"#, now as u64 - 60))
            ),
            "JWT `exp`",
        ),
        (
            format!(
                r#"{{"access_token":"{}"}}"#,
                jwt(&format!(r#"{{"exp":{}}}"#, now + 0.4))
            ),
            "JWT `exp`",
        ),
        (
            r#"{"access_token":"a","expires_in":0.5}"#.to_owned(),
            "`expires_in` is 0.5",
        ),
        (
            r#"{"access_token":"a","expires_in":"0.999"}"#.to_owned(),
            "`expires_in` is 0.999",
        ),
        (
            r#"{"access_token":"a","expires_in":0}"#.to_owned(),
            "`expires_in` is 0",
        ),
    ];
    for (body, why) in refused {
        server.canned(200, &body);
        let o = run(sb.cmd_for(&server).args(["get", "--cache", "memory"]));
        assert_fails_with(&o, 4, why);
        assert!(
            stderr(&o).contains("at least one second") || stderr(&o).contains("already past"),
            "{}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), "", "{body}");
    }
    // The boundary: one second is a lifetime.
    server.canned(200, r#"{"access_token":"a","expires_in":1}"#);
    let o = run(sb.cmd_for(&server).args(["get", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "a\n");
}

// Item 5: the token must not cross the network in clear on its way to the upstream.

/// Runs `cmd` to its end, which must come within 10 s: a proxy that starts serving instead
/// of refusing fails here rather than holding the test.
#[track_caller]
fn ends_soon(sb: &Sandbox, cmd: &mut Command) -> std::process::Output {
    let out = sb.path().join(format!("out-{}", rand::random::<u32>()));
    let err = sb.path().join(format!("err-{}", rand::random::<u32>()));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after 10 s (it started instead of refusing): {}{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

#[test]
fn a_plain_http_upstream_beyond_loopback_is_refused_like_such_a_token_url() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let refusal = "is plain http to a non-loopback host; use https (";
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_TOKEN_URL", "http://example.com/oauth/token")
        .args(["get", "--cache", "memory"]));
    assert_fails_with(
        &o,
        2,
        &format!("token URL http://example.com/oauth/token {refusal}"),
    );

    let o = ends_soon(
        &sb,
        sb.cmd_for(&server)
            .args(["proxy", "--upstream", "http://example.com"]),
    );
    assert_fails_with(&o, 2, &format!("upstream http://example.com/ {refusal}"));
    let o = ends_soon(
        &sb,
        sb.cmd_for(&server)
            .env("FRESHTOKEN_UPSTREAM", "http://10.1.2.3:8080/api")
            .arg("proxy"),
    );
    assert_fails_with(
        &o,
        2,
        &format!("upstream http://10.1.2.3:8080/api {refusal}"),
    );
    let o = ends_soon(
        &sb,
        sb.cmd_for(&server).args([
            "exec",
            "--proxy",
            "--upstream",
            "http://example.com",
            "--",
            "true",
        ]),
    );
    assert_fails_with(&o, 2, refusal);

    let config = sb.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsocket = \"{}\"\n\n[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"MY_SECRET\" }}\n\n[[proxy]]\nprofile = \"default\"\nlisten = \"127.0.0.1:0\"\nupstream = \"http://example.com\"\n",
            sb.path().join("run/agent.sock").display(),
            server.token_url()
        ),
    )
    .unwrap();
    let o = ends_soon(
        &sb,
        sb.cmd().env("MY_SECRET", SECRET).args([
            "--config",
            config.to_str().unwrap(),
            "agent",
            "--check",
        ]),
    );
    assert_fails_with(&o, 2, &format!("upstream http://example.com/ {refusal}"));

    // Loopback stays allowed, as for the token URL: the proxy starts.
    let mut child = sb
        .cmd_for(&server)
        .args(["proxy", "--upstream", &server.base_url()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(&mut child, "the proxy");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("freshtoken proxy on http://127.0.0.1:"),
        "{line}"
    );
    assert_eq!(server.stats().token_requests, 0, "nothing was asked for");
}
