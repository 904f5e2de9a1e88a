//! The two client timers of an HTTP/1.1 connection, as HAProxy has them
//! (`timeout http-keep-alive`, `timeout http-request`): `client_idle` while
//! the connection waits for a request, then `client_header` from the first
//! byte of a request to the end of its head (slowloris).
//!
//! Hand-written because hyper has a single header-read timer that starts as
//! soon as it waits for a request, so one setting cannot give a long
//! keep-alive and a short head at once. The timers live in the stream hyper
//! reads from: the HTTP service marks each request in flight
//! ([`Phase::begin`], until its response ends); while one is, no timer runs
//! (bodies have their own: an upload that stalls, a slow upstream). On h2
//! the same stream closes a connection without requests after `client_idle`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const REQUEST: u8 = 2;

/// Requests in flight on a connection, shared by the stream and the HTTP
/// service: while one is, no timer runs.
#[derive(Debug, Default)]
pub struct Phase {
    active: AtomicU32,
    /// Requests begun so far, so the stream notices a whole request that
    /// began and ended between two of its reads.
    begun: AtomicU32,
    /// The reader waiting while requests were in flight: woken when the
    /// last one ends, so the idle timer starts even if hyper does not read
    /// again on its own.
    reader: AtomicWaker,
}

impl Phase {
    /// A request head has been read; the request counts as in flight until
    /// the returned guard is dropped (at the end of its response).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight (see [`Phase::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<Phase>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A client stream with the keep-alive and request-head timers. When one
    /// expires, reads fail with `TimedOut` and hyper closes the connection.
    pub struct HeadTimer<S> {
        #[pin]
        inner: S,
        phase: Arc<Phase>,
        idle: Duration,
        head: Duration,
        // What the deadline was set for, the requests begun when it was,
        // and the deadline (boxed, so the stream stays Unpin for hyper).
        armed: u8,
        seen: u32,
        sleep: Pin<Box<Sleep>>,
    }
}

impl<S> HeadTimer<S> {
    /// Wraps `inner`; the idle timer runs from now. Bytes already read
    /// before (see `connection::first_bytes`) should be replayed by
    /// `inner`: the first read then starts the head timer.
    pub fn new(inner: S, phase: Arc<Phase>, idle: Duration, head: Duration) -> Self {
        Self {
            inner,
            phase,
            idle,
            head,
            armed: IDLE,
            seen: 0,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<S: AsyncRead> AsyncRead for HeadTimer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        let got = buf.filled().len() > before;
        let begun = this.phase.begun.load(Ordering::Relaxed);
        if begun != *this.seen {
            // A request began since the last read (and may have ended):
            // whatever was armed before is stale.
            *this.seen = begun;
            *this.armed = REQUEST;
        }
        let next = if this.phase.active.load(Ordering::Acquire) > 0 {
            REQUEST
        } else if *this.armed == REQUEST {
            if got {
                HEAD
            } else {
                IDLE
            }
        } else if *this.armed == IDLE && got {
            // The first bytes of the next request: its head must be
            // complete within `client_header`.
            HEAD
        } else {
            *this.armed
        };
        if next != *this.armed {
            *this.armed = next;
            let limit = if next == HEAD { *this.head } else { *this.idle };
            if next != REQUEST {
                this.sleep.as_mut().reset(Instant::now() + limit);
            }
        }
        if read.is_pending() && next == REQUEST {
            this.phase.reader.register(cx.waker());
            // The last request may have ended just now.
            if this.phase.active.load(Ordering::Acquire) == 0 {
                cx.waker().wake_by_ref();
            }
        }
        if read.is_pending() && next != REQUEST && this.sleep.as_mut().poll(cx).is_ready() {
            let what = if next == IDLE {
                "client idle timeout"
            } else {
                "request head not complete within the client_header timeout"
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        read
    }
}

impl<S: AsyncWrite> AsyncWrite for HeadTimer<S> {
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
