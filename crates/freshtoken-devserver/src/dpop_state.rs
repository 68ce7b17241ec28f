//! The DPoP side of a dev-server's state (its counters, nonce, seen proofs) and the bound
//! tokens it mints: what `state` holds, kept apart from the checks in `dpop`, which read the
//! state, so that the two do not depend on each other.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::json;

/// What the DPoP checks counted, at `/__stats/dpop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DpopStats {
    /// Proofs accepted (token endpoint and API).
    pub proofs_ok: u64,
    /// Proofs refused for anything but a missing or stale nonce.
    pub proofs_refused: u64,
    /// Of those, proofs refused because their `jti` was used before.
    pub replays_refused: u64,
    /// Requests answered `use_dpop_nonce` with a new nonce.
    pub nonce_challenges: u64,
    /// DPoP-bound tokens issued.
    pub bound_tokens: u64,
}

/// The DPoP side of a dev-server's state.
#[derive(Debug)]
pub(crate) struct DpopState {
    /// Signs the bound tokens (they are checked by lookup; the signature makes them JWTs).
    secret: [u8; 32],
    nonce: Mutex<(String, u64)>,
    pub(crate) seen: Mutex<HashMap<String, u64>>,
    pub(crate) proofs_ok: AtomicU64,
    pub(crate) proofs_refused: AtomicU64,
    pub(crate) replays_refused: AtomicU64,
    pub(crate) nonce_challenges: AtomicU64,
    bound_tokens: AtomicU64,
}

impl Default for DpopState {
    fn default() -> Self {
        Self {
            secret: rand::random(),
            nonce: Mutex::new((new_nonce(), 0)),
            seen: Mutex::new(HashMap::new()),
            proofs_ok: AtomicU64::new(0),
            proofs_refused: AtomicU64::new(0),
            replays_refused: AtomicU64::new(0),
            nonce_challenges: AtomicU64::new(0),
            bound_tokens: AtomicU64::new(0),
        }
    }
}

fn new_nonce() -> String {
    format!("n-{:024x}", rand::random::<u128>() >> 32)
}

impl DpopState {
    /// The counters now.
    pub(crate) fn stats(&self) -> DpopStats {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        DpopStats {
            proofs_ok: get(&self.proofs_ok),
            proofs_refused: get(&self.proofs_refused),
            replays_refused: get(&self.replays_refused),
            nonce_challenges: get(&self.nonce_challenges),
            bound_tokens: get(&self.bound_tokens),
        }
    }

    /// The nonce proofs must carry now.
    pub(crate) fn nonce(&self) -> String {
        lock(&self.nonce).0.clone()
    }

    /// Counts one accepted proof, and moves to a new nonce after every `every`.
    pub(crate) fn accepted(&self, every: Option<u64>) {
        self.proofs_ok.fetch_add(1, Ordering::SeqCst);
        let mut nonce = lock(&self.nonce);
        nonce.1 += 1;
        if every.is_some_and(|n| n > 0 && nonce.1 >= n) {
            *nonce = (new_nonce(), 0);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A DPoP-bound access token: a JWT with `cnf.jkt` (another key's when `wrong_jkt`, as the
/// `dpop_wrong_jkt` fault asks), for `client_id`, issued at `iat` and expiring at `exp`.
pub(crate) fn bound_token(
    dpop: &DpopState,
    client_id: &str,
    (iat, exp): (u64, u64),
    jkt: &str,
    wrong_jkt: bool,
) -> String {
    dpop.bound_tokens.fetch_add(1, Ordering::SeqCst);
    let jkt = if wrong_jkt {
        "not-this-key-0000000000000000000000000000"
    } else {
        jkt
    };
    let claims = json!({
        "sub": client_id,
        "client_id": client_id,
        "iat": iat,
        "exp": exp,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "cnf": {"jkt": jkt},
    });
    let header = Header {
        typ: Some("at+jwt".into()),
        ..Header::new(Algorithm::HS256)
    };
    // HS256 over a 32-byte key and a JSON object cannot fail to encode.
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&dpop.secret))
        .unwrap_or_else(|_| format!("dev-{:032x}", rand::random::<u128>()))
}
