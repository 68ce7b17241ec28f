//! The Genesys Cloud provider: endpoints from the region, and the variables Genesys Cloud's
//! own tools already use.

use freshtoken_testkit::*;

#[test]
fn genesys_region_fills_in_the_endpoints_and_status_shows_the_api_base() {
    let sb = Sandbox::new();
    let o = run(sb
        .cmd()
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gc-client")
        .args(["status", "--provider", "genesys", "--region", "eu_west_1"]));
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("token URL:   https://login.mypurecloud.ie/oauth/token"),
        "{out}"
    );
    assert!(
        out.contains("API base:    https://api.mypurecloud.ie/"),
        "{out}"
    );
    assert!(out.contains("client id:   gc-client"), "{out}");

    // Nothing but Genesys Cloud's own variables: the provider is implied.
    let o = run(sb
        .cmd()
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gc-client")
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "gc-secret")
        .env("GENESYSCLOUD_REGION", "mypurecloud.de")
        .args(["status", "--json"]));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["token_url"], "https://login.mypurecloud.de/oauth/token");
    assert_eq!(v["api_base"], "https://api.mypurecloud.de/");

    // FRESHTOKEN_* wins over GENESYSCLOUD_*.
    let o = run(sb
        .cmd()
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gc-client")
        .env("FRESHTOKEN_CLIENT_ID", "ft-client")
        .env("GENESYSCLOUD_REGION", "us-east-1")
        .args(["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["client_id"], "ft-client");
    assert_eq!(v["token_url"], "https://login.mypurecloud.com/oauth/token");
}

#[test]
fn unknown_regions_and_providers_are_clear_errors() {
    let sb = Sandbox::new();
    let o = run(sb.cmd().args([
        "status",
        "--client-id",
        "x",
        "--provider",
        "genesys",
        "--region",
        "mars-north-1",
    ]));
    assert_fails_with(
        &o,
        2,
        "unknown Genesys Cloud region \"mars-north-1\"; known regions: us-east-1, us-east-2",
    );
    let o = run(sb
        .cmd()
        .args(["status", "--client-id", "x", "--provider", "genesys"]));
    assert_fails_with(&o, 2, "needs a region");
    let o = run(sb
        .cmd()
        .args(["status", "--client-id", "x", "--provider", "okta"]));
    assert_fails_with(&o, 2, "unknown provider \"okta\"");
}

#[test]
fn genesys_profiles_in_the_config_file() {
    let sb = Sandbox::new();
    sb.write_user_config(
        "[profiles.default]\nprovider = \"genesys\"\nregion = \"ap-southeast-2\"\nclient_id = \"gc\"\nclient_secret = { env = \"GC_SECRET\" }\n",
    );
    let o = run(sb.cmd().args(["status"]));
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("https://login.mypurecloud.com.au/oauth/token"),
        "{}",
        stdout(&o)
    );
}

/// Genesys Cloud's own variables and conventions without ceremony (issue 15): its client
/// variables with a login host of one's own, its names in the child's environment, its
/// name for the env output.
#[test]
fn genesys_conventions_reach_the_child_and_the_shell() {
    let server = Server::start(std::time::Duration::from_secs(3600));
    let sb = Sandbox::new();
    // A token URL beside the provider is its login host: no FRESHTOKEN_* credentials, only
    // Genesys Cloud's variables.
    let genesys = || {
        let mut c = sb.cmd();
        c.env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
            .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "0");
        c
    };
    let seen = sb.path().join("seen");
    let script = format!(
        "printf '%s %s' \"$GENESYSCLOUD_ACCESS_TOKEN\" \"$GENESYSCLOUD_REGION\" > {}",
        seen.display()
    );
    let mut exec = genesys();
    let o = run(exec.args([
        "exec",
        "--token-url",
        &server.token_url(),
        "--provider",
        "genesys",
        "--region",
        "eu-west-1",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert_code(&o, 0);
    let seen = std::fs::read_to_string(&seen).unwrap();
    let (token, region) = seen.split_once(' ').unwrap();
    assert!(server.state().check(token).is_some(), "{seen}");
    assert_eq!(region, "eu-west-1");

    let mut get = genesys();
    let o = run(get.args([
        "get",
        "--token-url",
        &server.token_url(),
        "--format",
        "env",
        "--env",
        "GENESYSCLOUD_ACCESS_TOKEN",
    ]));
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with(&format!("GENESYSCLOUD_ACCESS_TOKEN='{token}'\n")),
        "{}",
        stdout(&o)
    );
    let mut bad = genesys();
    assert_fails_with(
        &run(bad.args([
            "get",
            "--token-url",
            &server.token_url(),
            "--env",
            "GENESYSCLOUD_ACCESS_TOKEN",
        ])),
        2,
        "--format env",
    );
    let mut bad = genesys();
    assert_fails_with(
        &run(bad.args([
            "get",
            "--token-url",
            &server.token_url(),
            "--format",
            "env",
            "--env",
            "1-x",
        ])),
        2,
        "not an environment variable name",
    );
    assert_eq!(server.stats().token_requests, 1, "{:?}", server.stats());
    // The errors name Genesys Cloud's variables too.
    let o = run(sb.cmd().args(["get", "--token-url", &server.token_url()]));
    assert_fails_with(&o, 2, "GENESYSCLOUD_OAUTHCLIENT_ID");
}

/// Genesys Cloud's login throttle (HTTP 400 `invalid_request`, "rate limit exceeded; …", with
/// `Retry-After`), as its dev-server flavour sends it: retried after the wait it names, not
/// taken for a rejected client.
#[test]
fn genesys_login_throttle_is_waited_out_not_taken_for_a_rejection() {
    let server = Server::start_with(freshtoken_devserver::Config {
        ttl: std::time::Duration::from_secs(3600),
        genesys: true,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..freshtoken_devserver::Config::default()
    });
    server.set_faults(freshtoken_devserver::Faults {
        throttle: Some(1),
        ..freshtoken_devserver::Faults::default()
    });
    // The throttle lifts after a second and a half, as Genesys' does once the client slows.
    let state = std::sync::Arc::clone(server.state());
    let lift = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        state.set_faults(freshtoken_devserver::Faults::default());
    });
    let sb = Sandbox::new();
    let o = run(sb
        .cmd_for(&server)
        .env("FRESHTOKEN_RETRY_FOR", "10s")
        .arg("get"));
    lift.join().unwrap();
    assert_code(&o, 0);
    assert!(server.state().check(stdout(&o).trim()).is_some());
    // Paced by the server's Retry-After (1 s), not hammering: two or three requests.
    let requests = server.stats().token_requests;
    assert!((2..=3).contains(&requests), "{:?}", server.stats());
}
