//! Client assertions (RFC 7523 §2.2, OpenID Connect Core §9): a short-lived JWT signed with
//! the client secret (`client_secret_jwt`) or a private key (`private_key_jwt`) instead of
//! sending the secret itself.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::error::Error;

/// The `client_assertion_type` of a JWT bearer client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Default lifetime of an assertion: long enough for clock skew, short enough to be useless
/// if captured.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// A JWS algorithm for client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum SigningAlg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm, for messages.
    pub const ALL: [SigningAlg; 12] = [
        SigningAlg::HS256,
        SigningAlg::HS384,
        SigningAlg::HS512,
        SigningAlg::RS256,
        SigningAlg::RS384,
        SigningAlg::RS512,
        SigningAlg::PS256,
        SigningAlg::PS384,
        SigningAlg::PS512,
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::EdDSA,
    ];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::HS256 => "HS256",
            SigningAlg::HS384 => "HS384",
            SigningAlg::HS512 => "HS512",
            SigningAlg::RS256 => "RS256",
            SigningAlg::RS384 => "RS384",
            SigningAlg::RS512 => "RS512",
            SigningAlg::PS256 => "PS256",
            SigningAlg::PS384 => "PS384",
            SigningAlg::PS512 => "PS512",
            SigningAlg::ES256 => "ES256",
            SigningAlg::ES384 => "ES384",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    /// Whether it is keyed with the client secret (HMAC).
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            SigningAlg::HS256 | SigningAlg::HS384 | SigningAlg::HS512
        )
    }

    fn jose(self) -> Algorithm {
        match self {
            SigningAlg::HS256 => Algorithm::HS256,
            SigningAlg::HS384 => Algorithm::HS384,
            SigningAlg::HS512 => Algorithm::HS512,
            SigningAlg::RS256 => Algorithm::RS256,
            SigningAlg::RS384 => Algorithm::RS384,
            SigningAlg::RS512 => Algorithm::RS512,
            SigningAlg::PS256 => Algorithm::PS256,
            SigningAlg::PS384 => Algorithm::PS384,
            SigningAlg::PS512 => Algorithm::PS512,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::ES384 => Algorithm::ES384,
            SigningAlg::EdDSA => Algorithm::EdDSA,
        }
    }

    fn key_kind(self) -> Option<KeyKind> {
        match self {
            SigningAlg::HS256 | SigningAlg::HS384 | SigningAlg::HS512 => None,
            SigningAlg::RS256
            | SigningAlg::RS384
            | SigningAlg::RS512
            | SigningAlg::PS256
            | SigningAlg::PS384
            | SigningAlg::PS512 => Some(KeyKind::Rsa),
            SigningAlg::ES256 => Some(KeyKind::P256),
            SigningAlg::ES384 => Some(KeyKind::P384),
            SigningAlg::EdDSA => Some(KeyKind::Ed25519),
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let known: Vec<_> = SigningAlg::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown signing algorithm {s:?}; known: {}",
                    known.join(", ")
                )
            })
    }
}

