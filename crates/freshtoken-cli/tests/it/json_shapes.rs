//! One JSON: what `get`, `status`, `inspect` and `agent --check` print with `--format json`,
//! checked against the schemas in tests/it/schemas by a small checker of the JSON Schema
//! keywords they use (type, enum, properties, required, additionalProperties, items, oneOf,
//! $ref to a sibling file, minimum, format date-time).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

use base64::Engine;
use freshtoken_testkit::*;
use serde_json::Value;

fn schema(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/schemas")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The ways `value` breaks `schema`, each with its JSON path; empty when it fits.
fn violations(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(file) = schema.get("$ref").and_then(Value::as_str) {
        return violations(&self::schema(file), value, at);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = options
            .iter()
            .filter(|o| violations(o, value, at).is_empty())
            .count();
        if fits != 1 {
            out.push(format!("{at}: fits {fits} of oneOf, not 1: {value}"));
        }
        return out;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            out.push(format!("{at}: {value} is not {types:?}"));
            return out;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_i64),
        value.as_i64(),
    ) && n < min
    {
        out.push(format!("{at}: {n} is below {min}"));
    }
    if let (Some("date-time"), Some(s)) =
        (schema.get("format").and_then(Value::as_str), value.as_str())
        && humantime::parse_rfc3339(s).is_err()
    {
        out.push(format!("{at}: {s:?} is not RFC 3339"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                out.push(format!("{at}: {key} is missing"));
            }
        }
        for (key, v) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => out.extend(violations(s, v, &format!("{at}.{key}"))),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at}: {key} is not in the schema"));
                }
                None => {}
            }
        }
        // A moment is written twice, and both say the same.
        for (key, v) in object {
            if let (Some(s), Some(unix)) = (
                v.as_str(),
                object.get(&format!("{key}_unix")).and_then(Value::as_u64),
            ) {
                let parsed = humantime::parse_rfc3339(s).ok().and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs())
                });
                if parsed != Some(unix) {
                    out.push(format!("{at}.{key}: {s} is not {unix}"));
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            out.extend(violations(items, v, &format!("{at}[{i}]")));
        }
    }
    out
}

#[track_caller]
pub(crate) fn assert_fits(name: &str, text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let broken = violations(&schema(name), &value, "$");
    assert!(broken.is_empty(), "{name}: {broken:#?}\n{text}");
    value
}

#[test]
fn the_checker_finds_what_breaks_a_schema() {
    let s = schema("token.json");
    let good = serde_json::json!({"access_token":"t","expires_at":"2023-11-14T23:13:20Z",
        "expires_at_unix":1700003600,"expires_in":5,"scope":null,"token_type":"Bearer"});
    assert!(violations(&s, &good, "$").is_empty());
    for (field, bad) in [
        ("expires_at", serde_json::json!(1700003600)),
        ("expires_at_unix", serde_json::json!(1700003601)),
        ("scope", serde_json::json!(3)),
        ("extra", serde_json::json!(1)),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        assert!(!violations(&s, &v, "$").is_empty(), "{field}");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("scope");
    assert!(
        !violations(&s, &v, "$").is_empty(),
        "scope must be there, null or not"
    );
}

#[test]
fn get_prints_the_token_shape_with_rfc3339_and_unix_times_and_a_null_scope() {
    let server = Server::start(std::time::Duration::from_secs(3600));
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).args(["get", "--format", "json"]));
    assert_code(&o, 0);
    let v = assert_fits("token.json", &stdout(&o));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
    // The server said no scope: null, not absent.
    assert!(v.as_object().unwrap().contains_key("scope"), "{v}");
}

#[test]
fn status_prints_one_shape_with_and_without_a_token_and_json_is_an_alias() {
    let server = Server::start(std::time::Duration::from_secs(3600));
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).args(["status", "--format", "json"]));
    assert_code(&o, 0);
    let v = assert_fits("status.json", &stdout(&o));
    assert_eq!(v["state"], "none", "{v}");
    assert!(v["token"].is_null());

    let got = run(sb.cmd_for(&server).arg("get"));
    assert_code(&got, 0);
    let token = stdout(&got).trim().to_owned();
    for flag in [&["--format", "json"][..], &["--json"]] {
        let o = run(sb.cmd_for(&server).arg("status").args(flag));
        assert_code(&o, 0);
        let v = assert_fits("status.json", &stdout(&o));
        assert_eq!(v["state"], "fresh", "{v}");
        assert_eq!(v["token"]["state"], "fresh", "{v}");
        assert!(
            !stdout(&o).contains(&token),
            "never the token: {}",
            stdout(&o)
        );
    }
    // Past the refresh point (75 % of the lifetime) but valid: stale; past expiry: expired.
    for (skew, state) in [("50m", "stale"), ("2h", "expired")] {
        let o = run(sb
            .cmd_for(&server)
            .env("FRESHTOKEN_CLOCK_SKEW", skew)
            .args(["status", "--format", "json"]));
        let v = assert_fits("status.json", &stdout(&o));
        assert_eq!(v["state"], state, "{skew}: {v}");
    }
}

