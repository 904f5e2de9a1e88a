//! Helpers for state shared between tasks, below every layer.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the data over if a thread panicked while holding it.
/// Every mutex in snigate guards state that is whole at each unlock
/// (counters, lists, pools, a log line being built), so a panic elsewhere
/// must not take every later connection down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
