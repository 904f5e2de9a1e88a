//! The HTTP stage: serve HTTP/1.1 or h2 on an accepted (and maybe
//! decrypted) connection, route each request by Host, and stream it to the
//! chosen upstream.
//!
//! Each request goes through the same named steps: find the host, check it
//! against the TLS name (421), route, rewrite the request, send upstream,
//! rewrite the response, log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::body::{AccessLine, Exchange, RequestBody, ResponseBody};
use crate::certs::covers;
use crate::report::ClientRef;
use crate::route::{normalize_host, RouteMatch};
use crate::state::State;
use crate::telemetry::{timestamp, AccessRecord};
use crate::tls::CertificateId;

/// What the HTTP stage knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub conn: u64,
    pub listener: usize,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// SNI as sent, lower-cased; `None` without TLS or without SNI.
    pub sni: Option<String>,
    /// The certificate served on this connection (TLS only).
    pub certificate: Option<CertificateId>,
    pub tls: bool,
    /// The client's address as an X-Forwarded-For value, made once.
    pub peer_ip: HeaderValue,
    /// Upstream connections pinned to this client connection (NTLM).
    pub affinity: crate::upstream::Affinity,
    /// The compatibility report's entry for this client, when it tracks it
    /// (no SNI): the first requests add their User-Agent and Host to it.
    pub report: Option<ClientRef>,
    /// Requests of this connection added to the report so far.
    pub joined: AtomicU32,
}

/// Requests per connection whose User-Agent and Host go into the report (the
/// report keeps no more; a client sends the same ones on every request).
const REPORT_REQUESTS: u32 = crate::report::REQUESTS_PER_CONNECTION;

/// Serves HTTP on one client connection until it closes, the client is idle
/// too long, or `cancel` asks for a graceful stop.
pub async fn serve<IO>(
    state: Arc<State>,
    info: Arc<ConnInfo>,
    io: IO,
    h2: bool,
    cancel: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = state.clone();
        let info = info.clone();
        service_fn(move |req| {
            let state = state.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(handle(&state, &info, req).await) }
        })
    };
    let io = TokioIo::new(io);
    let idle = state.settings.timeouts.client_idle;
    // Boxed (see connection.rs): only the protocol in use takes memory.
    let result = if h2 {
        Box::pin(serve_h2(io, service, idle, cancel)).await
    } else {
        let case = state.listeners[info.listener].settings.preserve_header_case;
        Box::pin(serve_h1(io, service, idle, case, cancel)).await
    };
    if let Err(e) = result {
        tracing::debug!(conn = info.conn, error = %e, "client connection ended with an error");
    }
}

