//! `login` and `logout` as whole processes against the dev-server, driven by a scripted user
//! agent: the authorization URL is read from `login --format json`, fetched with curl (the
//! dev-server auto-approves, or denies with `deny_consent`), and the redirect delivered to
//! the login's loopback listener.
// Real elapsed-time bounds ("did not hang"): the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use freshtoken::ManualClock;
use freshtoken_devserver::{Config, Faults};
use freshtoken_testkit::*;

/// A dev-server on a clock the test moves (refresh-token expiry).
fn server(clock: &ManualClock) -> Server {
    Server::start_with(Config {
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        clock: Arc::new(clock.clone()),
        ..Config::default()
    })
}

/// Profile `p`: a code-flow login at the dev-server, found by discovery.
fn profile(sb: &Sandbox, server: &Server) {
    sb.write_user_config(&format!(
        "[profiles.p]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"SECRET\" }}\ngrant = \"authorization_code\"\nretry_for = \"0s\"\n",
        server.base_url()
    ));
}

/// A dev-server on a manual clock and a sandbox whose config has profile `p` for it, not
/// logged in.
fn set_up() -> (ManualClock, Server, Sandbox) {
    let clock = ManualClock::starting_now();
    let server = server(&clock);
    let sb = Sandbox::new();
    profile(&sb, &server);
    (clock, server, sb)
}

fn cmd(sb: &Sandbox) -> std::process::Command {
    let mut c = sb.cmd();
    c.env("SECRET", SECRET);
    c
}

/// A running `login --format json`, its stdout lines as they come.
struct Login {
    child: Child,
    lines: Receiver<String>,
}

impl Login {
    fn start(sb: &Sandbox) -> Self {
        Self::start_with(sb, &[])
    }

    fn start_with(sb: &Sandbox, extra: &[&str]) -> Self {
        let mut child = cmd(sb)
            .args([
                "login",
                "--profile",
                "p",
                "--no-browser",
                "--format",
                "json",
            ])
            .args(extra)
            .args(if extra.contains(&"--wait") {
                &[][..]
            } else {
                &["--wait", "20s"][..]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("login starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    fn step(&self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("login prints its step");
        serde_json::from_str(&line).expect("one JSON object per line")
    }

    fn authorization_url(&self) -> url::Url {
        let step = self.step();
        assert_eq!(step["step"], "authorize", "{step}");
        step["authorization_url"]
            .as_str()
            .expect("a URL")
            .parse()
            .expect("a URL")
    }

    /// Waits for the exit: code, stderr.
    fn finish(mut self) -> (i32, String) {
        let status = wait(&mut self.child, "login");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status.code().unwrap_or(-1), err)
    }
}

/// Where the dev-server's authorize endpoint redirects `url` to (not followed).
fn redirect_of(url: &str) -> url::Url {
    let (status, headers) = curl(&["-o", "/dev/null", "-D", "-", url]);
    assert_eq!(status, 302, "{headers}");
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("a Location header");
    location.trim().parse().expect("a Location")
}

fn with_param(url: &url::Url, name: &str, value: &str) -> url::Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

fn param(url: &url::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Logs profile `p` in through the browser dance; the finished login's last step.
fn log_in(sb: &Sandbox) -> serde_json::Value {
    let login = Login::start(sb);
    let url = login.authorization_url();
    let (status, page) = curl(&["-L", url.as_str()]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Logged in"), "{page}");
    let done = login.step();
    let (code, err) = login.finish();
    assert_eq!(code, 0, "{err}");
    done
}

/// The refresh token of the sandbox's one stored login.
fn stored_refresh_token(sb: &Sandbox) -> String {
    let state = sb.path().join(".local/state/freshtoken");
    let file = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "login"))
        .expect("a stored login");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["refresh_token"].as_str().unwrap().to_owned()
}

#[test]
fn the_code_flow_logs_in_and_get_uses_the_stored_refresh_token() {
    let (_clock, server, sb) = set_up();

    let login = Login::start(&sb);
    let url = login.authorization_url();
    assert_eq!(param(&url, "code_challenge_method"), "S256");
    assert!(param(&url, "code_challenge").len() >= 43);
    assert!(param(&url, "state").len() >= 22);
    let redirect = param(&url, "redirect_uri");
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let (status, page) = curl(&["-L", url.as_str()]);
    assert_eq!((status, page.contains("Logged in")), (200, true), "{page}");
    let done = login.step();
    assert_eq!(done["logged_in"], true, "{done}");
    let (code, err) = login.finish();
    assert_eq!(code, 0, "{err}");

    let state = sb.path().join(".local/state/freshtoken");
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&state), 0o700);
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "login"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);

    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_code(&o, 0);
    let token = stdout(&o).trim().to_owned();
    assert!(
        server.state().check(&token).is_some(),
        "a live token: {token}"
    );
    // The access-token cache never holds the refresh token.
    let rt = stored_refresh_token(&sb);
    for entry in std::fs::read_dir(sb.cache_dir()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&rt), "{text}");
    }
    let stats = server.stats();
    assert_eq!(
        (stats.refresh_grants, stats.refresh_reuses),
        (1, 0),
        "{stats:?}"
    );
}

