//! Reading (never verifying) a JWT's header and claims: for an expiry when the server gave no
//! `expires_in`, and for `freshtoken inspect`. Opaque tokens are normal and not an error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Map, Value};

/// Largest token `decode` looks at; real JWTs are a few KiB.
const MAX_JWT_LEN: usize = 64 * 1024;

/// The readable parts of a JWS compact token. The signature is kept out on purpose.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decoded {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

impl Decoded {
    /// A numeric date claim (`exp`, `iat`, `nbf`) as a time.
    pub fn time_claim(&self, name: &str) -> Option<SystemTime> {
        let secs = self.claims.get(name)?.as_f64()?;
        (secs.is_finite() && (0.0..1e11).contains(&secs))
            .then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
    }
}

/// Why a string is not a readable JWT; "opaque" is the ordinary case, not a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAJwt {
    /// Not three dot-separated parts: an opaque token (as Genesys Cloud issues).
    Opaque,
    /// Three parts, but the header or claims are not base64url JSON objects.
    Malformed(String),
}

/// Decodes the header and claims of a compact JWS without checking the signature.
pub fn decode(token: &str) -> Result<Decoded, NotAJwt> {
    let token = token.trim();
    if token.len() > MAX_JWT_LEN {
        return Err(NotAJwt::Malformed(format!(
            "longer than {} KiB",
            MAX_JWT_LEN / 1024
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NotAJwt::Opaque);
    };
    let header = part(h).map_err(|e| NotAJwt::Malformed(format!("header: {e}")))?;
    let claims = part(c).map_err(|e| NotAJwt::Malformed(format!("claims: {e}")))?;
    Ok(Decoded { header, claims })
}

/// The `exp` of a JWT access token, if it is one and has it.
pub fn expiry(token: &str) -> Option<SystemTime> {
    decode(token).ok()?.time_claim("exp")
}

/// The `exp` of a JWT access token as the number it holds, however far in the past or the
/// future (negative included): an expiry decided from it must refuse one that has passed,
/// not ignore it as [`Decoded::time_claim`] does and fall back to a default lifetime.
pub fn exp_seconds(token: &str) -> Option<f64> {
    decode(token)
        .ok()?
        .claims
        .get("exp")?
        .as_f64()
        .filter(|s| s.is_finite())
}

fn part(b64: &str) -> Result<Map<String, Value>, String> {
    // Padding is not allowed by RFC 7515, but some issuers add it; accept both.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| "not base64url".to_owned())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("JSON but not an object".into()),
        Err(_) => Err("not JSON".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn table() {
        let good = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"exp":1700000100,"sub":"me"}"#)
        );
        let padded = format!("{}=.{}.x", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":5}"#));
        let cases: Vec<(&str, Result<Option<u64>, NotAJwt>)> = vec![
            (&good, Ok(Some(1_700_000_100))),
            (&padded, Ok(Some(5))),
            ("opaque-token-123", Err(NotAJwt::Opaque)),
            ("a.b", Err(NotAJwt::Opaque)),
            ("a.b.c.d", Err(NotAJwt::Opaque)),
            (
                "!!!.e30.x",
                Err(NotAJwt::Malformed("header: not base64url".into())),
            ),
            (
                "e30.WzFd.x",
                Err(NotAJwt::Malformed("claims: JSON but not an object".into())),
            ),
            ("e30.e30.x", Ok(None)),
        ];
        for (token, want) in cases {
            let got = decode(token).map(|d| {
                d.time_claim("exp")
                    .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
            });
            assert_eq!(got, want, "{token}");
        }
    }

    #[test]
    fn silly_exp_values_are_ignored() {
        for exp in ["-1", "1e300", "\"tomorrow\"", "null"] {
            let t = format!("e30.{}.x", b64(&format!(r#"{{"exp":{exp}}}"#)));
            assert_eq!(expiry(&t), None, "{exp}");
        }
    }

    #[test]
    fn exp_seconds_keeps_what_time_claim_drops() {
        let t = |exp: &str| format!("e30.{}.x", b64(&format!(r#"{{"exp":{exp}}}"#)));
        assert_eq!(exp_seconds(&t("-1")), Some(-1.0));
        assert_eq!(exp_seconds(&t("1e300")), Some(1e300));
        assert_eq!(exp_seconds(&t("1700000000.5")), Some(1_700_000_000.5));
        assert_eq!(exp_seconds(&t("\"tomorrow\"")), None);
        assert_eq!(exp_seconds("opaque"), None);
    }

    #[test]
    fn huge_input_is_refused_not_decoded() {
        let t = format!("e30.{}.x", "A".repeat(MAX_JWT_LEN));
        assert!(matches!(decode(&t), Err(NotAJwt::Malformed(_))));
    }
}
