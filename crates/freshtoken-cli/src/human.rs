//! Times and durations for people.

use std::time::{Duration, SystemTime};

/// `2026-11-21T09:00:00Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `48m 10s`, whole seconds.
pub(crate) fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `in 48m 10s` or `12m ago`, relative to `now`.
pub(crate) fn relative(t: SystemTime, now: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(ahead) => format!("in {}", duration(ahead)),
        Err(e) => format!("{} ago", duration(e.duration())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn reads_well() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(now), "2023-11-14T22:13:20Z");
        assert_eq!(
            relative(now + Duration::from_millis(2_890_400), now),
            "in 48m 10s"
        );
        assert_eq!(relative(now - Duration::from_secs(720), now), "12m ago");
        assert_eq!(duration(Duration::from_millis(300)), "300ms");
    }
}
