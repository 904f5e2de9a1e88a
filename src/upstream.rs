//! Upstreams: servers, balancing and a keep-alive pool of HTTP/1.1
//! connections.
//!
//! A hand-written pool rather than hyper-util's legacy client because the
//! farm needs control per connection: a request that was never written is
//! retried on a fresh connection (hyper hands it back), and connection
//! affinity for NTLM/Negotiate needs to take a connection out of the pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;

use crate::body::{RequestBody, UploadProgress};
use crate::config::{Timeouts, UpstreamSettings};
use crate::metrics::Metrics;

/// Idle connections kept per server; more are closed.
const MAX_IDLE_PER_SERVER: usize = 512;

/// Why an upstream request failed, and so what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("{server} sent no response head within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("the client sent no request body data for {timeout:?} (upload to {server} stalled)")]
    ClientStalled { server: String, timeout: Duration },
    #[error("{server} failed: {reason}")]
    Protocol { server: String, reason: String },
}

impl UpstreamError {
    /// The status snigate answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::ClientStalled { .. } => http::StatusCode::REQUEST_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The server it concerns.
    pub fn server(&self) -> &str {
        match self {
            UpstreamError::Connect { server, .. }
            | UpstreamError::Timeout { server, .. }
            | UpstreamError::ClientStalled { server, .. }
            | UpstreamError::Protocol { server, .. } => server,
        }
    }
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// One backend server and its idle connections.
struct Server {
    addr: String,
    idle: Mutex<VecDeque<Idle>>,
    /// `snigate_upstream_server_up`: the last connection attempt succeeded.
    up: Gauge,
}

/// A named group of servers (`[[upstream]]`).
pub struct Upstream {
    pub name: String,
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    timeouts: Timeouts,
    preserve_header_case: bool,
    pinned: Gauge,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

impl Upstream {
    /// An upstream from its settings; `preserve_header_case` when any
    /// listener asks for exact header-name case. Its servers' up/down state
    /// and pinned connections are counted in `metrics`.
    pub fn new(
        settings: &UpstreamSettings,
        timeouts: Timeouts,
        preserve_header_case: bool,
        metrics: &Metrics,
    ) -> Self {
        Self {
            name: settings.name.clone(),
            servers: settings
                .servers
                .iter()
                .map(|addr| {
                    Arc::new(Server {
                        addr: addr.clone(),
                        idle: Mutex::new(VecDeque::new()),
                        up: metrics.server_up(&settings.name, addr),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            timeouts,
            preserve_header_case,
            pinned: metrics.pinned().clone(),
        }
    }

    /// Sends a request and returns the response head with the server that
    /// answered. `affinity` is the client connection's: a connection pinned
    /// there for this upstream (NTLM/Negotiate) is used first and kept.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        affinity: &Affinity,
    ) -> Result<(Response<Incoming>, String, Option<PoolReturn>), UpstreamError> {
        let progress = req.body_mut().progress();
        if let Some(pinned) = affinity.take(&self.name) {
            let Pinned {
                server, mut sender, ..
            } = pinned;
            // Waits until the previous response on it has been read.
            if sender.ready().await.is_ok() {
                match self
                    .response(sender.try_send_request(req), progress.clone(), &server)
                    .await
                {
                    Err(e) => return Err(e),
                    Ok(Ok(resp)) => return Ok(self.finish(&server, sender, resp, affinity, true)),
                    Ok(Err(mut e)) => match e.take_message() {
                        // Not sent: the backend closed the authenticated
                        // connection; the request goes on a new one and the
                        // backend will ask to authenticate again.
                        Some(unsent) => req = unsent,
                        None => return Err(protocol(&server, e.error())),
                    },
                }
            }
        }
        let server = self.pick();
        // Each pass either sends on a pooled connection or, at the end, on a
        // fresh one. A request the pool could not send comes back and tries
        // the next connection; an idempotent request without a body that died
        // on a reused connection is rebuilt and tried once on a fresh one.
        while let Some(mut sender) = server.checkout(self.timeouts.upstream_idle) {
            // The backend may close a kept-alive connection just as a request
            // arrives (its keep-alive timer, a recycle): a GET or HEAD that
            // then dies unanswered is sent again, so keep a copy of it.
            let replay = replayable(&req);
            let sent = match self
                .response(sender.try_send_request(req), progress.clone(), &server)
                .await
            {
                Err(e) => return Err(e),
                Ok(sent) => sent,
            };
            match sent {
                Ok(resp) => return Ok(self.finish(&server, sender, resp, affinity, false)),
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(unsent), _) => {
                        tracing::debug!(server = %server.addr, error = %e.error(), "pooled connection unusable; retrying");
                        req = unsent;
                    }
                    (None, Some(again)) => {
                        tracing::debug!(server = %server.addr, error = %e.error(), "reused connection failed; retrying idempotent request");
                        req = again;
                        break;
                    }
                    (None, None) => return Err(protocol(&server, e.error())),
                },
            }
        }
        let (server, mut sender) = self.connect(server).await?;
        match self
            .response(sender.send_request(req), progress, &server)
            .await
        {
            Err(e) => Err(e),
            Ok(Err(e)) => Err(protocol(&server, &e)),
            Ok(Ok(resp)) => Ok(self.finish(&server, sender, resp, affinity, false)),
        }
    }

    /// Waits for a response head: first while the request body is still
    /// being sent (failing only if the client stalls for `client_idle`), then
    /// at most `upstream_response`, so that a slow upload is never cut.
    async fn response<F: std::future::Future>(
        &self,
        send: F,
        progress: Option<Arc<UploadProgress>>,
        server: &Server,
    ) -> Result<F::Output, UpstreamError> {
        tokio::pin!(send);
        if let Some(progress) = progress {
            let stall = self.timeouts.client_idle;
            let mut seen = progress.bytes.load(Ordering::Relaxed);
            let done = progress.done.notified();
            tokio::pin!(done);
            loop {
                tokio::select! {
                    r = &mut send => return Ok(r),
                    _ = &mut done => break,
                    _ = tokio::time::sleep(stall) => {
                        let now = progress.bytes.load(Ordering::Relaxed);
                        if now == seen {
                            return Err(UpstreamError::ClientStalled { server: server.addr.clone(), timeout: stall });
                        }
                        seen = now;
                    }
                }
            }
        }
        let timeout = self.timeouts.upstream_response;
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| UpstreamError::Timeout {
                server: server.addr.clone(),
                timeout,
            })
    }

