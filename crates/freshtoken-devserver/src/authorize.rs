//! The human side of the dev-server: `/oauth/authorize` (the code flow with PKCE S256,
//! auto-approving, or denying with the `deny_consent` switch), the authorization_code grant,
//! and refresh-token families with reuse detection: a refresh token presented a second time
//! revokes every refresh token of its login, as servers with rotation do.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use freshtoken::internal::lock;

use crate::grants::PendingCode;
use crate::oauth::Reject;
use crate::state::State;

/// How long an authorization code may be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);

/// `GET /oauth/authorize`: checks the request, then redirects to `redirect_uri` with a
/// code (or `error=access_denied` when the `deny_consent` switch is on) and the `state`.
pub(crate) async fn authorize(
    Extract(state): Extract<std::sync::Arc<State>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(client_id), Some(redirect_uri)) = (field("client_id"), field("redirect_uri")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "client_id and redirect_uri are required",
        );
    };
    if !state.clients.contains_key(client_id) {
        return page(StatusCode::BAD_REQUEST, "unknown client_id");
    }
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return page(StatusCode::BAD_REQUEST, "redirect_uri is not a URL");
    };
    {
        let mut pairs = target.query_pairs_mut();
        if let Some(s) = field("state") {
            pairs.append_pair("state", s);
        }
        let problem = if field("response_type") != Some("code") {
            Some(("unsupported_response_type", "response_type must be code"))
        } else if field("code_challenge").is_none()
            || field("code_challenge_method") != Some("S256")
        {
            Some(("invalid_request", "PKCE with S256 is required"))
        } else if state.faults().deny_consent {
            Some(("access_denied", "the user denied consent"))
        } else {
            None
        };
        match problem {
            Some((error, description)) => {
                pairs.append_pair("error", error);
                pairs.append_pair("error_description", description);
            }
            None => {
                let code = format!("code-{:032x}", rand::random::<u128>());
                let pending = PendingCode {
                    client_id: client_id.to_owned(),
                    redirect_uri: redirect_uri.to_owned(),
                    challenge: field("code_challenge").unwrap_or_default().to_owned(),
                    scope: field("scope").map(str::to_owned),
                    expires_at: state.clock.now() + CODE_TTL,
                };
                lock(&state.logins.inner)
                    .codes
                    .insert(code.clone(), pending);
                pairs.append_pair("code", &code);
            }
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn page(status: StatusCode, text: &str) -> Response {
    (status, format!("dev-server authorize: {text}\n")).into_response()
}

/// Redeems an authorization code for `client_id`: the scope it was asked with. The code is
/// used up whatever the outcome, as RFC 6749 §4.1.2 asks.
pub(crate) fn redeem_code(
    state: &State,
    client_id: &str,
    field: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, Reject> {
    let invalid = |d: &str| Reject::new(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let code = field("code").ok_or_else(|| {
        Reject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        )
    })?;
    let pending = lock(&state.logins.inner)
        .codes
        .remove(&code)
        .ok_or_else(|| invalid("the code is unknown or used"))?;
    if pending.client_id != client_id || pending.expires_at <= state.clock.now() {
        return Err(invalid("the code belongs to another client or has expired"));
    }
    if field("redirect_uri").as_deref() != Some(pending.redirect_uri.as_str()) {
        return Err(invalid(
            "redirect_uri differs from the authorization request's",
        ));
    }
    let verifier = field("code_verifier").unwrap_or_default();
    if freshtoken::login::s256(&verifier) != pending.challenge {
        return Err(invalid("PKCE verification failed (code_verifier)"));
    }
    Ok(pending.scope)
}

/// Redeems refresh token `rt`: its scope and family. A token redeemed before revokes its
/// whole family (counted as a reuse); an expired one (the `refresh_ttl_s` switch) is refused.
pub(crate) fn redeem_refresh(
    state: &State,
    rt: &str,
    client_id: &str,
) -> Result<(Option<String>, Option<u64>), Reject> {
    let invalid = |d: &str| Reject::new(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let mut f = lock(&state.logins.inner);
    if let Some(family) = f.used.get(rt).copied() {
        state.logins.reuses.fetch_add(1, Ordering::SeqCst);
        tracing::warn!("refresh token reused: revoking its whole login");
        let live: Vec<String> = f
            .issued
            .iter()
            .filter(|(t, (fam, _))| *fam == family && !f.used.contains_key(*t))
            .map(|(t, _)| t.clone())
            .collect();
        for t in live {
            state.forget_refresh_token(&t);
        }
        return Err(invalid(
            "the refresh token was used before; the login is revoked",
        ));
    }
    let issued = f.issued.get(rt).copied();
    if let (Some((_, at)), Some(ttl)) = (issued, state.faults().refresh_ttl_s)
        && at + Duration::from_secs(ttl) <= state.clock.now()
    {
        return Err(invalid("the refresh token has expired"));
    }
    let scope = state
        .redeem_refresh_token(rt, client_id)
        .ok_or_else(|| invalid("the refresh token is unknown, used or revoked"))?;
    let family = issued.map(|(fam, _)| fam);
    if let Some(fam) = family {
        f.used.insert(rt.to_owned(), fam);
    }
    Ok((scope, family))
}

/// Issues a refresh token in `family` (a new one when `None`).
pub(crate) fn issue_refresh(
    state: &State,
    client_id: &str,
    scope: Option<String>,
    family: Option<u64>,
) -> String {
    let rt = state.issue_refresh_token(client_id, scope);
    let mut f = lock(&state.logins.inner);
    let family = family.unwrap_or_else(|| {
        f.next_family += 1;
        f.next_family
    });
    f.issued.insert(rt.clone(), (family, state.clock.now()));
    rt
}

/// `POST /oauth/revoke` (RFC 7009): the `token` named stops working, refresh or access;
/// 200 whether or not it was known, as the RFC asks.
pub(crate) async fn revoke(
    Extract(state): Extract<std::sync::Arc<State>>,
    body: axum::body::Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some((_, token)) = form.iter().find(|(k, _)| k == "token") else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_request"})),
        )
            .into_response();
    };
    state.forget_refresh_token(token);
    state.revoke(token);
    state.count(|c| c.revocations());
    StatusCode::OK.into_response()
}
