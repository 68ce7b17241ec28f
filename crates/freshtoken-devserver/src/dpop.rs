//! DPoP (RFC 9449) on both sides: the token endpoint binds a token to the key of the proof
//! that came with the request (a JWT with `cnf.jkt`), and `/api/...` takes such a token only
//! with a valid proof: signature against the proof's own `jwk`, `typ`, `htm`, `htu`, `iat`
//! within a window, a `jti` not seen before, `ath` of the token, the key the token is bound
//! to, and the current nonce when nonces are on (the `dpop_nonce` fault).

use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde_json::{Map, Value, json};

use crate::dpop_state::lock;
use crate::oauth::Reject;
use crate::state::{Issued, State};

/// How far a proof's `iat` may be from the server's clock, either way.
pub(crate) const IAT_WINDOW_S: u64 = 60;

/// Why a proof was not taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No nonce, or not the current one: the client is told the new one.
    Nonce,
    /// Anything else.
    Proof(String),
}

/// Checks the `DPoP` header of a request for `method` on `htu`, with `token` (and the key
/// thumbprint it is bound to) when it is for the API; the proof's key thumbprint when it is
/// good.
pub(crate) fn check_proof(
    state: &State,
    headers: &HeaderMap,
    method: &str,
    htu: &str,
    token: Option<(&str, &str)>,
) -> Result<String, Refused> {
    let result = verify(state, headers, method, htu, token).and_then(|jkt| match token {
        Some((_, bound)) if bound != jkt => Err(Refused::Proof(
            "the proof's key is not the one the token is bound to".into(),
        )),
        _ => Ok(jkt),
    });
    let d = &state.dpop;
    match &result {
        Ok(_) => d.accepted(state.faults().dpop_nonce_every),
        Err(Refused::Nonce) => {
            d.nonce_challenges.fetch_add(1, Ordering::SeqCst);
        }
        Err(Refused::Proof(why)) => {
            tracing::debug!("DPoP proof refused: {why}");
            d.proofs_refused.fetch_add(1, Ordering::SeqCst);
            if why.contains("replayed") {
                d.replays_refused.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    result
}

/// A JSON object: a proof's claims, or its JWK.
type Object = Map<String, Value>;

/// The one `DPoP` header's claims and public JWK, when it is a `dpop+jwt` signed with an
/// asymmetric algorithm by the public key in its header.
fn signed_claims(headers: &HeaderMap) -> Result<(Object, Object), Refused> {
    let bad = |why: &str| Refused::Proof(why.to_owned());
    let mut proofs = headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(bad("exactly one DPoP header is needed"));
    };
    let proof = proof
        .to_str()
        .map_err(|_| bad("the DPoP header is not text"))?;
    let jose = jsonwebtoken::decode_header(proof).map_err(|e| bad(&format!("header: {e}")))?;
    if jose.typ.as_deref() != Some("dpop+jwt") {
        return Err(bad("typ is not dpop+jwt"));
    }
    if !matches!(
        jose.alg,
        Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::RS256
            | Algorithm::PS256
            | Algorithm::EdDSA
    ) {
        return Err(bad("alg is not an asymmetric one"));
    }
    let jwk: Jwk = jose.jwk.ok_or_else(|| bad("no jwk in the header"))?;
    let jwk_json = serde_json::to_value(&jwk).unwrap_or_default();
    let jwk_map = jwk_json.as_object().cloned().unwrap_or_default();
    if ["d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .any(|k| jwk_map.contains_key(*k))
    {
        return Err(bad("the jwk holds a private key"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| bad(&format!("jwk: {e}")))?;
    let mut validation = Validation::new(jose.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &validation)
        .map_err(|e| bad(&format!("signature: {e}")))?
        .claims;
    Ok((claims, jwk_map))
}

fn verify(
    state: &State,
    headers: &HeaderMap,
    method: &str,
    htu: &str,
    token: Option<(&str, &str)>,
) -> Result<String, Refused> {
    let bad = |why: &str| Refused::Proof(why.to_owned());
    let (claims, jwk_map) = signed_claims(headers)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(method) {
        return Err(bad("htm is not the request's method"));
    }
    let same_uri = text("htu")
        .and_then(|u| url::Url::parse(u).ok())
        .zip(url::Url::parse(htu).ok())
        .is_some_and(|(a, b)| freshtoken::dpop::target_uri(&a) == freshtoken::dpop::target_uri(&b));
    if !same_uri {
        return Err(bad("htu is not the request's URL"));
    }
    let now = state.unix_now();
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no iat"))?;
    if iat + IAT_WINDOW_S < now || iat > now + IAT_WINDOW_S {
        return Err(bad("iat is outside the window"));
    }
    if let Some((token, _)) = token
        && text("ath") != Some(freshtoken::dpop::access_token_hash(token).as_str())
    {
        return Err(bad("ath is not the token's hash"));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("no jti"))?;
    if state.faults().dpop_nonce && text("nonce") != Some(state.dpop.nonce().as_str()) {
        return Err(Refused::Nonce);
    }
    {
        let mut seen = lock(&state.dpop.seen);
        seen.retain(|_, at| *at + 2 * IAT_WINDOW_S >= now);
        if seen.insert(jti.to_owned(), now).is_some() {
            return Err(bad("the proof was replayed (its jti was seen before)"));
        }
    }
    freshtoken::dpop::jwk_thumbprint(&jwk_map).ok_or_else(|| bad("the jwk has no thumbprint"))
}

/// The request's own URL as `htu` should name it: this server speaks plain http.
pub(crate) fn request_uri(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}{path}")
}

/// For the token endpoint: the thumbprint to bind the token to, when a proof came.
pub(crate) fn token_request(state: &State, headers: &HeaderMap) -> Result<Option<String>, Reject> {
    if !headers.contains_key("dpop") {
        return Ok(None);
    }
    let htu = request_uri(headers, "/oauth/token");
    match check_proof(state, headers, "POST", &htu, None) {
        Ok(jkt) => Ok(Some(jkt)),
        Err(Refused::Nonce) => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            freshtoken::dpop::USE_NONCE,
            "the DPoP proof needs the server's nonce",
        )),
        Err(Refused::Proof(why)) => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            why,
        )),
    }
}

