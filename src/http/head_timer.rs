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
//!
//! The third timer is `client_send` (nginx's `send_timeout`): a client that
//! takes no byte of what is written to it for that long. A write that stays
//! blocked fails with `TimedOut`, hyper closes the connection, and the
//! response body (with its backend connection) is dropped. An h2 client can
//! stall a response without blocking the socket, by keeping a stream's flow
//! control window at zero while it answers pings: [`SendStall`] watches the
//! responses' bodies for that.
//!
//! The stream also shows every byte it reads to the connection's
//! [`RequestLines`], so that each request's line, as the client wrote it,
//! goes with the request ([`ActiveRequest::request_line`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::http::request_line::{RequestLine, RequestLines};

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
    /// Response bodies that handed the client side a frame and were not
    /// asked for the next one yet, and the frames taken so far.
    waiting: AtomicU32,
    taken: AtomicU64,
    /// The [`SendStall`] watching this connection, woken when a body starts
    /// waiting.
    watchdog: AtomicWaker,
    /// Set when the client took nothing for `client_send`: the connection
    /// is being closed, and the access log says why.
    send_expired: AtomicBool,
    /// The request lines of the bytes read (HTTP/1.1; an h2 connection
    /// stops it at its preface).
    lines: Mutex<RequestLines>,
    /// `lines` has stopped: reads no longer take its lock.
    lines_stopped: AtomicBool,
    /// The keep-alive wait set by the route of the last request routed
    /// (`client_idle` of its `[route.timeouts]`, else the global one), in
    /// milliseconds; 0 until a request is routed: the stream's own.
    keep_alive_ms: AtomicU64,
    /// The last read found nothing to read while the connection was
    /// between requests: nothing in flight, and every byte read belongs to
    /// a request already handed over (see [`Phase::between_requests`]).
    idle_read: AtomicBool,
    /// Something was written since the last flush that completed.
    unflushed: AtomicBool,
    /// The connection is being shut down.
    closing: AtomicBool,
    /// Times the connection was parked between requests.
    parks: AtomicU32,
}

