//! What a failed refresh leaves in the store beside the token: the error, how many refreshes
//! in a row failed, and when the next one may be tried.
//!
//! A caller that still holds a usable token reads the note and serves that token at once
//! instead of trying the failing endpoint again, so during an outage everyone who shares the
//! store (the processes of a machine, the machines of a fleet) makes one token request per
//! backoff step between them, not one each.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::{from_unix_millis, unix_millis};
use crate::retry::RetryPolicy;

/// Format version; a note of another version is ignored.
const VERSION: u32 = 1;

/// The first backoff step after a failure.
pub const NOTE_BACKOFF_BASE: Duration = Duration::from_secs(1);

/// No backoff step is longer: when the endpoint comes back, everyone has a new token within
/// this long.
pub const NOTE_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The pause between failed refreshes that a note imposes: steps of 1 s doubling to 30 s,
/// each shortened by up to a quarter so that a fleet does not retry in one instant.
pub const NOTE_BACKOFF: RetryPolicy =
    RetryPolicy::exponential(NOTE_BACKOFF_BASE, NOTE_BACKOFF_CAP).with_jitter(0.75, 1.0);

/// Longest error text kept in a note.
const MAX_ERROR: usize = 400;

/// A failed refresh, as remembered by a store (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureNote {
    /// The failure as users see it: one line, redacted like every error freshtoken shows.
    pub error: String,
    /// Failed refreshes in a row, counted across everyone who shares the store.
    pub failures: u32,
    /// A caller that holds a usable token does not try again before this moment.
    pub not_before: SystemTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    error: String,
    failures: u32,
    not_before_ms: u64,
}

impl FailureNote {
    /// The note after one more failure: the count grows from `previous` and so does the wait,
    /// `1 s · 2^(failures-1)` capped at [`NOTE_BACKOFF_CAP`], less up to a quarter by `jitter`
    /// (a draw from `[0, 1)`) so that a fleet does not retry in one instant.
    pub fn after(
        previous: Option<&FailureNote>,
        error: &str,
        now: SystemTime,
        jitter: f64,
    ) -> Self {
        let failures = previous.map_or(0, |n| n.failures).saturating_add(1);
        let error = one_line(error);
        Self {
            error,
            failures,
            not_before: now + Self::backoff(failures, jitter),
        }
    }

    /// The wait after `failures` failures in a row (see [`NOTE_BACKOFF`]); a `jitter` of 0
    /// waits the whole step, 1 a quarter less.
    pub fn backoff(failures: u32, jitter: f64) -> Duration {
        NOTE_BACKOFF.delay(failures.saturating_sub(1), 1.0 - jitter.clamp(0.0, 1.0))
    }

    /// Whether a caller holding a usable token should serve it rather than try at `now`.
    /// A note whose moment lies further ahead than any backoff (the clock went back, or a
    /// hostile writer) is not obeyed.
    pub fn holds_at(&self, now: SystemTime) -> bool {
        match self.not_before.duration_since(now) {
            Ok(ahead) => !ahead.is_zero() && ahead <= NOTE_BACKOFF_CAP,
            Err(_) => false,
        }
    }

    /// How long a store should keep the note: past its moment, so that the next failure
    /// still grows the count, then gone, so that an old outage does not slow a new one.
    pub fn keep_for(&self, now: SystemTime) -> Duration {
        self.not_before
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(NOTE_BACKOFF_CAP)
            + NOTE_BACKOFF_CAP * 4
    }

    /// Serializes to JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            v: VERSION,
            error: self.error.clone(),
            failures: self.failures,
            not_before_ms: unix_millis(self.not_before),
        };
        serde_json::to_vec(&wire).expect("a struct of strings and integers always serializes")
    }

    /// Parses a note read back from a store; `None` for anything that is not one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let wire: Wire = serde_json::from_slice(bytes).ok()?;
        (wire.v == VERSION).then(|| Self {
            error: one_line(&wire.error),
            failures: wire.failures,
            not_before: from_unix_millis(wire.not_before_ms),
        })
    }
}

/// The text on one line, bounded, so that a note can never carry a page of a server's body.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR)
        .collect();
    if text.chars().count() > MAX_ERROR {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_to_its_cap_with_at_most_a_quarter_of_jitter() {
        let steps: Vec<u64> = (1..=8)
            .map(|n| FailureNote::backoff(n, 0.0).as_secs())
            .collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(FailureNote::backoff(u32::MAX, 0.0), NOTE_BACKOFF_CAP);
        assert_eq!(FailureNote::backoff(3, 1.0), S(3));
        assert_eq!(FailureNote::backoff(0, 0.0), S(1));
    }

    #[test]
    fn the_count_grows_across_notes_and_the_note_holds_until_its_moment() {
        let now = UNIX_EPOCH + S(1_700_000_000);
        let first = FailureNote::after(None, "HTTP 503", now, 0.0);
        assert_eq!((first.failures, first.not_before), (1, now + S(1)));
        let third = FailureNote::after(
            Some(&FailureNote::after(Some(&first), "x", now, 0.0)),
            "x",
            now,
            0.0,
        );
        assert_eq!((third.failures, third.not_before), (3, now + S(4)));
        assert!(third.holds_at(now));
        assert!(third.holds_at(now + S(3)));
        assert!(!third.holds_at(now + S(4)));
        // A moment further ahead than any backoff is not obeyed: the clock went back.
        assert!(!third.holds_at(now - S(3600)));
    }

    #[test]
    fn round_trip_and_refusals() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let note = FailureNote::after(None, "line one\nline two", now, 0.5);
        assert_eq!(note.error, "line one line two");
        assert_eq!(FailureNote::parse(&note.to_bytes()), Some(note.clone()));
        assert_eq!(FailureNote::parse(b"{}"), None);
        assert_eq!(FailureNote::parse(b"\xff"), None);
        let other = String::from_utf8(note.to_bytes())
            .unwrap_or_default()
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(FailureNote::parse(other.as_bytes()), None);
        let long = FailureNote::after(None, &"e".repeat(10_000), now, 0.0);
        assert_eq!(long.error.chars().count(), MAX_ERROR + 1);
    }
}
