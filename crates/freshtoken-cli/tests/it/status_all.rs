//! `freshtoken status` without a profile: every profile of the config file, its endpoint,
//! cache, token state, last error and backoff; never a token, never a failure for a
//! profile that cannot be read.

use std::time::Duration;

use freshtoken_devserver::Faults;
use freshtoken_testkit::*;
use serde_json::Value;

/// A config of `prod` (a working client) and `broken` (no client id).
fn config(sb: &Sandbox, server: &Server) -> std::path::PathBuf {
    sb.write_user_config(&format!(
        "[profiles.prod]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"PROD_SECRET\" }}\nretry_for = \"0s\"\n\n[profiles.broken]\ntoken_url = \"{}\"\n",
        server.token_url(),
        server.token_url()
    ))
}

fn status_json(sb: &Sandbox) -> Value {
    let o = run(sb.cmd().args(["status", "--format", "json"]));
    assert_code(&o, 0);
    crate::json_shapes::assert_fits("status_all.json", &stdout(&o))
}

fn entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

#[test]
fn status_lists_every_profile_with_state_last_error_and_backoff_and_never_a_token() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let path = config(&sb, &server);

    // Nothing fetched yet; no client id and no secret needed to run.
    let v = status_json(&sb);
    assert_eq!(entry(&v, "prod")["state"], "none", "{v}");
    assert_eq!(entry(&v, "prod")["token_url"], server.token_url().as_str());
    assert!(
        entry(&v, "broken")["error"]
            .as_str()
            .unwrap()
            .contains("no client id"),
        "{v}"
    );
    let text = stdout(&run(sb.cmd().arg("status")));
    assert!(
        text.contains("prod") && text.contains("broken") && text.contains("no client id"),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");

    // A failed fetch: the store's note shows as the last error, with its backoff.
    server.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let o = run(sb
        .cmd()
        .env("PROD_SECRET", SECRET)
        .args(["--profile", "prod", "get"]));
    assert_code(&o, 4);
    let v = status_json(&sb);
    let prod = entry(&v, "prod");
    assert!(
        prod["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{v}"
    );
    assert_eq!(prod["last_error"]["failures"], 1, "{v}");
    assert!(
        prod["last_error"]["backoff_until_unix"].as_u64() > Some(0),
        "{v}"
    );
    let text = stdout(&run(sb.cmd().arg("status")));
    assert!(
        text.contains("last error:") && text.contains("1 in a row"),
        "{text}"
    );

    // Fetched: fresh, with its fingerprint, and the token nowhere.
    server.set_faults(Faults::default());
    let o = run(sb
        .cmd()
        .env("PROD_SECRET", SECRET)
        .args(["--profile", "prod", "get"]));
    assert_code(&o, 0);
    let token = stdout(&o).trim().to_owned();
    let o = run(sb.cmd().args(["status", "--format", "json"]));
    let v = crate::json_shapes::assert_fits("status_all.json", &stdout(&o));
    assert_eq!(entry(&v, "prod")["state"], "fresh", "{v}");
    assert!(entry(&v, "prod")["token"]["fingerprint"].is_string());
    assert!(
        entry(&v, "prod")["last_error"].is_null(),
        "a success clears the note: {v}"
    );
    let text = stdout(&run(sb.cmd().arg("status")));
    for out in [stdout(&o), text.clone()] {
        assert!(!out.contains(&token), "the token is never shown: {out}");
    }
    assert!(text.contains("state:") && text.contains("fresh"), "{text}");

    // One profile when one is named, as before.
    let o = run(sb
        .cmd()
        .args(["--profile", "prod", "status", "--format", "json"]));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["profile"], "prod");
}

#[test]
fn a_config_without_default_says_so_when_no_profile_is_named() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    sb.write_user_config(&format!(
        "[profiles.prod]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n",
        server.token_url()
    ));
    let o = run(sb.cmd().arg("get"));
    assert_fails_with(&o, 2, "no profile default in ");
    assert!(stderr(&o).contains("(profiles: prod)"), "{}", stderr(&o));
    // The environment naming everything still works beside such a file.
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
}
