//! JWT decoding as `freshtoken inspect` and the expiry fallback use it: any string a user
//! pastes or a server hands out. Decoding never panics, dates it reports can be printed, and
//! a refusal is one short line.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use freshtoken::Fingerprint;
use freshtoken::jwt::{self, NotAJwt};
use freshtoken_fuzz::one_line;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The CLI's own formatting of times (`inspect` prints every date claim with it).
#[allow(dead_code)]
#[path = "../../crates/freshtoken-cli/src/human.rs"]
mod human;

fuzz_target!(|data: &[u8]| {
    // `inspect` reads its argument or standard input as text.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let parts = token.trim().split('.').count();
    let _ = Fingerprint::of(token).to_string();
    match jwt::decode(token) {
        Ok(decoded) => {
            assert_eq!(parts, 3, "decoded something that is not three parts");
            for v in [&decoded.header, &decoded.claims] {
                let _ = serde_json::to_string_pretty(&Value::Object(v.clone()));
            }
            for claim in ["iat", "nbf", "exp"] {
                if let Some(t) = decoded.time_claim(claim) {
                    assert!(t >= UNIX_EPOCH);
                    let _ = human::timestamp(t);
                    let _ = human::relative(t, now);
                }
            }
            if let Some(exp) = decoded.time_claim("exp") {
                let left = exp.duration_since(now).map(|d| d.as_secs()).unwrap_or(0);
                let _ = human::duration(Duration::from_secs(left));
            }
            assert_eq!(jwt::expiry(token), decoded.time_claim("exp"));
        }
        Err(NotAJwt::Opaque) => assert_ne!(parts, 3, "three parts taken for an opaque token"),
        Err(NotAJwt::Malformed(why)) => {
            one_line("a malformed JWT's reason", &why);
            assert!(why.len() < 80, "{why:?}");
            assert_eq!(jwt::expiry(token), None);
        }
        Err(_) => {}
    }
});
