//! Listening sockets and the accept loop.
//!
//! A socket belongs to a configured bind address ([`BindKey`]), not to a
//! state: each accepted connection is served by the listener that owns that
//! address in the state current at that moment, so a reload that keeps an
//! address keeps its socket (no connection refused while it swaps).
//!
//! The loop survives every accept error (EMFILE and friends: back off
//! briefly and go on), accepts a connection only with a permit of the
//! listener's `max_connections` (without one it stops accepting, and the
//! kernel queues new connections), refuses one whose source is over
//! `max_connections_per_ip`, and stops when asked. A listener's PROXY
//! protocol header is read in the connection's own task
//! ([`crate::conn::proxy_protocol`]), so a slow or silent balancer connection never
//! holds up the loop.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{ListenerId, State};

/// `TCP_NOTSENT_LOWAT` of client connections (see where it is set).
pub const NOTSENT_LOWAT: u32 = 128 * 1024;
/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;
/// Pause after an accept error such as EMFILE, so the loop does not spin
/// while file descriptors are exhausted.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// At most one "connection limit reached" warning per socket in this interval.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What identifies a listening socket across reloads: its configured
/// address, or for port 0 (tests, "any free port") the listener's name too,
/// since every such bind is a different socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindKey {
    Addr(SocketAddr),
    AnyPort(String, SocketAddr),
}

impl BindKey {
    /// The configured address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            BindKey::Addr(a) | BindKey::AnyPort(_, a) => *a,
        }
    }

    pub fn of(listener: &str, addr: SocketAddr) -> BindKey {
        if addr.port() == 0 {
            BindKey::AnyPort(listener.to_string(), addr)
        } else {
            BindKey::Addr(addr)
        }
    }
}

/// Every bind address of `state`'s listeners: (key, listener).
pub fn bind_keys(state: &State) -> Vec<(BindKey, ListenerId)> {
    state
        .listeners_with_ids()
        .flat_map(|(i, l)| {
            l.settings
                .bind
                .iter()
                .map(move |a| (BindKey::of(&l.settings.name, *a), i))
        })
        .collect()
}

/// The listener of `state` that owns `key`.
fn listener_for(state: &State, key: &BindKey) -> Option<ListenerId> {
    state.find_listener(|l| {
        l.settings
            .bind
            .iter()
            .any(|a| BindKey::of(&l.settings.name, *a) == *key)
    })
}

