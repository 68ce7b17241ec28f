//! The dev-server's HTTP surface.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use crate::Faults;
use crate::faults::Canned;
use crate::state::State;

type Shared = Arc<State>;

/// The routes: `/oauth/token`, the issuer's metadata at `/.well-known/openid-configuration`
/// and `/.well-known/oauth-authorization-server`, `/api/{*path}`, `/__stats` (and per path at
/// `/__stats/paths`), `/__faults`,
/// `/__revoke`; with [`Config::genesys`](crate::Config::genesys) also Genesys' own API
/// routes (see the `genesys` module).
pub fn app(state: Shared) -> Router {
    let mut router = Router::new();
    if state.genesys {
        router = router
            .route("/api/v2/tokens/me", get(crate::genesys::tokens_me))
            .route(
                "/api/v2/users/{id}",
                get(crate::genesys::user).patch(crate::genesys::user),
            );
    }
    router
        .route("/oauth/token", post(token))
        .route("/oauth/authorize", get(crate::authorize::authorize))
        .route("/oauth/revoke", post(crate::authorize::revoke))
        .route(
            "/oauth/device_authorization",
            post(crate::device::authorization),
        )
        .route("/device", get(crate::device::verify))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/api/blob/{bytes}", get(crate::api::blob))
        .route("/api/sink", any(crate::api::sink))
        .route("/api/redirect", get(crate::api::redirect))
        .route("/api/{*path}", any(crate::api::echo))
        .route("/__stats", get(stats))
        .route("/__stats/paths", get(path_stats))
        .route("/__stats/ci", get(ci_stats))
        .route("/__stats/dpop", get(dpop_stats))
        .route("/ci/id-token", get(ci_id_token))
        .route("/ci/jwks", get(ci_jwks))
        .route("/ci/.well-known/openid-configuration", get(ci_metadata))
        .route("/__faults", get(get_faults).post(set_faults))
        .route("/__revoke", post(revoke))
        .with_state(state)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev-server\""),
        );
    }
    r
}

fn with_retry_after(mut r: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::try_from(secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn token(
    Extract(state): Extract<Shared>,
    peer: Option<axum::Extension<crate::PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.count(|c| c.token_requests());
    let faults = state.faults();
    if !faults.delay().is_zero() {
        tokio::time::sleep(faults.delay()).await;
    }
    if let Some(r) = fault_answer(&state, &faults) {
        state.count(|c| c.token_errors());
        return r;
    }
    match crate::token::issue(&state, &headers, &body, peer.as_ref().map(|p| &p.0)) {
        Ok(r) => {
            state.count(|c| c.tokens_issued());
            r
        }
        Err(reject) => {
            state.count(|c| c.token_errors());
            tracing::debug!(
                error = reject.error,
                "token request refused: {}",
                reject.description
            );
            let mut r = oauth_error(reject.status, reject.error, &reject.description);
            if reject.error == freshtoken::dpop::USE_NONCE
                && let Ok(v) = HeaderValue::try_from(state.dpop.nonce())
            {
                r.headers_mut().insert("dpop-nonce", v);
            }
            r
        }
    }
}

fn fault_answer(state: &State, faults: &Faults) -> Option<Response> {
    if state.take_outage() {
        let page = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>";
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                page,
            )
                .into_response(),
        );
    }
    if let Some(secs) = faults.rate_limit {
        let r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": "rate_limited"})),
        )
            .into_response();
        return Some(with_retry_after(r, secs));
    }
    if let Some(secs) = faults.throttle {
        let body = if state.genesys {
            crate::genesys::throttle_body(secs)
        } else {
            json!({
                "error": "invalid_request",
                "description": format!("Rate limit exceeded the maximum. Retry the request in [{secs}] seconds"),
            })
        };
        let r = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        return Some(with_retry_after(r, secs));
    }
    faults.canned.as_ref().map(canned)
}

