//! An HTTP/1.1 client connection: served by hyper while requests are in
//! flight, parked in snigate's own code between them.
//!
//! hyper keeps its buffers for as long as a connection lives: a read buffer
//! (8 KiB, which its adaptive read strategy grows to 16 KiB), a write buffer
//! (8 KiB), the slot of the service's future and the header map it reuses.
//! A farm's front end holds tens of thousands of idle keep-alive
//! connections (Outlook, ActiveSync, browsers), and each one that had
//! served a request cost 38 KiB instead of the 14 KiB of one that had only
//! shaken hands. So once hyper waits for the next request head with
//! nothing read towards it, nothing in flight and everything written
//! flushed ([`Phase::between_requests`]), the connection is taken back
//! from hyper (`into_parts`: the stream, the service, and any bytes hyper
//! read and did not parse, which are replayed) and hyper with its buffers
//! is dropped. The parked connection waits for its next bytes under the
//! same keep-alive timer ([`HeadTimer`], with the route's `client_idle`),
//! and a new hyper connection starts with them.
//!
//! Not at once: only once the connection has waited `[timeouts]
//! client_park` (100 ms) for its next request. A new hyper connection per
//! request costs a quarter more instructions per request (callgrind:
//! 73.1k against 58.4k, `benches/callgrind-request.sh`), which a client
//! that sends its next request at once — a busy browser, a load test —
//! should not pay; the connections that hold memory for long are the ones
//! that idle.
//!
//! Parsing stays hyper's. A new hyper connection carries nothing from the
//! last one that HTTP/1.1 gives meaning to between requests, so what a
//! request means, its framing and limits (400, 431), 100-continue, header
//! case, upgrades and trailers are the same whether its connection was
//! parked before it or not (`tests/it/smuggling.rs` sends the same bytes
//! to both and compares). NTLM pinning belongs to the connection's
//! `ConnInfo`, which parking does not touch.

use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::config::{ListenerSettings, DEFAULT_MAX_HEADERS};
use crate::http::body::ResponseBody;
use crate::http::head_timer::{HeadTimer, Phase};
use crate::io::replay::PrefixedStream;

/// Why a connection ended, when it did not end cleanly.
pub type ConnectionError = Box<dyn StdError + Send + Sync>;

/// Bytes read from a parked connection before hyper starts again: one, to
/// know a request is coming. hyper then reads the rest itself, as much as
/// its buffer takes, as it would have without the park: a client that sent
/// more than a request (bytes it meant for a tunnel after a refused
/// CONNECT) finds the connection closed, not reset for unread bytes.
const WAKE_READ: usize = 1;

/// hyper serving one stretch of a connection.
type Hyper<IO, S> = http1::UpgradeableConnection<TokioIo<PrefixedStream<HeadTimer<IO>>>, S>;

/// How a stretch of hyper ended.
enum Stretch {
    /// The connection is done (closed, upgraded, failed).
    Ended(Result<(), hyper::Error>),
    /// hyper waits for the next request: take the connection back.
    BetweenRequests,
}

/// What retires a connection from outside: a reload whose new state the
/// connection cannot carry on with, or stop (see `http::life::Life`).
pub trait Retirement {
    /// Resolves when the connection must close.
    fn retired(&self) -> impl Future<Output = ()> + Send + '_;
}

