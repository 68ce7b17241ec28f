//! The client's TLS certificate and key, for mutual-TLS client authentication (RFC 8705:
//! `tls_client_auth`, `self_signed_tls_client_auth`) and for presenting the same certificate
//! to an API whose tokens are bound to it (`cnf."x5t#S256"`).
//!
//! A [`ClientIdentity`] is checked once, when it is made: the certificate must parse, the key
//! must be one rustls can sign with, and the two must belong together. A mistake there would
//! otherwise show up as a TLS alert from the server, far from its cause.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A client certificate chain (leaf first) and its private key, checked to match.
///
/// `Debug` shows the certificate's thumbprint, never the key; there is no `Display`.
#[derive(Clone)]
pub struct ClientIdentity {
    chain: Arc<Vec<CertificateDer<'static>>>,
    /// The key and the chain as PEM, for the HTTP client, which takes them in that form.
    pem: SecretString,
    key: Arc<PrivateKeyDer<'static>>,
    thumbprint: String,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("x5t#S256", &self.thumbprint)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Equal when both the certificate chain and the key are: a renewed certificate (or a
/// rotated key) is another identity, which is what a reload compares.
impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain && self.key.secret_der() == other.key.secret_der()
    }
}

impl Eq for ClientIdentity {}

impl ClientIdentity {
    /// The identity made of `certificate` (PEM, the leaf first, then any intermediates) and
    /// `key` (PEM: PKCS#8, PKCS#1 or SEC1; RSA, ECDSA P-256/P-384 or Ed25519). Errors are
    /// one line, say which part is wrong, and never quote the key.
    pub fn from_pem(certificate: &str, key: &SecretString) -> Result<Self> {
        let bad = |why: String| Error::Config(why);
        let chain = parse_chain(certificate)?;
        // parse_chain returns at least one certificate.
        let leaf = &chain[0];
        // The error of the PEM parser names no key material, only what it found.
        let key_der = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes()).map_err(
            |_| {
                bad(
                    "the client key is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)"
                        .into(),
                )
            },
        )?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key_der.clone_key())
            .map_err(|e| bad(format!("the client key cannot be used for TLS: {e}")))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => bad(
                "the client key does not match the client certificate (their public keys differ)"
                    .into(),
            ),
            other => bad(format!("the client certificate cannot be read: {other}")),
        })?;
        let thumbprint = certificate_thumbprint(leaf);
        let mut pem = String::new();
        for der in &chain {
            pem.push_str(&pem_block("CERTIFICATE", der));
        }
        // The key as parsed, not as written: a file may hold more (`EC PARAMETERS` before the
        // key, as `openssl ecparam -genkey` writes it), which the HTTP client refuses.
        let label = match &key_der {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem.push_str(&pem_block(label, key_der.secret_der()));
        Ok(Self {
            chain: Arc::new(chain),
            pem: SecretString::from(pem),
            key: Arc::new(key_der),
            thumbprint,
        })
    }

    /// The leaf certificate's SHA-256 thumbprint, base64url without padding: the
    /// `cnf."x5t#S256"` a server puts in the tokens it binds to this certificate (RFC 8705
    /// §3.1), and the one thing about an identity fit to log.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key, for a TLS client of one's own (the proxy's upstream).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The chain and the key as one PEM text, the form reqwest's client takes them in.
    pub(crate) fn pem(&self) -> &SecretString {
        &self.pem
    }
}

/// The certificates of a PEM text, at least one.
fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("the client certificate is not PEM ({e})")))?;
    if chain.is_empty() {
        return Err(Error::Config(
            "the client certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

/// `x5t#S256` of the first certificate of a PEM text (a chain's leaf): what a cache key of
/// a certificate-bound token needs, without the private key.
pub fn pem_certificate_thumbprint(pem: &str) -> Result<String> {
    // parse_chain returns at least one certificate.
    Ok(certificate_thumbprint(&parse_chain(pem)?[0]))
}

/// `x5t#S256` of a DER certificate: base64url (no padding) of its SHA-256.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A fixed self-signed test certificate and keys (tests/data/README.md says how they were
    // made); the integration tests use certificates rcgen makes in the test.
    const CERT: &str = include_str!("../tests/data/mtls-client.pem");
    const KEY: &str = include_str!("../tests/data/mtls-client.key");
    const OTHER_KEY: &str = include_str!("../tests/data/mtls-other.key");

    fn key(pem: &str) -> SecretString {
        SecretString::from(pem.to_owned())
    }

    #[test]
    fn a_matching_pair_is_accepted_and_debug_hides_the_key() -> Result<()> {
        let id = ClientIdentity::from_pem(CERT, &key(KEY))?;
        assert_eq!(id.chain().len(), 1);
        assert_eq!(
            id.thumbprint(),
            certificate_thumbprint(id.chain()[0].as_ref())
        );
        assert_eq!(id.thumbprint().len(), 43, "base64url of 32 bytes, unpadded");
        let shown = format!("{id:?}");
        assert!(shown.contains(id.thumbprint()), "{shown}");
        let body = KEY.lines().nth(1).unwrap_or_default();
        assert!(
            !shown.contains(body) && shown.contains("[REDACTED]"),
            "{shown}"
        );
        crate::http::reqwest_identity(&id)?;
        Ok(())
    }

    #[test]
    fn a_key_file_that_holds_more_than_the_key_is_taken() -> Result<()> {
        // A "key pair" file: the private key, then its public key (`openssl pkey -pubout`
        // appended). The HTTP client refuses a public key next to the identity.
        let pair = format!(
            "{KEY}-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFScMaqwYrLb25o5F5dor4KMh5o/y\nhn1H4Lw3vQQvLPmjj/ChJ5KSVYul2wh7gjUgSpex3ftIHJ0WeFUvhqFMcw==\n-----END PUBLIC KEY-----\n"
        );
        let id = ClientIdentity::from_pem(CERT, &key(&pair))?;
        crate::http::reqwest_identity(&id)?;
        assert_eq!(id, ClientIdentity::from_pem(CERT, &key(KEY))?);
        Ok(())
    }

    #[test]
    fn each_mistake_gets_its_own_one_line_error() {
        let cases = [
            (CERT, OTHER_KEY, "does not match the client certificate"),
            ("not a certificate\n", KEY, "holds no PEM certificate"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                KEY,
                "is not PEM",
            ),
            (CERT, "not a key\n", "not an unencrypted PEM private key"),
            (CERT, CERT, "not an unencrypted PEM private key"),
        ];
        for (cert, k, expected) in cases {
            let e = ClientIdentity::from_pem(cert, &key(k))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(expected), "{expected}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(!e.contains("PRIVATE KEY-----\nM"), "{e}");
        }
    }
}
