//! Copying a raw byte stream both ways (passthrough, upgraded connections),
//! with half-close and an idle timeout over both directions together.
//!
//! Hand-written rather than `tokio::io::copy_bidirectional` because that has
//! no idle timeout, and a timeout per direction would cut a long download
//! whose other direction is quiet. The idle timeout is one watchdog per
//! connection that wakes about once per `idle`, not a timer armed around
//! every read: on a busy connection that is a timer-wheel insert and removal
//! per read saved.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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
    // The copy first: most wakes are its sockets' (and no random draw
    // per poll for the order).
    tokio::select! {
        biased;
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

/// [`copy_both_ways`] for two sockets (passthrough): the directions read
/// into one buffer per worker thread ([`relay`]), so a passthrough
/// connection costs no buffer at all, idle or not, unless a receiver lags
/// (nginx `stream` keeps 16 KiB per connection). Owned socket halves need
/// no lock between the directions.
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
        match poll_fn(|cx| relay(&mut from, &to, cx)).await? {
            Relayed::Sent => {}
            Relayed::Left(rest) => to.write_all(&rest).await?,
            Relayed::Ended => {
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
        }
        activity.touch();
    }
}

/// What one read did.
enum Relayed {
    /// Read and written in full.
    Sent,
    /// Read, but the receiving socket took only part: the rest, to write
    /// while this direction waits.
    Left(Vec<u8>),
    /// The sending side has ended its direction.
    Ended,
}

thread_local! {
    /// The buffer every passthrough direction on this worker thread reads
    /// into: a read and the write that follows it happen in one poll, with
    /// no await between them, so no two directions ever hold it at once.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUFFER].into_boxed_slice());
}

/// Reads what `from` has into the thread's scratch buffer and writes it to
/// `to` in the same poll. A direction holds no buffer of its own, neither
/// while idle nor while data flows, unless the receiver is slower than the
/// sender: then only the bytes it did not take are kept (`Left`), and this
/// direction reads nothing more until they are written. Per burst that is
/// one read and one write system call, and no allocation (a 16 KiB buffer
/// per read was 8 allocations per passthrough connection, 5k instructions
/// under callgrind). A read that returns less than the buffer holds has
/// drained the socket, and tokio then clears its readiness itself: no
/// extra read that only says EAGAIN.
fn relay(
    from: &mut OwnedReadHalf,
    to: &OwnedWriteHalf,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<Relayed>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut buf = ReadBuf::new(&mut scratch[..]);
        ready!(Pin::new(from).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        if read.is_empty() {
            return Poll::Ready(Ok(Relayed::Ended));
        }
        let written = match to.try_write(read) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Poll::Ready(Err(e)),
        };
        Poll::Ready(Ok(if written < read.len() {
            Relayed::Left(read[written..].to_vec())
        } else {
            Relayed::Sent
        }))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::net::TcpListener;

    use crate::io::test_pattern;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (near, far) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        (near.unwrap(), far.unwrap().0)
    }

    fn bounded<F: Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    /// A receiver that takes nothing: the bytes read are handed back to
    /// the caller whole, none of them written and none lost.
    #[tokio::test]
    async fn bytes_a_full_receiver_cannot_take_are_handed_back() {
        bounded(async {
            let (mut client, proxy_in) = pair().await;
            let (proxy_out, mut server) = pair().await;
            let (mut from, _) = proxy_in.into_split();
            let (_, to) = proxy_out.into_split();
            // Fill everything between `to` and the server, which reads nothing.
            let chunk = [7u8; 64 * 1024];
            let mut queued = 0usize;
            loop {
                match to.try_write(&chunk) {
                    Ok(n) => queued += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            client.write_all(b"hello, farm").await.unwrap();
            from.readable().await.unwrap();
            let relayed = poll_fn(|cx| relay(&mut from, &to, cx)).await.unwrap();
            let Relayed::Left(rest) = relayed else {
                panic!("the receiver is full: the bytes must come back");
            };
            assert_eq!(rest, b"hello, farm");
            // The caller writes them once the server reads: in order.
            let mut got = vec![0u8; queued + rest.len()];
            let (written, read) = tokio::join!(
                async {
                    let mut to = to;
                    to.write_all(&rest).await
                },
                server.read_exact(&mut got)
            );
            written.unwrap();
            read.unwrap();
            assert!(got[..queued].iter().all(|&b| b == 7));
            assert_eq!(&got[queued..], b"hello, farm");
        })
        .await
        .expect("bounded");
    }

    /// Megabytes each way at once, the server not reading until it has
    /// sent all of its own (so the client's direction backs up while the
    /// other flows); then each side's end is passed on in turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_both_ways_exactly_and_passes_half_close_on() {
        bounded(async {
            const LEN: usize = 16 * 1024 * 1024;
            let (client, proxy_in) = pair().await;
            let (proxy_out, server) = pair().await;
            let copy = tokio::spawn(copy_tcp_both_ways(
                proxy_in,
                proxy_out,
                Duration::from_secs(60),
            ));
            let up = test_pattern(LEN, 1);
            let down = test_pattern(LEN, 2);
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let client_side = async {
                let ((), got) = tokio::join!(
                    async {
                        cw.write_all(&up).await.unwrap();
                        cw.shutdown().await.unwrap();
                    },
                    async {
                        let mut got = Vec::new();
                        cr.read_to_end(&mut got).await.unwrap();
                        got
                    }
                );
                got
            };
            let server_side = async {
                sw.write_all(&down).await.unwrap();
                let mut got = Vec::new();
                // EOF here is the client's shutdown, passed on.
                sr.read_to_end(&mut got).await.unwrap();
                // The server still answers after the client's end.
                sw.write_all(b"farewell").await.unwrap();
                sw.shutdown().await.unwrap();
                got
            };
            let (client_got, server_got) = tokio::join!(client_side, server_side);
            assert!(server_got == up, "the client's bytes, in order");
            assert_eq!(client_got.len(), LEN + 8);
            assert!(
                client_got[..LEN] == down[..],
                "the server's bytes, in order"
            );
            assert_eq!(&client_got[LEN..], b"farewell");
            copy.await.unwrap();
        })
        .await
        .expect("bounded");
    }

    /// Neither side sends for `idle`: both sockets are closed.
    #[tokio::test]
    async fn an_idle_stream_is_closed_on_both_sides() {
        bounded(async {
            let (mut client, proxy_in) = pair().await;
            let (proxy_out, mut server) = pair().await;
            let copy = tokio::spawn(copy_tcp_both_ways(
                proxy_in,
                proxy_out,
                Duration::from_millis(200),
            ));
            client.write_all(b"one").await.unwrap();
            let mut three = [0u8; 3];
            server.read_exact(&mut three).await.unwrap();
            copy.await.unwrap();
            assert_eq!(client.read(&mut three).await.unwrap(), 0);
            assert_eq!(server.read(&mut three).await.unwrap(), 0);
        })
        .await
        .expect("bounded");
    }
}
