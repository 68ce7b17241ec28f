//! Time behind a trait, so that expiry can be tested by moving a clock instead of waiting.
//!
//! Expiry is wall-clock time (it is persisted in caches shared between processes), so the
//! clock yields [`SystemTime`]. Sleeping between retries goes through `tokio::time`, which
//! tests pause and advance on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// Shared handle to a clock, as the cached source and stores hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place the real clock is read.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The real clock moved by a fixed offset: for whole-process tests of expiry (a process
/// cannot share a `ManualClock`), and for hosts whose clock is known to lag.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    ahead: Duration,
}

impl SkewedClock {
    /// The real time plus `ahead`.
    pub fn ahead(ahead: Duration) -> Self {
        Self { ahead }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> SystemTime {
        SystemClock.now() + self.ahead
    }
}

/// A clock that only moves when told to; tests use it to cross token lifetimes instantly.
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(to_nanos(start))),
        }
    }

    /// A clock standing at the real current time, which keeps tokens plausible to servers.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Puts the clock at an exact time.
    pub fn set(&self, at: SystemTime) {
        self.nanos.store(to_nanos(at), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, the unit caches persist times in.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`unix_millis`].
pub fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), start + Duration::from_millis(1500));
        let copy = clock.clone();
        copy.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), start + Duration::from_millis(2500));
    }

    #[test]
    fn millis_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_unix_millis(unix_millis(t)), t);
    }
}
