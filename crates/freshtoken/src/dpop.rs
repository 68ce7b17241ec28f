//! DPoP (RFC 9449): tokens bound to a key the client holds, proven by a fresh signed JWT on
//! every request. A token that leaks from a log or a sink file is useless without the key.
//!
//! A [`DpopKey`] signs the proofs: for the token request (the server binds the token to
//! the key's thumbprint, `cnf.jkt`) and for each request that uses the token (with `ath`,
//! the token's hash). ES256 (P-256) is the default, since every server that does DPoP takes
//! it; EdDSA (Ed25519) is offered too, and RS256/PS256 for an RSA key of the user's own
//! (freshtoken makes no RSA keys: a 2048-bit key takes a noticeable time to make, and
//! servers that take RSA proofs take ES256 too).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::Rng;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::Error;

mod keep;
pub use keep::{key_path, load_or_create};

/// The `typ` of a DPoP proof's header (RFC 9449 §4.2).
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The `token_type` of a DPoP-bound token and the scheme of its `Authorization` header.
pub const TOKEN_TYPE: &str = "DPoP";

/// The error a server answers when a proof lacks its current nonce (RFC 9449 §8, §9).
pub const USE_NONCE: &str = "use_dpop_nonce";

/// The header that carries a server's nonce, and the one that carries a proof.
pub const NONCE_HEADER: &str = "DPoP-Nonce";

/// The algorithm of a DPoP key and its proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DpopAlg {
    /// ECDSA with P-256 and SHA-256: the default, taken by every DPoP server.
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for a given RSA key.
    Rs256,
    /// RSASSA-PSS with SHA-256, for a given RSA key.
    Ps256,
}

impl DpopAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            DpopAlg::Es256 => "ES256",
            DpopAlg::EdDsa => "EdDSA",
            DpopAlg::Rs256 => "RS256",
            DpopAlg::Ps256 => "PS256",
        }
    }

    /// Whether freshtoken makes keys of this algorithm (`dpop = true`); RSA keys are given.
    pub fn can_generate(self) -> bool {
        matches!(self, DpopAlg::Es256 | DpopAlg::EdDsa)
    }
}

impl std::str::FromStr for DpopAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ES256" => Ok(DpopAlg::Es256),
            "EdDSA" | "Ed25519" => Ok(DpopAlg::EdDsa),
            "RS256" => Ok(DpopAlg::Rs256),
            "PS256" => Ok(DpopAlg::Ps256),
            other => Err(format!(
                "DPoP algorithm {other:?} is not offered; use ES256 (the default), EdDSA, RS256 or PS256"
            )),
        }
    }
}

/// The private half of a DPoP key.
#[derive(Clone)]
enum Signing {
    Es256(SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    /// An RSA key (ring), signing with PKCS#1 v1.5 (`pss` false) or PSS.
    Rsa {
        pair: std::sync::Arc<ring::signature::RsaKeyPair>,
        pss: bool,
    },
}

/// A key that signs DPoP proofs.
///
/// `Debug` shows its algorithm and thumbprint, never the private key.
#[derive(Clone)]
pub struct DpopKey {
    signing: Signing,
    /// The same P-256 key for ring (in the tree through rustls), whose assembly signs several
    /// times faster than p256's portable code: the proxy signs every request.
    ring: Option<std::sync::Arc<ring::signature::EcdsaKeyPair>>,
    jwk: Map<String, Value>,
    thumbprint: String,
    /// The proof header, base64url, the same for every proof of this key.
    header_b64: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg())
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random P-256 key, for a profile that has none yet.
    pub fn generate() -> Self {
        Self::from_signing(Signing::Es256(random_p256()))
    }

    /// A new random key for `alg`; RS256 and PS256 keys are not made (see the module docs).
    pub fn generate_for(alg: DpopAlg) -> Result<Self, Error> {
        let signing = match alg {
            DpopAlg::Es256 => Signing::Es256(random_p256()),
            DpopAlg::EdDsa => {
                let mut bytes = [0u8; 32];
                rand::rng().fill(&mut bytes);
                Signing::EdDsa(ed25519_dalek::SigningKey::from_bytes(&bytes))
            }
            DpopAlg::Rs256 | DpopAlg::Ps256 => {
                return Err(Error::Config(format!(
                    "freshtoken makes ES256 and EdDSA DPoP keys, not {}: give an RSA key as dpop_key \
                     (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)",
                    alg.as_str()
                )));
            }
        };
        Ok(Self::from_signing(signing))
    }