    fn pick(&self) -> Arc<Server> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len().max(1);
        self.servers[i].clone()
    }

    /// After a response head: a connection that is (or becomes) pinned to the
    /// client connection stays with it; any other goes back to the pool when
    /// its response body has been read to the end, through the returned
    /// [`PoolReturn`] (at once when there is no body).
    fn finish(
        &self,
        server: &Arc<Server>,
        sender: SendRequest<RequestBody>,
        resp: Response<Incoming>,
        affinity: &Affinity,
        pinned: bool,
    ) -> (Response<Incoming>, String, Option<PoolReturn>) {
        let addr = server.addr.clone();
        if pinned || asks_for_connection_auth(&resp) {
            if !pinned {
                tracing::debug!(upstream = %self.name, server = %addr, "NTLM/Negotiate challenge: pinning the upstream connection to the client connection");
            }
            affinity.put(Pinned {
                upstream: self.name.clone(),
                server: server.clone(),
                sender,
                _counted: PinnedCount::new(&self.pinned),
            });
            return (resp, addr, None);
        }
        let closing = resp
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if closing || sender.is_closed() {
            return (resp, addr, None);
        }
        let back = PoolReturn {
            server: server.clone(),
            sender,
        };
        if resp.body().is_end_stream() {
            back.release();
            return (resp, addr, None);
        }
        (resp, addr, Some(back))
    }

    /// A TCP connection to `first`, or, if it cannot be reached, to the
    /// other servers in turn (as nginx's `proxy_next_upstream error`): a
    /// request that was never sent is safe to send elsewhere.
    async fn dial(&self, first: Arc<Server>) -> Result<(Arc<Server>, TcpStream), UpstreamError> {
        let mut server = first;
        let mut tried = 0;
        loop {
            let timeout = self.timeouts.upstream_connect;
            let reason =
                match tokio::time::timeout(timeout, TcpStream::connect(server.addr.as_str())).await
                {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        server.up.set(1);
                        return Ok((server, stream));
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no connection within {timeout:?}"),
                };
            server.up.set(0);
            tried += 1;
            let error = UpstreamError::Connect {
                server: server.addr.clone(),
                reason,
            };
            if tried >= self.servers.len() {
                return Err(error);
            }
            tracing::warn!(upstream = %self.name, error = %error, "server unreachable; trying the next one");
            server = self.pick();
        }
    }