#[test]
fn a_redirect_with_another_state_is_refused() {
    let (_clock, server, sb) = set_up();
    let login = Login::start(&sb);
    let back = redirect_of(login.authorization_url().as_str());
    let forged = with_param(&back, "state", "forged");
    let (status, _) = curl(&[forged.as_str()]);
    assert_eq!(status, 400);
    let (code, err) = login.finish();
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("another state"), "{err}");
    assert_eq!(
        server.stats().tokens_issued,
        0,
        "the code was never exchanged"
    );
}

#[test]
fn denied_consent_ends_the_login_with_the_servers_reason() {
    let clock = ManualClock::starting_now();
    let server = server(&clock);
    server.set_faults(Faults {
        deny_consent: true,
        ..Faults::default()
    });
    let sb = Sandbox::new();
    profile(&sb, &server);
    let login = Login::start(&sb);
    let (status, _) = curl(&["-L", login.authorization_url().as_str()]);
    assert_eq!(status, 400);
    let (code, err) = login.finish();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the login was refused: access_denied"),
        "{err}"
    );
}

/// A code obtained with another PKCE challenge (an injected code) is delivered to the
/// listener: the exchange with the login's own verifier fails.
#[test]
fn a_code_bound_to_another_verifier_is_refused_at_the_exchange() {
    let (_clock, _server, sb) = set_up();
    let login = Login::start(&sb);
    let url = login.authorization_url();
    let other = freshtoken::login::Pkce::new();
    let injected = with_param(&url, "code_challenge", &other.challenge);
    let back = redirect_of(injected.as_str());
    let (status, _) = curl(&[back.as_str()]);
    assert_eq!(status, 200, "the redirect itself is well-formed");
    let (code, err) = login.finish();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("invalid_grant") && err.contains("PKCE"),
        "{err}"
    );
}

#[test]
fn an_expired_or_missing_login_exits_6_with_how_to_log_in() {
    let (clock, server, sb) = set_up();

    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_fails_with(&o, 6, "login needed: no login is stored");
    assert!(
        stderr(&o).contains("run `freshtoken login --profile p`"),
        "{}",
        stderr(&o)
    );

    server.set_faults(Faults {
        refresh_ttl_s: Some(3600),
        ..Faults::default()
    });
    log_in(&sb);
    clock.advance(Duration::from_secs(3600));
    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_fails_with(&o, 6, "login needed: the stored refresh token was refused");
    assert!(
        stderr(&o).contains("run `freshtoken login --profile p`"),
        "{}",
        stderr(&o)
    );
}