async fn serve_h1<IO, S>(
    io: TokioIo<IO>,
    service: S,
    idle: Duration,
    preserve_header_case: bool,
    cancel: CancellationToken,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper starts the header timer whenever it waits for a request head,
    // so between keep-alive requests too: it is our idle timeout.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        // Exact case costs a map per request (a seventh of the proxy's CPU
        // per request); Title-Case is what IIS and browsers write anyway.
        .preserve_header_case(preserve_header_case)
        .title_case_headers(!preserve_header_case);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn serve_h2<IO, S>(
    io: TokioIo<IO>,
    service: S,
    idle: Duration,
    cancel: CancellationToken,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(idle / 2))
        .keep_alive_timeout(idle / 4);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// One request, start to finish.
async fn handle(
    state: &Arc<State>,
    info: &ConnInfo,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let listener = &state.listeners[info.listener];
    let host = request_host(&req);
    let report = info
        .report
        .as_ref()
        .filter(|_| info.joined.fetch_add(1, Ordering::Relaxed) < REPORT_REQUESTS)
        .cloned();
    let line = (state.access_log.is_some() || report.is_some())
        .then(|| access_line(state, info, &req, &host));
    let mut exchange = Box::new(Exchange {
        state: state.clone(),
        listener: info.listener,
        upstream: None,
        status: 0,
        start,
        line,
        report,
    });

    // The Host must be one the certificate of this connection speaks for.
    if let (Some(sni), Some(h), Some(cert)) = (&info.sni, &host, info.certificate) {
        if sni != h && !covers(&state.certificates.get(cert).names, h) {
            let msg = format!("421 Misdirected Request: this connection is for {sni}, not {h}\n");
            return local_response(StatusCode::MISDIRECTED_REQUEST, msg, exchange, None);
        }
    }

    let Some(route) = listener.routes.route(host.as_deref()) else {
        let msg = format!(
            "404 Not Found: no route for host {}\n",
            host.as_deref().unwrap_or("(none)")
        );
        return local_response(StatusCode::NOT_FOUND, msg, exchange, None);
    };
    let upstream = &state.upstreams[route.upstream()];
    if let Some(l) = &mut exchange.line {
        l.record.upstream = Some(upstream.name.clone());
    }

    let req = rewrite_request(
        req,
        info,
        &listener.settings.trusted_proxies,
        exchange.line.as_ref().map(|l| l.bytes_in.clone()),
    );
    match upstream.send(req, &info.affinity).await {
        Ok((resp, server, back)) => {
            exchange.upstream = Some(route.upstream());
            exchange.status = resp.status().as_u16();
            if let Some(l) = &mut exchange.line {
                l.record.server = Some(server);
            }
            let (mut parts, body) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(
                parts,
                ResponseBody::upstream(body, back).with_exchange(exchange),
            )
        }
        Err(e) => {
            let status = e.status();
            tracing::warn!(
                conn = info.conn,
                upstream = %upstream.name,
                server = %e.server(),
                error = %e,
                default = matches!(route, RouteMatch::Default(_)),
                "upstream request failed; answering {}",
                status.as_u16()
            );
            exchange.upstream = Some(route.upstream());
            if let Some(l) = &mut exchange.line {
                l.record.server = Some(e.server().to_string());
            }
            let msg = format!(
                "{} {}: upstream {} did not answer\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                upstream.name
            );
            local_response(status, msg, exchange, Some(e.to_string()))
        }
    }
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
            listener: state.listeners[info.listener].settings.name.clone(),
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
                (Some(c), Some(h)) => Some(covers(&c.names, h)),
                _ => None,
            },
            error: None,
        },
        bytes_in: Arc::new(AtomicU64::new(0)),
        bytes_out: 0,
    }
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

/// The host a request names: h2 `:authority` (or an absolute-form URI),
/// else the Host header; normalized.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return normalize_host(a.as_str());
    }
    let h = req.headers().get(header::HOST)?.to_str().ok()?;
    normalize_host(h)
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/?",
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names (cheap comparisons)
    // saves seven hashed removals per request.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(header::UPGRADE);
}

/// WebDAV COPY/MOVE name their target in `Destination` as an absolute URL.
/// The client wrote `https://host/...`, but the backend is reached over plain
/// HTTP and compares the URL with its own scheme (IIS and Apache answer 502
/// "bad gateway" to a scheme mismatch), so a Destination on the same host is
/// rewritten to `http://`, as TLS-offloading deployments of SharePoint
/// require.
fn rewrite_destination(headers: &mut HeaderMap, host: Option<&HeaderValue>) {
    let (Some(dest), Some(host)) = (headers.get("destination"), host) else {
        return;
    };
    let (Ok(dest), Ok(host)) = (dest.to_str(), host.to_str()) else {
        return;
    };
    let Some(rest) = dest
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("https://"))
        .map(|_| &dest[8..])
    else {
        return;
    };
    let authority = rest.split('/').next().unwrap_or("");
    if normalize_host(authority).is_some() && normalize_host(authority) == normalize_host(host) {
        if let Ok(v) = HeaderValue::from_str(&format!("http://{rest}")) {
            headers.insert("destination", v);
        }
    }
}

/// Turns the client's request into the upstream's: origin-form URI, HTTP/1.1,
/// Host kept, hop-by-hop headers removed, X-Forwarded-* set.
fn rewrite_request(
    req: Request<Incoming>,
    info: &ConnInfo,
    trusted: &[ipnet::IpNet],
    bytes_in: Option<Arc<AtomicU64>>,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    let original_host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    remove_hop_by_hop(&mut parts.headers);
    if let Some(h) = &original_host {
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, h.clone());
        }
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-host"), h.clone());
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let from_trusted = !trusted.is_empty() && trusted.iter().any(|n| n.contains(&info.peer.ip()));
    let appended = match parts.headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prior) if from_trusted && !prior.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prior}, {}", info.peer.ip())).ok()
        }
        _ => None,
    };
    parts
        .headers
        .insert(xff, appended.unwrap_or_else(|| info.peer_ip.clone()));
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
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
    if info.tls {
        rewrite_destination(&mut parts.headers, original_host.as_ref());
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, RequestBody::new(body, bytes_in))
}