fn canned(c: &Canned) -> Response {
    let status = c
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut builder = Response::builder().status(status);
    if let Some(ct) = &c.content_type {
        builder = builder.header(header::CONTENT_TYPE, ct.as_str());
    }
    let body = if c.endless {
        let chunk = Bytes::from(if c.body.is_empty() {
            " ".to_owned()
        } else {
            c.body.clone()
        });
        // A chunk every 10 ms, forever: the client's timeout has to end it.
        Body::from_stream(futures_util::stream::unfold(chunk, |chunk| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok::<_, std::io::Error>(chunk.clone()), chunk))
        }))
    } else {
        Body::from(c.body.repeat(c.repeat.unwrap_or(1).max(1)))
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The issuer's metadata (OpenID Connect Discovery, RFC 8414), so that `--issuer` and a
/// profile's `issuer =` can be tried against this server. The issuer is `http://HOST` as the
/// client named it, the address the server is reached at, as in the assertion audience.
async fn metadata(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut grants = vec![
        "client_credentials",
        "refresh_token",
        "authorization_code",
        crate::device::GRANT,
    ];
    if state.ci.is_some() {
        grants.push("urn:ietf:params:oauth:grant-type:token-exchange");
    }
    let mut document = json!({
        "issuer": format!("http://{host}"),
        "token_endpoint": format!("http://{host}/oauth/token"),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
        ],
        "grant_types_supported": grants,
        "authorization_endpoint": format!("http://{host}/oauth/authorize"),
        "revocation_endpoint": format!("http://{host}/oauth/revoke"),
        "device_authorization_endpoint": format!("http://{host}/oauth/device_authorization"),
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
    });
    if let Some(mtls) = &state.mtls.base_url {
        document["mtls_endpoint_aliases"] =
            json!({ "token_endpoint": format!("{mtls}/oauth/token") });
        document["tls_client_certificate_bound_access_tokens"] = Value::Bool(true);
        if let Some(Value::Array(methods)) =
            document.get_mut("token_endpoint_auth_methods_supported")
        {
            methods.push("tls_client_auth".into());
            methods.push("self_signed_tls_client_auth".into());
        }
    }
    axum::Json(document).into_response()
}

async fn stats(Extract(state): Extract<Shared>) -> Response {
    axum::Json(state.stats()).into_response()
}

async fn dpop_stats(Extract(state): Extract<Shared>) -> Response {
    axum::Json(state.dpop_stats()).into_response()
}

async fn ci_stats(Extract(state): Extract<Shared>) -> Response {
    axum::Json(state.ci_stats()).into_response()
}

/// `GET /ci/id-token?audience=…` with the job's bearer request token: `{"value": JWT}`.
async fn ci_id_token(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some(ci) = &state.ci else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query = query.unwrap_or_default();
    let audience = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "audience")
        .map(|(_, v)| v.into_owned());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match ci.mint(state.unix_now(), &headers, bearer, audience.as_deref()) {
        Some(jwt) => axum::Json(json!({ "value": jwt })).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "bad request token" })),
        )
            .into_response(),
    }
}

async fn ci_jwks(Extract(state): Extract<Shared>) -> Response {
    match &state.ci {
        Some(ci) => axum::Json(ci.jwks()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ci_metadata(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if state.ci.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    axum::Json(json!({
        "issuer": format!("http://{host}/ci"),
        "jwks_uri": format!("http://{host}/ci/jwks"),
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }))
    .into_response()
}

async fn path_stats(Extract(state): Extract<Shared>) -> Response {
    axum::Json(state.path_stats()).into_response()
}

async fn get_faults(Extract(state): Extract<Shared>) -> Response {
    axum::Json(state.faults()).into_response()
}

/// Merges the given fields into the current switches; unknown fields are refused.
async fn set_faults(Extract(state): Extract<Shared>, body: Bytes) -> Response {
    let update: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Value::Object(m),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "expected a JSON object of fault switches\n",
            )
                .into_response();
        }
    };
    let mut merged = serde_json::to_value(state.faults()).unwrap_or_else(|_| json!({}));
    if let (Value::Object(into), Value::Object(from)) = (&mut merged, update) {
        into.extend(from);
    }
    match serde_json::from_value::<Faults>(merged) {
        Ok(faults) => {
            state.set_faults(faults.clone());
            axum::Json(faults).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("bad fault switches: {e}\n"),
        )
            .into_response(),
    }
}

async fn revoke(Extract(state): Extract<Shared>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.iter().find(|(k, _)| k == "token") {
        Some((_, t)) => {
            axum::Json(json!({ "revoked": u64::from(state.revoke(t)) })).into_response()
        }
        None => axum::Json(json!({ "revoked": state.revoke_all() })).into_response(),
    }
}