/// Serves HTTP/1.1 on `io` with hyper connections that `builder` makes
/// (see [`builder`]) until the client closes, stays idle too long, or
/// `life` retires the connection: parked until bytes arrive, then hyper
/// until the connection is between requests again. `phase` is the one `io`
/// and `service` share. `builder` makes each stretch's hyper (see
/// [`Limits`]): the connection keeps no builder while parked.
///
/// Not an `async fn`: one would keep its `io` argument's space (the TLS
/// stream: 1.3 KiB) beside the stream's working place for the connection's
/// whole life; the block below works on the stream where it was captured.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve<IO, S, L, B>(
    mut io: HeadTimer<IO>,
    phase: Arc<Phase>,
    mut service: S,
    builder: B,
    life: L,
    park_after: Duration,
) -> impl Future<Output = Result<(), ConnectionError>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<ConnectionError>,
    L: Retirement,
    B: Fn() -> http1::Builder,
{
    async move {
        let mut leftover = Bytes::new();
        loop {
            let replay = {
                // Pinned here rather than in `park`, which would keep it
                // twice (the argument and the pinned copy).
                let retired = std::pin::pin!(life.retired());
                park(&mut io, retired, leftover).await?
            };
            let Some(replay) = replay else {
                return Ok(());
            };
            let stream = TokioIo::new(PrefixedStream::new(replay, io));
            // Boxed: a parked connection keeps none of hyper's state.
            let mut hyper = Box::new(builder().serve_connection(stream, service).with_upgrades());
            // Boxed too: its timer and wait for retirement (464 bytes) would
            // otherwise make every parked connection that much larger.
            let stretch = Box::pin(stretch(&mut hyper, &phase, life.retired(), park_after));
            if let Stretch::Ended(r) = stretch.await {
                return r.map_err(Into::into);
            }
            let Some(parts) = hyper.into_parts() else {
                // Upgraded (not reached: a tunnel keeps a request in flight).
                return Ok(());
            };
            let (unread, timer) = parts.io.into_inner().into_parts();
            // Between requests, hyper can have read nothing of the next one but
            // the empty lines a client may send before it: kept for hyper, in a
            // buffer of their own size (hyper's is 8 KiB or more).
            leftover = joined(&parts.read_buf, &unread);
            service = parts.service;
            io = timer;
            phase.parked();
        }
    }
}

/// hyper on the connection until it ends, or has been between requests for
/// `park_after` and can hand the connection back. When the connection's
/// state is retired, hyper finishes the request in progress (its response
/// says `Connection: close`) and closes.
async fn stretch<IO, S>(
    hyper: &mut Hyper<IO, S>,
    phase: &Phase,
    ended: impl Future<Output = ()>,
    park_after: Duration,
) -> Stretch
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<ConnectionError>,
{
    tokio::pin!(ended);
    // One timer for the stretch, set again each time the connection comes
    // between requests (a reset, not a new timer per request).
    let park = tokio::time::sleep(park_after);
    tokio::pin!(park);
    let mut waiting = false;
    let retired = poll_fn(|cx| {
        // The connection first: a request already on its way (a reload
        // just retired this state) is read and answered before closing.
        if let Poll::Ready(r) = Pin::new(&mut *hyper).poll(cx) {
            return Poll::Ready(Some(Stretch::Ended(r)));
        }
        // Only hyper's own progress changes this (or ends a request, which
        // wakes its reader: see `Phase::begin`), so checking after each
        // poll of hyper misses nothing.
        if phase.between_requests() {
            if !waiting {
                waiting = true;
                park.as_mut().reset(Instant::now() + park_after);
            }
            if park.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Stretch::BetweenRequests));
            }
        } else {
            waiting = false;
        }
        ended.as_mut().poll(cx).map(|()| None)
    })
    .await;
    match retired {
        Some(stretch) => stretch,
        None => {
            Pin::new(&mut *hyper).graceful_shutdown();
            Stretch::Ended(hyper.await)
        }
    }
}

/// A parked connection waits for its next bytes (under the stream's
/// keep-alive timer): `leftover` and the bytes read, or `None` when the
/// client closed or the connection was retired (then the
/// connection is closed as hyper closes an idle one).
///
/// Polled by hand rather than with `tokio::select!`, whose futures and
/// their copies made this the largest state of a parked connection (344
/// bytes; see `parked_stage_is_small`).
async fn park<IO, R>(
    io: &mut HeadTimer<IO>,
    mut retired: Pin<&mut R>,
    leftover: Bytes,
) -> Result<Option<Bytes>, ConnectionError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    R: Future<Output = ()>,
{
    let mut buf = [0u8; WAKE_READ];
    let read = poll_fn(|cx| {
        // Bytes first: a request already on its way is served.
        let mut read = ReadBuf::new(&mut buf);
        if let Poll::Ready(r) = Pin::new(&mut *io).poll_read(cx, &mut read) {
            return Poll::Ready(r.map(|()| read.filled().len()));
        }
        retired.as_mut().poll(cx).map(|()| Ok(0))
    })
    .await?;
    if read == 0 {
        // The client closed, or the state was retired: as hyper ends an
        // idle connection (TLS: close_notify), within `client_send`.
        let _ = io.shutdown().await;
        return Ok(None);
    }
    Ok(Some(joined(&leftover, &buf[..read])))
}

