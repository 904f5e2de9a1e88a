//! Copying a raw byte stream both ways (passthrough), with half-close and
//! an idle timeout over both directions together.
//!
//! Hand-written rather than `tokio::io::copy_bidirectional` because that has
//! no idle timeout, and a timeout per direction would cut a long download
//! whose other direction is quiet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copy buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Copies `a` <-> `b` until both directions are closed, an error occurs, or
/// neither side sends anything for `idle`.
pub async fn copy_both_ways<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let origin = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let _ = tokio::join!(
        one_way(ar, bw, idle, origin, &last),
        one_way(br, aw, idle, origin, &last)
    );
}

async fn one_way<R, W>(
    mut from: R,
    mut to: W,
    idle: Duration,
    origin: Instant,
    last: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match tokio::time::timeout(idle, from.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                let quiet_for = origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet_for >= idle {
                    let _ = to.shutdown().await;
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                continue;
            }
        };
        if n == 0 {
            // Half-close: pass the end of this direction on, keep the other.
            to.shutdown().await?;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        last.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}