/// The API's check of a request with `Authorization: DPoP …` (or of a DPoP-bound token sent
/// any other way, which is refused): the grant, or the 401 to answer.
pub(crate) fn authorize(
    state: &State,
    method: &str,
    headers: &HeaderMap,
    path: &str,
) -> Result<Issued, Box<Response>> {
    state.count(|c| c.api_calls());
    let result = (|| -> Result<Issued, Box<Response>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
            .map(str::trim)
            .ok_or_else(|| challenge(state, "invalid_token", false))?;
        let issued = state
            .check(token)
            .filter(|i| i.jkt.is_some() && !state.faults().reject_api)
            .ok_or_else(|| challenge(state, "invalid_token", false))?;
        let htu = request_uri(headers, path);
        let bound = issued.jkt.as_deref().unwrap_or_default();
        match check_proof(state, headers, method, &htu, Some((token, bound))) {
            Ok(_) => Ok(issued),
            Err(Refused::Nonce) => Err(challenge(state, freshtoken::dpop::USE_NONCE, true)),
            Err(Refused::Proof(_)) => Err(challenge(state, "invalid_dpop_proof", false)),
        }
    })();
    let ok = result.is_ok();
    state.count(|c| if ok { c.api_ok() } else { c.api_401() });
    state.count_path(path, ok);
    result
}

/// A 401 with `WWW-Authenticate: DPoP error="…"`, and the current nonce when it is asked for.
fn challenge(state: &State, error: &str, with_nonce: bool) -> Box<Response> {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": error })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::try_from(format!(
        "DPoP error=\"{error}\", algs=\"ES256 ES384 RS256 PS256 EdDSA\""
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if with_nonce && let Ok(v) = HeaderValue::try_from(state.dpop.nonce()) {
        r.headers_mut().insert("dpop-nonce", v);
    }
    Box::new(r)
}