/// `a` then `b`, in a buffer of their size.
fn joined(a: &[u8], b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

/// The listener settings hyper's HTTP/1.1 server is built with, as the
/// connection was accepted with them (a reload leaves an open connection's
/// HTTP limits as they were: README, "Reload and stop"). A connection keeps
/// these (24 bytes) and makes each stretch's builder from them, rather than
/// keeping a builder (104 bytes, and an Arc for its timer) while parked.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    max_header_bytes: usize,
    max_headers: usize,
    preserve_header_case: bool,
}

impl Limits {
    /// A listener's.
    pub fn of(settings: &ListenerSettings) -> Self {
        Self {
            max_header_bytes: settings.max_header_bytes,
            max_headers: settings.max_headers,
            preserve_header_case: settings.preserve_header_case,
        }
    }

    /// hyper's HTTP/1.1 server as these settings want it.
    pub fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        let case = self.preserve_header_case;
        builder
            .timer(TokioTimer::new())
            // The idle and head timers are the stream's (see head_timer.rs).
            .header_read_timeout(None)
            // Larger heads get 431 (as do more fields than max_headers).
            .max_header_size(self.max_header_bytes)
            // Exact case costs a map per request (a seventh of the proxy's
            // CPU per request); Title-Case is what IIS and browsers write
            // anyway.
            .preserve_header_case(case)
            .title_case_headers(!case);
        if self.max_headers != DEFAULT_MAX_HEADERS {
            // hyper parses into a stack array of the default size; any
            // other count costs a heap allocation per request.
            builder.max_headers(self.max_headers);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::Notify;

    const LONG: Duration = Duration::from_secs(60);

    /// Retired when the test says so.
    struct Retire(Arc<Notify>);

    impl Retirement for Retire {
        fn retired(&self) -> impl Future<Output = ()> + Send + '_ {
            self.0.notified()
        }
    }

    /// A connection served by [`serve`] on one end of a pipe: each request
    /// is answered `path:body length`. `retire` retires it; `idle` is its
    /// keep-alive timer.
    struct Served {
        client: DuplexStream,
        phase: Arc<Phase>,
        retire: Arc<Notify>,
        done: tokio::task::JoinHandle<Result<(), ConnectionError>>,
    }

    /// Parks as soon as the connection is between requests (1 ms).
    fn served(idle: Duration) -> Served {
        served_parking_after(idle, Duration::from_millis(1))
    }