    /// This key for `alg`: an RSA key signs with RS256 (its default) or PS256; any other key
    /// has one algorithm, and another is an error naming both.
    pub fn with_alg(self, alg: DpopAlg) -> Result<Self, Error> {
        match (self.signing, alg) {
            (Signing::Rsa { pair, .. }, DpopAlg::Rs256 | DpopAlg::Ps256) => {
                Ok(Self::from_signing(Signing::Rsa {
                    pair,
                    pss: alg == DpopAlg::Ps256,
                }))
            }
            (signing, alg) => {
                let key = Self::from_signing(signing);
                if key.algorithm() == alg {
                    Ok(key)
                } else {
                    Err(Error::Config(format!(
                        "dpop_alg is {} but the DPoP key is an {} key",
                        alg.as_str(),
                        key.alg()
                    )))
                }
            }
        }
    }

    /// Reads a private key in PEM: P-256 as PKCS#8 (`BEGIN PRIVATE KEY`, as `openssl genpkey`
    /// writes it) or SEC1 (`BEGIN EC PRIVATE KEY`, as `openssl ecparam -genkey` does),
    /// Ed25519 as PKCS#8, or RSA (2048 bits or more) as PKCS#8 or PKCS#1 (`BEGIN RSA PRIVATE
    /// KEY`), which signs RS256 unless [`DpopKey::with_alg`] says PS256. The error never
    /// quotes the key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let pem = pem.trim();
        let signing = if pem.contains("BEGIN RSA PRIVATE KEY") {
            pem_der(pem)
                .and_then(|der| ring::signature::RsaKeyPair::from_der(&der).ok())
                .map(rsa_signing)
        } else if pem.contains("BEGIN EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(pem)
                .ok()
                .map(|s| Signing::Es256(SigningKey::from(s)))
        } else {
            p256::SecretKey::from_pkcs8_pem(pem)
                .ok()
                .map(|s| Signing::Es256(SigningKey::from(s)))
                .or_else(|| {
                    ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                        .ok()
                        .map(Signing::EdDsa)
                })
                .or_else(|| {
                    pem_der(pem)
                        .and_then(|der| ring::signature::RsaKeyPair::from_pkcs8(&der).ok())
                        .map(rsa_signing)
                })
        };
        let signing = signing.ok_or_else(|| {
            Error::Config(
                "the DPoP key is not a P-256 (PKCS#8 or SEC1), Ed25519 (PKCS#8) or RSA (PKCS#8 or PKCS#1, 2048 bits or more) private key in PEM"
                    .into(),
            )
        })?;
        Ok(Self::from_signing(signing))
    }

    /// The private key as PKCS#8 PEM, to keep a generated key.
    pub fn to_pem(&self) -> Result<SecretString, Error> {
        let pem = match &self.signing {
            Signing::Es256(key) => p256::SecretKey::from(key.clone()).to_pkcs8_pem(LineEnding::LF),
            Signing::EdDsa(key) => key.to_pkcs8_pem(LineEnding::LF),
            // Only made keys are written, and RSA keys are never made.
            Signing::Rsa { .. } => {
                return Err(Error::Config(
                    "an RSA DPoP key is the user's own: freshtoken does not write it".into(),
                ));
            }
        }
        .map_err(|_| Error::Config("the DPoP key cannot be written as PEM".into()))?;
        Ok(SecretString::from(pem.as_str().to_owned()))
    }

    fn from_signing(signing: Signing) -> Self {
        let mut jwk = Map::new();
        match &signing {
            Signing::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.map(|b| b.as_slice()).unwrap_or_default())
                };
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), coordinate(point.x()).into());
                jwk.insert("y".into(), coordinate(point.y()).into());
            }
            Signing::EdDsa(key) => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                let public = key.verifying_key().to_bytes();
                jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(public).into());
            }
            Signing::Rsa { pair, .. } => {
                let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                let unsigned = |b: &[u8]| {
                    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                    URL_SAFE_NO_PAD.encode(&b[start..])
                };
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), unsigned(&public.n).into());
                jwk.insert("e".into(), unsigned(&public.e).into());
            }
        }
        // A valid key's public JWK has every member its thumbprint needs.
        let thumbprint = jwk_thumbprint(&jwk).unwrap_or_default();
        let alg = alg_of(&signing);
        let header = json!({"typ": PROOF_TYPE, "alg": alg.as_str(), "jwk": jwk});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let ring = match &signing {
            Signing::Es256(key) => p256::SecretKey::from(key.clone())
                .to_pkcs8_der()
                .ok()
                .and_then(|der| {
                    ring::signature::EcdsaKeyPair::from_pkcs8(
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        der.as_bytes(),
                        &ring::rand::SystemRandom::new(),
                    )
                    .ok()
                })
                .map(std::sync::Arc::new),
            Signing::EdDsa(_) | Signing::Rsa { .. } => None,
        };
        Self {
            ring,
            signing,
            jwk,
            thumbprint,
            header_b64,
        }
    }

    /// The JOSE algorithm of the proofs.
    pub fn alg(&self) -> &'static str {
        self.algorithm().as_str()
    }

    /// The algorithm of the key and its proofs.
    pub fn algorithm(&self) -> DpopAlg {
        alg_of(&self.signing)
    }

    /// The public key as a JWK (what every proof's header carries).
    pub fn public_jwk(&self) -> &Map<String, Value> {
        &self.jwk
    }

    /// The RFC 7638 thumbprint of the public key: the `jkt` a bound token's `cnf` names.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request (RFC 9449 §4.2): `htm` the method, `htu` the URL without its
    /// query and fragment, `iat` from `now`, a fresh `jti`; `ath` the hash of the access
    /// token it goes with (see [`access_token_hash`]), `nonce` the server's latest.
    pub fn proof(
        &self,
        htm: &str,
        htu: &Url,
        ath: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> String {
        let mut jti = [0u8; 16];
        rand::rng().fill(&mut jti);
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = Map::new();
        claims.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
        claims.insert("htm".into(), htm.into());
        claims.insert("htu".into(), target_uri(htu).into());
        claims.insert("iat".into(), iat.into());
        if let Some(ath) = ath {
            claims.insert("ath".into(), ath.into());
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        let signing_input = format!(
            "{}.{}",
            self.header_b64,
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let fast = self.ring.as_ref().and_then(|pair| {
            pair.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
                .ok()
        });
        let signature = match &self.signing {
            // r || s, 64 bytes: what JWS wants (RFC 7518 §3.4).
            Signing::Es256(_) if fast.is_some() => {
                URL_SAFE_NO_PAD.encode(fast.as_ref().map(|s| s.as_ref()).unwrap_or_default())
            }
            Signing::Es256(key) => {
                let signature: Signature = key.sign(signing_input.as_bytes());
                URL_SAFE_NO_PAD.encode(signature.to_bytes())
            }
            Signing::EdDsa(key) => {
                URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()).to_bytes())
            }
            Signing::Rsa { pair, pss } => {
                let padding: &'static dyn ring::signature::RsaEncoding = match pss {
                    true => &ring::signature::RSA_PSS_SHA256,
                    false => &ring::signature::RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0u8; pair.public().modulus_len()];
                // Fails only when the buffer is not the modulus' length, which it is.
                let _ = pair.sign(
                    padding,
                    &ring::rand::SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut signature,
                );
                URL_SAFE_NO_PAD.encode(signature)
            }
        };
        format!("{signing_input}.{signature}")
    }
}

