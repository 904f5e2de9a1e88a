//! `proxy_protocol_read`: the bytes a balancer sends first, written to a
//! loopback connection and read with [`snigate::conn::proxy_protocol::read_header`]
//! as a `proxy_protocol` listener does. The reader must take exactly the
//! header's bytes off the socket (what follows belongs to the ClientHello
//! reader or hyper), agree with the parser on them, and, at end of stream,
//! answer at once rather than wait for its deadline.

use std::net::SocketAddr;
use std::time::Duration;

use snigate::conn::proxy_protocol::{parse, read_header, ProxyHeaderError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longer than any header (v2: 16 + 4096 bytes), so that inputs can carry
/// bytes after one; the rest of an input is not sent.
const MAX_INPUT: usize = 8192;
/// The header deadline. The stream always ends, so reaching it is a failure.
const LIMIT: Duration = Duration::from_secs(5);

pub fn fuzz(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    super::block_on(run(data));
}

async fn run(data: &[u8]) {
    let (mut client, mut server) = pair().await;
    // Loopback buffers hold far more than MAX_INPUT: write it all, then end
    // the stream, before the reader starts.
    client.write_all(data).await.expect("write to loopback");
    client.shutdown().await.expect("shutdown");
    let result = read_header(&mut server, LIMIT).await;
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, server.read_to_end(&mut rest))
        .await
        .expect("the rest of the stream in time")
        .expect("read the rest");
    assert!(rest.len() <= data.len(), "more bytes than were sent");
    let taken = data.len() - rest.len();
    assert_eq!(rest, &data[taken..], "the stream after the header differs");
    match &result {
        Ok(addresses) => {
            let parsed = parse(&data[..taken]);
            assert!(
                matches!(&parsed, Ok(a) if a == addresses),
                "read {addresses:?} taking {taken} bytes, but they parse as {parsed:?}"
            );
        }
        Err(ProxyHeaderError::Timeout { .. }) => {
            panic!("the reader waited for its deadline on a stream that had ended")
        }
        Err(ProxyHeaderError::Closed { got }) => {
            assert_eq!(*got, taken, "closed after {got} bytes, {taken} taken");
        }
        Err(e) => {
            let _ = e.reason();
        }
    }
}

/// A connected loopback pair, both ends set to reset rather than linger in
/// TIME_WAIT (a fuzzer opens thousands of connections a second).
async fn pair() -> (TcpStream, TcpStream) {
    thread_local! {
        static LISTENER: std::net::TcpListener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    }
    let (listener, addr): (TcpListener, SocketAddr) = LISTENER.with(|l| {
        let l = l.try_clone().expect("clone listener");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("local address");
        (TcpListener::from_std(l).expect("tokio listener"), addr)
    });
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.expect("connect to loopback");
    let (server, _) = accepted.expect("accept");
    for s in [&client, &server] {
        socket2::SockRef::from(s)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
    }
    (client, server)
}
