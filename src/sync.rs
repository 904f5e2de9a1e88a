//! Helpers for state shared between tasks, below every layer.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The hasher of maps keyed by what clients send (hellos, SNIs, JA4s,
/// addresses): foldhash, seeded at random per process, so no collisions
/// can be computed offline (as with a fixed hash such as FNV or Fx), at a
/// fraction of SipHash's cost (std's default: 4.6k instructions per
/// connection over a hello's details, `benches/callgrind-connection.sh`).
pub type ClientKeyHasher = foldhash::fast::RandomState;

/// Locks `m`, taking the data over if a thread panicked while holding it.
/// Every mutex in snigate guards state that is whole at each unlock
/// (counters, lists, pools, a log line being built), so a panic elsewhere
/// must not take every later connection down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The worker thread this code runs on: 0 to workers − 1 on the threads
/// `server::workers` starts, 0 on any other thread. Per-worker state (the
/// upstream pools) is indexed by it.
pub fn worker() -> usize {
    WORKER.with(|w| w.get())
}

/// Marks the calling thread as worker `index` (see [`worker`]).
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}