/// What kind of private key a PEM file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn default_alg(self) -> SigningAlg {
        match self {
            KeyKind::Rsa => SigningAlg::RS256,
            KeyKind::P256 => SigningAlg::ES256,
            KeyKind::P384 => SigningAlg::ES384,
            KeyKind::Ed25519 => SigningAlg::EdDSA,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "an EC P-256 key",
            KeyKind::P384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// Signs client assertions. `Debug` shows the algorithm and key id only.
#[derive(Clone)]
pub struct Signer {
    alg: SigningAlg,
    key: EncodingKey,
    key_id: Option<String>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl Signer {
    /// `client_secret_jwt`: HMAC with the client secret (HS256 unless `alg` says otherwise).
    pub fn with_secret(secret: &SecretString, alg: Option<SigningAlg>) -> Result<Self, Error> {
        let alg = alg.unwrap_or(SigningAlg::HS256);
        if !alg.is_hmac() {
            return Err(Error::Config(format!(
                "client_secret_jwt signs with the client secret: use HS256, HS384 or HS512, not {alg}"
            )));
        }
        Ok(Self {
            alg,
            key: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            key_id: None,
        })
    }

    /// `private_key_jwt`: a PEM private key (PKCS#1, PKCS#8 or SEC1). The algorithm follows
    /// the key (RS256 for RSA, ES256/ES384 by curve, EdDSA for Ed25519) unless `alg` names
    /// another one that fits it.
    pub fn with_private_key(
        pem: &SecretString,
        alg: Option<SigningAlg>,
        key_id: Option<String>,
    ) -> Result<Self, Error> {
        let (kind, der) = parse_private_key(pem.expose_secret()).map_err(Error::Config)?;
        let alg = match alg {
            None => kind.default_alg(),
            Some(a) if a.key_kind() == Some(kind) => a,
            Some(a) if a.is_hmac() => {
                return Err(Error::Config(format!(
                    "{a} signs with the client secret (client_secret_jwt), not with a private key"
                )));
            }
            Some(a) => {
                return Err(Error::Config(format!(
                    "signing algorithm {a} does not fit the private key, which is {}; use {} or no signing algorithm at all",
                    kind.describe(),
                    kind.default_alg()
                )));
            }
        };
        let key = match kind {
            // The RSA signer takes PKCS#1; jsonwebtoken unwraps PKCS#8 from the PEM itself.
            KeyKind::Rsa => EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
                .map_err(|e| Error::Config(format!("cannot read the RSA private key: {e}")))?,
            KeyKind::P256 | KeyKind::P384 => EncodingKey::from_ec_der(&der),
            KeyKind::Ed25519 => EncodingKey::from_ed_der(&der),
        };
        let signer = Self { alg, key, key_id };
        // Sign once now, so that a key that parses but cannot sign fails at start.
        signer.assertion("probe", "probe", UNIX_EPOCH, DEFAULT_ASSERTION_LIFETIME)?;
        Ok(signer)
    }

    /// The algorithm in use.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// A fresh assertion: `iss` = `sub` = `client_id`, `aud`, a random 128-bit `jti`,
    /// `iat` = `now`, `exp` = `now + lifetime`.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, Error> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(rand::random::<[u8; 16]>()),
            iat,
            exp: iat + lifetime.as_secs().max(1),
        };
        let mut header = Header::new(self.alg.jose());
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            Error::Config(format!(
                "cannot sign the client assertion with {}: {e}",
                self.alg
            ))
        })
    }
}

const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

