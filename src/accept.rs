//! Listening sockets and the accept loop.
//!
//! The loop survives every accept error (EMFILE and friends: back off
//! briefly and go on), admits a connection only with a permit of the
//! listener's `max_connections`, and stops when asked. A listener's PROXY
//! protocol header is read in the connection's own task
//! ([`crate::proxy_protocol`]), so a slow or silent balancer connection never
//! holds up the loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::State;

/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;
/// Pause after an accept error such as EMFILE, so the loop does not spin
/// while file descriptors are exhausted.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a listening socket with the options a proxy wants.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarts must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections on `socket` for listener `index` until `cancel`.
pub async fn accept_loop(
    state: Arc<State>,
    index: usize,
    socket: TcpListener,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let local = socket.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = %state.listeners[index].settings.name, error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let listener = &state.listeners[index];
        let Ok(permit) = listener.connections.clone().try_acquire_owned() else {
            tracing::warn!(
                listener = %listener.settings.name,
                %peer,
                max_connections = listener.settings.max_connections,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().or(local).unwrap_or(peer);
        let state = state.clone();
        let cancel = cancel.clone();
        let active = listener.metrics.connection();
        tracker.spawn(async move {
            crate::connection::serve(state, index, stream, peer, local, cancel).await;
            drop((permit, active));
        });
    }
}
