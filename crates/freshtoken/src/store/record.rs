//! The serialized form of a cached token, shared by the stores that persist tokens.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::{from_unix_millis, unix_millis};
use crate::request::CacheKey;
use crate::token::{ExpirySource, Token};

/// Format version; a record of another version is foreign and ignored.
const VERSION: u32 = 1;

/// A token as persisted, with the key it belongs to so that a file copied or renamed onto
/// another key is recognised as foreign.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    v: u32,
    key: String,
    access_token: String,
    token_type: String,
    received_at_ms: u64,
    expires_at_ms: u64,
    expiry_source: ExpirySource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Record {
    /// The record for `token` under `key`.
    pub fn new(key: &CacheKey, token: &Token) -> Self {
        Self {
            v: VERSION,
            key: key.as_str().to_owned(),
            access_token: token.expose_secret().to_owned(),
            token_type: token.token_type().to_owned(),
            received_at_ms: unix_millis(token.received_at()),
            expires_at_ms: unix_millis(token.expires_at()),
            expiry_source: token.expiry_source(),
            scope: token.scope().map(str::to_owned),
            refresh_token: token.refresh_token().map(|s| s.expose_secret().to_owned()),
        }
    }

    /// Serializes to JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and integers always serializes")
    }

    /// Parses and checks a record read back for `key`; the error says why it is not usable.
    pub fn parse(bytes: &[u8], key: &CacheKey) -> Result<Token, String> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| {
            // serde's text for a field or value that does not fit quotes the file (a token
            // where another field belongs, a name with a newline): only the place is shown.
            let why = match e.classify() {
                serde_json::error::Category::Data => format!(
                    "a field does not fit the record at line {} column {}",
                    e.line(),
                    e.column()
                ),
                _ => e.to_string(),
            };
            format!("not a freshtoken cache record ({why})")
        })?;
        if record.v != VERSION {
            return Err(format!("record version {} is not {VERSION}", record.v));
        }
        if record.key != key.as_str() {
            return Err("record belongs to another cache key".into());
        }
        // A DPoP-bound token is kept under its own cache key (the key's thumbprint is in it),
        // so a record of one is only ever read by a profile that holds the key.
        let token_type = if record.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else if record
            .token_type
            .eq_ignore_ascii_case(crate::dpop::TOKEN_TYPE)
        {
            crate::dpop::TOKEN_TYPE
        } else {
            ""
        };
        if record.access_token.is_empty() || token_type.is_empty() {
            return Err("record holds no bearer or DPoP token".into());
        }
        // The same check as a server's answer gets: whoever can write the cache (another
        // user of a shared folder, a writer of the shared Redis) must not get code into
        // `eval "$(freshtoken get --format env)"` either.
        crate::token::check_b64token(&record.access_token)
            .map_err(|why| format!("record's token is {why}"))?;
        if record.expires_at_ms < record.received_at_ms {
            return Err("record expires before it was received".into());
        }
        let received_at = from_unix_millis(record.received_at_ms);
        let expires_at =
            received_at + Duration::from_millis(record.expires_at_ms - record.received_at_ms);
        Ok(Token::new(
            SecretString::from(record.access_token),
            received_at,
            expires_at,
            record.expiry_source,
        )
        .with_token_type(token_type)
        .with_scope(record.scope)
        .with_refresh_token(record.refresh_token.map(SecretString::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn key(c: char) -> CacheKey {
        CacheKey::from_hex(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn round_trip_keeps_everything() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(60),
            ExpirySource::JwtExp,
        )
        .with_scope(Some("a b".into()))
        .with_refresh_token(Some(SecretString::from("rt".to_owned())));
        let back = Record::parse(&Record::new(&key('a'), &t).to_bytes(), &key('a')).unwrap();
        assert!(back.same_token(&t));
        assert_eq!(back.received_at(), t.received_at());
        assert_eq!(back.expires_at(), t.expires_at());
        assert_eq!(back.expiry_source(), ExpirySource::JwtExp);
        assert_eq!(back.scope(), Some("a b"));
        assert_eq!(
            back.refresh_token()
                .map(|s| s.expose_secret().to_owned())
                .as_deref(),
            Some("rt")
        );
    }

    #[test]
    fn a_dpop_token_stays_dpop_and_other_types_are_refused() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(60),
            ExpirySource::ExpiresIn,
        );
        let bearer = Record::new(&key('a'), &t).to_bytes();
        let back = Record::parse(&bearer, &key('a')).unwrap();
        assert_eq!(back.token_type(), "Bearer");
        let dpop = Record::new(&key('a'), &t.clone().with_token_type("DPoP")).to_bytes();
        assert!(String::from_utf8_lossy(&dpop).contains(r#""token_type":"DPoP""#));
        let back = Record::parse(&dpop, &key('a')).unwrap();
        assert_eq!(back.token_type(), "DPoP");
        assert!(back.is_dpop());
        let mac = String::from_utf8(bearer)
            .unwrap()
            .replace(r#""token_type":"Bearer""#, r#""token_type":"mac""#);
        assert!(
            Record::parse(mac.as_bytes(), &key('a'))
                .unwrap_err()
                .contains("no bearer or DPoP token")
        );
    }

    #[test]
    fn foreign_and_corrupt_records_are_refused() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(60),
            ExpirySource::ExpiresIn,
        );
        let good = Record::new(&key('a'), &t).to_bytes();
        assert!(
            Record::parse(&good, &key('b'))
                .unwrap_err()
                .contains("another cache key")
        );
        assert!(Record::parse(&good[..good.len() / 2], &key('a')).is_err());
        assert!(Record::parse(b"", &key('a')).is_err());
        assert!(Record::parse(b"\x00\x01garbage", &key('a')).is_err());
        let other_version = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"v\":1", "\"v\":9");
        assert!(
            Record::parse(other_version.as_bytes(), &key('a'))
                .unwrap_err()
                .contains("version 9")
        );
        let extra = String::from_utf8(good)
            .unwrap()
            .replace("{", "{\"evil\":1,");
        assert!(Record::parse(extra.as_bytes(), &key('a')).is_err());
    }

    #[test]
    fn a_refusal_is_one_line_and_quotes_nothing_of_the_file() {
        // Found by fuzzing (fuzz/fuzz_targets/cache_record.rs): serde's message quotes the
        // file's own text, so a field name with an escaped newline made a two-line warning,
        // and a token in the place of another field was quoted in it.
        let k = "a".repeat(64);
        let rows = [
            format!(r#"{{"v":1,"key":"{k}","access_tok\n":"eZ8Zt0y0c3Pj8w5Q"}}"#),
            format!(
                r#"{{"v":1,"key":"{k}","access_token":"tok-secret-123","token_type":"Bearer","received_at_ms":1,"expires_at_ms":2,"expiry_source":"tok-secret-123"}}"#
            ),
            r#"{"v":"tok-secret-123"}"#.to_owned(),
            r#"{"tok-secret-123":1}"#.to_owned(),
        ];
        for row in rows {
            let e = Record::parse(row.as_bytes(), &key('a')).unwrap_err();
            assert!(e.starts_with("not a freshtoken cache record ("), "{e}");
            assert!(e.contains("line 1 column"), "{e}");
            assert!(!e.contains('\n'), "{e:?}");
            assert!(!e.contains("tok-secret"), "{e}");
        }
    }

    #[test]
    fn debug_shows_no_token() {
        let at = UNIX_EPOCH;
        let t = Token::new(
            SecretString::from("tok-secret".to_owned()),
            at,
            at,
            ExpirySource::Default,
        );
        assert!(!format!("{:?}", Record::new(&key('a'), &t)).contains("tok-secret"));
    }
}