/// `n` `get` processes of profile `p` started at once with no shared access-token cache (so
/// each one refreshes), and what each printed.
fn concurrent_gets(sb: &Sandbox, n: usize) -> Vec<std::process::Output> {
    let children: Vec<Child> = (0..n)
        .map(|_| {
            cmd(sb)
                .args(["get", "--profile", "p", "--cache", "memory"])
                .args(["--retry-for", "20s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("get starts")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("get ends"))
        .collect()
}

/// Fifty `get` processes at once, with no shared access-token cache (so each one refreshes):
/// each presents the refresh token the one before it stored, and the dev-server's reuse
/// detection never fires.
#[test]
fn fifty_concurrent_gets_rotate_the_refresh_token_without_a_reuse() {
    let (_clock, server, sb) = set_up();
    log_in(&sb);
    let started = Instant::now();
    for o in concurrent_gets(&sb, 50) {
        assert_code(&o, 0);
    }
    let stats = server.stats();
    assert_eq!(stats.refresh_reuses, 0, "{stats:?}");
    assert_eq!(stats.refresh_grants, 50, "{stats:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let o = run(cmd(&sb).args(["get", "--profile", "p", "--cache", "memory"]));
    assert_code(&o, 0);
}

#[test]
fn logout_revokes_the_refresh_token_and_deletes_the_login() {
    let (_clock, server, sb) = set_up();
    log_in(&sb);
    let rt = stored_refresh_token(&sb);
    let o = run(cmd(&sb).args(["logout", "--profile", "p"]));
    assert_code(&o, 0);
    assert_eq!(server.stats().revocations, 1);
    let (status, body) = curl(&[
        "-u",
        &format!("{CLIENT_ID}:{SECRET}"),
        "-d",
        &format!("grant_type=refresh_token&refresh_token={rt}"),
        &server.token_url(),
    ]);
    assert_eq!(status, 400, "the revoked refresh token is refused: {body}");
    assert!(body.contains("invalid_grant"), "{body}");
    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_fails_with(&o, 6, "no login is stored");
}

/// A dev-server whose device flow has the switches `faults`.
fn device_server(clock: &ManualClock, faults: Faults) -> Server {
    let server = server(clock);
    server.set_faults(faults);
    server
}

/// The device step of `login --device`: the code and the URLs, as the user would see them.
fn device_step(login: &Login) -> serde_json::Value {
    let step = login.step();
    assert_eq!(step["step"], "device", "{step}");
    for field in ["verification_uri", "verification_uri_complete", "user_code"] {
        assert!(
            step[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {step}"
        );
    }
    assert!(step["expires_in"].as_u64().is_some_and(|n| n > 0), "{step}");
    step
}

#[test]
fn the_device_flow_logs_in_once_the_user_approves() {
    let clock = ManualClock::starting_now();
    let server = device_server(
        &clock,
        Faults {
            device_interval_s: Some(0),
            ..Faults::default()
        },
    );
    let sb = Sandbox::new();
    profile(&sb, &server);
    let login = Login::start_with(&sb, &["--device"]);
    let step = device_step(&login);
    // Polls see authorization_pending until the user answers.
    wait_until(
        Duration::from_secs(10),
        || server.stats().token_errors >= 2,
        || format!("no pending polls: {:?}", server.stats()),
    );
    let (status, page) = curl(&[step["verification_uri_complete"].as_str().unwrap()]);
    assert_eq!(status, 200, "{page}");
    let done = login.step();
    assert_eq!(done["logged_in"], true, "{done}");
    let (code, err) = login.finish();
    assert_eq!(code, 0, "{err}");
    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_code(&o, 0);
    assert!(server.state().check(stdout(&o).trim()).is_some());
}

#[test]
fn slow_down_adds_five_seconds_to_the_polling_interval() {
    let clock = ManualClock::starting_now();
    let server = device_server(
        &clock,
        Faults {
            device_interval_s: Some(0),
            device_slow_down: 1,
            ..Faults::default()
        },
    );
    let sb = Sandbox::new();
    profile(&sb, &server);
    let login = Login::start_with(&sb, &["--device"]);
    let step = device_step(&login);
    let (status, _) = curl(&[step["verification_uri_complete"].as_str().unwrap()]);
    assert_eq!(status, 200);
    let asked = Instant::now();
    let done = login.step();
    let waited = asked.elapsed();
    assert_eq!(done["logged_in"], true, "{done}");
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(15),
        "the poll after slow_down came {waited:?} later"
    );
    let stats = server.stats();
    assert_eq!(
        stats.token_errors, 1,
        "one slow_down, then the token: {stats:?}"
    );
    assert_eq!(login.finish().0, 0);
}

#[test]
fn an_expired_or_denied_device_code_ends_the_login_with_a_clear_message() {
    let clock = ManualClock::starting_now();
    let server = device_server(
        &clock,
        Faults {
            device_interval_s: Some(0),
            device_expires_in_s: Some(600),
            ..Faults::default()
        },
    );
    let sb = Sandbox::new();
    profile(&sb, &server);
    let login = Login::start_with(&sb, &["--device"]);
    device_step(&login);
    clock.advance(Duration::from_secs(600));
    let (code, err) = login.finish();
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the device code expired"), "{err}");

    server.set_faults(Faults {
        device_interval_s: Some(0),
        deny_consent: true,
        ..Faults::default()
    });
    let login = Login::start_with(&sb, &["--device"]);
    let step = device_step(&login);
    curl(&[step["verification_uri_complete"].as_str().unwrap()]);
    let (code, err) = login.finish();
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("access_denied"), "{err}");
}

#[test]
fn a_server_without_a_device_endpoint_suggests_the_code_flow() {
    let clock = ManualClock::starting_now();
    let server = server(&clock);
    let sb = Sandbox::new();
    sb.write_user_config(&format!(
        "[profiles.p]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"SECRET\" }}\ngrant = \"device_code\"\n",
        server.token_url()
    ));
    let o = run(cmd(&sb).args(["login", "--profile", "p", "--format", "json"]));
    assert_fails_with(&o, 2, "no device authorization endpoint");
    assert!(stderr(&o).contains("authorization_code"), "{}", stderr(&o));
}

/// What oidc-provider's introspection endpoint says of `token`.
fn introspect(p: &OidcProvider, token: &str) -> serde_json::Value {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (status, body) = curl(&[
        "-u",
        &format!("{}:{}", enc("introspector"), enc(&p.secret("introspector"))),
        "-d",
        &format!("token={}", enc(token)),
        p.introspection_endpoint(),
    ]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("introspection answers JSON")
}

/// Against oidc-provider: the code flow with PKCE through its real authorization endpoint
/// and interaction redirects (a cookie-keeping user agent), twenty concurrent refreshes of a
/// rotating refresh token (a reuse would revoke the grant), and `logout` revoking it, as its
/// introspection confirms.
#[test]
fn oidc_provider_code_flow_rotation_and_logout() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();
    let redirect = p.info["clients"]["login"]["redirect_uri"]
        .as_str()
        .expect("the harness names the login redirect");
    sb.write_user_config(&format!(
        "[profiles.p]\nissuer = \"{}\"\nclient_id = \"login\"\nclient_secret = {{ file = \"{}\" }}\ngrant = \"authorization_code\"\nscope = \"openid offline_access api:read\"\nredirect_uri = \"{redirect}\"\nretry_for = \"0s\"\n",
        p.issuer(),
        p.file("login", "secret_file").display()
    ));
    let login = Login::start(&sb);
    let url = login.authorization_url();
    assert!(!param(&url, "nonce").is_empty(), "openid asks for a nonce");
    let jar = sb.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let (status, page) = curl(&["-L", "-c", jar, "-b", jar, url.as_str()]);
    assert_eq!(status, 200, "{page}");
    let done = login.step();
    assert_eq!(done["logged_in"], true, "{done}");
    let (code, err) = login.finish();
    assert_eq!(code, 0, "{err}");

    let first = stored_refresh_token(&sb);
    for o in concurrent_gets(&sb, 20) {
        assert_code(&o, 0);
        let info = introspect(&p, stdout(&o).trim());
        assert_eq!(info["active"], true, "{info}");
    }
    let last = stored_refresh_token(&sb);
    assert_ne!(first, last, "the refresh token rotated");
    assert_eq!(
        introspect(&p, &first)["active"],
        false,
        "the first one was used up"
    );
    assert_eq!(introspect(&p, &last)["active"], true, "the chain is alive");

    let o = run(cmd(&sb).args(["logout", "--profile", "p"]));
    assert_code(&o, 0);
    assert_eq!(introspect(&p, &last)["active"], false, "logout revoked it");
}

/// A refresh token whose end the server named (`refresh_expires_in`): `status` shows it,
/// and a refresh within a day of it warns that a login is due.
#[test]
fn status_shows_when_the_login_ends_and_get_warns_a_day_ahead() {
    let clock = ManualClock::starting_now();
    let server = server(&clock);
    server.set_faults(Faults {
        refresh_ttl_s: Some(3600),
        ..Faults::default()
    });
    let sb = Sandbox::new();
    profile(&sb, &server);
    log_in(&sb);
    let o = run(cmd(&sb).args(["status", "--profile", "p", "--json"]));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["login"]["stored"], true, "{v}");
    let left = v["login"]["refresh_expires_in"].as_u64().expect("an end");
    assert!((3500..=3600).contains(&left), "{v}");
    assert!(
        !stdout(&o).contains("rt-"),
        "never the refresh token: {}",
        stdout(&o)
    );

    let o = run(cmd(&sb).args(["get", "--profile", "p"]));
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("the login's refresh token ends in"),
        "{}",
        stderr(&o)
    );
    let o = run(cmd(&sb).args(["status", "--profile", "p"]));
    assert!(stdout(&o).contains("refresh token ends"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("cached in file"),
        "the login's token is found: {}",
        stdout(&o)
    );
}

/// Genesys Cloud: the browser goes to the region's `https://login.<domain>/oauth/authorize`
/// with the redirect URI exactly as the profile registers it; the wait is bounded.
#[test]
fn genesys_logins_go_to_the_regions_login_host_and_the_wait_is_bounded() {
    let sb = Sandbox::new();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    sb.write_user_config(&format!(
        "[profiles.p]\nprovider = \"genesys\"\nregion = \"eu-west-1\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"SECRET\" }}\ngrant = \"authorization_code\"\nredirect_uri = \"{redirect}\"\n"
    ));
    let started = Instant::now();
    let login = Login::start_with(&sb, &["--wait", "1s"]);
    let url = login.authorization_url();
    assert_eq!(
        format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap(),
            url.path()
        ),
        "https://login.mypurecloud.ie/oauth/authorize"
    );
    assert_eq!(param(&url, "redirect_uri"), redirect);
    let (code, err) = login.finish();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no login came back"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn exec_runs_a_command_with_the_logins_token() {
    let (_clock, server, sb) = set_up();
    log_in(&sb);
    let o = run(cmd(&sb).args([
        "exec",
        "--profile",
        "p",
        "--",
        "sh",
        "-c",
        "printf %s \"$FRESHTOKEN_ACCESS_TOKEN\"",
    ]));
    assert_code(&o, 0);
    assert!(
        server.state().check(stdout(&o).trim()).is_some(),
        "{}",
        stdout(&o)
    );
}

/// Against oidc-provider: the device flow, the user agent confirming the user code on the
/// provider's own page (its form and xsrf token) while `login --device` polls.
#[test]
fn oidc_provider_device_flow() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();
    sb.write_user_config(&format!(
        "[profiles.p]\nissuer = \"{}\"\nclient_id = \"login\"\nclient_secret = {{ file = \"{}\" }}\ngrant = \"device_code\"\nscope = \"openid offline_access api:read\"\nretry_for = \"0s\"\n",
        p.issuer(),
        p.file("login", "secret_file").display()
    ));
    let login = Login::start(&sb);
    let step = device_step(&login);
    let complete = step["verification_uri_complete"].as_str().unwrap();
    let jar = sb.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let (status, page) = curl(&["-c", jar, "-b", jar, complete]);
    assert_eq!(status, 200, "{page}");
    let xsrf = page
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the confirmation form carries an xsrf token");
    let action = format!("{}/device", p.issuer());
    let (status, page) = curl(&[
        "-L",
        "-c",
        jar,
        "-b",
        jar,
        "-d",
        &format!(
            "xsrf={xsrf}&user_code={}&confirm=yes",
            step["user_code"].as_str().unwrap()
        ),
        &action,
    ]);
    assert_eq!(status, 200, "{page}");
    let done = login.step();
    assert_eq!(done["logged_in"], true, "{done}");
    let (code, err) = login.finish();
    assert_eq!(code, 0, "{err}");
    let o = run(cmd(&sb).args(["get", "--profile", "p", "--cache", "memory"]));
    assert_code(&o, 0);
    assert_eq!(introspect(&p, stdout(&o).trim())["active"], true);
}
