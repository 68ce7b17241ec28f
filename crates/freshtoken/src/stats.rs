//! What a cached source's layers did for it, for the agent's `/metrics` and `status`: which
//! layer answered, how long callers waited for another process's refresh lock, the failure
//! notes (the fleet's backoff) seen and written, and how often the request budget was spent.
//!
//! Counting is relaxed atomics on the slow path only: the hit path (a token already in hand)
//! writes nothing shared, so that it keeps scaling across threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The layers whose answers are counted, in the order of [`StatsSnapshot::answers`].
pub const LAYERS: [&str; 3] = ["memory", "file", "redis"];

/// Counters of one cached source (see the module docs). Cheap to update: each is one relaxed
/// atomic, and none is touched on the hit path.
#[derive(Debug, Default)]
pub struct CacheStats {
    answers: [AtomicU64; LAYERS.len()],
    lock_waits: AtomicU64,
    lock_wait_micros: AtomicU64,
    lock_wait_max_micros: AtomicU64,
    notes_seen: AtomicU64,
    notes_written: AtomicU64,
    over_budget: AtomicU64,
}

/// The counters of a [`CacheStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Times each layer of [`LAYERS`] supplied the token a caller needed beyond the one in
    /// hand: `memory` is this process's own (another caller's refresh in it, or a memory
    /// store), `file` and `redis` a token taken from that store. Fetches are not here: the
    /// fetcher's own counters have them.
    pub answers: [u64; LAYERS.len()],
    /// Times a caller found the store's refresh lock held by someone else and waited.
    pub lock_waits: u64,
    /// Their wait, all together.
    pub lock_wait_total: Duration,
    /// The longest of them.
    pub lock_wait_max: Duration,
    /// Times a caller found a failure note in effect and held back (served the token it
    /// holds, failed fast, or skipped a background refresh): the fleet's backoff at work.
    pub notes_seen: u64,
    /// Failure notes this source left after a failed refresh.
    pub notes_written: u64,
    /// Times a refresh found the fleet's request budget (`token_rate`) spent.
    pub over_budget: u64,
}

impl StatsSnapshot {
    /// These counters and `other`'s together (the longest wait is the longer of the two):
    /// for a holder that keeps counting across sources, as the agent does across reloads.
    #[must_use]
    pub fn plus(&self, other: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            answers: std::array::from_fn(|i| self.answers[i].saturating_add(other.answers[i])),
            lock_waits: self.lock_waits.saturating_add(other.lock_waits),
            lock_wait_total: self.lock_wait_total.saturating_add(other.lock_wait_total),
            lock_wait_max: self.lock_wait_max.max(other.lock_wait_max),
            notes_seen: self.notes_seen.saturating_add(other.notes_seen),
            notes_written: self.notes_written.saturating_add(other.notes_written),
            over_budget: self.over_budget.saturating_add(other.over_budget),
        }
    }

    /// The answers of the layer named `kind` (one of [`LAYERS`]); 0 for any other.
    pub fn answered_by(&self, kind: &str) -> u64 {
        LAYERS
            .iter()
            .position(|l| *l == kind)
            .map_or(0, |i| self.answers[i])
    }
}

impl CacheStats {
    /// Counts one answer of the layer named `kind`; a kind outside [`LAYERS`] (a custom
    /// store) is not counted.
    pub(crate) fn answered(&self, kind: &str) {
        if let Some(i) = LAYERS.iter().position(|l| *l == kind) {
            self.answers[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one wait for another holder's refresh lock, of `waited`.
    pub(crate) fn lock_waited(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.lock_waits.fetch_add(1, Ordering::Relaxed);
        self.lock_wait_micros.fetch_add(micros, Ordering::Relaxed);
        self.lock_wait_max_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Counts a failure note found in effect.
    pub(crate) fn note_seen(&self) {
        self.notes_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure note written.
    pub(crate) fn note_written(&self) {
        self.notes_written.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refresh that found the budget spent.
    pub(crate) fn budget_spent(&self) {
        self.over_budget.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            answers: std::array::from_fn(|i| get(&self.answers[i])),
            lock_waits: get(&self.lock_waits),
            lock_wait_total: Duration::from_micros(get(&self.lock_wait_micros)),
            lock_wait_max: Duration::from_micros(get(&self.lock_wait_max_micros)),
            notes_seen: get(&self.notes_seen),
            notes_written: get(&self.notes_written),
            over_budget: get(&self.over_budget),
        }
    }
}

/// How much of the fleet's request budget (`token_rate`) the current window has used, as
/// the shared store counts it: what `status` and `/metrics` show next to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetUse {
    /// Requests let go in this window (at most `limit`).
    pub spent: u64,
    /// Requests a window allows.
    pub limit: u32,
    /// How long a window is.
    pub period: Duration,
    /// Requests refused in this window for want of budget.
    pub refused: u64,
    /// Until the next window.
    pub window_left: Duration,
}

impl BudgetUse {
    /// The use when `asked` requests counted against `limit` in the window, with
    /// `window_left` to go.
    pub fn new(asked: u64, limit: u32, period: Duration, window_left: Duration) -> Self {
        Self {
            spent: asked.min(u64::from(limit)),
            limit,
            period,
            refused: asked.saturating_sub(u64::from(limit)),
            window_left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_unknown_layers_count_nowhere() {
        let s = CacheStats::default();
        s.answered("redis");
        s.answered("redis");
        s.answered("file");
        s.answered("custom");
        s.lock_waited(Duration::from_millis(30));
        s.lock_waited(Duration::from_millis(10));
        let snap = s.snapshot();
        assert_eq!(snap.answers, [0, 1, 2]);
        assert_eq!(snap.answered_by("redis"), 2);
        assert_eq!(snap.answered_by("custom"), 0);
        assert_eq!(snap.lock_waits, 2);
        assert_eq!(snap.lock_wait_total, Duration::from_millis(40));
        assert_eq!(snap.lock_wait_max, Duration::from_millis(30));
        let both = snap.plus(&snap);
        assert_eq!(both.answers, [0, 2, 4]);
        assert_eq!(both.lock_waits, 4);
        assert_eq!(both.lock_wait_total, Duration::from_millis(80));
        assert_eq!(both.lock_wait_max, Duration::from_millis(30));
        assert_eq!(
            BudgetUse::new(7, 5, Duration::from_secs(60), Duration::ZERO).refused,
            2
        );
        assert_eq!(
            BudgetUse::new(3, 5, Duration::from_secs(60), Duration::ZERO).spent,
            3
        );
    }
}
