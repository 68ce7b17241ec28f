//! `GET /v1/status`: what the agent holds, per profile and proxy, for `freshtoken status
//! --agent`. Never a token: its state, expiry, fingerprint and the last error. It sits
//! behind the same access rules as `/v1/token` (the socket, or TCP with the credential).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::State as Agent;
use crate::output::rfc3339;

/// The answer of `GET /v1/status`.
pub(crate) async fn status(State(agent): State<Arc<Agent>>) -> Response {
    let body = format!("{}\n", snapshot(&agent));
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `{"profiles": [...], "proxies": [...]}`: every profile with its token's state (`fresh`,
/// `stale`, `expired`, `none`), expiry (`expires_at` RFC 3339, `expires_at_unix`,
/// `expires_in` seconds; null without a token), fingerprint and last error; every proxy with
/// the address it bound.
fn snapshot(agent: &Agent) -> Value {
    let now = agent.clock.now();
    let profiles: Vec<Value> = agent
        .profiles()
        .iter()
        .map(|(name, p)| {
            let valid = p.source.peek_valid();
            let state = match (&valid, p.source.next_refresh()) {
                (Some(_), _) if p.source.peek_fresh().is_some() => "fresh",
                (Some(_), _) => "stale",
                (None, Some(_)) => "expired",
                (None, None) => "none",
            };
            let mut v = json!({
                "profile": name,
                "state": state,
                "fingerprint": valid.as_ref().map(|t| t.fingerprint().to_string()),
                "expires_at": null,
                "expires_at_unix": null,
                "expires_in": valid.as_ref().map(|t| t.remaining(now).as_secs()),
                "last_error": p.metrics.last_error(),
            });
            if let Some(t) = &valid {
                let at = t.expires_at();
                v["expires_at"] = json!(rfc3339(at));
                v["expires_at_unix"] = json!(
                    at.duration_since(std::time::SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                );
            }
            v
        })
        .collect();
    let proxies: Vec<Value> = agent
        .proxies()
        .iter()
        .map(|r| {
            json!({
                "profile": r.spec.profile,
                "listen": r.bound.to_string(),
                "upstream": r.spec.upstream.as_str(),
            })
        })
        .collect();
    json!({ "profiles": profiles, "proxies": proxies })
}
