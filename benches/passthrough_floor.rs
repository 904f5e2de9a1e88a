//! The floor under a passthrough proxy built on tokio: the least such a
//! proxy can do per connection, for `benches/cpu-passthrough.sh`,
//! `benches/syscalls-passthrough.sh` and `benches/callgrind-connection.sh`
//! to measure beside snigate, nginx `stream` and HAProxy. What snigate
//! spends above it is snigate's own (the hello's parse, routing, limits,
//! the handshake record and the report); what it spends above nginx is
//! tokio's (a task per connection, its wake-ups, each socket's epoll
//! registration and removal, the accept that ends in `EAGAIN`).
//!
//! It accepts on LISTEN, reads once (the ClientHello, which arrives in one
//! read from the clients the scripts use), connects to BACKEND, writes
//! what it read, and copies both ways with `tokio::io::copy_bidirectional`
//! (half-closes passed on, as snigate and HAProxy do), on one
//! current-thread runtime as snigate's `workers = 1`. With `FLOOR_TIMERS=1`
//! it also bounds the hello's read and the connect (10 s each) and the
//! copy (120 s), as snigate's timeouts do, so that tokio's timers are in
//! the floor. No parse, no routing, no limits: not a proxy to deploy.
//!
//!   cargo bench --bench passthrough_floor --no-run   (prints the executable)
//!   FLOOR_BIN=target/release/deps/passthrough_floor-… benches/cpu-passthrough.sh
//!
//! By hand: `passthrough_floor LISTEN BACKEND`, e.g.
//! `passthrough_floor 127.0.0.1:38449 127.0.0.1:39443`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Room for one read of the ClientHello.
const HELLO: usize = 4096;
/// With `FLOOR_TIMERS`: the bound on the hello's read and on the connect.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// With `FLOOR_TIMERS`: the bound on the copy (snigate's `client_idle`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        // `cargo bench` runs bench targets with `--bench`: nothing to do.
        eprintln!("usage: passthrough_floor LISTEN BACKEND (e.g. 127.0.0.1:38449 127.0.0.1:39443)");
        return Ok(());
    };
    let listen: SocketAddr = listen.parse().map_err(invalid)?;
    let backend: SocketAddr = backend.parse().map_err(invalid)?;
    let timers = std::env::var_os("FLOOR_TIMERS").is_some_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // Accepted sockets inherit it (snigate sets it the same way).
        socket.set_nodelay(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        loop {
            let (client, _) = listener.accept().await?;
            tokio::spawn(relay(client, backend, timers));
        }
    })
}

async fn relay(mut client: TcpStream, backend: SocketAddr, timers: bool) {
    let mut hello = [0u8; HELLO];
    let read = match bounded(timers, SETUP_TIMEOUT, client.read(&mut hello)).await {
        Some(Ok(n)) if n > 0 => n,
        _ => return,
    };
    let Some(Ok(mut server)) = bounded(timers, SETUP_TIMEOUT, TcpStream::connect(backend)).await
    else {
        return;
    };
    let _ = server.set_nodelay(true);
    if server.write_all(&hello[..read]).await.is_err() {
        return;
    }
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    let _ = bounded(timers, IDLE_TIMEOUT, copy).await;
}

/// `work`, under `limit` when `timers`; `None` when the limit ran out.
async fn bounded<T>(timers: bool, limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    if timers {
        tokio::time::timeout(limit, work).await.ok()
    } else {
        Some(work.await)
    }
}

fn invalid(e: std::net::AddrParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}
