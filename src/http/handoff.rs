//! The handoff to HTTP after any TLS engine (rustls or OpenSSL): wait for
//! the client's first bytes before the HTTP server's buffers exist.

use tokio_util::sync::CancellationToken;

use crate::io::replay::PrefixedStream;

/// Bytes read from a fresh connection before HTTP starts.
const FIRST_READ: usize = 64;

/// Waits (up to `idle`) for the client's first bytes and returns a stream
/// that replays them. The HTTP server allocates its 8 KiB read buffer as soon
/// as it starts, so starting it only when a request arrives keeps
/// connections that are opened ahead of use (browsers, the WebDAV
/// redirector, load tests) small.
///
/// Not an `async fn`: one keeps its `stream` argument and the stream it
/// reads from side by side (2,880 bytes for the TLS stream, twice its
/// 1,280); the block below reads the stream where it was captured.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn first_bytes<'a, S>(
    mut stream: S,
    idle: std::time::Duration,
    cancel: &'a CancellationToken,
) -> impl std::future::Future<Output = Option<PrefixedStream<S>>> + Send + 'a
where
    S: tokio::io::AsyncRead + Unpin + Send + 'a,
{
    use tokio::io::AsyncReadExt;
    async move {
        let mut buf = [0u8; FIRST_READ];
        // The read first: bytes already in need no wait on stop set up
        // (and no random draw for the order).
        let read = tokio::select! {
            biased;
            r = tokio::time::timeout(idle, stream.read(&mut buf)) => r,
            _ = cancel.cancelled() => return None,
        };
        match read {
            Ok(Ok(n)) if n > 0 => Some(PrefixedStream::new(buf[..n].to_vec(), stream)),
            _ => None,
        }
    }
}
