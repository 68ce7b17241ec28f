//! `Retry-After` (`parse_retry_after`): any header value a server or proxy may send. Both
//! forms (delta-seconds, HTTP date) give a wait no longer than the cap, and the backoff built
//! on it stays finite.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use freshtoken::RetryPolicy;
use freshtoken::internal::parse_retry_after;
use libfuzzer_sys::fuzz_target;

/// The longest wait a server can ask for (the delta-seconds form's cap).
const CAP: Duration = Duration::from_secs(24 * 3600);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let wait = parse_retry_after(value, now);
    if let Some(wait) = wait {
        assert!(wait <= CAP, "{value:?} asks for {wait:?}");
    }
    if let Ok(secs) = value.trim().parse::<u64>() {
        assert_eq!(wait, Some(Duration::from_secs(secs).min(CAP)));
    }
    let policy = RetryPolicy::default();
    for retry in [0, 1, 7, u32::MAX] {
        let backoff = policy.backoff(retry, 0.5, wait);
        assert!(backoff <= policy.cap.max(wait.unwrap_or_default()));
    }
});
