//! Replaying bytes already read from a stream.
//!
//! snigate reads the ClientHello off the socket itself (see [`crate::tls::hello`]) before
//! a TLS library gets the connection; [`PrefixedStream`] gives OpenSSL (the legacy-tls
//! engine) a stream that yields those bytes first and then continues with the socket,
//! so the TLS library sees the connection exactly as the client sent it (rustls reads
//! them from its own first buffer: see [`crate::tls::server_stream`]). HTTP uses it
//! too, to hand bytes read ahead to a new HTTP server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// A stream whose reads return `prefix` first, then whatever `inner` returns.
    /// Writes, flushes and shutdown go straight to `inner`.
    ///
    /// Once the prefix is drained its buffer is released and reads go directly to the
    /// inner stream, so a long-lived connection carries no extra cost.
    #[derive(Debug)]
    pub struct PrefixedStream<S> {
        prefix: Bytes,
        #[pin]
        inner: S,
    }
}

impl<S> PrefixedStream<S> {
    /// A stream that replays `prefix` (bytes already read from `inner`) before reading
    /// from `inner`. A `Vec<u8>` converts into `Bytes` without copying.
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The inner stream (e.g. to read its peer or local address).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably. Reading from it directly skips the unread prefix.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The prefix bytes not yet read.
    pub fn unread_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The inner stream; prefix bytes not yet read are discarded (use
    /// [`PrefixedStream::into_parts`] to keep them).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The unread prefix bytes and the inner stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.prefix.is_empty() {
            return this.inner.poll_read(cx, buf);
        }
        // Serve only from the prefix in this call: it is already in memory, and the
        // caller will come back for more. Mixing in a read from `inner` would need
        // care with Pending after part of the buffer was filled.
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // An advanced-to-the-end `Bytes` still holds its allocation; drop it.
            *this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_then_inner() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = PrefixedStream::new(b"hello ".to_vec(), server);
        client.write_all(b"world").await.unwrap();
        drop(client);
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world");
        assert!(s.unread_prefix().is_empty());
    }

    #[tokio::test]
    async fn small_reads_drain_prefix_in_order() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let mut s = PrefixedStream::new(Bytes::from_static(b"abcdef"), server);
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        assert_eq!(s.unread_prefix(), b"cdef");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"cdef");
    }

    #[tokio::test]
    async fn empty_prefix_reads_inner() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = PrefixedStream::new(Vec::new(), server);
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
    }

    #[tokio::test]
    async fn writes_go_to_inner() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = PrefixedStream::new(b"unread".to_vec(), server);
        s.write_all(b"reply").await.unwrap();
        let bufs = [io::IoSlice::new(b"-a"), io::IoSlice::new(b"-b")];
        let n = s.write_vectored(&bufs).await.unwrap();
        assert!(n > 0);
        s.flush().await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"reply-a"), "{out:?}");
        let (prefix, _inner) = s.into_parts();
        assert_eq!(&prefix[..], b"unread");
    }

    #[tokio::test]
    async fn into_inner_and_get_ref() {
        let (_client, server) = tokio::io::duplex(64);
        let s = PrefixedStream::new(b"p".to_vec(), server);
        let _: &tokio::io::DuplexStream = s.get_ref();
        let _inner: tokio::io::DuplexStream = s.into_inner();
    }
}
