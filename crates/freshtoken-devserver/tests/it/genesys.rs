//! The dev-server's Genesys flavour answers as Genesys Cloud does where the SDK tests need
//! it: `/api/v2/tokens/me`, users that a GET-then-PATCH job can update, Genesys' 401 body,
//! the token endpoint's throttling 400, and API calls counted per path.

use std::net::SocketAddr;

use freshtoken_devserver::{Config, Faults, PathStats, Running};
use serde_json::Value;

async fn start(genesys: bool) -> Running {
    let config = Config {
        genesys,
        ..Config::default()
    };
    Running::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap()
}

async fn token(server: &Running) -> String {
    let r = http()
        .post(server.token_url())
        .basic_auth("dev-client", Some("dev-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=users")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// (status, JSON body).
async fn call(
    server: &Running,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method, format!("{}{path}", server.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn tokens_me_names_the_tokens_client_and_scope() {
    let server = start(true).await;
    let t = token(&server).await;
    let (status, me) = call(
        &server,
        reqwest::Method::GET,
        "/api/v2/tokens/me",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["OAuthClient"]["id"], "dev-client");
    assert_eq!(me["authorizedScope"], serde_json::json!(["users"]));
    assert!(me["organization"]["id"].is_string());
    assert_eq!(me["homeOrganization"], me["organization"]);
}

#[tokio::test]
async fn users_are_read_and_patched_by_version_as_genesys_does() {
    let server = start(true).await;
    let t = token(&server).await;
    let path = "/api/v2/users/u-1";
    let (status, user) = call(&server, reqwest::Method::GET, path, Some(&t), None).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        (user["id"].as_str(), user["version"].as_u64()),
        (Some("u-1"), Some(1))
    );
    let patch = serde_json::json!({"version": 1, "department": "night shift"});
    let (status, user) = call(
        &server,
        reqwest::Method::PATCH,
        path,
        Some(&t),
        Some(patch.clone()),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["version"], 2);
    assert_eq!(user["department"], "night shift");
    // The same update again is stale: Genesys answers 409 and changes nothing.
    let (status, err) = call(&server, reqwest::Method::PATCH, path, Some(&t), Some(patch)).await;
    assert_eq!((status, err["status"].as_u64()), (409, Some(409)), "{err}");
    let (_, user) = call(&server, reqwest::Method::GET, path, Some(&t), None).await;
    assert_eq!(user["version"], 2);
    let (status, err) = call(
        &server,
        reqwest::Method::PATCH,
        path,
        Some(&t),
        Some(serde_json::json!({"title": "x"})),
    )
    .await;
    assert_eq!(status, 400, "a PATCH without version: {err}");
}

#[tokio::test]
async fn a_refused_token_gets_genesys_bad_credentials_body() {
    let server = start(true).await;
    for token in [None, Some("not-a-token")] {
        let (status, body) = call(
            &server,
            reqwest::Method::GET,
            "/api/v2/users/u-1",
            token,
            None,
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(body["code"], "bad.credentials", "{body}");
        assert_eq!(body["status"], 401);
        assert_eq!(body["message"], "Invalid login credentials.");
    }
    // Everywhere under /api, the echo included.
    let (status, body) = call(
        &server,
        reqwest::Method::GET,
        "/api/v2/anything",
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad.credentials"))
    );
}

#[tokio::test]
async fn without_the_genesys_flavour_the_api_echoes_and_401s_are_oauth() {
    let server = start(false).await;
    let t = token(&server).await;
    let (status, echo) = call(
        &server,
        reqwest::Method::GET,
        "/api/v2/users/u-1",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        (status, echo["path"].as_str()),
        (200, Some("/api/v2/users/u-1"))
    );
    let (status, body) = call(
        &server,
        reqwest::Method::GET,
        "/api/v2/tokens/me",
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

#[tokio::test]
async fn api_calls_and_401s_are_counted_per_path() {
    let server = start(true).await;
    let t = token(&server).await;
    for _ in 0..3 {
        call(
            &server,
            reqwest::Method::GET,
            "/api/v2/users/a",
            Some(&t),
            None,
        )
        .await;
    }
    call(&server, reqwest::Method::GET, "/api/v2/users/a", None, None).await;
    call(
        &server,
        reqwest::Method::GET,
        "/api/v2/tokens/me",
        Some("stale"),
        None,
    )
    .await;
    let paths = server.state().path_stats();
    assert_eq!(
        paths.get("/api/v2/users/a"),
        Some(&PathStats {
            calls: 4,
            ok: 3,
            unauthorized: 1
        })
    );
    assert_eq!(
        paths.get("/api/v2/tokens/me"),
        Some(&PathStats {
            calls: 1,
            ok: 0,
            unauthorized: 1
        })
    );
    // The same, over HTTP, for tests that run the dev-server as a process.
    let (status, served) = call(&server, reqwest::Method::GET, "/__stats/paths", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(served["/api/v2/users/a"]["unauthorized"], 1);
    let stats = server.state().stats();
    assert_eq!((stats.api_calls, stats.api_401), (5, 2));
}

#[tokio::test]
async fn the_token_endpoints_throttle_is_genesys_400_invalid_request() {
    let server = start(true).await;
    server.state().set_faults(Faults {
        throttle: Some(7),
        ..Faults::default()
    });
    let r = http()
        .post(server.token_url())
        .basic_auth("dev-client", Some("dev-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request");
    let text = "rate limit exceeded; Retry the request in [7] seconds";
    assert_eq!(
        (
            body["error_description"].as_str(),
            body["description"].as_str()
        ),
        (Some(text), Some(text))
    );
    // What the Terraform provider retries on: the Go SDK's error text built from the body,
    // `Auth Error: <status> - <error> (<error_description>)`.
    let go_sdk_error = format!(
        "Auth Error: {} - {} ({})",
        400,
        body["error"].as_str().unwrap(),
        body["error_description"].as_str().unwrap()
    );
    assert!(go_sdk_error.contains("Auth Error: 400 - invalid_request (rate limit exceeded;"));
}
