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
pub async fn first_bytes<S>(
    mut stream: S,
    idle: std::time::Duration,
    cancel: &CancellationToken,
) -> Option<PrefixedStream<S>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; FIRST_READ];
    let read = tokio::select! {
        r = tokio::time::timeout(idle, stream.read(&mut buf)) => r,
        _ = cancel.cancelled() => return None,
    };
    match read {
        Ok(Ok(n)) if n > 0 => Some(PrefixedStream::new(buf[..n].to_vec(), stream)),
        _ => None,
    }
}