impl Phase {
    /// A request head has been read; the request counts as in flight until
    /// the returned guard is dropped (at the end of its response). Called
    /// once per request, in the order the requests came.
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        self.idle_read.store(false, Ordering::Relaxed);
        let line = if self.lines_stopped.load(Ordering::Relaxed) {
            None
        } else {
            crate::sync::lock(&self.lines).take()
        };
        ActiveRequest {
            phase: self.clone(),
            line,
        }
    }

    /// Follows the bytes just read (see [`RequestLines::feed`]).
    fn read(&self, bytes: &[u8]) {
        if self.lines_stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut lines = crate::sync::lock(&self.lines);
        lines.feed(bytes);
        if lines.stopped() {
            self.lines_stopped.store(true, Ordering::Relaxed);
        }
    }

    /// Whether an HTTP/1.1 connection is between requests and the HTTP
    /// server serving it has nothing left to do until the client sends
    /// more (see `http::h1`): no request in flight, everything written
    /// flushed, not shutting down, and its last read found nothing to read
    /// after bytes that all belong to requests already handed over (the
    /// framing hyper follows, see [`RequestLines::between_requests`]).
    /// Never true once the connection's bytes are no longer followed.
    pub fn between_requests(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
            && self.idle_read.load(Ordering::Relaxed)
            && !self.unflushed.load(Ordering::Relaxed)
            && !self.closing.load(Ordering::Relaxed)
    }

    /// The connection was taken back from the HTTP server between
    /// requests: it keeps no buffer for the next one.
    pub fn parked(&self) {
        self.parks.fetch_add(1, Ordering::Relaxed);
        self.idle_read.store(false, Ordering::Relaxed);
        if !self.lines_stopped.load(Ordering::Relaxed) {
            crate::sync::lock(&self.lines).shrink();
        }
    }

    /// How many times the connection was parked between requests.
    pub fn parks(&self) -> u32 {
        self.parks.load(Ordering::Relaxed)
    }

    /// Whether every byte followed belongs to a request handed over.
    fn lines_between_requests(&self) -> bool {
        !self.lines_stopped.load(Ordering::Relaxed)
            && crate::sync::lock(&self.lines).between_requests()
    }

    /// A response body handed the client side a frame.
    pub fn frame_given(&self) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
            self.watchdog.wake();
        }
    }

    /// A body that had handed out a frame is asked for the next one (or is
    /// dropped: `taken` false).
    pub fn frame_taken(&self, taken: bool) {
        if taken {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// From now on the connection waits `idle` for its next request (the
    /// route of the request being served says, as nginx's per-location
    /// `keepalive_timeout` does).
    pub fn keep_alive(&self, idle: Duration) {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.keep_alive_ms.store(ms, Ordering::Relaxed);
    }

    /// The keep-alive wait a route set, if any (see [`Phase::keep_alive`]).
    fn keep_alive_set(&self) -> Option<Duration> {
        match self.keep_alive_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Whether the connection is being closed because the client took
    /// nothing for `client_send`.
    pub fn send_expired(&self) -> bool {
        self.send_expired.load(Ordering::Relaxed)
    }
}

impl ActiveRequest {
    /// The connection's phase this request belongs to.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }
}

/// One request in flight (see [`Phase::begin`]).
#[derive(Debug)]
pub struct ActiveRequest {
    phase: Arc<Phase>,
    line: Option<RequestLine>,
}

impl ActiveRequest {
    /// The request line of this request as the client wrote it, when the
    /// connection's bytes were followed (HTTP/1.x, see [`RequestLines`]).
    pub fn request_line(&self) -> Option<&RequestLine> {
        self.line.as_ref()
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        if self.phase.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.phase.reader.wake();
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
        // `client_send`: armed while a write is blocked; allocated the
        // first time one is.
        send: Duration,
        send_armed: bool,
        send_sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> HeadTimer<S> {
    /// Wraps `inner`; the idle timer runs from now. Bytes already read
    /// before (see `http::handoff::first_bytes`) should be replayed by
    /// `inner`: the first read then starts the head timer. A write blocked
    /// for `send` fails.
    pub fn new(
        inner: S,
        phase: Arc<Phase>,
        idle: Duration,
        head: Duration,
        send: Duration,
    ) -> Self {
        Self {
            inner,
            phase,
            idle,
            head,
            armed: IDLE,
            seen: 0,
            sleep: Box::pin(tokio::time::sleep(idle)),
            send,
            send_armed: false,
            send_sleep: None,
        }
    }
}

impl<S: AsyncWrite> HeadTimer<S> {
    /// `client_send` around one write-side call: progress disarms it, a
    /// blocked call arms it (once), and a blocked call past the deadline
    /// fails.
    fn send_deadline<T>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        call: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let this = self.project();
        let result = call(this.inner, cx);
        if result.is_ready() {
            *this.send_armed = false;
            return result;
        }
        let deadline = Instant::now() + *this.send;
        let sleep = match this.send_sleep {
            Some(s) if *this.send_armed => s,
            Some(s) => {
                s.as_mut().reset(deadline);
                s
            }
            None => this
                .send_sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        *this.send_armed = true;
        if sleep.as_mut().poll(cx).is_ready() {
            this.phase.send_expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data within the client_send timeout",
            )));
        }
        Poll::Pending
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
        if got {
            this.phase.read(&buf.filled()[before..]);
        }
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
            let limit = match next {
                HEAD => *this.head,
                _ => this.phase.keep_alive_set().unwrap_or(*this.idle),
            };
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
        // Between requests with nothing to read: the HTTP server may hand
        // the connection back (see `http::h1`).
        let idle_read = read.is_pending()
            && next != REQUEST
            && this.phase.active.load(Ordering::Acquire) == 0
            && this.phase.lines_between_requests();
        this.phase.idle_read.store(idle_read, Ordering::Relaxed);
        if read.is_pending() && next != REQUEST && this.sleep.as_mut().poll(cx).is_ready() {
            this.phase.idle_read.store(false, Ordering::Relaxed);
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
        self.phase.unflushed.store(true, Ordering::Relaxed);
        self.send_deadline(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.phase.unflushed.store(true, Ordering::Relaxed);
        self.send_deadline(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = self.as_mut().send_deadline(cx, |s, cx| s.poll_flush(cx));
        if let Poll::Ready(Ok(())) = flushed {
            self.phase.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.phase.closing.store(true, Ordering::Relaxed);
        self.send_deadline(cx, |s, cx| s.poll_shutdown(cx))
    }
}

/// `client_send` for the responses of an h2 connection: ready when some
/// response body has waited `limit` for the client to take its next frame
/// and no body on the connection has had one taken meanwhile. The
/// connection is then closed (one stalled stream costs the connection, as
/// nothing short of hyper can reset a stream whose body is not polled).
/// Without a waiting body no timer runs.
pub struct SendStall {
    phase: Arc<Phase>,
    limit: Duration,
    /// Frames taken when the deadline was set.
    seen: u64,
    armed: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl SendStall {
    pub fn new(phase: Arc<Phase>, limit: Duration) -> Self {
        Self {
            phase,
            limit,
            seen: 0,
            armed: false,
            sleep: None,
        }
    }

    /// Ready when the client has stalled the connection's responses.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.phase.waiting.load(Ordering::Acquire) == 0 {
                self.armed = false;
                self.phase.watchdog.register(cx.waker());
                if self.phase.waiting.load(Ordering::Acquire) == 0 {
                    return Poll::Pending;
                }
                continue;
            }
            let taken = self.phase.taken.load(Ordering::Relaxed);
            let deadline = Instant::now() + self.limit;
            let sleep = match &mut self.sleep {
                Some(s) if self.armed && taken == self.seen => s,
                Some(s) => {
                    s.as_mut().reset(deadline);
                    s
                }
                None => self
                    .sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if !self.armed || taken != self.seen {
                self.armed = true;
                self.seen = taken;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The deadline: stalled unless a frame was taken since it was set.
            if self.phase.taken.load(Ordering::Relaxed) == self.seen {
                self.phase.send_expired.store(true, Ordering::Relaxed);
                return Poll::Ready(());
            }
        }
    }

    /// [`SendStall::poll_stalled`] as a future.
    pub async fn stalled(&mut self) {
        std::future::poll_fn(|cx| self.poll_stalled(cx)).await
    }
}
