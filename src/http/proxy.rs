//! The HTTP stage: serve HTTP/1.1 or h2 on an accepted (and maybe
//! decrypted) connection, route each request by Host, and stream it to the
//! chosen upstream.
//!
//! Each request goes through the same named steps: find the host, check it
//! against the TLS name (421), route, rewrite the request, send upstream,
//! rewrite the response, log.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::server::conn::http2::{Builder as Http2Builder, Connection as Http2Connection};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{ListenerSettings, RequestTimeouts};
use crate::conn::ConnInfo;
use crate::http::body::{AccessLine, Exchange, ResponseBody};
use crate::http::h1::ConnectionError;
use crate::http::head_timer::{ActiveRequest, HeadTimer, Phase, SendStall};
use crate::http::life::{Bound, Life};
use crate::http::request_checks::{
    allowed_upgrade, header_tokens, refused_method, target_has_fragment,
};
use crate::http::request_host::{request_host, written_host, HostError, RequestHost};
use crate::observe::telemetry::{timestamp, AccessRecord};
use crate::route::{normalize_host, RouteMatch};
use crate::state::State;
use crate::upstream::request_body::RequestBody;
use crate::upstream::{
    asks_for_connection_auth, carries_connection_credentials, PoolReturn, Upstream, UpstreamError,
};

/// Serves HTTP on one client connection until it closes or the client is
/// idle too long. When a reload retires the connection's state, the
/// connection carries on with the new one if it can (its listener and
/// certificate are still there: idle keep-alive connections, and the NTLM
/// identities pinned to them, survive a reload), else it finishes the
/// request in progress and closes (h2: GOAWAY); at stop it always closes so.
///
/// Set up here, then run as one boxed future: every connection's task
/// holds it for hours, so it holds the stream once (an async fn would also
/// keep its `io` argument's space for its whole life, beside the stream's
/// new home in the HTTP server).
pub fn serve<IO>(
    state: Arc<State>,
    info: Arc<ConnInfo>,
    io: IO,
    h2: bool,
    current: crate::state::Current,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Arc::new(Phase::default());
    let bound = Arc::new(arc_swap::ArcSwap::from_pointee(Bound {
        state: state.clone(),
        info: info.clone(),
    }));
    let service = {
        let (bound, current) = (bound.clone(), current.clone());
        let phase = phase.clone();
        service_fn(move |req| {
            let in_flight = phase.begin();
            let bound = crate::http::life::for_request(&bound, &current);
            async move { handle(&bound.state, &bound.info, req, in_flight).await }
        })
    };
    let timeouts = &state.settings.timeouts;
    let (idle, send) = (timeouts.client_idle, timeouts.client_send);
    let settings = &state.listener(info.listener).settings;
    let life = Life { bound, current };
    let conn = info.conn;
    let ended = move |result: Result<(), ConnectionError>| {
        if let Err(e) = result {
            tracing::debug!(conn, error = %e, "client connection ended with an error");
        }
    };
    if h2 {
        // A request head arrives in one HEADERS frame: between requests
        // only the idle timer applies.
        let stall = SendStall::new(phase.clone(), send);
        let io = TokioIo::new(HeadTimer::new(io, phase, idle, idle, send));
        let conn = Box::pin(h2_builder(idle, settings).serve_connection(io, service));
        Box::pin(serve_h2(conn, life, stall).map(move |r| ended(r.map_err(Into::into))))
    } else {
        let io = HeadTimer::new(io, phase.clone(), idle, timeouts.client_header, send);
        let limits = crate::http::h1::Limits::of(settings);
        let builder = move || limits.builder();
        let park = timeouts.client_park;
        Box::pin(crate::http::h1::serve(io, phase, service, builder, life, park).map(ended))
    }
}

