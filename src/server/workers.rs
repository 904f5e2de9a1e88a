//! Worker threads: a single-threaded tokio runtime on each, every one
//! accepting connections on every configured address and serving the ones
//! it accepted to their end (thread per core, as nginx's worker processes).
//!
//! Why not tokio's multi-thread scheduler: it moves tasks between its
//! threads (work stealing, and wake-ups that land on the other thread), and
//! at two workers snigate spent 9-18 % more CPU per request than at one
//! (`benches/cpu-workers.sh`; 1-3 % now, README "Two workers"), while
//! nginx's two processes each keep what they accepted. Here a connection,
//! the tasks it spawns (request streams, tunnels, copies) and the upstream
//! connections it opens (pooled per worker, `upstream::pool`) stay on one
//! thread. The process's own runtime keeps the rest: signals, reloads, the
//! admin endpoint, health checks.
//!
//! Each worker accepts on a listening socket of its own for every address:
//! the process binds one socket per worker with `SO_REUSEPORT`, and the
//! kernel spreads new connections over them by a hash of the client's
//! address and port (as nginx's `listen ... reuseport`). A shared socket
//! would wake every worker for each new connection, and all but one would
//! find nothing to accept.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::config::MAX_WORKERS;

/// The worker threads `[runtime] workers = configured` asks for: 0 is one
/// per CPU the process may use, at most [`MAX_WORKERS`] (the configuration
/// refuses more).
pub fn count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS)),
        n => n,
    }
}

/// Running worker threads; dropped, they stop (see [`Drop`]).
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `count` (at least one) worker threads, named
    /// `snigate-worker-N`.
    pub fn start(count: usize) -> io::Result<Workers> {
        let mut workers = Workers {
            handles: Vec::new(),
            threads: Vec::new(),
            stop: CancellationToken::new(),
        };
        for index in 0..count.max(1) {
            // A failure here drops `workers`, which stops the ones started.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let stop = workers.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("snigate-worker-{index}"))
                .spawn(move || {
                    crate::sync::set_worker(index);
                    // The runtime runs its tasks while it waits on this
                    // future: every runtime's standing timer (see
                    // `io::timer_floor`), until stop. Tasks still on it
                    // then (connections past the shutdown grace, idle
                    // upstream connections) close as it drops.
                    runtime.block_on(crate::io::timer_floor::hold(stop));
                })?;
            workers.handles.push(handle);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Handles to spawn onto each worker's runtime, in worker order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Workers {
    /// Stops every worker and waits for its thread: whatever still runs on
    /// them is dropped (sockets close).
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Each worker runs what is spawned on it on its own thread, which
    /// knows its index; dropping the workers ends the threads.
    #[test]
    fn each_worker_is_one_thread_that_knows_its_index() {
        let workers = Workers::start(3).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, handle) in workers.handles().iter().enumerate() {
            let tx = tx.clone();
            handle.spawn(async move {
                let name = std::thread::current().name().map(str::to_string);
                tx.send((i, crate::sync::worker(), name)).unwrap();
            });
        }
        let mut seen: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort();
        for (i, (spawned_on, index, name)) in seen.into_iter().enumerate() {
            assert_eq!((spawned_on, index), (i, i));
            assert_eq!(
                name.as_deref(),
                Some(format!("snigate-worker-{i}").as_str())
            );
        }
        let handle = workers.handles()[0].clone();
        drop(workers);
        // A stopped runtime runs nothing more: the task is dropped unrun.
        let ran = handle.spawn(async {});
        let joined = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(ran)
        })
        .join()
        .unwrap();
        assert!(joined.is_err(), "a task spawned after stop never runs");
    }
}