#[test]
fn inspect_prints_one_shape_for_jwts_and_opaque_tokens() {
    let sb = Sandbox::new();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!(
        "{}.{}.c2ln",
        b.encode(r#"{"alg":"RS256"}"#),
        b.encode(r#"{"sub":"ci","iat":1700000000,"exp":1700003600}"#)
    );
    let o = run(sb.cmd().args(["inspect", &jwt, "--format", "json"]));
    assert_code(&o, 0);
    let v = assert_fits("inspect.json", &stdout(&o));
    assert_eq!(v["times"]["expires_at"], "2023-11-14T23:13:20Z");
    assert_eq!(v["times"]["expires_at_unix"], 1_700_003_600);
    assert_eq!(v["times"]["issued_at_unix"], 1_700_000_000);
    assert!(v["times"]["not_before"].is_null());

    let o = run(sb.cmd().args(["inspect", "opaque-token-value", "--json"]));
    let v = assert_fits("inspect.json", &stdout(&o));
    assert_eq!(v["kind"], "opaque");

    let server = Server::start(std::time::Duration::from_secs(3600));
    assert_code(&run(sb.cmd_for(&server).arg("get")), 0);
    let o = run(sb.cmd_for(&server).args(["inspect", "--format", "json"]));
    let v = assert_fits("inspect.json", &stdout(&o));
    assert!(v["cache"]["fetched_at_unix"].as_u64() > Some(0), "{v}");
}

#[test]
fn agent_check_prints_one_document_with_each_profile_and_keeps_its_exit_code() {
    let server = Server::start_with(freshtoken_devserver::Config {
        ttl: std::time::Duration::from_secs(3600),
        clients: [
            ("a".to_owned(), format!("{SECRET}-a")),
            ("b".to_owned(), format!("{SECRET}-b")),
        ]
        .into_iter()
        .collect(),
        ..freshtoken_devserver::Config::default()
    });
    let sb = Sandbox::new();
    let path = sb.path().join("agent.toml");
    let profile = |c: &str| {
        format!(
            "[profiles.{c}]\ntoken_url = \"{}\"\nclient_id = \"{c}\"\nclient_secret = {{ env = \"SECRET_{}\" }}\nretry_for = \"0s\"\n",
            server.token_url(),
            c.to_uppercase()
        )
    };
    let socket = sb.path().join("run/agent.sock");
    std::fs::write(
        &path,
        format!(
            "[agent]\nsocket = \"{}\"\n{}{}",
            socket.display(),
            profile("a"),
            profile("b")
        ),
    )
    .unwrap();
    let check = |secret_b: &str| {
        run(sb
            .cmd()
            .args([
                "--config",
                path.to_str().unwrap(),
                "agent",
                "--check",
                "--format",
                "json",
            ])
            .env("SECRET_A", format!("{SECRET}-a"))
            .env("SECRET_B", secret_b))
    };
    let o = check(&format!("{SECRET}-b"));
    assert_code(&o, 0);
    let v = assert_fits("agent_check.json", &stdout(&o));
    assert_eq!(v["ok"], true);
    assert_eq!(v["profiles"][1]["token"]["state"], "fresh", "{v}");

    let o = check("not-the-secret-Pw4");
    assert_code(&o, 3);
    let v = assert_fits("agent_check.json", &stdout(&o));
    assert_eq!(v["ok"], false);
    assert_eq!(v["profiles"][1]["exit_code"], 3, "{v}");
    assert!(
        v["profiles"][1]["error"]
            .as_str()
            .unwrap()
            .contains("invalid_client"),
        "{v}"
    );
    assert!(!stdout(&o).contains("not-the-secret"));
}