/// hyper's h2 server as a listener's settings want it.
fn h2_builder(idle: Duration, settings: &ListenerSettings) -> Http2Builder<TokioExecutor> {
    let mut builder = Http2Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(idle / 2))
        .keep_alive_timeout(idle / 4)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn serve_h2<IO, S>(
    mut conn: Pin<Box<Http2Connection<TokioIo<IO>, S, TokioExecutor>>>,
    life: Life,
    mut stall: SendStall,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Future: Send + 'static,
{
    tokio::select! {
        // The connection first: a request already on its way (a reload
        // just retired this state) is read and answered before closing.
        biased;
        r = conn.as_mut() => r,
        _ = life.ended() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        // A client that keeps a response's window shut while it answers
        // pings: the connection goes, and with it the backends' (the
        // access log notes client_send for each response cut).
        _ = stall.stalled() => {
            tracing::info!("closing an h2 connection whose client took no data within client_send");
            Ok(())
        }
    }
}

/// What a request gets: a response, or (h2) its stream reset.
type Reply = Result<Response<ResponseBody>, h2::Error>;

/// One request, start to finish: each step hands it on to the next, or
/// says how it ends ([`Stop`]).
async fn handle(
    state: &Arc<State>,
    info: &ConnInfo,
    req: Request<Incoming>,
    in_flight: ActiveRequest,
) -> Reply {
    let h2 = req.version() == Version::HTTP_2;
    let start = Instant::now();
    let named = one_host(info, &req);
    let fragment = target_has_fragment(in_flight.request_line(), req.method());
    let mut exchange = open_exchange(state, info, &req, &named, start, in_flight);
    let host = match admit(req.method(), fragment, named) {
        Ok(host) => host,
        Err(stop) => return stop.answer(exchange),
    };
    if let Err(stop) = check_directed(state, info, &host) {
        return stop.answer(exchange);
    }
    let route = match route_request(state, info, &host, req.uri().path(), &mut exchange) {
        Ok(route) => route,
        Err(stop) => return stop.answer(exchange),
    };
    let timeouts = state.request_timeouts(route);
    if let Some(f) = &exchange.in_flight {
        f.phase().keep_alive(timeouts.client_idle);
    }
    let (req, upgrade) = upgrade_and_rewrite(state, info, req, &host, route, &exchange);
    let req = match refuse_connection_auth_over_h2(h2, req) {
        Ok(req) => req,
        Err(stop) => return stop.answer(exchange),
    };
    let (resp, back) = match send(state, info, route, req, h2, &timeouts, &mut exchange).await {
        Ok(sent) => sent,
        Err(e) => return Ok(error_answer(state, info, route, e, exchange)),
    };
    match backend_answer(&resp, upgrade, h2) {
        BackendAnswer::Tunnel(client) => {
            let idle = timeouts.client_idle;
            Ok(open_tunnel(info, idle, client, resp, back, exchange))
        }
        BackendAnswer::Http11Required => {
            // A challenge: the request was not carried out, so the
            // client may safely send it again over HTTP/1.1.
            drop((resp, back));
            Stop::Http11Required.answer(exchange)
        }
        BackendAnswer::Relay => Ok(relay(timeouts.upstream_read, resp, back, exchange)),
    }
}

/// How snigate ends a request itself, with no backend response passed on:
/// see [`Stop::answer`].
enum Stop {
    /// The request's fault (400, 405): `msg` is the body and the access
    /// log's error (see [`refusal`]); `close` ends the connection after it.
    Refused {
        status: StatusCode,
        msg: String,
        close: bool,
    },
    /// Nothing here serves it (421, 404): `msg` is the body, no error logged.
    Unserved { status: StatusCode, msg: String },
    /// NTLM/Negotiate over h2: see [`http_1_1_required`].
    Http11Required,
}

impl Stop {
    /// 400 for a request snigate refuses (a host that cannot be told, see
    /// [`request_host`]; a fragment in the target): noted in the access log as
    /// the client's error.
    fn bad_request(msg: String) -> Self {
        Stop::Refused {
            status: StatusCode::BAD_REQUEST,
            msg,
            close: false,
        }
    }

    /// The client's answer, which takes the exchange to its end.
    fn answer(self, mut exchange: Box<Exchange>) -> Reply {
        match self {
            Stop::Refused { status, msg, close } => {
                let mut resp = refusal(status, msg, exchange);
                if close {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok(resp)
            }
            Stop::Unserved { status, msg } => Ok(local_response(status, msg, exchange, None)),
            Stop::Http11Required => Err(http_1_1_required(&mut exchange)),
        }
    }
}

/// One host for the route, the 421 check, the log and the backend (see
/// [`request_host`]; snigate writes one when the client named none).
fn one_host(info: &ConnInfo, req: &Request<Incoming>) -> Result<RequestHost, HostError> {
    request_host(req.version(), req.uri(), req.headers())
        .map(|h| h.unwrap_or_else(|| written_host(info.local)))
}

/// The exchange the request's answer closes, started at `start`: its
/// metrics always, its access-log line when a log or the report shows it.
fn open_exchange(
    state: &Arc<State>,
    info: &ConnInfo,
    req: &Request<Incoming>,
    named: &Result<RequestHost, HostError>,
    start: Instant,
    in_flight: ActiveRequest,
) -> Box<Exchange> {
    let report = info.report.as_ref().filter(|c| c.wants_requests()).cloned();
    let line = (state.access_log.is_some() || report.is_some()).then(|| {
        // Copied only when a log or the report will show it.
        let host = named.as_ref().ok().map(|h| h.name.clone());
        access_line(state, info, req, &host)
    });
    Box::new(Exchange {
        state: state.clone(),
        listener: info.listener,
        upstream: None,
        route: None,
        status: 0,
        start,
        line,
        report,
        in_flight: Some(in_flight),
    })
}

/// The request's host, unless snigate refuses the request outright: a
/// `#fragment` in its target, a refused method, a host that cannot be told.
fn admit(
    method: &Method,
    fragment: bool,
    named: Result<RequestHost, HostError>,
) -> Result<RequestHost, Stop> {
    // The target hyper parsed has lost the fragment: it would name another
    // resource (`DELETE /coll/#frag` the collection). Refused, as HAProxy.
    if fragment {
        let msg = "400 Bad Request: the request target has a #fragment, \
                   which a client must not send to a server\n";
        return Err(Stop::bad_request(msg.to_string()));
    }
    // A tunnel to anywhere: never opened, never forwarded. The connection
    // closes after the answer: a client may already be sending what it
    // meant for the tunnel, which must not be read as requests.
    if refused_method(method) {
        let msg = format!("405 Method Not Allowed: {method} is not proxied\n");
        let status = StatusCode::METHOD_NOT_ALLOWED;
        return Err(Stop::Refused {
            status,
            msg,
            close: true,
        });
    }
    named.map_err(|e| Stop::bad_request(format!("400 Bad Request: {e}\n")))
}

/// 421 unless the Host is one the certificate of this connection speaks for
/// (checked when the client named the host and was shown a certificate for
/// its SNI).
fn check_directed(state: &State, info: &ConnInfo, host: &RequestHost) -> Result<(), Stop> {
    let (Some(sni), false, Some(cert)) = (&info.sni, host.written, info.certificate) else {
        return Ok(());
    };
    let h = &host.name;
    if sni == h || state.certificates.get(cert).covers(h) {
        return Ok(());
    }
    let msg = format!("421 Misdirected Request: this connection is for {sni}, not {h}\n");
    let status = StatusCode::MISDIRECTED_REQUEST;
    Err(Stop::Unserved { status, msg })
}

/// The listener's route for the host and path (404 without one); the
/// access log notes its upstream and route.
fn route_request(
    state: &State,
    info: &ConnInfo,
    host: &RequestHost,
    path: &str,
    exchange: &mut Exchange,
) -> Result<RouteMatch, Stop> {
    let listener = state.listener(info.listener);
    let Some(route) = listener.routes.route(Some(&host.name), Some(path)) else {
        let msg = format!("404 Not Found: no route for host {}\n", host.name);
        let status = StatusCode::NOT_FOUND;
        return Err(Stop::Unserved { status, msg });
    };
    exchange.route = route.route();
    if let Some(l) = &mut exchange.line {
        l.record.upstream = Some(state.upstream(route.upstream()).name.clone());
        l.record.route = route
            .route()
            .and_then(|r| state.settings.routes.get(r.index()))
            .map(|r| r.name.clone());
    }
    Ok(route)
}

/// The request as the backend gets it (see [`rewrite_request`]) and, when
/// it asks for an upgrade the listener passes, the client's side of the
/// tunnel, opened once the backend agrees.
fn upgrade_and_rewrite(
    state: &State,
    info: &ConnInfo,
    mut req: Request<Incoming>,
    host: &RequestHost,
    route: RouteMatch,
    exchange: &Exchange,
) -> (Request<RequestBody>, Option<OnUpgrade>) {
    let settings = &state.listener(info.listener).settings;
    // A protocol upgrade (WebSocket, or one the listener lists; never h2c):
    // the client's side of the tunnel, once the backend has agreed. Any
    // other Upgrade is removed with the hop-by-hop headers.
    let upgrade = allowed_upgrade(req.version(), req.headers(), &settings.upgrade_protocols)
        .map(|p| (p, hyper::upgrade::on(&mut req)));
    let backend_tls = state.upstream(route.upstream()).is_tls();
    let bytes_in = exchange.line.as_ref().map(|l| l.bytes_in.clone());
    let from_trusted = settings.trusted_proxies.contains(info.peer.ip());
    let mut req = rewrite_request(req, host, info, backend_tls, from_trusted, bytes_in);
    let Some((protocol, client)) = upgrade else {
        return (req, None);
    };
    let headers = req.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
    (req, Some(client))
}

/// NTLM and Negotiate authenticate a connection, which h2 multiplexes:
/// as IIS does, ask the client to send this request over HTTP/1.1
/// (RST_STREAM HTTP_1_1_REQUIRED; browsers, curl and .NET then reconnect
/// with HTTP/1.1), before any backend sees the credentials.
fn refuse_connection_auth_over_h2(
    h2: bool,
    req: Request<RequestBody>,
) -> Result<Request<RequestBody>, Stop> {
    if h2 && carries_connection_credentials(req.headers()) {
        return Err(Stop::Http11Required);
    }
    Ok(req)
}

/// Sends the request to the route's upstream: its response head and the
/// backend connection's way back to the pool. The exchange notes the
/// upstream, the status and the server that answered.
async fn send(
    state: &State,
    info: &ConnInfo,
    route: RouteMatch,
    req: Request<RequestBody>,
    h2: bool,
    timeouts: &RequestTimeouts,
    exchange: &mut Exchange,
) -> Result<(Response<Incoming>, Option<PoolReturn>), UpstreamError> {
    let upstream = state.upstream(route.upstream());
    // An h2 connection's streams share no backend connection state.
    let affinity = (!h2).then_some(&*info.affinity);
    let (resp, server, back) = upstream
        .send(req, info.peer.ip(), affinity, timeouts)
        .await?;
    exchange.upstream = Some(route.upstream());
    exchange.status = resp.status().as_u16();
    if let Some(l) = &mut exchange.line {
        l.record.server = Some(server);
    }
    Ok((resp, back))
}

/// What the client gets for a backend's response head.
enum BackendAnswer {
    /// The backend agreed to the client's upgrade (101): a tunnel.
    Tunnel(OnUpgrade),
    /// An NTLM/Negotiate challenge to an h2 client: see [`http_1_1_required`].
    Http11Required,
    /// Anything else: the response, streamed.
    Relay,
}

/// Which [`BackendAnswer`] a response head calls for: `upgrade` is the
/// client's side of the upgrade it asked for, if any.
fn backend_answer(
    resp: &Response<Incoming>,
    upgrade: Option<OnUpgrade>,
    h2: bool,
) -> BackendAnswer {
    match upgrade {
        Some(client) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            BackendAnswer::Tunnel(client)
        }
        _ if h2 && asks_for_connection_auth(resp) => BackendAnswer::Http11Required,
        _ => BackendAnswer::Relay,
    }
}

/// The backend agreed to the upgrade: the tunnel runs on a task of its own
/// (closed after `idle` with no traffic either way), and the client gets
/// the 101 with `Connection: upgrade` and the backend's `Upgrade`.
fn open_tunnel(
    info: &ConnInfo,
    idle: Duration,
    client: OnUpgrade,
    mut resp: Response<Incoming>,
    back: Option<PoolReturn>,
    mut exchange: Box<Exchange>,
) -> Response<ResponseBody> {
    let backend = hyper::upgrade::on(&mut resp);
    // The tunnel holds the connection's timers off for as long
    // as it lives (its own idle timeout applies).
    let in_flight = exchange.in_flight.take();
    tokio::spawn(tunnel(client, backend, idle, in_flight, info.conn));
    drop(back);
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(p) = protocol {
        parts.headers.insert(header::UPGRADE, p);
    }
    Response::from_parts(parts, ResponseBody::full("").with_exchange(exchange))
}

/// The backend's response for the client: without hop-by-hop headers, its
/// body streamed (cut after `read_limit` without data: `upstream_read`),
/// the connection back to the pool at its end.
fn relay(
    read_limit: Duration,
    resp: Response<Incoming>,
    back: Option<PoolReturn>,
    exchange: Box<Exchange>,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    let body = ResponseBody::upstream(body, back, read_limit);
    Response::from_parts(parts, body.with_exchange(exchange))
}

/// The client's answer when the upstream request failed (502, 503, 504;
/// 400 or 408 when the client's body failed), noted in the access log.
fn error_answer(
    state: &State,
    info: &ConnInfo,
    route: RouteMatch,
    e: UpstreamError,
    mut exchange: Box<Exchange>,
) -> Response<ResponseBody> {
    let upstream = state.upstream(route.upstream());
    log_failure(info, upstream, route, &e);
    let status = e.status();
    let no_server = matches!(e, UpstreamError::NoServer { .. });
    exchange.upstream = Some(route.upstream());
    if let Some(l) = &mut exchange.line {
        l.record.server = (!no_server).then(|| e.server().to_string());
    }
    let (code, reason) = (status.as_u16(), status.canonical_reason().unwrap_or(""));
    let msg = if e.is_client_fault() {
        format!("{code} {reason}: {e}\n")
    } else {
        format!(
            "{code} {reason}: upstream {} did not answer\n",
            upstream.name
        )
    };
    local_response(status, msg, exchange, Some(e.to_string()))
}

/// Logs a failed upstream request: against the backend (warning), or at
/// debug level when the client caused it or no server was in rotation.
fn log_failure(info: &ConnInfo, upstream: &Upstream, route: RouteMatch, e: &UpstreamError) {
    let status = e.status();
    if matches!(e, UpstreamError::NoServer { .. }) {
        // The upstream logs this itself, at most every 10 s.
        tracing::debug!(conn = info.conn, upstream = %upstream.name, error = %e, "answering 503");
    } else if e.is_client_fault() {
        // The client's doing (a malformed or stalled request body):
        // nothing against the backend.
        tracing::debug!(
            conn = info.conn,
            peer = %info.peer,
            upstream = %upstream.name,
            error = %e,
            "the client's request failed; answering {}",
            status.as_u16()
        );
    } else {
        tracing::warn!(
            conn = info.conn,
            upstream = %upstream.name,
            server = %e.server(),
            error = %e,
            default = matches!(route, RouteMatch::Default(_)),
            "upstream request failed; answering {}",
            status.as_u16()
        );
    }
}

/// The answer to an h2 request that needs connection-bound authentication
/// (NTLM, Negotiate): RST_STREAM HTTP_1_1_REQUIRED, noted in the access log.
fn http_1_1_required(exchange: &mut Exchange) -> h2::Error {
    if let Some(l) = &mut exchange.line {
        l.record.error =
            Some("NTLM/Negotiate over HTTP/2: asked the client to retry over HTTP/1.1".into());
    }
    h2::Error::from(h2::Reason::HTTP_1_1_REQUIRED)
}

/// Copies bytes both ways between the upgraded client and backend
/// connections until both close or neither sends anything for `idle`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    idle: Duration,
    in_flight: Option<ActiveRequest>,
    conn: u64,
) {
    match tokio::join!(client, backend) {
        (Ok(c), Ok(b)) => {
            crate::io::splice::copy_both_ways(TokioIo::new(c), TokioIo::new(b), idle).await;
        }
        (c, b) => {
            tracing::debug!(conn, client = ?c.err(), backend = ?b.err(), "upgrade did not complete");
        }
    }
    drop(in_flight);
}

