//! The sealed Redis value (`store/seal.rs`, compiled here from its own source: the module is
//! private to the store, and the Redis store needs a server). Any value found under a key
//! opens to nothing or to what was sealed; what is sealed opens again under its own key
//! only, and any damage to it is noticed.
#![no_main]

use freshtoken::CacheKey;
use freshtoken::internal::Record;
use freshtoken_fuzz::one_line;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/freshtoken/src/store/seal.rs"]
mod seal;

/// The Redis key of the seeds: `freshtoken:v1:` and the cache key.
const NAME: &str = "freshtoken:v1:abababababababababababababababababababababababababababababababab";

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fuzz_target!(|data: &[u8]| {
    let sealer = seal::Sealer::new(b"fuzz-client-secret");
    // As read from Redis: a string.
    let found = String::from_utf8_lossy(data);
    if let Some(plain) = sealer.open(NAME, &found)
        && let Some(key) = CacheKey::from_hex(&"ab".repeat(32))
        && let Err(e) = Record::parse(&plain, &key)
    {
        one_line("a refused record", &e);
    }
    assert!(sealer.open("freshtoken:v1:other", &found).is_none() || found.is_empty());

    let sealed = sealer.seal(NAME, data);
    assert!(sealed.starts_with("v1."));
    assert_eq!(
        sealer.open(NAME, &sealed).as_deref(),
        Some(data),
        "round trip"
    );
    assert!(
        sealer.open("freshtoken:v1:other", &sealed).is_none(),
        "moved"
    );
    assert!(
        seal::Sealer::new(b"another-secret")
            .open(NAME, &sealed)
            .is_none(),
        "other credentials"
    );
    // One character changed, anywhere: refused.
    let at = data.first().map_or(0, |b| usize::from(*b)) % sealed.len();
    let mut damaged = sealed.clone().into_bytes();
    let old = damaged[at];
    let shift = data.get(1).map_or(1, |b| 1 + usize::from(*b) % 63);
    let was = ALPHABET.iter().position(|c| *c == old).unwrap_or(0);
    damaged[at] = ALPHABET[(was + shift) % ALPHABET.len()];
    if damaged[at] != old {
        let damaged = String::from_utf8_lossy(&damaged);
        assert!(
            sealer.open(NAME, &damaged).is_none(),
            "damage at {at} unnoticed"
        );
    }
});
