//! What the stream needs of its socket: to learn that bytes are there
//! before it makes room for them, so a connection that waits holds no
//! read buffer.

use std::io;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A socket that can say it is readable before it is read (a TCP stream;
/// tests wrap one).
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Ready once bytes (or EOF, or an error) can be read; a read may
    /// still find nothing, when readiness was stale.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}