/// The access-log line of a request, before the response is known.
fn access_line(
    state: &State,
    info: &ConnInfo,
    req: &Request<Incoming>,
    host: &Option<String>,
) -> AccessLine {
    let certificate = info.certificate.map(|c| state.certificates.get(c));
    AccessLine {
        record: AccessRecord {
            ts: timestamp(SystemTime::now()),
            event: "http_request",
            conn: info.conn,
            listener: state.listener(info.listener).settings.name.clone(),
            peer: info.peer.to_string(),
            sni: info.sni.clone(),
            method: req.method().to_string(),
            host: host.clone(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/".into()),
            status: 0,
            upstream: None,
            server: None,
            bytes_in: 0,
            bytes_out: 0,
            ms: 0.0,
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            version: version_name(req.version()),
            certificate: certificate.map(|c| c.name.clone()),
            covered: match (certificate, host) {
                (Some(c), Some(h)) => Some(c.covers(h)),
                _ => None,
            },
            error: None,
            route: None,
        },
        bytes_in: Arc::new(AtomicU64::new(0)),
        bytes_out: 0,
    }
}

/// A request snigate refuses with `status`: `msg` is the body, and the
/// access log's `error` (the reason, blaming the request).
fn refusal(status: StatusCode, msg: String, exchange: Box<Exchange>) -> Response<ResponseBody> {
    let error = msg.trim_end().to_string();
    local_response(status, msg, exchange, Some(error))
}

/// A response snigate writes itself.
fn local_response(
    status: StatusCode,
    body: String,
    mut exchange: Box<Exchange>,
    error: Option<String>,
) -> Response<ResponseBody> {
    exchange.status = status.as_u16();
    if let Some(l) = &mut exchange.line {
        l.record.error = error;
    }
    let mut resp = Response::new(ResponseBody::full(body).with_exchange(exchange));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/?",
    }
}

