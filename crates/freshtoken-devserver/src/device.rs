//! The device flow (RFC 8628): `POST /oauth/device_authorization` hands out a device code
//! and a user code; `GET /device?user_code=…` is the user approving (or denying, with the
//! `deny_consent` switch); the token endpoint's device_code grant answers
//! `authorization_pending`, `slow_down` (polled faster than the interval, or forced with
//! the `device_slow_down` switch), `expired_token` and `access_denied` as the RFC says.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use freshtoken::internal::lock;
use serde_json::json;

use crate::grants::Pending;
use crate::oauth::Reject;
use crate::state::State;

/// The grant type of the device flow's token requests.
pub(crate) const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `POST /oauth/device_authorization`.
pub(crate) async fn authorization(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let client_id = match crate::oauth::authenticate(&state, &headers, &field) {
        Ok(id) => id,
        Err(r) => return reject(r),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let faults = state.faults();
    let expires_in = faults.device_expires_in_s.unwrap_or(600);
    let interval = faults.device_interval_s.unwrap_or(5);
    let device_code = format!("dc-{:032x}", rand::random::<u128>());
    let n = rand::random::<u32>() % 100_000_000;
    let user_code = format!("{:04}-{:04}", n / 10_000, n % 10_000);
    lock(&state.devices.pending).insert(
        device_code.clone(),
        Pending {
            client_id,
            user_code: user_code.clone(),
            scope: field("scope").map(str::to_owned),
            expires_at: state.clock.now() + Duration::from_secs(expires_in),
            interval: Duration::from_secs(interval),
            last_poll: None,
            decision: None,
        },
    );
    let verification_uri = format!("http://{host}/device");
    axum::Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": expires_in,
        "interval": interval,
    }))
    .into_response()
}

fn reject(r: Reject) -> Response {
    (
        r.status,
        axum::Json(json!({"error": r.error, "error_description": r.description})),
    )
        .into_response()
}

/// `GET /device?user_code=…`: the user approves (denies with `deny_consent`).
pub(crate) async fn verify(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(code) = q.get("user_code") else {
        return (StatusCode::BAD_REQUEST, "user_code is required\n").into_response();
    };
    let approve = !state.faults().deny_consent;
    let mut pending = lock(&state.devices.pending);
    match pending.values_mut().find(|p| &p.user_code == code) {
        Some(p) => {
            p.decision = Some(approve);
            let text = if approve { "approved" } else { "denied" };
            (StatusCode::OK, format!("device {text}\n")).into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown user_code\n").into_response(),
    }
}

/// The device_code grant: the scope to issue, or the RFC 8628 §3.5 error.
pub(crate) fn redeem(
    state: &State,
    client_id: &str,
    device_code: Option<&str>,
) -> Result<Option<String>, Reject> {
    let bad = |error: &'static str, d: &str| Reject::new(StatusCode::BAD_REQUEST, error, d);
    let code = device_code.ok_or_else(|| bad("invalid_request", "device_code is missing"))?;
    let now = state.clock.now();
    let polled_at = tokio::time::Instant::now();
    let forced_slow_down = state.take_device_slow_down();
    let mut pending = lock(&state.devices.pending);
    let Some(p) = pending.get_mut(code).filter(|p| p.client_id == client_id) else {
        return Err(bad("invalid_grant", "unknown device_code"));
    };
    if p.expires_at <= now {
        pending.remove(code);
        return Err(bad("expired_token", "the device code has expired"));
    }
    let too_soon = p
        .last_poll
        .is_some_and(|last| polled_at < last + p.interval);
    p.last_poll = Some(polled_at);
    if forced_slow_down || too_soon {
        p.interval += Duration::from_secs(5);
        return Err(bad("slow_down", "polling too fast"));
    }
    match p.decision {
        None => Err(bad(
            "authorization_pending",
            "the user has not answered yet",
        )),
        Some(false) => {
            pending.remove(code);
            Err(bad("access_denied", "the user denied the request"))
        }
        Some(true) => Ok(pending.remove(code).and_then(|p| p.scope)),
    }
}
