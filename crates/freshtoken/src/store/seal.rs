//! Sealing cache values for shared stores: XChaCha20-Poly1305 with a key derived
//! (HKDF-SHA-256) from the client's own secret or private key, so that someone who can read
//! Redis but does not hold the credentials cannot use the tokens, and cannot swap one key's
//! value for another's (the store key is the associated data).

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

const PREFIX: &str = "v1.";
const SALT: &[u8] = b"freshtoken shared cache v1";

/// Seals and opens values for one client's credentials.
pub(crate) struct Sealer {
    material: SecretSlice<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A sealer keyed by `material` (the client secret, or the private key's PEM).
    pub(crate) fn new(material: &[u8]) -> Self {
        Self {
            material: SecretSlice::from(material.to_vec()),
        }
    }

    fn cipher(&self, name: &str) -> XChaCha20Poly1305 {
        let hk = Hkdf::<Sha256>::new(Some(SALT), self.material.expose_secret());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's 8160-byte limit, so this cannot fail.
        let _ = hk.expand(name.as_bytes(), &mut key);
        XChaCha20Poly1305::new(&key.into())
    }

    /// `plaintext` sealed for the store key `name`.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .cipher(name)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: name.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 refuses only plaintexts past 256 GiB; values are capped at 256 KiB");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// The plaintext, or `None` when the value was not sealed by these credentials for
    /// `name` (or was damaged): such a value is treated as absent.
    pub(crate) fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(PREFIX)?)
            .ok()?;
        if raw.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(24);
        self.cipher(name)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_way_to_fail() {
        let s = Sealer::new(b"client-secret");
        let sealed = s.seal("freshtoken:v1:abc", b"{\"access_token\":\"tok\"}");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("tok"));
        assert_eq!(
            s.open("freshtoken:v1:abc", &sealed).unwrap(),
            b"{\"access_token\":\"tok\"}"
        );
        assert_ne!(
            s.seal("freshtoken:v1:abc", b"x"),
            s.seal("freshtoken:v1:abc", b"x"),
            "fresh nonce each time"
        );
        assert!(
            Sealer::new(b"other-secret")
                .open("freshtoken:v1:abc", &sealed)
                .is_none(),
            "other credentials"
        );
        assert!(
            s.open("freshtoken:v1:xyz", &sealed).is_none(),
            "moved to another key"
        );
        let mut damaged = sealed.clone();
        damaged.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert!(s.open("freshtoken:v1:abc", &damaged).is_none(), "damaged");
        assert!(s.open("freshtoken:v1:abc", "v1.").is_none());
        assert!(s.open("freshtoken:v1:abc", "plain").is_none());
        assert_eq!(format!("{s:?}"), "Sealer([REDACTED])");
    }
}