/// The forwarding headers, made at compile time (`from_static` at run time
/// checks the name on every request).
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), with
/// `Upgrade` (passed on only for an upgrade the listener allows, by the
/// caller). `Trailer` is not among them: it announces end-to-end trailer
/// fields, and hyper sends only the trailers a `Trailer` header names.
/// A `static`, not a `const`: a const array is built (and dropped) again at
/// every use, nine times per proxied request.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (cheap comparisons) finds which are there:
    // most requests carry none, a response usually `Connection` alone, and
    // a hashed removal of each absent one costs more than the pass.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Headers named in Connection are hop-by-hop too. Only those present
    // are collected: the usual tokens (`keep-alive`, `close`) name none,
    // and a lookup by `&str` allocates nothing where a `HeaderName` would.
    let named: Vec<HeaderName> = header_tokens(headers, &header::CONNECTION)
        .filter(|n| headers.contains_key(*n))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
        headers.remove(name);
    }
}

/// WebDAV COPY/MOVE name their target in `Destination` as an absolute URL.
/// The client wrote its own scheme (`https://host/...` through a TLS
/// listener), but the backend compares the URL with the scheme it is reached
/// by (IIS and Apache answer 502 "bad gateway" to a mismatch), so a
/// Destination on the same host gets the backend's scheme, as TLS-offloading
/// deployments of SharePoint require (and the reverse for a plain listener
/// in front of a TLS backend). Called only when the two schemes differ.
fn rewrite_destination(headers: &mut HeaderMap, host: Option<&HeaderValue>, backend_tls: bool) {
    let (Some(dest), Some(host)) = (headers.get("destination"), host) else {
        return;
    };
    let (Ok(dest), Ok(host)) = (dest.to_str(), host.to_str()) else {
        return;
    };
    let (from, to) = if backend_tls {
        ("http://", "https://")
    } else {
        ("https://", "http://")
    };
    let Some(rest) = dest
        .get(..from.len())
        .filter(|p| p.eq_ignore_ascii_case(from))
        .map(|_| &dest[from.len()..])
    else {
        return;
    };
    let authority = rest.split('/').next().unwrap_or("");
    if normalize_host(authority).is_some() && normalize_host(authority) == normalize_host(host) {
        if let Ok(v) = HeaderValue::from_str(&format!("{to}{rest}")) {
            headers.insert("destination", v);
        }
    }
}

