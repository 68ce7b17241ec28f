//! DPoP for forwarded requests (RFC 9449 §7): with a DPoP-bound token, every request gets
//! `Authorization: DPoP <token>` and a fresh proof for its method and URL, with `ath` and the
//! upstream's latest `DPoP-Nonce`. The client behind the proxy never sees the key.

use std::sync::Mutex;
use std::time::SystemTime;

use freshtoken::dpop::{DpopKey, NONCE_HEADER, USE_NONCE, access_token_hash};
use freshtoken::internal::lock;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri};
use url::Url;

/// The proxy's DPoP key and the upstream's latest nonce.
#[derive(Debug)]
pub(crate) struct Dpop {
    key: DpopKey,
    nonce: Mutex<Option<String>>,
}

impl Dpop {
    pub(crate) fn new(key: DpopKey) -> Self {
        Self {
            key,
            nonce: Mutex::new(None),
        }
    }

    /// The proof for `method` on `uri` (origin form) at `upstream`, for `token`.
    pub(crate) fn proof(
        &self,
        upstream: &Url,
        method: &Method,
        uri: &Uri,
        token: &str,
        now: SystemTime,
    ) -> Option<HeaderValue> {
        let mut htu = upstream.clone();
        htu.set_path(uri.path());
        let nonce = lock(&self.nonce).clone();
        let proof = self.key.proof(
            method.as_str(),
            &htu,
            Some(&access_token_hash(token)),
            nonce.as_deref(),
            now,
        );
        HeaderValue::try_from(proof).ok()
    }

    /// Keeps the nonce an upstream answer brings (RFC 9449 §9: any answer may carry one).
    pub(crate) fn note(&self, headers: &HeaderMap) {
        let nonce = headers
            .get(NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 1024);
        if let Some(nonce) = nonce {
            let mut kept = lock(&self.nonce);
            if kept.as_deref() != Some(nonce) {
                *kept = Some(nonce.to_owned());
            }
        }
    }
}

/// Whether a 401's headers ask for a DPoP nonce: `WWW-Authenticate: DPoP error="use_dpop_nonce"`
/// with a `DPoP-Nonce` to use.
pub(crate) fn wants_nonce(headers: &HeaderMap) -> bool {
    headers.contains_key(NONCE_HEADER)
        && headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.trim_start()
                    .get(..5)
                    .is_some_and(|s| s.eq_ignore_ascii_case("dpop "))
                    && v.contains(USE_NONCE)
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_challenge_is_told_from_other_401s() {
        let mut h = HeaderMap::new();
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("DPoP error=\"use_dpop_nonce\", algs=\"ES256\""),
        );
        assert!(!wants_nonce(&h), "no nonce given");
        h.insert(NONCE_HEADER, HeaderValue::from_static("n-1"));
        assert!(wants_nonce(&h));
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("DPoP error=\"invalid_token\""),
        );
        assert!(!wants_nonce(&h));
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"use_dpop_nonce\""),
        );
        assert!(!wants_nonce(&h));
    }

    #[test]
    fn a_proof_names_the_upstream_url_and_the_latest_nonce() {
        let d = Dpop::new(DpopKey::generate());
        let upstream: Url = "http://127.0.0.1:9000/base?x=1".parse().unwrap();
        let uri: Uri = "/base/api/v2/users?id=1".parse().unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let claims = |v: HeaderValue| freshtoken::jwt::decode(v.to_str().unwrap()).unwrap().claims;
        let first = claims(d.proof(&upstream, &Method::PATCH, &uri, "tok", at).unwrap());
        assert_eq!(first["htu"], "http://127.0.0.1:9000/base/api/v2/users");
        assert_eq!(first["htm"], "PATCH");
        assert_eq!(first["ath"], access_token_hash("tok"));
        assert!(first.get("nonce").is_none());
        let mut h = HeaderMap::new();
        h.insert(NONCE_HEADER, HeaderValue::from_static("n-2"));
        d.note(&h);
        let second = claims(d.proof(&upstream, &Method::GET, &uri, "tok", at).unwrap());
        assert_eq!(second["nonce"], "n-2");
    }
}
