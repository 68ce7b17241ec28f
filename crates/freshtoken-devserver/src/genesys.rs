//! Genesys Cloud's flavour of the protected API, switched on by [`Config::genesys`]
//! (`crate::Config`): what the real Genesys SDKs call in the tests, answered with the JSON
//! shapes their models deserialize, and Genesys' own 401 body.
//!
//! - `GET /api/v2/tokens/me`: the token's owner (`TokenInfo`: organization, home
//!   organization, OAuth client, granted scope);
//! - `GET /api/v2/users/{id}` and `PATCH /api/v2/users/{id}`: a user (`User`) that any id
//!   names; a PATCH must carry the current `version` (409 otherwise, as Genesys answers a
//!   stale update) and bumps it, so a bulk job of GET-then-PATCH behaves as against the real
//!   API;
//! - a 401 is `{"message":"Invalid login credentials.","code":"bad.credentials","status":401,…}`
//!   (Genesys' `ErrorBody`), not the OAuth `invalid_token` of the plain dev-server;
//! - the token endpoint's `throttle` fault answers as Genesys' login server does (see
//!   [`throttle_body`]).
//!
//! The field names are the SDK models' (`PureCloudPlatformClientV2.models.TokenInfo`, `User`,
//! `UpdateUser`, `ErrorBody`); see docs/genesys.md.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::State;

type Shared = Arc<State>;

/// The organization every token of this server belongs to.
const ORG_ID: &str = "6e8a5f2c-0c4b-4a5e-9c1e-5d0f3b2a7e10";
const ORG_NAME: &str = "freshtoken dev-server";

/// Genesys' `ErrorBody` with the given status, code and message.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "message": message,
        "code": code,
        "status": status.as_u16(),
        "messageParams": {},
        "contextId": format!("{:032x}", rand::random::<u128>()),
        "details": [],
        "errors": [],
    });
    (status, axum::Json(body)).into_response()
}

/// The API's answer to a missing, unknown, expired or revoked token.
pub(crate) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "bad.credentials",
        "Invalid login credentials.",
    )
}

/// The login server's throttling answer (sent with HTTP 400 and `Retry-After`), in the form
/// the Terraform provider retries on: it matches the Go SDK's error text
/// `Auth Error: 400 - invalid_request (rate limit exceeded;`, made from `error` and
/// `error_description`. `description` carries the same text, as the Go SDK's
/// `AuthErrorResponse` reads both. Only the `rate limit exceeded;` prefix is attested; the
/// rest follows the API's own 429 message. See docs/genesys.md.
pub(crate) fn throttle_body(retry_after_secs: u64) -> Value {
    let text = format!("rate limit exceeded; Retry the request in [{retry_after_secs}] seconds");
    json!({
        "error": "invalid_request",
        "description": text,
        "error_description": text,
    })
}

fn org() -> Value {
    json!({
        "id": ORG_ID,
        "name": ORG_NAME,
        "selfUri": format!("/api/v2/organizations/{ORG_ID}"),
    })
}

/// `GET /api/v2/tokens/me`.
pub(crate) async fn tokens_me(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let path = "/api/v2/tokens/me";
    state.record("GET", path, &[]);
    let Some(issued) = state.authorize(&headers, path) else {
        return unauthorized();
    };
    let scope: Vec<&str> = issued
        .scope
        .as_deref()
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    axum::Json(json!({
        "organization": org(),
        "homeOrganization": org(),
        "authorizedScope": scope,
        "OAuthClient": {
            "id": issued.client_id,
            "name": issued.client_id,
            "organization": org(),
        },
    }))
    .into_response()
}

/// `GET|PATCH /api/v2/users/{id}`.
pub(crate) async fn user(
    Extract(state): Extract<Shared>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v2/users/{id}");
    state.record(method.as_str(), &path, &body);
    if state.authorize(&headers, &path).is_none() {
        return unauthorized();
    }
    if method == Method::PATCH {
        return patch_user(&state, &id, &body);
    }
    let user = state.user(&id);
    axum::Json(user_json(&id, &user)).into_response()
}

fn patch_user(state: &State, id: &str, body: &[u8]) -> Response {
    let update: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad.request",
                "The request could not be understood by the server due to malformed syntax.",
            );
        }
    };
    let Some(version) = update.get("version").and_then(Value::as_u64) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "version is required to update a user",
        );
    };
    let text = |k: &str| update.get(k).and_then(Value::as_str).map(str::to_owned);
    match state.update_user(id, version, text("department"), text("title")) {
        Ok(user) => axum::Json(user_json(id, &user)).into_response(),
        Err(current) => error(
            StatusCode::CONFLICT,
            "general.conflict",
            &format!("Version mismatch: the user is at version {current}, not {version}"),
        ),
    }
}

/// A user as Genesys' `User` model has it (a subset every SDK deserializes).
fn user_json(id: &str, user: &crate::state::DevUser) -> Value {
    json!({
        "id": id,
        "name": format!("Dev User {id}"),
        "division": {"id": "home", "name": "Home", "selfUri": "/api/v2/authorization/divisions/home"},
        "email": format!("{id}@example.invalid"),
        "username": format!("{id}@example.invalid"),
        "state": "active",
        "department": user.department,
        "title": user.title,
        "version": user.version,
        "acdAutoAnswer": false,
        "selfUri": format!("/api/v2/users/{id}"),
    })
}