/// Which of the headers [`rewrite_request`] reads or removes a request
/// carries: one pass over its names, instead of a hashed lookup for each
/// (most requests carry none of them).
#[derive(Default)]
struct Carried {
    te: bool,
    forwarded: bool,
    real_ip: bool,
    xff: bool,
}

impl Carried {
    fn of(headers: &HeaderMap) -> Self {
        let mut carried = Carried::default();
        for name in headers.keys() {
            match name.as_str() {
                "te" => carried.te = true,
                "forwarded" => carried.forwarded = true,
                "x-real-ip" => carried.real_ip = true,
                "x-forwarded-for" => carried.xff = true,
                _ => {}
            }
        }
        carried
    }
}

/// Turns the client's request into the upstream's: origin-form URI, HTTP/1.1,
/// `Host` and `X-Forwarded-Host` the request's one host, hop-by-hop headers
/// removed, X-Forwarded-* set, `Forwarded` and `X-Real-IP` kept only from a
/// trusted proxy.
fn rewrite_request(
    req: Request<Incoming>,
    host: &RequestHost,
    info: &ConnInfo,
    backend_tls: bool,
    from_trusted: bool,
    bytes_in: Option<Arc<AtomicU64>>,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    let carried = Carried::of(&parts.headers);
    // `TE: trailers` says the client takes response trailers (hyper sends
    // them only then): snigate passes trailers on, so it asks on its behalf.
    let trailers = carried.te
        && header_tokens(&parts.headers, &header::TE).any(|t| t.eq_ignore_ascii_case("trailers"));
    remove_hop_by_hop(&mut parts.headers);
    if trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // The one host, whatever the client wrote in Host or X-Forwarded-Host.
    parts.headers.insert(header::HOST, host.header.clone());
    parts.headers.insert(X_FORWARDED_HOST, host.header.clone());
    let xff = X_FORWARDED_FOR;
    let prior = (carried.xff && from_trusted).then(|| parts.headers.get(&xff));
    let appended = match prior.flatten().and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prior}, {}", info.peer.ip())).ok()
        }
        _ => None,
    };
    parts
        .headers
        .insert(xff, appended.unwrap_or_else(|| info.forwarded_for()));
    // The other headers that name the client: believed only from a trusted
    // proxy, as X-Forwarded-For is; from anyone else they are a client's
    // claim about itself, dropped so no backend logs or trusts it.
    if !from_trusted && carried.forwarded {
        parts.headers.remove(header::FORWARDED);
    }
    if !from_trusted && carried.real_ip {
        parts.headers.remove(X_REAL_IP);
    }
    parts.headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if info.tls { "https" } else { "http" }),
    );
    // Origin-form for the backend; HTTP/1.1 requests usually are already.
    // (`OPTIONS *` keeps its asterisk form.)
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
    }
    if info.tls != backend_tls {
        rewrite_destination(&mut parts.headers, Some(&host.header), backend_tls);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, RequestBody::new(body, bytes_in))
}
