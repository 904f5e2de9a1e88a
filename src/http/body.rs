//! Response bodies that stream from upstream (or snigate) to the client
//! without being buffered, counting bytes for the access log, with the
//! `upstream_read` and `client_send` deadlines. The request body's side is
//! [`crate::upstream::request_body`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::http::head_timer::ActiveRequest;
use crate::observe::report::ClientRef;
use crate::observe::telemetry::{millis, AccessRecord};
use crate::route::{RouteId, UpstreamId};
use crate::state::{ListenerId, State};
use crate::upstream::PoolReturn;

/// One request/response exchange, recorded when the response body is done
/// or dropped (the client went away), so `bytes_out` and `ms` cover the whole
/// exchange: the listener's request metrics always, the access-log line when
/// that log is on.
pub struct Exchange {
    pub state: Arc<State>,
    pub listener: ListenerId,
    /// `None` when snigate answered itself.
    pub upstream: Option<UpstreamId>,
    /// The `[[route]]` that matched; `None` for the default upstream.
    pub route: Option<RouteId>,
    pub status: u16,
    pub start: Instant,
    /// The access-log line, when one is written or joins the report.
    pub line: Option<AccessLine>,
    /// The report entry this request joins (see `proxy::ConnInfo::report`).
    pub report: Option<ClientRef>,
    /// Holds the connection's timers off until the response ends (or, for
    /// an upgrade, the tunnel ends: then the tunnel takes it).
    pub in_flight: Option<ActiveRequest>,
}

impl Exchange {
    /// Notes in the access log why the response was cut, unless a reason
    /// is already there.
    fn cut(&mut self, why: impl FnOnce() -> String) {
        if let Some(line) = &mut self.line {
            line.record.error.get_or_insert_with(why);
        }
    }
}

/// An access-log line being filled in.
pub struct AccessLine {
    pub record: AccessRecord,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: u64,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.phase().send_expired())
        {
            self.cut(|| "the client took no data within the client_send timeout".into());
        }
        let elapsed = self.start.elapsed();
        let metrics = &self.state.listener(self.listener).metrics;
        metrics.request(self.upstream.map(UpstreamId::index), self.status, elapsed);
        if let Some(route) = self.route {
            metrics.route_request(route.index(), self.status, elapsed);
        }
        let Some(line) = &mut self.line else {
            return;
        };
        line.record.status = self.status;
        line.record.bytes_in = line.bytes_in.load(Ordering::Relaxed);
        line.record.bytes_out = line.bytes_out;
        line.record.ms = millis(elapsed);
        if let Some(client) = &self.report {
            self.state.report.request(client, &line.record);
        }
        if let Some(log) = &self.state.access_log {
            log.write(&line.record);
        }
    }
}

enum Source {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// Why a response body was cut short: the client sees the connection (h1)
/// or the stream (h2) end early.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// `upstream_read`: how long an upstream body may send nothing. The timer is
/// set only when the upstream keeps the body waiting, and moved on only
/// when it waits again after some progress, so a body that streams freely
/// costs no timer work.
struct ReadDeadline {
    limit: Duration,
    progressed: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReadDeadline {
    /// Called when the upstream has nothing yet: whether `limit` has passed
    /// since it last sent something.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit;
        let sleep = match &mut self.sleep {
            Some(s) if !self.progressed => s,
            Some(s) => {
                s.as_mut().reset(deadline);
                s
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.progressed = false;
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// A response body for the client: the upstream's, streamed, or one that
/// snigate wrote itself (errors, 404).
pub struct ResponseBody {
    source: Source,
    log: Option<Box<Exchange>>,
    /// The upstream connection, released to the pool at the end of the body.
    pool: Option<PoolReturn>,
    read: Option<ReadDeadline>,
    /// A frame was handed to the client side and the next one not asked
    /// for yet (`client_send`, see [`crate::http::head_timer::SendStall`]).
    waiting: bool,
}

impl ResponseBody {
    /// Streams an upstream response body; it is cut when the upstream sends
    /// nothing for `read_limit`.
    pub fn upstream(body: Incoming, pool: Option<PoolReturn>, read_limit: Duration) -> Self {
        Self {
            source: Source::Upstream(body),
            log: None,
            pool,
            read: Some(ReadDeadline {
                limit: read_limit,
                progressed: false,
                sleep: None,
            }),
            waiting: false,
        }
    }

    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            source: Source::Full((!bytes.is_empty()).then_some(bytes)),
            log: None,
            pool: None,
            read: None,
            waiting: false,
        }
    }

    /// Attaches the exchange recorded when this body ends.
    pub fn with_exchange(mut self, exchange: Box<Exchange>) -> Self {
        self.log = Some(exchange);
        self
    }

    fn phase(&self) -> Option<&crate::http::head_timer::Phase> {
        let exchange = self.log.as_ref()?;
        exchange.in_flight.as_ref().map(|f| f.phase())
    }

    /// `client_send` bookkeeping: the client side asks for a frame (`true`)
    /// or drops the body.
    fn asked(&mut self, again: bool) {
        if std::mem::take(&mut self.waiting) {
            if let Some(p) = self.phase() {
                p.frame_taken(again);
            }
        }
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.source {
            Source::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Source::Upstream(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(f) => {
                    if let Some(r) = &mut self.read {
                        r.progressed = true;
                    }
                    if let (Some(Err(e)), Some(exchange)) = (&f, &mut self.log) {
                        // The client sees a cut response; the log says why.
                        exchange
                            .cut(|| format!("the upstream connection failed mid-response: {e}"));
                    }
                    Poll::Ready(f.map(|f| f.map_err(BodyError::from)))
                }
                Poll::Pending => {
                    let Some(limit) = self
                        .read
                        .as_mut()
                        .and_then(|r| r.expired(cx).then_some(r.limit))
                    else {
                        return Poll::Pending;
                    };
                    let why = format!(
                        "the upstream sent nothing for {} s (upstream_read); response cut",
                        limit.as_secs_f64()
                    );
                    if let Some(e) = &mut self.log {
                        e.cut(|| why.clone());
                    }
                    Poll::Ready(Some(Err(why.into())))
                }
            },
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.asked(false);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        this.asked(true);
        let frame = this.poll_source(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            if let Some(d) = f.data_ref() {
                if let Some(line) = this.log.as_mut().and_then(|x| x.line.as_mut()) {
                    line.bytes_out += d.len() as u64;
                }
                if let Some(p) = this.phase() {
                    p.frame_given();
                    this.waiting = true;
                }
            }
        }
        if this.pool.is_some() {
            let ended = match (&frame, &this.source) {
                (Poll::Ready(None), _) => true,
                (Poll::Ready(Some(Ok(_))), Source::Upstream(b)) => b.is_end_stream(),
                _ => false,
            };
            if ended {
                if let Some(back) = this.pool.take() {
                    back.release();
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(b) => b.is_end_stream(),
            Source::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(b) => b.size_hint(),
            Source::Full(b) => {
                SizeHint::with_exact(b.as_ref().map(|b| b.len() as u64).unwrap_or(0))
            }
        }
    }
}
