//! The discovery document (OpenID Connect Discovery / RFC 8414 metadata) as `discover` and
//! its cache file read it: any body an issuer may serve. A refusal is one line; what is
//! accepted checks against every auth method without a panic or a multi-line message, and
//! survives the cache file's round trip.
#![no_main]

use freshtoken::discovery::{Metadata, metadata_urls};
use freshtoken::internal::fuzzing::excerpt;
use freshtoken::{AuthMethod, SigningAlg};
use freshtoken_fuzz::one_line;
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|body: &[u8]| {
    let meta = match serde_json::from_slice::<Metadata>(body) {
        Ok(meta) => meta,
        Err(e) => {
            // What `discover` says of a document it cannot use.
            let message = format!(
                "the metadata at https://idp/.well-known/openid-configuration is not usable ({e}): {}",
                excerpt(body)
            );
            one_line("a refused document", &message);
            return;
        }
    };
    // Well-known locations exist for web issuers only (another scheme fails at the request).
    if let Ok(issuer) = Url::parse(&meta.issuer)
        && matches!(issuer.scheme(), "http" | "https")
    {
        let urls = metadata_urls(&issuer);
        assert!(!urls.is_empty() && urls.len() <= 2);
        for url in &urls {
            assert!(url.path().contains("/.well-known/"), "{url}");
            assert_eq!(url.host_str(), issuer.host_str(), "{url}");
        }
    }
    for method in AuthMethod::ALL {
        for alg in std::iter::once(None).chain(SigningAlg::ALL.map(Some)) {
            if let Err(e) = meta.check(method, alg) {
                one_line("a refused auth method", &e.to_string());
            }
        }
    }
    let cached = serde_json::to_vec(&meta).unwrap_or_else(|e| panic!("cannot cache: {e}"));
    let back: Metadata =
        serde_json::from_slice(&cached).unwrap_or_else(|e| panic!("cache unreadable: {e}"));
    assert_eq!(back, meta);
});