/// A random P-256 signing key.
fn random_p256() -> SigningKey {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        // Zero and values at or above the group order are refused (a ~2^-128 chance).
        if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
            return key;
        }
    }
}

fn rsa_signing(pair: ring::signature::RsaKeyPair) -> Signing {
    Signing::Rsa {
        pair: std::sync::Arc::new(pair),
        pss: false,
    }
}

fn alg_of(signing: &Signing) -> DpopAlg {
    match signing {
        Signing::Es256(_) => DpopAlg::Es256,
        Signing::EdDsa(_) => DpopAlg::EdDsa,
        Signing::Rsa { pss: false, .. } => DpopAlg::Rs256,
        Signing::Rsa { pss: true, .. } => DpopAlg::Ps256,
    }
}

/// The DER inside one PEM block (its base64 lines between BEGIN and END).
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The `htu` of a request to `url`: the URL without its query and fragment (RFC 9449 §4.2).
pub fn target_uri(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The `ath` of a proof that goes with `access_token`: base64url of its SHA-256.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The RFC 7638 thumbprint of a public JWK: base64url SHA-256 of its required members in
/// lexical order. `None` for a key type it does not know or a member missing.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for m in members {
        canonical.insert(
            (*m).to_owned(),
            Value::String(jwk.get(*m)?.as_str()?.to_owned()),
        );
    }
    // serde_json's Map is ordered by key (no `preserve_order`), and its compact form has no
    // whitespace: exactly RFC 7638's canonical JSON.
    let canonical = Value::Object(canonical).to_string();
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The `cnf.jkt` of a JWT access token, when it is one that carries it.
pub fn token_jkt(access_token: &str) -> Option<String> {
    let decoded = crate::jwt::decode(access_token).ok()?;
    Some(decoded.claims.get("cnf")?.get("jkt")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
    use std::time::Duration;

    fn verify(proof: &str) -> (Map<String, Value>, Map<String, Value>) {
        let header = crate::jwt::decode(proof).expect("a JWT").header;
        let jwk: Jwk = serde_json::from_value(header["jwk"].clone()).expect("a JWK");
        let key = DecodingKey::from_jwk(&jwk).expect("a usable JWK");
        let alg = match header["alg"].as_str() {
            Some("EdDSA") => Algorithm::EdDSA,
            Some("RS256") => Algorithm::RS256,
            Some("PS256") => Algorithm::PS256,
            _ => Algorithm::ES256,
        };
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &validation)
            .expect("the proof verifies against its own jwk");
        (header, data.claims)
    }

    #[test]
    fn a_proof_verifies_against_its_own_jwk_and_says_what_it_is_for() {
        let key = DpopKey::generate();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let url: Url = "https://api.example/v1/things?x=1#frag".parse().unwrap();
        let proof = key.proof("GET", &url, Some("ath-x"), Some("n-1"), at);
        let (header, claims) = verify(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(
            header["jwk"].get("d").is_none(),
            "no private part in the header"
        );
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example/v1/things");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["ath"], "ath-x");
        assert_eq!(claims["nonce"], "n-1");
        let again = verify(&key.proof("GET", &url, None, None, at)).1;
        assert_ne!(claims["jti"], again["jti"], "a fresh jti for every proof");
        assert!(again.get("ath").is_none() && again.get("nonce").is_none());
        // A tampered claim breaks the signature.
        let mut parts: Vec<&str> = proof.split('.').collect();
        let other = key.proof("POST", &url, None, None, at);
        parts[1] = other.split('.').nth(1).unwrap();
        let forged = parts.join(".");
        let jwk: Jwk = serde_json::from_value(header["jwk"].clone()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        assert!(
            jsonwebtoken::decode::<Value>(
                &forged,
                &DecodingKey::from_jwk(&jwk).unwrap(),
                &validation
            )
            .is_err()
        );
    }

    #[test]
    fn an_eddsa_key_signs_proofs_that_verify_and_survives_pem() {
        use secrecy::ExposeSecret;
        let key = DpopKey::generate_for(DpopAlg::EdDsa).unwrap();
        assert_eq!(key.alg(), "EdDSA");
        assert_eq!(key.public_jwk()["kty"], "OKP");
        let url: Url = "https://api.example/x".parse().unwrap();
        let (header, claims) = verify(&key.proof("GET", &url, None, None, UNIX_EPOCH));
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(claims["htu"], "https://api.example/x");
        let back = DpopKey::from_pem(key.to_pem().unwrap().expose_secret()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_eq!(back.algorithm(), DpopAlg::EdDsa);
        assert_eq!("EdDSA".parse::<DpopAlg>(), Ok(DpopAlg::EdDsa));
        assert!(
            "HS256"
                .parse::<DpopAlg>()
                .unwrap_err()
                .contains("not offered")
        );
    }

    const RSA_PKCS8: &str = include_str!("dpop/testdata/rsa-pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("dpop/testdata/rsa-pkcs1.pem");

    #[test]
    fn a_given_rsa_key_signs_rs256_or_ps256_proofs_that_verify() {
        let pkcs8 = DpopKey::from_pem(RSA_PKCS8).unwrap();
        let pkcs1 = DpopKey::from_pem(RSA_PKCS1).unwrap();
        assert_eq!(pkcs8.algorithm(), DpopAlg::Rs256, "RS256 unless asked");
        assert_eq!(pkcs8.thumbprint(), pkcs1.thumbprint(), "one key, two forms");
        let jwk = pkcs8.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB", "65537, with no leading zero");
        assert!(jwk.get("d").is_none());
        let url: Url = "https://api.example/x?q".parse().unwrap();
        for (key, alg) in [
            (pkcs8.clone(), "RS256"),
            (pkcs1.clone().with_alg(DpopAlg::Ps256).unwrap(), "PS256"),
        ] {
            let (header, claims) = verify(&key.proof("GET", &url, Some("h"), None, UNIX_EPOCH));
            assert_eq!(header["alg"], alg);
            assert_eq!(claims["htu"], "https://api.example/x");
            assert_eq!(
                key.thumbprint(),
                pkcs8.thumbprint(),
                "the same key either way"
            );
        }
        // Another algorithm than the key's own is an error; RSA keys are not made or written.
        let e = DpopKey::generate().with_alg(DpopAlg::Ps256).unwrap_err();
        assert!(
            e.to_string()
                .contains("dpop_alg is PS256 but the DPoP key is an ES256 key"),
            "{e}"
        );
        assert!(pkcs8.clone().with_alg(DpopAlg::EdDsa).is_err());
        let e = DpopKey::generate_for(DpopAlg::Rs256).unwrap_err();
        assert!(e.to_string().contains("give an RSA key as dpop_key"), "{e}");
        assert!(pkcs8.to_pem().is_err());
        assert!(!format!("{pkcs8:?}").contains("MII"), "Debug shows no key");
    }

    #[test]
    fn the_fast_es256_signer_is_used_and_its_proofs_verify() {
        let key = DpopKey::generate();
        assert!(key.ring.is_some(), "ring takes p256's PKCS#8");
        let url: Url = "https://api.example/x".parse().unwrap();
        let proof = key.proof("GET", &url, None, None, UNIX_EPOCH);
        assert_eq!(verify(&proof).1["htm"], "GET");
        // And p256's own signature, when ring has none, verifies the same way.
        let slow = DpopKey { ring: None, ..key };
        assert_eq!(
            verify(&slow.proof("PUT", &url, None, None, UNIX_EPOCH)).1["htm"],
            "PUT"
        );
    }

    #[test]
    fn htu_has_no_query_or_fragment() {
        let url: Url = "https://as.example:8443/oauth/token?a=b&c#top"
            .parse()
            .unwrap();
        assert_eq!(target_uri(&url), "https://as.example:8443/oauth/token");
        let plain: Url = "http://127.0.0.1:9/r".parse().unwrap();
        assert_eq!(target_uri(&plain), "http://127.0.0.1:9/r");
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        let key = DpopKey::generate();
        assert_eq!(
            jwk_thumbprint(key.public_jwk()).as_deref(),
            Some(key.thumbprint())
        );
        assert_eq!(key.thumbprint().len(), 43);
    }

    #[test]
    fn ath_matches_rfc_9449_example() {
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn a_key_survives_pem_and_debug_hides_it() {
        use secrecy::ExposeSecret;
        let key = DpopKey::generate();
        let pem = key.to_pem().unwrap();
        assert!(
            pem.expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let back = DpopKey::from_pem(pem.expose_secret()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        let shown = format!("{key:?}");
        assert!(shown.contains(key.thumbprint()));
        let body: String = pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!shown.contains(&body[..20]));
        let err = DpopKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a P-256"), "{err}");
    }
}