/// The ports on which the configuration listens both on a wildcard
/// address (`0.0.0.0`, `[::]`) and on specific addresses of the same family:
/// the classic IIS layout, a fallback listener for the whole port beside
/// one listener per web application's address. Linux lets these sockets
/// coexist only with `SO_REUSEPORT` on all of them, and then gives each
/// connection to the most specific address that matches.
pub fn shared_ports(addrs: &[SocketAddr]) -> Vec<(bool, u16)> {
    let mut out = Vec::new();
    for a in addrs
        .iter()
        .filter(|a| a.port() != 0 && a.ip().is_unspecified())
    {
        let specific = addrs.iter().any(|b| {
            b.port() == a.port() && b.is_ipv6() == a.is_ipv6() && !b.ip().is_unspecified()
        });
        let key = (a.is_ipv6(), a.port());
        if specific && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// Whether `addr` is on one of `shared` ports (see [`shared_ports`]).
pub fn is_shared(addr: SocketAddr, shared: &[(bool, u16)]) -> bool {
    shared.contains(&(addr.is_ipv6(), addr.port()))
}

/// Fails with "address in use" when another socket (another process)
/// listens on exactly `addr`: a socket with `SO_REUSEPORT` would otherwise
/// silently share its connections with it.
pub fn probe_free(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

/// Binds a listening socket with the options a proxy wants; `shared`: the
/// port also has wildcard and specific listeners (see [`shared_ports`]).
pub fn bind(addr: SocketAddr, shared: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarts must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    // Linux copies both options into every accepted socket: set here once,
    // not with two system calls per connection (see `client_socket_options`).
    #[cfg(target_os = "linux")]
    socket.set_tcp_notsent_lowat(NOTSENT_LOWAT)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// The options of a client connection: no Nagle delay, and
/// `TCP_NOTSENT_LOWAT`. Progress for `client_send`: the kernel reports the
/// socket writable again once fewer than [`NOTSENT_LOWAT`] bytes wait
/// unsent, so a client that reads slowly but steadily shows progress every
/// NOTSENT_LOWAT bytes, not every third of a send buffer that autotuning
/// grows to megabytes (a 16 KiB/s reader would otherwise look stalled for a
/// minute). It also keeps megabytes of a response from queueing in the
/// kernel ahead of a slow client. On Linux an accepted socket has both from
/// its listening socket ([`bind`]; checked by a test below).
fn client_socket_options(stream: &tokio::net::TcpStream) {
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
    }
    #[cfg(target_os = "linux")]
    let _ = stream;
}

/// Accepts connections on `socket` (the address `key`) until `cancel`;
/// each is served with the state current when it was accepted, and drains
/// when that state is retired.
///
/// A connection is accepted only once a `max_connections` permit is free:
/// while the listener is full the loop waits, and new connections wait in
/// the kernel's queue (the listen backlog) instead of being accepted and
/// closed, so they are served as soon as a connection closes. A connection
/// whose source already holds `max_connections_per_ip` is accepted and
/// reset at once (see [`crate::state::source_limit`]; on a `proxy_protocol`
/// listener that check waits for the header, in the connection's task).
pub async fn accept_loop(
    current: Arc<ArcSwap<State>>,
    key: BindKey,
    socket: TcpListener,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let local = socket.local_addr().ok();
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let state = current.load_full();
        let Some(index) = listener_for(&state, &key) else {
            // The reload that removed this address is closing the socket.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = state.retire.cancelled() => continue,
            }
        };
        let listener = state.listener(index);
        let permit = match listener.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                listener.metrics.limit_reached();
                if last_full_warning.is_none_or(|t| t.elapsed() >= FULL_WARNING_INTERVAL) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        listener = %listener.settings.name,
                        address = ?local,
                        max_connections = listener.settings.max_connections,
                        "connection limit reached; new connections wait in the kernel's queue \
                         until one closes (one such line every {} s at most)",
                        FULL_WARNING_INTERVAL.as_secs()
                    );
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    // A reload may give the listener another limit.
                    _ = state.retire.cancelled() => continue,
                    p = listener.connections.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        // Never closed; were it, accepting would end here.
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = match queued(&socket, &cancel, &state.retire) {
            Some(r) => r,
            None => tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // The permit is this state's: take the next connection with
                // the state that replaced it.
                _ = state.retire.cancelled() => continue,
                r = poll_fn(|cx| socket.poll_accept(cx)) => r,
            },
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(address = ?local, error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        // Behind a PROXY header the client is known only once it is read.
        let source = if listener.settings.proxy_protocol {
            None
        } else {
            match listener.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(_) => {
                    crate::state::source_limit::refuse(stream);
                    continue;
                }
            }
        };
        client_socket_options(&stream);
        // A socket bound to one address accepts on that address only; ask
        // the kernel only for wildcard binds.
        let local = match local {
            Some(l) if !l.ip().is_unspecified() => l,
            _ => stream.local_addr().ok().or(local).unwrap_or(peer),
        };
        let active = listener.metrics.connection();
        let current = current.clone();
        // `map`, not an async block that awaits it: a block would keep the
        // connection's future twice (the captured one and the one awaited).
        let serving =
            crate::frontend::connection::serve(state, index, stream, peer, local, current);
        tracker.spawn(serving.map(move |()| drop((permit, source, active))));
    }
}

/// A connection the kernel has already queued on `socket`, taken without
/// waiting (and so without setting up the wait on `cancel` and `retire`,
/// which cost as much as the accept itself), unless either is cancelled.
/// `None`: nothing queued, or a cancellation the caller's wait will see.
fn queued(
    socket: &TcpListener,
    cancel: &CancellationToken,
    retire: &CancellationToken,
) -> Option<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
    if cancel.is_cancelled() || retire.is_cancelled() {
        return None;
    }
    // Nothing queued leaves a no-op waker in the socket's slot; the wait
    // that follows polls it again with the task's own.
    match socket.poll_accept(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `client_socket_options` leaves to the kernel: an accepted
    /// socket has the listening socket's options.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_the_low_water_mark() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::net::TcpStream::connect(addr);
        let both = async { tokio::join!(listener.accept(), connecting) };
        let (accepted, client) = tokio::time::timeout(std::time::Duration::from_secs(10), both)
            .await
            .expect("a loopback connection within 10 s");
        let (stream, _) = accepted.unwrap();
        client.unwrap();
        client_socket_options(&stream);
        assert!(stream.nodelay().unwrap());
        let sock = socket2::SockRef::from(&stream);
        assert_eq!(sock.tcp_notsent_lowat().unwrap(), NOTSENT_LOWAT);
    }

    /// A connection already queued is taken at once; none queued, or a
    /// cancellation pending, leaves it to the wait.
    #[tokio::test]
    async fn queued_connections_are_taken_without_waiting() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let (cancel, retire) = (CancellationToken::new(), CancellationToken::new());
        assert!(
            queued(&listener, &cancel, &retire).is_none(),
            "nothing queued"
        );
        // The connect completes once the kernel has queued the connection.
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = queued(&listener, &cancel, &retire)
            .expect("a queued connection")
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(queued(&listener, &cancel, &retire).is_none(), "taken once");
        let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
        retire.cancel();
        assert!(queued(&listener, &cancel, &retire).is_none(), "retired");
        assert!(queued(&listener, &cancel, &CancellationToken::new()).is_some());
    }
}
