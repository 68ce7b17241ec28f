//! The crate's one way to take a lock (re-exported for the sibling crates by `internal`).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data over from a thread that panicked while holding it.
///
/// Every mutex in these crates guards data that stays consistent between statements (a
/// counter, a map, a timestamp), so a panic elsewhere leaves nothing half-written: going on
/// is better than spreading the panic to every later caller.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
