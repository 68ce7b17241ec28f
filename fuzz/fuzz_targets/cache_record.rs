//! The cache record (`Record::parse`) as the file and Redis stores read it back: any bytes a
//! damaged, truncated or foreign file may hold. A record accepted is a usable token that
//! writes back to the same record; a refusal is one line without the token in it.
#![no_main]

use freshtoken::CacheKey;
use freshtoken::internal::Record;
use freshtoken_fuzz::{echoes_none, one_line, values_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The key the seeds were written for; 64 hex digits always make a key.
    let Some(key) = CacheKey::from_hex(&"ab".repeat(32)) else {
        return;
    };
    match Record::parse(data, &key) {
        Ok(token) => {
            assert!(!token.expose_secret().is_empty());
            assert!(token.expires_at() >= token.received_at());
            assert!(token.token_type().eq_ignore_ascii_case("bearer"));
            let again = Record::parse(&Record::new(&key, &token).to_bytes(), &key)
                .unwrap_or_else(|e| panic!("a record read back does not parse again: {e}"));
            assert!(again.same_token(&token));
            assert_eq!(again.received_at(), token.received_at());
            assert_eq!(again.expires_at(), token.expires_at());
            assert_eq!(again.scope(), token.scope());
        }
        Err(message) => {
            one_line("a refused record", &message);
            let mut secrets = values_of(data, "access_token", 12);
            secrets.extend(values_of(data, "refresh_token", 12));
            echoes_none("a refused record", &message, &secrets);
        }
    }
});
