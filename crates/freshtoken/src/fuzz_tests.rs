//! Mutation fuzzing of every parser of outside input, as a plain test: many thousands of
//! damaged variants of real inputs, plus random bytes. The property is simple: no panic, and
//! every refusal is a one-line message.
//!
//! Deterministic (seeded) so a failure reproduces; `FRESHTOKEN_FUZZ_ITERS` runs it longer.

use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::request::CacheKey;
use crate::store::record::Record;
use crate::token::{ExpirySource, Token};
use crate::{jwt, response};

fn iterations() -> usize {
    std::env::var("FRESHTOKEN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..6) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            1 => {
                let i = rng.random_range(0..=v.len());
                v.insert(
                    i,
                    *b"{}[]\",:0-.e\\ \xef\xbb\xbf"
                        .get(rng.random_range(0..17))
                        .unwrap_or(&b'x'),
                );
            }
            2 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.truncate(i);
            }
            3 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.remove(i);
            }
            4 => {
                let i = rng.random_range(0..=v.len());
                let n = rng.random_range(0..4);
                let chunk = v[..i].to_vec();
                for _ in 0..n {
                    v.extend_from_slice(&chunk[..chunk.len().min(64)]);
                }
            }
            _ => v = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
    }
    v
}

const RESPONSES: &[&str] = &[
    r#"{"access_token":"abc","token_type":"bearer","expires_in":3600,"scope":"a b"}"#,
    r#"{"access_token":"abc","token_type":"Bearer","expires_in":"86399","refresh_token":"r"}"#,
    "\u{FEFF}{\"access_token\":\"a\",\"expires_in\":1.5e3}",
    r#"{"error":"invalid_client","error_description":"bad"}"#,
    r#"{"error":"invalid_request","description":"Rate limit exceeded"}"#,
    "<html><title>502</title></html>",
    r#"{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9.x"}"#,
];

#[test]
fn token_responses_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 0..iterations() {
        let input = mutate(&mut rng, RESPONSES[i % RESPONSES.len()].as_bytes());
        match response::parse_success(200, &input, at, Duration::from_secs(300)) {
            Ok(t) => {
                assert!(t.lifetime() > Duration::ZERO || t.expiry_source() == ExpirySource::JwtExp)
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        }
        if let Some(e) = response::parse_error_body(&input) {
            assert!(!e.error.contains('\n'));
        }
        assert!(!response::excerpt(&input).contains('\n'));
    }
}

#[test]
fn jwts_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let seed = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJjaSIsImV4cCI6MTcwMDAwMDYwMCwiaWF0IjoxNjk5OTk5NDAwfQ.c2ln";
    for _ in 0..iterations() {
        let input = mutate(&mut rng, seed.as_bytes());
        let text = String::from_utf8_lossy(&input);
        if let Ok(d) = jwt::decode(&text) {
            let _ = d.time_claim("exp");
        }
        let _ = jwt::expiry(&text);
    }
}

#[test]
fn cache_records_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    // Cannot fail: a fixed 64-digit hex string is exactly what a cache key is.
    let key = CacheKey::from_hex(&"ab".repeat(32)).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let token = Token::new(
        secrecy::SecretString::from("tok".to_owned()),
        at,
        at + Duration::from_secs(60),
        ExpirySource::ExpiresIn,
    );
    let seed = Record::new(&key, &token).to_bytes();
    for _ in 0..iterations() {
        let input = mutate(&mut rng, &seed);
        if let Ok(t) = Record::parse(&input, &key) {
            assert!(t.expires_at() >= t.received_at());
        }
    }
}
