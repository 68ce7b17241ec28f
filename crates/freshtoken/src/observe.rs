//! Watching the fetcher wait: a program that runs in front of a person (a terminal) can
//! show each failed attempt and the wait before the next, where a log would say it once.

use std::fmt;
use std::time::Duration;

use crate::Error;

/// Told about each failed attempt that the fetcher will retry, so that a program can show
/// the wait as it wishes (the library says nothing about how: no terminal codes, no words
/// of a command line). Set it in [`HttpOptions::observer`](crate::HttpOptions).
pub trait RetryObserver: Send + Sync + fmt::Debug {
    /// An attempt failed and the next one starts in `notice.next_in`. Returns whether the
    /// observer showed it to the user; the fetcher then logs the failure at debug level
    /// only, so that it is not said twice.
    fn retrying(&self, notice: &RetryNotice<'_>) -> bool;

    /// The call that was retried ended, with a token, an error, or by being dropped.
    fn finished(&self) {}
}

/// One failed attempt that will be retried.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryNotice<'a> {
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// Why (redacted like every error freshtoken shows).
    pub error: &'a Error,
    /// The wait before the next attempt.
    pub next_in: Duration,
    /// Time since the first attempt started.
    pub elapsed: Duration,
    /// Time left before the call gives up.
    pub left: Duration,
}

/// Calls [`RetryObserver::finished`] when the retried call ends however it ends (a future
/// dropped by a deadline too), once it was told of a retry.
pub(crate) struct FinishGuard<'a> {
    pub(crate) observer: Option<&'a dyn RetryObserver>,
    pub(crate) told: bool,
}

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        if let (true, Some(o)) = (self.told, self.observer) {
            o.finished();
        }
    }
}
