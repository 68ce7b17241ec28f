//! The dev-server as a CI identity issuer, and as an authorization server that trusts it.
//!
//! Issuer side (as GitHub Actions' `ACTIONS_ID_TOKEN_REQUEST_URL`): `GET /ci/id-token
//! ?audience=…` with `Authorization: Bearer <request token>` answers `{"value": JWT}`, a
//! short-lived EdDSA token with `aud` from the query, `iss` = `http://HOST/ci`, the configured
//! `sub`; its key at `/ci/jwks` (and `/ci/.well-known/openid-configuration`). The key is made
//! when the server starts.
//!
//! Trusting side: a client assertion (RFC 7523) or a token exchange's subject token (RFC 8693)
//! from this issuer is checked as Azure AD's federated credentials do — signature by the
//! JWKS, `iss`, `aud` and `sub` equal to a [`Federation`], `exp` still ahead on the server's
//! clock — and an expired one is counted, so a test can prove none was ever presented.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A trust rule: tokens of this issuer with `aud` = `audience` and `sub` = `subject` stand for
/// `client_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The client the identity token stands for.
    pub client_id: String,
    /// The required `sub`.
    pub subject: String,
    /// The required `aud`.
    pub audience: String,
}

/// How the CI identity issuer behaves.
#[derive(Debug, Clone)]
pub struct CiConfig {
    /// The bearer token a job presents to get an identity token
    /// (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    pub request_token: String,
    /// Lifetime of the identity tokens, on the server's clock.
    pub identity_ttl: Duration,
    /// The `sub` of the identity tokens it issues.
    pub subject: String,
    /// Who the identity tokens may stand for.
    pub federations: Vec<Federation>,
}

/// What the CI issuer counted, served at `/__stats/ci`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiStats {
    /// Identity tokens issued.
    pub identity_tokens: u64,
    /// Identity-token requests refused (bad or missing request token).
    pub refused_requests: u64,
    /// Client assertions and subject tokens accepted.
    pub accepted: u64,
    /// Presented and rejected for any reason.
    pub rejected: u64,
    /// Presented after their `exp`: the AADSTS700024 case.
    pub expired: u64,
}

/// The issuer's key and counters.
pub(crate) struct CiIssuer {
    config: CiConfig,
    encoding: EncodingKey,
    x: String,
    kid: String,
    identity_tokens: AtomicU64,
    refused_requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
}

impl std::fmt::Debug for CiIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The PKCS#8 prefix of an Ed25519 private key (RFC 8410): what jsonwebtoken signs with.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl CiIssuer {
    pub(crate) fn new(config: CiConfig) -> Self {
        let seed: [u8; 32] = rand::random();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let mut der = PKCS8_ED25519.to_vec();
        der.extend_from_slice(&seed);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Self {
            config,
            encoding: EncodingKey::from_ed_der(&der),
            x: b64(public.as_bytes()),
            kid: format!("ci-{:08x}", rand::random::<u32>()),
            identity_tokens: AtomicU64::new(0),
            refused_requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CiStats {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        CiStats {
            identity_tokens: get(&self.identity_tokens),
            refused_requests: get(&self.refused_requests),
            accepted: get(&self.accepted),
            rejected: get(&self.rejected),
            expired: get(&self.expired),
        }
    }

    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig",
        }]})
    }

    /// An identity token for a job that presented `bearer`, for `audience`.
    pub(crate) fn mint(
        &self,
        now: u64,
        headers: &HeaderMap,
        bearer: Option<&str>,
        audience: Option<&str>,
    ) -> Option<String> {
        let ok = bearer.is_some_and(|b| {
            crate::compare::constant_time_eq(b.as_bytes(), self.config.request_token.as_bytes())
        });
        if !ok {
            self.refused_requests.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        let claims = json!({
            "iss": issuer(headers),
            "sub": self.config.subject,
            "aud": audience.unwrap_or("https://github.com/dev-server"),
            "iat": now,
            "nbf": now,
            "exp": now + self.config.identity_ttl.as_secs().max(1),
            "jti": format!("{:032x}", rand::random::<u128>()),
        });
        let jwt = jsonwebtoken::encode(&h, &claims, &self.encoding).ok()?;
        self.identity_tokens.fetch_add(1, Ordering::SeqCst);
        Some(jwt)
    }

    /// Checks an identity token presented to the token endpoint and returns the client it
    /// stands for; `client_id`, when the request names one, must be that client.
    pub(crate) fn verify(
        &self,
        now: u64,
        headers: &HeaderMap,
        jwt: &str,
        client_id: Option<&str>,
    ) -> Result<String, String> {
        let outcome = self.check(now, headers, jwt, client_id);
        match &outcome {
            Ok(_) => self.accepted.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.rejected.fetch_add(1, Ordering::SeqCst),
        };
        outcome
    }

    fn check(
        &self,
        now: u64,
        headers: &HeaderMap,
        jwt: &str,
        client_id: Option<&str>,
    ) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
            aud: String,
            exp: u64,
        }
        let key = DecodingKey::from_ed_components(&self.x)
            .map_err(|e| format!("the issuer's JWKS key is unusable ({e})"))?;
        let iss = issuer(headers);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[iss.as_str()]);
        // `aud` and `exp` are checked below, `exp` on the server's clock (which tests move).
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
            .map_err(|e| format!("identity token rejected: {e}"))?
            .claims;
        if claims.exp <= now {
            self.expired.fetch_add(1, Ordering::SeqCst);
            return Err("identity token rejected: it has expired (AADSTS700024)".into());
        }
        let federation = self
            .config
            .federations
            .iter()
            .find(|f| {
                f.subject == claims.sub
                    && f.audience == claims.aud
                    && client_id.is_none_or(|id| id == f.client_id)
            })
            .ok_or_else(|| {
                format!(
                    "no federated credential matches sub {:?} aud {:?}",
                    claims.sub, claims.aud
                )
            })?;
        Ok(federation.client_id.clone())
    }
}

/// `http://HOST/ci`, as the client named the server.
fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/ci")
}
