//! The token endpoint: the grants (client_credentials, refresh_token, authorization_code,
//! device_code, token exchange), strict as a real server would be; client authentication is
//! in `oauth`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::oauth::{Reject, authenticate};
use crate::state::State;

/// Answers a token request; `peer` is the TLS client certificate, when a TLS listener in
/// front got one.
pub(crate) fn issue(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
    peer: Option<&crate::PeerCertificate>,
) -> Result<Response, Reject> {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let grant = field("grant_type").ok_or_else(|| {
        Reject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        )
    })?;
    if grant == EXCHANGE && state.ci.is_some() {
        return exchange(state, headers, &field);
    }
    // The login grants are always there; refresh tokens for client credentials are opt-in.
    if !matches!(
        grant,
        "client_credentials" | "refresh_token" | "authorization_code" | crate::device::GRANT
    ) {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant} is not supported here"),
        ));
    }
    let other_method = headers.contains_key(header::AUTHORIZATION)
        || field("client_secret").is_some()
        || field("client_assertion").is_some();
    let by_certificate =
        crate::mtls::authenticate(&state.mtls, state.clock.now(), peer, other_method, &field)
            .map_err(Reject::client)?;
    let (client_id, bound) = match by_certificate {
        Some((id, x5t)) => (id, Some(x5t)),
        None => (authenticate(state, headers, &field)?, None),
    };
    let jkt = crate::dpop::token_request(state, headers)?;
    let (scope, family, login) = redeem(state, grant, &client_id, &field)?;
    let granted = scope
        .map(|s| state.grantable_scope(&s))
        .filter(|s| !s.is_empty());
    let answer = token_answer(state, &client_id, granted, family, login, jkt)?;
    if let (Some(x5t), Some(token)) = (bound, answer["access_token"].as_str()) {
        state.mtls.bind(token, x5t);
    }
    if grant == "refresh_token" {
        state.count(|c| c.refresh_grants());
    }
    Ok(no_store(answer))
}

/// The token answer for `client_id`, with a refresh token when this server hands them out or
/// the grant is a login's (continuing the refresh-token `family` it came from, if any).
fn token_answer(
    state: &State,
    client_id: &str,
    granted: Option<String>,
    family: Option<u64>,
    login: bool,
    jkt: Option<String>,
) -> Result<Value, Reject> {
    let token_type = if jkt.is_some() { "DPoP" } else { "bearer" };
    let (token, ttl) = state.issue_bound(client_id, granted.clone(), jkt);
    let mut answer = json!({
        "access_token": token,
        "token_type": token_type,
        "expires_in": ttl.as_secs().max(1),
    });
    if let Some(scope) = &granted {
        answer["scope"] = Value::String(scope.clone());
    }
    if state.refresh_tokens || login {
        answer["refresh_token"] = Value::String(crate::authorize::issue_refresh(
            state, client_id, granted, family,
        ));
        if let Some(ttl) = state.faults().refresh_ttl_s {
            answer["refresh_expires_in"] = Value::from(ttl);
        }
    }
    Ok(answer)
}

fn no_store(answer: Value) -> Response {
    let mut r = axum::Json(answer).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The token exchange grant (RFC 8693).
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token exchange: the subject token must come from the CI issuer and match a federation;
/// client authentication is optional (a public client names none), and when given, the
/// federation must be for that client.
fn exchange<'a>(
    state: &State,
    headers: &HeaderMap,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Response, Reject> {
    let bad = |d: &str| Reject::new(StatusCode::BAD_REQUEST, "invalid_request", d.to_owned());
    let subject = field("subject_token").ok_or_else(|| bad("subject_token is missing"))?;
    match field("subject_token_type") {
        Some(
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token",
        ) => {}
        Some(other) => return Err(bad(&format!("subject_token_type {other} is not supported"))),
        None => return Err(bad("subject_token_type is missing")),
    }
    if field("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(bad("only access tokens are issued here"));
    }
    let authenticated = headers.contains_key(header::AUTHORIZATION)
        || field("client_secret").is_some()
        || field("client_assertion").is_some();
    let client = if authenticated {
        Some(authenticate(state, headers, field)?)
    } else {
        None
    };
    let ci = state
        .ci
        .as_ref()
        .ok_or_else(|| bad("token exchange is off"))?;
    let wanted = client.as_deref().or(field("client_id"));
    let client_id = ci
        .verify(state.unix_now(), headers, subject, wanted)
        .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, "invalid_grant", e))?;
    let granted = field("scope")
        .filter(|s| !s.is_empty())
        .map(|s| state.grantable_scope(s))
        .filter(|s| !s.is_empty());
    let jkt = crate::dpop::token_request(state, headers)?;
    let mut answer = token_answer(state, &client_id, granted, None, false, jkt)?;
    answer["issued_token_type"] = Value::String(ACCESS_TOKEN_TYPE.to_owned());
    Ok(no_store(answer))
}

/// What the grant brings: the scope asked for, the refresh-token family it continues, and
/// whether it is a login's (which always gets a refresh token).
fn redeem<'a>(
    state: &State,
    grant: &str,
    client_id: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(Option<String>, Option<u64>, bool), Reject> {
    let owned = |name: &str| field(name).map(str::to_owned);
    Ok(match grant {
        "authorization_code" => (
            crate::authorize::redeem_code(state, client_id, &owned)?,
            None,
            true,
        ),
        crate::device::GRANT => (
            crate::device::redeem(state, client_id, field("device_code"))?,
            None,
            true,
        ),
        "refresh_token" => {
            let rt = field("refresh_token").ok_or_else(|| {
                Reject::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is missing",
                )
            })?;
            let (scope, family) = crate::authorize::redeem_refresh(state, rt, client_id)?;
            (scope, family, true)
        }
        _ => (
            field("scope").map(str::to_owned).filter(|s| !s.is_empty()),
            None,
            false,
        ),
    })
}
