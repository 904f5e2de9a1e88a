//! A client's request body on its way upstream, streamed and counted, with
//! its progress for the upload timers.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// How far a request body has got on its way upstream: the upstream
/// response timeout starts only once it is all sent, and an upload that makes
/// no progress for too long is a stalled client.
#[derive(Debug, Default)]
pub struct UploadProgress {
    /// Data bytes passed on so far.
    pub bytes: AtomicU64,
    /// Notified once, when the body has ended.
    pub done: tokio::sync::Notify,
}

/// A client's request body on its way upstream.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    counter: Option<Arc<AtomicU64>>,
    progress: Option<Arc<UploadProgress>>,
}

impl RequestBody {
    /// Streams `inner`, adding the data bytes to `counter` when given.
    pub fn new(inner: Incoming, counter: Option<Arc<AtomicU64>>) -> Self {
        Self {
            inner: Some(inner),
            counter,
            progress: None,
        }
    }

    /// Progress of this body, or `None` when there is no body to wait for.
    pub fn progress(&mut self) -> Option<Arc<UploadProgress>> {
        if self.is_end_stream() {
            return None;
        }
        Some(self.progress.get_or_insert_with(Default::default).clone())
    }

    /// No body (a request sent again, a probe).
    pub fn empty() -> Self {
        Self {
            inner: None,
            counter: None,
            progress: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(&mut *inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            let n = f.data_ref().map_or(0, |d| d.len() as u64);
            if let Some(counter) = &this.counter {
                counter.fetch_add(n, Ordering::Relaxed);
            }
            if let Some(p) = &this.progress {
                p.bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
        let ended = match &frame {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            if let Some(p) = this.progress.take() {
                p.done.notify_one();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}
