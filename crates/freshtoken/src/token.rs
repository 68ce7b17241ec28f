//! The access token and what freshtoken knows about its life.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Where a token's expiry came from; a guessed expiry deserves a warning, a stated one does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExpirySource {
    /// `expires_in` in the token response, counted from the local receive time.
    ExpiresIn,
    /// The `exp` claim of a JWT access token (used only when `expires_in` is absent).
    JwtExp,
    /// Neither was given: the configured default lifetime.
    Default,
}

/// How far the clocks that share a token (the processes of a machine whose clock was set, the
/// machines of a fleet) may disagree before a token from another clock's future is refused.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(5);

/// An access token as received, with its expiry on the local clock.
///
/// `Debug` never shows the token or refresh token: they are [`SecretString`]s.
#[derive(Clone, Debug)]
pub struct Token {
    access_token: SecretString,
    token_type: String,
    received_at: SystemTime,
    expires_at: SystemTime,
    expiry_source: ExpirySource,
    scope: Option<String>,
    refresh_token: Option<SecretString>,
    refresh_expires_at: Option<SystemTime>,
}

impl Token {
    /// Builds a token; `expires_at` before `received_at` yields a token that is already expired.
    pub fn new(
        access_token: SecretString,
        received_at: SystemTime,
        expires_at: SystemTime,
        expiry_source: ExpirySource,
    ) -> Self {
        Self {
            access_token,
            token_type: "Bearer".to_owned(),
            received_at,
            expires_at,
            expiry_source,
            scope: None,
            refresh_token: None,
            refresh_expires_at: None,
        }
    }

    /// Sets the granted scope, as the server reported it.
    pub fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// Sets when the refresh token expires, where the server said (`refresh_expires_in`,
    /// as Keycloak sends it): a login knows ahead when a person must log in again.
    pub fn with_refresh_expires_at(mut self, at: Option<SystemTime>) -> Self {
        self.refresh_expires_at = at;
        self
    }

    /// When the refresh token expires, where the server said.
    pub fn refresh_expires_at(&self) -> Option<SystemTime> {
        self.refresh_expires_at
    }

    /// Sets the refresh token the server sent along, if any.
    pub fn with_refresh_token(mut self, refresh_token: Option<SecretString>) -> Self {
        self.refresh_token = refresh_token;
        self
    }

    /// The token itself. Named so that every place that reveals it is easy to find.
    pub fn expose_secret(&self) -> &str {
        self.access_token.expose_secret()
    }

    /// Sets the token type: `DPoP` for a token bound to a DPoP key (see [`crate::dpop`]).
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Whether the token is DPoP-bound: every request with it needs a proof of the key.
    pub fn is_dpop(&self) -> bool {
        self.token_type
            .eq_ignore_ascii_case(crate::dpop::TOKEN_TYPE)
    }

    /// `Bearer`, or `DPoP` for a profile that asked for DPoP-bound tokens: other token types
    /// are refused when the response is parsed.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the response that carried this token arrived, on the local clock.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// When the token stops being valid, on the local clock.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// How the expiry was decided.
    pub fn expiry_source(&self) -> ExpirySource {
        self.expiry_source
    }

    /// The whole lifetime the server granted (zero for a token born expired).
    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.received_at)
            .unwrap_or(Duration::ZERO)
    }

    /// Time left at `now`; zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the token can still be used at `now`. A token received "after" `now` (beyond
    /// [`CLOCK_TOLERANCE`]) is not: the clock went back, and its expiry cannot be trusted.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.expires_at && now >= self.trusted_from()
    }

    /// The earliest moment at which this token is trusted (see [`Token::is_valid_at`]).
    pub fn trusted_from(&self) -> SystemTime {
        self.received_at
            .checked_sub(CLOCK_TOLERANCE)
            .unwrap_or(self.received_at)
    }

    /// The granted scope, when the server said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The refresh token, when the server issued one.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.refresh_token.as_ref()
    }

    /// A short, non-reversible name for this token, safe to log: the first 12 hex digits of
    /// its SHA-256. It tells rotations apart without revealing anything usable.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.expose_secret())
    }

    /// Whether both hold the same access token.
    pub fn same_token(&self, other: &Token) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

