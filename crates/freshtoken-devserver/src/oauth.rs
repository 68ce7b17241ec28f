//! What every OAuth endpoint of the dev-server shares: its error answer and client
//! authentication (basic, post, client_secret_jwt, private_key_jwt, and assertions of its CI
//! issuer), strict as a real server would be.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;

use crate::assertion;
use crate::compare::constant_time_eq;
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

    pub(crate) fn client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
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
            .verify(state.unix_now(), headers, jwt, field("client_id"))
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
