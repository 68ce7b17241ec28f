//! The token endpoint: client authentication (basic, post, client_secret_jwt,
//! private_key_jwt) and the grants (client_credentials, refresh_token), strict as a real
//! server would be.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::assertion;
use crate::state::State;

/// An OAuth error answer, built only at the edge.
pub(crate) struct Reject {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl Reject {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

/// Answers a token request.
pub(crate) fn issue(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response, Reject> {
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
    let client_id = authenticate(state, headers, &field)?;
    let (scope, family, login) = redeem(state, grant, &client_id, &field)?;
    let granted = scope
        .map(|s| state.grantable_scope(&s))
        .filter(|s| !s.is_empty());
    let answer = token_answer(state, &client_id, granted, family, login)?;
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
) -> Result<Value, Reject> {
    let (token, ttl) = state.issue(client_id, granted.clone());
    let mut answer = json!({
        "access_token": token,
        "token_type": "bearer",
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
        .verify(state, headers, subject, wanted)
        .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, "invalid_grant", e))?;
    let granted = field("scope")
        .filter(|s| !s.is_empty())
        .map(|s| state.grantable_scope(s))
        .filter(|s| !s.is_empty());
    let mut answer = token_answer(state, &client_id, granted, None, false)?;
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

/// Finds out which client is asking, by whichever one method it used.
pub(crate) fn authenticate<'a>(
    state: &State,
    headers: &HeaderMap,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Result<String, Reject> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(parse_basic);
    let assertion = match (field("client_assertion_type"), field("client_assertion")) {
        (Some(assertion::TYPE), Some(jwt)) => Some(jwt),
        (Some(other), _) => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("client_assertion_type {other} is not supported"),
            ));
        }
        (None, Some(_)) => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type is missing",
            ));
        }
        (None, None) => None,
    };
    let methods = usize::from(basic.is_some())
        + usize::from(field("client_secret").is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "more than one client authentication method",
        ));
    }
    if let (Some(jwt), Some(ci)) = (assertion, &state.ci)
        && freshtoken::jwt::decode(jwt).ok().is_some_and(|d| {
            d.claims
                .get("iss")
                .and_then(|v| v.as_str())
                .is_some_and(|iss| iss.ends_with("/ci"))
        })
    {
        return ci
            .verify(state, headers, jwt, field("client_id"))
            .map_err(Reject::client);
    }
    if let Some(jwt) = assertion {
        let client_id = assertion::verify(state, headers, jwt).map_err(Reject::client)?;
        if field("client_id").is_some_and(|id| id != client_id) {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id does not match the assertion",
            ));
        }
        return Ok(client_id);
    }
    let (client_id, secret) = match (basic, field("client_id")) {
        (Some(Some((id, secret))), _) => (id, Some(secret)),
        (Some(None), _) => return Err(Reject::client("malformed Basic credentials")),
        (None, Some(id)) => (id.to_owned(), field("client_secret").map(str::to_owned)),
        (None, None) => return Err(Reject::client("no client authentication")),
    };
    match (state.clients.get(&client_id), secret) {
        (Some(expected), Some(given))
            if constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
        {
            Ok(client_id)
        }
        _ => Err(Reject::client("client authentication failed")),
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` → (id, secret); `None` when malformed.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_urldecoded() {
        let enc = base64::engine::general_purpose::STANDARD.encode("a%3Ab+c:p%40ss%3Aw%2Frd");
        assert_eq!(
            parse_basic(&format!("Basic {enc}")),
            Some(("a:b c".into(), "p@ss:w/rd".into()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
