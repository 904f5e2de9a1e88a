//! The server side of the handshake, up to the point where the stream is
//! handed to HTTP: the client's Finished is read and our last flight (and
//! TLS 1.3's session tickets) is sent.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use super::stream::{ServerTlsStream, Turn, Want};
use super::transport::Transport;

/// Runs the handshake on `io`, whose first bytes (the ClientHello, already
/// read by snigate) are `read`. Errors are rustls' (an `InvalidData`
/// `io::Error` with the `rustls::Error` inside) or the socket's; a client
/// that closes before the end is an `UnexpectedEof`. The caller bounds it
/// with the handshake timeout.
pub async fn accept<T: Transport>(
    io: T,
    read: Vec<u8>,
    config: Arc<ServerConfig>,
) -> io::Result<ServerTlsStream<T>> {
    let conn = UnbufferedServerConnection::new(config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut stream = ServerTlsStream::new(io, conn, read);
    poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl<T: Transport> ServerTlsStream<T> {
    /// Ready once the handshake is complete and everything rustls queued
    /// for the client is sent.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let turn = match self.turn(Want::Drive) {
                Ok(turn) => turn,
                Err(e) => return Poll::Ready(Err(self.broken(cx, e))),
            };
            // Our flight goes out while we wait for the client's.
            let sent = self.outgoing.poll_send(&mut self.io, cx)?;
            if !self.conn.is_handshaking() {
                return sent.map(Ok);
            }
            if turn == Turn::Closed || self.peer_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                )));
            }
        }
    }
}
