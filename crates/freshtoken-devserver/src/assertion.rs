//! Verifying client assertions (RFC 7523 §3) as a strict server does: the signature with the
//! client's secret or registered public key, `iss` = `sub` = the client, `aud` = this token
//! endpoint, `exp` in the future, and a `jti` never seen before.

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::state::State;

/// The only assertion type accepted.
pub(crate) const TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    jti: Option<String>,
}

/// Checks `jwt` and returns the client it authenticates; the error says what failed.
pub(crate) fn verify(state: &State, headers: &HeaderMap, jwt: &str) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|e| format!("the client assertion is not a JWT ({e})"))?;
    let unverified =
        freshtoken::jwt::decode(jwt).map_err(|_| "the client assertion is not a JWT".to_owned())?;
    let client_id = unverified
        .claims
        .get("sub")
        .and_then(|v| v.as_str())
        .ok_or("the client assertion has no sub")?
        .to_owned();
    let key = match header.alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = state.clients.get(&client_id).ok_or("unknown client")?;
            DecodingKey::from_secret(secret.as_bytes())
        }
        alg => {
            let pem = state
                .client_keys
                .get(&client_id)
                .ok_or("no public key is registered for this client")?;
            let pem = pem.as_bytes();
            match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                _ => DecodingKey::from_rsa_pem(pem),
            }
            .map_err(|e| format!("the registered public key does not fit {alg:?} ({e})"))?
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let token_endpoint = format!("http://{host}/oauth/token");
    let issuer = format!("http://{host}");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_endpoint.as_str(), issuer.as_str()]);
    validation.set_issuer(&[client_id.as_str()]);
    validation.sub = Some(client_id.clone());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 5;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .map_err(|e| format!("client assertion rejected: {e}"))?
        .claims;
    let jti = claims.jti.ok_or("the client assertion has no jti")?;
    if !state.first_use_of_jti(&claims.sub, &jti, claims.exp) {
        return Err("the client assertion's jti was used before".into());
    }
    Ok(client_id)
}
