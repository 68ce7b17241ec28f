//! The token endpoint's answer (`parse_success`, `parse_error_body`, `excerpt`): any body a
//! server or a proxy on the way may send. A token that is accepted is usable; a refusal is one
//! short line that never shows the token.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use freshtoken::internal::fuzzing::{excerpt, parse_error_body, parse_success};
use freshtoken_fuzz::{echoes_none, one_line, values_of};
use libfuzzer_sys::fuzz_target;

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fuzz_target!(|body: &[u8]| {
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut secrets = values_of(body, "access_token", 12);
    secrets.extend(values_of(body, "refresh_token", 12));
    match parse_success(200, body, at, Duration::from_secs(300)) {
        Ok(token) => {
            let secret = token.expose_secret();
            assert!(!secret.trim().is_empty(), "an empty token was accepted");
            assert!(
                !secret.chars().any(|c| c.is_control() || c == ' '),
                "a token that cannot go in a header was accepted"
            );
            assert_eq!(token.received_at(), at);
            assert!(
                token.lifetime() > Duration::ZERO,
                "a token that is expired on arrival was accepted ({:?})",
                token.expiry_source()
            );
            assert!(token.lifetime() <= TEN_YEARS, "{:?}", token.lifetime());
            assert!(token.token_type().eq_ignore_ascii_case("bearer"));
        }
        Err(e) => {
            let message = e.to_string();
            one_line("a refused answer", &message);
            assert!(message.chars().count() < 400, "{message:?}");
            echoes_none("a refused answer", &message, &secrets);
        }
    }
    if let Some(error) = parse_error_body(body) {
        assert!(!error.error.is_empty());
        one_line("an OAuth error code", &error.error);
        assert!(error.error.chars().count() <= 81);
        if let Some(description) = &error.description {
            one_line("an OAuth error description", description);
            assert!(description.chars().count() <= 301);
        }
    }
    let excerpt = excerpt(body);
    one_line("an excerpt", &excerpt);
    assert!(excerpt.chars().count() <= 161, "{excerpt:?}");
});