    fn served_parking_after(idle: Duration, park_after: Duration) -> Served {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let phase = Arc::new(Phase::default());
        let io = HeadTimer::new(server, phase.clone(), idle, LONG, LONG);
        let service = {
            let phase = phase.clone();
            service_fn(move |req: http::Request<Incoming>| {
                let in_flight = phase.begin();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    let len = body.map_or(0, |b| b.len());
                    drop(in_flight);
                    let text = format!("{path}:{len}");
                    Ok::<_, Infallible>(http::Response::new(ResponseBody::full(text)))
                }
            })
        };
        let retire = Arc::new(Notify::new());
        let life = Retire(retire.clone());
        let done = tokio::spawn(serve(
            io,
            phase.clone(),
            service,
            http1::Builder::new,
            life,
            park_after,
        ));
        Served {
            client,
            phase,
            retire,
            done,
        }
    }

    /// The bodies of the complete responses in `bytes`.
    fn complete_bodies(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.parse().ok())
                .expect("a content-length");
            let Some(body) = bytes.get(end + 4..end + 4 + len) else {
                break;
            };
            out.push(String::from_utf8_lossy(body).into_owned());
            bytes = &bytes[end + 4 + len..];
        }
        out
    }

    /// Reads until `n` whole responses have come; their bodies.
    async fn bodies(client: &mut DuplexStream, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        let read = async {
            loop {
                let found = complete_bodies(&got);
                if found.len() >= n {
                    return found;
                }
                let mut buf = [0u8; 1024];
                let k = client.read(&mut buf).await.unwrap();
                assert!(k > 0, "closed: {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..k]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the answers within 10 s")
    }

    /// Waits (bounded) until the connection has been parked `n` times.
    async fn parked(phase: &Phase, n: u32) {
        let wait = async {
            while phase.parks() < n {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("parked {} times, not {n}", phase.parks()));
    }

    /// What a connection keeps while parked, beside its stream: the
    /// future's size is its largest state, so a stretch's state (it is
    /// boxed), a builder kept for the next stretch or `select!`'s copies
    /// would show here. 264 bytes as written (with this test's
    /// retirement); with `proxy::serve`'s types the future was 2,032 bytes,
    /// 640 beside the TLS stream's 1,392, before it was boxed and slimmed.
    #[tokio::test]
    async fn parked_stage_is_small() {
        let (_client, server) = tokio::io::duplex(64);
        let phase = Arc::new(Phase::default());
        let io = HeadTimer::new(server, phase.clone(), LONG, LONG, LONG);
        let stream = std::mem::size_of_val(&io);
        let service = service_fn(|_: http::Request<Incoming>| async {
            Ok::<_, Infallible>(http::Response::new(ResponseBody::full("")))
        });
        let retire = Retire(Arc::new(Notify::new()));
        let stage = serve(io, phase, service, http1::Builder::new, retire, LONG);
        let beside = std::mem::size_of_val(&stage) - stream;
        assert!(beside <= 300, "{beside} bytes beside the stream");
    }

    #[tokio::test]
    async fn a_connection_between_requests_is_taken_back_from_hyper_and_served_again() {
        let mut c = served(LONG);
        c.client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/a:0"]);
        parked(&c.phase, 1).await;
        c.client
            .write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/b:3"]);
        parked(&c.phase, 2).await;
    }

    /// A client that asks again at once keeps its hyper connection (no
    /// park per request); one that waits `client_park` is parked. In the
    /// runtime's own clock, paused: the sleeps below take no real time.
    #[tokio::test(start_paused = true)]
    async fn only_a_connection_idle_for_client_park_is_parked() {
        let mut c = served_parking_after(LONG, Duration::from_secs(1));
        for path in ["/a", "/b", "/c"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            c.client.write_all(request.as_bytes()).await.unwrap();
            assert_eq!(bodies(&mut c.client, 1).await, [format!("{path}:0")]);
        }
        tokio::time::sleep(Duration::from_millis(990)).await;
        assert_eq!(c.phase.parks(), 0, "parked before client_park");
        tokio::time::sleep(Duration::from_millis(20)).await;
        parked(&c.phase, 1).await;
        c.client
            .write_all(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/d:0"]);
    }

    #[tokio::test]
    async fn pipelined_and_split_requests_are_all_served_in_order() {
        let mut c = served(LONG);
        // Two whole requests and the start of a third in one write: none
        // is lost to a park, and nothing parks before all are answered.
        c.client
            .write_all(
                b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
                  POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
                  GET /3 HTTP/1.1\r\nHo",
            )
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 2).await, ["/1:0", "/2:2"]);
        assert_eq!(c.phase.parks(), 0);
        c.client.write_all(b"st: x\r\n\r\n").await.unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/3:0"]);
        parked(&c.phase, 1).await;
    }

    #[tokio::test]
    async fn empty_lines_before_a_request_survive_a_park() {
        let mut c = served(LONG);
        c.client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/a:0"]);
        parked(&c.phase, 1).await;
        c.client
            .write_all(b"\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(bodies(&mut c.client, 1).await, ["/b:0"]);
    }

    #[tokio::test]
    async fn a_parked_connection_closes_when_idle_too_long_or_retired() {
        let mut c = served(Duration::from_millis(100));
        c.client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        bodies(&mut c.client, 1).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(LONG, c.client.read_to_end(&mut rest)).await;
        assert!(closed.is_ok() && rest.is_empty(), "{rest:?}");
        let ended = tokio::time::timeout(LONG, c.done).await.unwrap().unwrap();
        let error = ended.expect_err("the idle timeout is an error").to_string();
        assert!(error.contains("client idle timeout"), "{error}");

        let mut c = served(LONG);
        c.client
            .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        bodies(&mut c.client, 1).await;
        parked(&c.phase, 1).await;
        c.retire.notify_one();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(LONG, c.client.read_to_end(&mut rest)).await;
        assert!(closed.is_ok() && rest.is_empty(), "{rest:?}");
        let ended = tokio::time::timeout(LONG, c.done).await.unwrap().unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }
}
