//! Copying a raw byte stream both ways (passthrough, upgraded connections),
//! with half-close and an idle timeout over both directions together.
//!
//! Hand-written rather than `tokio::io::copy_bidirectional` because that has
//! no idle timeout, and a timeout per direction would cut a long download
//! whose other direction is quiet. The idle timeout is one watchdog per
//! connection that wakes about once per `idle`, not a timer armed around
//! every read: on a busy connection that is a timer-wheel insert and removal
//! per read saved.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Copy buffer per direction.
const BUFFER: usize = 16 * 1024;

/// When the connection last moved a byte, in milliseconds since `origin`;
/// and whether one direction has ended.
struct Activity {
    origin: Instant,
    last: AtomicU64,
    one_ended: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            one_ended: AtomicBool::new(false),
        }
    }

    /// Marks a direction ended; `true` when the other one already had.
    fn end_direction(&self) -> bool {
        self.one_ended.swap(true, Ordering::AcqRel)
    }

    fn touch(&self) {
        self.last
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once neither direction has moved a byte for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.origin.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// Runs `copy` until it ends or the connection has been idle for `idle`;
/// on idle the caller drops both sides, which closes them.
async fn until_idle(copy: impl Future<Output = ()>, activity: &Activity, idle: Duration) {
    tokio::select! {
        _ = copy => {}
        _ = activity.idle_for(idle) => {}
    }
}

/// Copies `a` <-> `b` until both directions are closed, an error occurs, or
/// neither side sends anything for `idle`.
pub async fn copy_both_ways<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let copy = async {
        let _ = tokio::join!(one_way(ar, bw, &activity), one_way(br, aw, &activity));
    };
    until_idle(copy, &activity, idle).await;
}

/// [`copy_both_ways`] for two sockets (passthrough): a direction holds its
/// copy buffer only while data flows and gives it back whenever its socket
/// has nothing more to read, so an idle passthrough connection costs no
/// buffer at all (nginx `stream` keeps 16 KiB per connection). Owned
/// socket halves need no lock between the directions.
pub async fn copy_tcp_both_ways(a: TcpStream, b: TcpStream, idle: Duration) {
    let activity = Activity::new();
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let copy = async {
        let _ = tokio::join!(
            tcp_one_way(ar, bw, &activity),
            tcp_one_way(br, aw, &activity)
        );
    };
    until_idle(copy, &activity, idle).await;
}

async fn tcp_one_way(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    activity: &Activity,
) -> std::io::Result<()> {
    loop {
        // Wait for data without holding a buffer.
        from.readable().await?;
        let mut buf: Vec<u8> = Vec::with_capacity(BUFFER);
        loop {
            // A read that returns less than asked for drains the socket, and
            // tokio then clears its readiness itself: no extra read that
            // only says EAGAIN (as `try_read` would need).
            let n = from.read_buf(&mut buf).await?;
            if n == 0 {
                if activity.end_direction() {
                    // Both ends are done and both sockets close now: the
                    // close sends this FIN, a `shutdown` first would be one
                    // system call more for nothing (and dropping the half
                    // would make it).
                    to.forget();
                } else {
                    // Half-close: pass the end of this direction on, keep
                    // the other.
                    to.shutdown().await?;
                }
                return Ok(());
            }
            to.write_all(&buf).await?;
            activity.touch();
            if n < BUFFER {
                break;
            }
            buf.clear();
        }
    }
}

async fn one_way<R, W>(mut from: R, mut to: W, activity: &Activity) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Half-close: pass the end of this direction on, keep the other.
            to.shutdown().await?;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        activity.touch();
    }
}
