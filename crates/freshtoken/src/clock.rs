//! Time behind a trait, so that expiry can be tested by moving a clock instead of waiting.
//!
//! Expiry is wall-clock time (it is persisted in caches shared between processes), so the
//! clock yields [`SystemTime`]. Sleeping between retries goes through `tokio::time`, which
//! tests pause and advance on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
///
/// `Any` is a supertrait so that a cached source can tell [`SystemClock`] from the others and
/// read it on the hit path without a call through the trait object.
pub trait Clock: std::any::Any + Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time as bounds `(earliest, latest)` that [`Clock::now`] lies between,
    /// read more cheaply than `now()` where the clock can. The cached hit path proves a token
    /// fresh from the bounds alone and reads `now()` only when they straddle one of its
    /// moments, so that the answer is the one `now()` gives. The default is `now()` itself
    /// (exact, as [`ManualClock`] needs).
    fn now_bounds(&self) -> (SystemTime, SystemTime) {
        let now = self.now();
        (now, now)
    }
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

    /// The kernel's coarse wall clock (the time at the last timer tick, a few ns through the
    /// vDSO against ~20 ns for the precise one on a VM), widened by two ticks.
    #[inline]
    fn now_bounds(&self) -> (SystemTime, SystemTime) {
        coarse_bounds().unwrap_or_else(|| {
            let now = self.now();
            (now, now)
        })
    }
}

/// The coarse wall clock and how far the precise one may be ahead of it: the time at the
/// last tick can lag the precise time by up to one tick, never lead it; two ticks of slack.
/// `None` where there is no coarse clock, or its tick is too long to be of use.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn coarse_bounds() -> Option<(SystemTime, SystemTime)> {
    use std::sync::OnceLock;
    static SLACK: OnceLock<Option<Duration>> = OnceLock::new();
    let slack = (*SLACK.get_or_init(|| {
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `res` is a valid, writable timespec; clock_getres writes only to it.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut res) } == 0;
        let tick = timespec_duration(&res).filter(|_| ok)?;
        Some(tick * 2).filter(|slack| *slack <= Duration::from_millis(100))
    }))?;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; clock_gettime writes only to it.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
        return None;
    }
    let earliest = UNIX_EPOCH.checked_add(timespec_duration(&now)?)?;
    Some((earliest, earliest.checked_add(slack)?))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_bounds() -> Option<(SystemTime, SystemTime)> {
    None
}

/// A non-negative timespec as a duration.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn timespec_duration(ts: &libc::timespec) -> Option<Duration> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos))
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

    fn now_bounds(&self) -> (SystemTime, SystemTime) {
        let (earliest, latest) = SystemClock.now_bounds();
        (earliest + self.ahead, latest + self.ahead)
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

    /// The bounds bracket the precise clock: `earliest` is not after a reading taken after
    /// them, `latest` not before one taken before them (a coarse clock without the slack
    /// fails the second within a few thousand rounds).
    #[test]
    fn system_clock_bounds_bracket_the_precise_clock() {
        for clock in [
            &SystemClock as &dyn Clock,
            &SkewedClock::ahead(Duration::from_secs(5)),
        ] {
            for _ in 0..200_000 {
                let before = clock.now();
                let (earliest, latest) = clock.now_bounds();
                let after = clock.now();
                assert!(earliest <= latest);
                assert!(earliest <= after, "{earliest:?} is after {after:?}");
                assert!(latest >= before, "{latest:?} is before {before:?}");
            }
        }
    }

    #[test]
    fn manual_clock_bounds_are_exact() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now_bounds(), (start, start));
    }

    #[test]
    fn millis_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_unix_millis(unix_millis(t)), t);
    }
}