/// Checks that `token` is an RFC 6750 §2.1 `b64token`:
/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// A bearer token is pasted into `Authorization` headers, `eval "$(freshtoken get --format
/// env)"`, env files and templates. One holding anything else — `$(…)`, quotes, `;`,
/// spaces, newlines — is not a bearer token, and could run code where it lands; it is
/// refused wherever a token enters (a server's answer, a cache record). The error says where
/// the first wrong character is, never what the token holds.
pub fn check_b64token(token: &str) -> Result<(), String> {
    let bytes = token.as_bytes();
    let body = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
    let token_char = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    let bad = bytes[..body]
        .iter()
        .position(|b| !token_char(b))
        .or_else(|| {
            bytes[body..]
                .iter()
                .position(|&b| b != b'=')
                .map(|i| body + i)
        });
    match bad {
        _ if body == 0 => Err(format!(
            "not an RFC 6750 bearer token (b64token): {}",
            if bytes.is_empty() {
                "it is empty"
            } else {
                "it starts with ="
            }
        )),
        None => Ok(()),
        Some(i) => Err(format!(
            "not an RFC 6750 bearer token (b64token): character {} of {} is not a letter, a digit, one of - . _ ~ + / or a trailing =",
            token[..i].chars().count() + 1,
            token.chars().count()
        )),
    }
}

/// A loggable stand-in for a token (see [`Token::fingerprint`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 6]);

impl Fingerprint {
    /// The fingerprint of a raw token string.
    pub fn of(token: &str) -> Self {
        let digest = Sha256::digest(token.as_bytes());
        let mut out = [0u8; 6];
        out.copy_from_slice(&digest[..6]);
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn token(secret: &str) -> Token {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        Token::new(
            SecretString::from(secret.to_owned()),
            at,
            at + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        )
        .with_refresh_token(Some(SecretString::from("rt-very-secret".to_owned())))
    }

    #[test]
    fn debug_redacts_token_and_refresh_token() {
        let shown = format!("{:?}", token("at-very-secret"));
        assert!(!shown.contains("at-very-secret"), "{shown}");
        assert!(!shown.contains("rt-very-secret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn lifetime_and_remaining() {
        let t = token("x");
        assert_eq!(t.lifetime(), Duration::from_secs(3600));
        let later = t.received_at() + Duration::from_secs(3000);
        assert_eq!(t.remaining(later), Duration::from_secs(600));
        assert!(t.is_valid_at(later));
        assert!(!t.is_valid_at(t.expires_at()));
        assert_eq!(
            t.remaining(t.expires_at() + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn only_b64tokens_are_bearer_tokens() {
        for good in [
            "a",
            "abc.DEF-ghi_jkl~mno+pqr/stu",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "dGVzdA==",
            "x=",
        ] {
            assert_eq!(check_b64token(good), Ok(()), "{good:?}");
        }
        for (bad, at) in [
            ("x$(id>/tmp/p)", "character 2 of 13"),
            ("x`id`", "character 2 of 5"),
            ("a b", "character 2 of 3"),
            ("tok;rm", "character 4 of 6"),
            ("tok'", "character 4 of 4"),
            ("tok\"", "character 4 of 4"),
            ("tok\n", "character 4 of 4"),
            ("a=b", "character 3 of 3"),
            ("é", "character 1 of 1"),
            ("", "it is empty"),
            ("==", "it starts with ="),
        ] {
            let e = check_b64token(bad).unwrap_err();
            assert!(e.contains(at), "{bad:?}: {e}");
            assert!(e.starts_with("not an RFC 6750 bearer token"), "{e}");
        }
        // The message shows nothing of the token.
        let e = check_b64token("secret-part$(evil)").unwrap_err();
        assert!(!e.contains("secret") && !e.contains("evil"), "{e}");
    }

    #[test]
    fn cache_records_get_the_same_check_as_server_answers() {
        use crate::request::CacheKey;
        use crate::store::record::Record;
        let key = CacheKey::from_hex(&"a".repeat(64)).unwrap();
        let good = Record::new(&key, &token("tok")).to_bytes();
        assert!(Record::parse(&good, &key).is_ok());
        // A token no server answer could have carried, planted in a file or in Redis.
        let planted = String::from_utf8(good)
            .unwrap()
            .replace("\"tok\"", "\"x$(id>/tmp/p)\"");
        let e = Record::parse(planted.as_bytes(), &key).unwrap_err();
        assert!(
            e.starts_with("record's token is not an RFC 6750 bearer token"),
            "{e}"
        );
    }

    #[test]
    fn fingerprint_is_stable_short_and_not_the_token() {
        let a = token("abc").fingerprint().to_string();
        assert_eq!(a.len(), 12);
        assert_eq!(a, token("abc").fingerprint().to_string());
        assert_ne!(a, token("abd").fingerprint().to_string());
        assert!(!a.contains("abc"));
    }
}