    /// A new HTTP/1.1 connection (see [`Upstream::dial`] for failover).
    async fn connect(
        &self,
        first: Arc<Server>,
    ) -> Result<(Arc<Server>, SendRequest<RequestBody>), UpstreamError> {
        let (server, stream) = self.dial(first).await?;
        let (sender, conn) = http1::Builder::new()
            .preserve_header_case(self.preserve_header_case)
            .title_case_headers(!self.preserve_header_case)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(&server, &e))?;
        let addr = server.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok((server, sender))
    }

    /// A raw TCP connection to the next reachable server (passthrough).
    pub async fn connect_raw(&self) -> Result<(String, TcpStream), UpstreamError> {
        let (server, stream) = self.dial(self.pick()).await?;
        Ok((server.addr.clone(), stream))
    }

    /// Closes idle connections older than `upstream_idle`.
    pub fn prune_idle(&self) {
        for s in &self.servers {
            s.prune(self.timeouts.upstream_idle);
        }
    }
}

impl Server {
    /// The most recently used live idle connection, if any.
    fn checkout(&self, max_idle: Duration) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop_back() {
            if c.since.elapsed() < max_idle && !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        // hyper may not report the connection ready yet (it finishes the
        // previous exchange on its next turn); a request sent before then is
        // queued by hyper, and handed back unsent if the connection closes.
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE_PER_SERVER {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    fn prune(&self, max_idle: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| c.since.elapsed() < max_idle && !c.sender.is_closed());
    }
}

fn protocol(server: &Server, e: &hyper::Error) -> UpstreamError {
    UpstreamError::Protocol {
        server: server.addr.clone(),
        reason: e.to_string(),
    }
}

/// A 401/407 whose challenge is NTLM or Negotiate: these authenticate the
/// TCP connection, not the request, so the connection must stay with the
/// client from now on.
fn asks_for_connection_auth(resp: &Response<Incoming>) -> bool {
    let header = match resp.status().as_u16() {
        401 => http::header::WWW_AUTHENTICATE,
        407 => http::header::PROXY_AUTHENTICATE,
        _ => return false,
    };
    resp.headers().get_all(header).iter().any(|v| {
        let v = v.as_bytes();
        let scheme = v.split(|b| *b == b' ' || *b == b',').next().unwrap_or(&[]);
        scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
    })
}

/// A pooled connection on its way back: released into the pool when the
/// response body it carries has been read to its end. Dropped unreleased (the
/// client went away mid-body), it closes the connection, which still has
/// unread response bytes.
pub struct PoolReturn {
    server: Arc<Server>,
    sender: SendRequest<RequestBody>,
}

impl PoolReturn {
    /// Puts the connection back into its server's pool.
    pub fn release(self) {
        if !self.sender.is_closed() {
            self.server.checkin(self.sender);
        }
    }
}

/// An upstream connection that belongs to one client connection.
struct Pinned {
    upstream: String,
    server: Arc<Server>,
    sender: SendRequest<RequestBody>,
    _counted: PinnedCount,
}

/// Counts a pinned connection in `snigate_ntlm_pinned_connections` while it
/// lives.
struct PinnedCount(Gauge);

impl PinnedCount {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for PinnedCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Upstream connections pinned to one client connection (NTLM/Negotiate
/// affinity), at most one per upstream. Dropped with the client connection,
/// which closes them: they never return to the shared pool.
#[derive(Default)]
pub struct Affinity {
    pinned: Mutex<Vec<Pinned>>,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity").finish_non_exhaustive()
    }
}

impl Affinity {
    fn take(&self, upstream: &str) -> Option<Pinned> {
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        let at = pinned.iter().position(|p| p.upstream == upstream)?;
        Some(pinned.swap_remove(at))
    }

    fn put(&self, conn: Pinned) {
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        pinned.retain(|p| p.upstream != conn.upstream);
        pinned.push(conn);
    }

    /// How many upstream connections are pinned to this client connection.
    pub fn len(&self) -> usize {
        self.pinned.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A copy of a request that may be sent again: idempotent method, no body.
fn replayable(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut again = Request::new(RequestBody::empty());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    Some(again)
}
