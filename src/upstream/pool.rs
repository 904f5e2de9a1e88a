//! One server's idle keep-alive connections, one pool per worker thread.
//!
//! A pooled connection is driven by a task on the worker that opened it
//! (hyper's connection future, spawned there). Were the pools shared, a
//! request on one worker would often take a connection of another, and
//! every request and response on it would cross threads twice (a wake-up
//! of the other worker each way). Each worker therefore takes and returns
//! connections in its own pool ([`crate::sync::worker`]), as each nginx
//! worker process has its own `keepalive` cache. Without worker threads
//! (one runtime) there is one pool.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;

use crate::sync::lock;
use crate::upstream::request_body::RequestBody;

/// Idle connections kept per server and worker; more are closed.
const MAX_IDLE_PER_WORKER: usize = 512;

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
    /// The server name (SNI) the connection was opened with (TLS upstreams
    /// only): it is reused only for requests that would use the same name.
    tls_name: Option<ServerName<'static>>,
}

impl Idle {
    /// Still worth a request: idle for less than `max_idle`, and not closed
    /// by the server.
    fn usable(&self, max_idle: Duration) -> bool {
        self.since.elapsed() < max_idle && !self.sender.is_closed()
    }
}

/// The idle connections of one server, a pool per worker.
pub(crate) struct IdlePools {
    pools: Box<[Mutex<VecDeque<Idle>>]>,
}

impl IdlePools {
    /// Pools for `workers` worker threads (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        IdlePools {
            pools: (0..workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    /// The calling worker's pool.
    fn own(&self) -> &Mutex<VecDeque<Idle>> {
        &self.pools[crate::sync::worker() % self.pools.len()]
    }

    /// The most recently used live idle connection of this worker opened
    /// with `tls_name` (the server name, TLS only), if any. Dead ones
    /// passed over are dropped.
    pub(crate) fn checkout(
        &self,
        max_idle: Duration,
        tls_name: Option<&ServerName<'static>>,
    ) -> Option<SendRequest<RequestBody>> {
        let mut idle = lock(self.own());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            if !c.usable(max_idle) {
                idle.remove(i);
            } else if c.tls_name.as_ref() == tls_name {
                return idle.remove(i).map(|c| c.sender);
            }
        }
        None
    }

    /// Puts a connection back into the calling worker's pool.
    pub(crate) fn checkin(
        &self,
        sender: SendRequest<RequestBody>,
        tls_name: Option<ServerName<'static>>,
    ) {
        // hyper may not report the connection ready yet (it finishes the
        // previous exchange on its next turn); a request sent before then is
        // queued by hyper, and handed back unsent if the connection closes.
        let mut idle = lock(self.own());
        if idle.len() >= MAX_IDLE_PER_WORKER {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
            tls_name,
        });
    }

    /// Closes connections idle for `max_idle` or closed by the server, in
    /// every worker's pool.
    pub(crate) fn prune(&self, max_idle: Duration) {
        for pool in self.pools.iter() {
            lock(pool).retain(|c| c.usable(max_idle));
        }
    }

    /// Idle connections in all pools.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pools.iter().map(|p| lock(p).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;

    /// A live client connection over an in-memory pipe; the other end is
    /// kept in `ends` so it stays open.
    async fn connection(ends: &mut Vec<tokio::io::DuplexStream>) -> SendRequest<RequestBody> {
        let (client, server) = tokio::io::duplex(1024);
        ends.push(server);
        let (sender, conn) = http1::handshake(TokioIo::new(client)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    #[tokio::test]
    async fn each_worker_takes_back_only_its_own_connections() {
        let mut ends = Vec::new();
        let pools = IdlePools::new(2);
        let minute = Duration::from_secs(60);
        crate::sync::set_worker(1);
        pools.checkin(connection(&mut ends).await, None);
        crate::sync::set_worker(0);
        assert!(pools.checkout(minute, None).is_none(), "worker 1's");
        pools.checkin(connection(&mut ends).await, None);
        assert!(pools.checkout(minute, None).is_some());
        assert!(pools.checkout(minute, None).is_none());
        crate::sync::set_worker(1);
        assert!(pools.checkout(minute, None).is_some());
        crate::sync::set_worker(0);

        // Pruning empties every worker's pool.
        for worker in [0, 1] {
            crate::sync::set_worker(worker);
            pools.checkin(connection(&mut ends).await, None);
        }
        crate::sync::set_worker(0);
        assert_eq!(pools.len(), 2);
        pools.prune(Duration::ZERO);
        assert_eq!(pools.len(), 0);
    }

    #[tokio::test]
    async fn one_pool_serves_every_thread_without_workers() {
        let mut ends = Vec::new();
        let pools = IdlePools::new(1);
        crate::sync::set_worker(3);
        pools.checkin(connection(&mut ends).await, None);
        crate::sync::set_worker(0);
        assert!(pools.checkout(Duration::from_secs(60), None).is_some());
    }
}