/// Reads a PEM private key; returns its kind and DER in the form the signer takes (PKCS#1 or
/// PKCS#8 for RSA, PKCS#8 for the others: SEC1 EC keys are wrapped).
fn parse_private_key(pem: &str) -> Result<(KeyKind, Vec<u8>), String> {
    let (label, der) = pem_block(pem)?;
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    let curve = || {
        if contains(OID_P256) {
            Ok(KeyKind::P256)
        } else if contains(OID_P384) {
            Ok(KeyKind::P384)
        } else {
            Err("the EC key is on a curve other than P-256 or P-384".to_owned())
        }
    };
    match label.as_str() {
        "RSA PRIVATE KEY" => Ok((KeyKind::Rsa, der)),
        "EC PRIVATE KEY" => {
            let kind = curve()?;
            let wrapped = sec1_to_pkcs8(
                &der,
                if kind == KeyKind::P256 {
                    OID_P256
                } else {
                    OID_P384
                },
            );
            Ok((kind, wrapped))
        }
        "PRIVATE KEY" => {
            // The algorithm identifier comes first in PKCS#8, so look only near the start.
            let head = &der[..der.len().min(32)];
            let head_has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
            if head_has(OID_RSA) {
                Ok((KeyKind::Rsa, der))
            } else if head_has(OID_EC_PUBLIC_KEY) {
                Ok((curve()?, der))
            } else if head_has(OID_ED25519) {
                Ok((KeyKind::Ed25519, der))
            } else {
                Err("the PKCS#8 key is not RSA, EC (P-256, P-384) or Ed25519".into())
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err(
            "the private key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out KEY.plain)"
                .into(),
        ),
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => Err(format!(
            "the PEM file holds a {}, not a private key",
            label.to_lowercase()
        )),
        other => Err(format!(
            "unsupported PEM block {other:?}; expected a private key"
        )),
    }
}

/// The first `-----BEGIN X-----` block: (X, DER bytes).
fn pem_block(pem: &str) -> Result<(String, Vec<u8>), String> {
    let start = pem
        .find("-----BEGIN ")
        .ok_or("not a PEM file (no -----BEGIN line)")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("malformed PEM header")?;
    let label = rest[..label_end].trim().to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest
        .find(&end_marker)
        .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
    let body: String = rest[body_start..body_end]
        .lines()
        .filter(|l| !l.contains(':'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| format!("PEM block {label:?} is not valid base64"))?;
    if der.is_empty() {
        return Err(format!("PEM block {label:?} is empty"));
    }
    Ok((label, der))
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// PKCS#8 `PrivateKeyInfo` around a SEC1 `ECPrivateKey` (RFC 5915 §3, RFC 5208 §5).
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(curve_oid);
    let mut info = der(0x02, &[0x00]);
    info.extend(der(0x30, &alg));
    info.extend(der(0x04, sec1));
    der(0x30, &info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_len(5), [5]);
        assert_eq!(der_len(0x80), [0x81, 0x80]);
        assert_eq!(der_len(300), [0x82, 0x01, 0x2c]);
    }

    #[test]
    fn pem_errors_are_clear() {
        let cases: &[(&str, &str)] = &[
            ("hello", "not a PEM file"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "no END line"),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                "not valid base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
                "is empty",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "is encrypted",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "not a private key",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "not RSA, EC",
            ),
        ];
        for (pem, want) in cases {
            let got = parse_private_key(pem).unwrap_err();
            assert!(got.contains(want), "{pem:?}: {got}");
        }
    }

    #[test]
    fn hmac_assertions_carry_the_claims() {
        let secret = SecretString::from("x".repeat(64));
        let s = Signer::with_secret(&secret, None).unwrap();
        assert_eq!(s.alg(), SigningAlg::HS256);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sign = || {
            s.assertion(
                "client-1",
                "https://idp/token",
                now,
                DEFAULT_ASSERTION_LIFETIME,
            )
            .unwrap()
        };
        let (a, b) = (sign(), sign());
        let d = crate::jwt::decode(&a).unwrap();
        assert_eq!(d.header["alg"], "HS256");
        assert_eq!(d.claims["iss"], "client-1");
        assert_eq!(d.claims["sub"], "client-1");
        assert_eq!(d.claims["aud"], "https://idp/token");
        assert_eq!(d.claims["iat"], 1_700_000_000u64);
        assert_eq!(d.claims["exp"], 1_700_000_060u64);
        let jti = d.claims["jti"].as_str().unwrap();
        assert!(jti.len() >= 22, "128 bits or more: {jti}");
        assert_ne!(
            crate::jwt::decode(&b).unwrap().claims["jti"],
            d.claims["jti"],
            "a fresh jti each time"
        );
        assert!(!format!("{s:?}").contains("xxxx"), "Debug hides the key");
    }

    #[test]
    fn algorithm_and_method_must_fit() {
        let secret = SecretString::from("k".repeat(32));
        assert!(
            Signer::with_secret(&secret, Some(SigningAlg::RS256))
                .unwrap_err()
                .to_string()
                .contains("HS256, HS384 or HS512")
        );
        assert_eq!("es384".parse::<SigningAlg>().unwrap(), SigningAlg::ES384);
        assert!(
            "none"
                .parse::<SigningAlg>()
                .unwrap_err()
                .contains("known: HS256")
        );
    }
}
