//! Upstreams: servers, balancing, and requests sent over the keep-alive
//! pools of HTTP/1.1 connections (`upstream::pool`).
//!
//! A hand-written pool rather than hyper-util's legacy client because the
//! farm needs control per connection: a request that was never written is
//! retried on a fresh connection (hyper hands it back), and connection
//! affinity for NTLM/Negotiate needs to take a connection out of the pool.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{
    HealthSettings, ProxyProtocolVersion, RequestTimeouts, Timeouts, UpstreamSettings,
};
use crate::observe::metrics::Metrics;
use crate::route::{normalize_host, UpstreamId};
use crate::upstream::backend_tls::UpstreamTls;
use crate::upstream::balance::Balancer;
use crate::upstream::health::ServerHealth;
use crate::upstream::pool::IdlePools;
use crate::upstream::request_body::{RequestBody, UploadProgress};
use crate::upstream::score::ServerScore;

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
    /// The client's request body failed on its way to `server` (malformed
    /// chunked framing, a connection cut mid-body): the client's fault, not
    /// the server's.
    #[error("the client's request body failed (sending to {server}): {reason}")]
    ClientBody { server: String, reason: String },
    /// Every server is out of rotation: nothing was tried.
    #[error("upstream {upstream}: no server available (all {servers} servers are down)")]
    NoServer { upstream: String, servers: usize },
}

impl UpstreamError {
    /// The status snigate answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::ClientStalled { .. } => http::StatusCode::REQUEST_TIMEOUT,
            UpstreamError::ClientBody { .. } => http::StatusCode::BAD_REQUEST,
            UpstreamError::NoServer { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the client caused it (a stalled or malformed request body):
    /// logged against the client, not the backend.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            UpstreamError::ClientStalled { .. } | UpstreamError::ClientBody { .. }
        )
    }

    /// The server it concerns; empty when no server was tried.
    pub fn server(&self) -> &str {
        match self {
            UpstreamError::Connect { server, .. }
            | UpstreamError::Timeout { server, .. }
            | UpstreamError::ClientStalled { server, .. }
            | UpstreamError::ClientBody { server, .. }
            | UpstreamError::Protocol { server, .. } => server,
            UpstreamError::NoServer { .. } => "",
        }
    }
}

/// One backend server and its idle connections.
struct Server {
    addr: String,
    idle: IdlePools,
    /// In rotation or out (passive and active health); holds the
    /// `snigate_upstream_server_up` gauge.
    health: Arc<ServerHealth>,
    /// Requests sent to it whose response has not ended (least-conn).
    in_flight: AtomicUsize,
    /// The load it reports (`health_score_header`).
    score: ServerScore,
}

/// A named group of servers (`[[upstream]]`).
pub struct Upstream {
    pub name: String,
    servers: Vec<Arc<Server>>,
    balancer: Balancer,
    /// Active health checks (`health`), run by `server::health_checks`.
    health: Option<HealthSettings>,
    /// The response header its servers report their load in (lower-case).
    score_header: Option<String>,
    /// Rate limit of the "no server available" warning.
    no_server: NoServerLog,
    timeouts: Timeouts,
    preserve_header_case: bool,
    pinned: Gauge,
    /// Re-encryption towards the servers (`tls = { ... }`).
    tls: Option<UpstreamTls>,
    /// The PROXY protocol header its raw TLS streams start with, if any.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

impl Upstream {
    /// Whether its servers are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An upstream from its settings; `preserve_header_case` when any
    /// listener asks for exact header-name case. Its servers' up/down state
    /// and pinned connections are counted in `metrics`. With `tls` its
    /// servers are reached over TLS (built from `settings.tls` by the caller,
    /// which reports configuration errors). Idle connections are pooled
    /// per worker thread, `workers` of them ([`crate::upstream::pool`]).
    pub fn new(
        settings: &UpstreamSettings,
        timeouts: Timeouts,
        preserve_header_case: bool,
        metrics: &Metrics,
        tls: Option<UpstreamTls>,
        workers: usize,
    ) -> Self {
        Self {
            name: settings.name.clone(),
            servers: settings
                .servers
                .iter()
                .map(|addr| {
                    Arc::new(Server {
                        addr: addr.clone(),
                        idle: IdlePools::new(workers),
                        health: Arc::new(ServerHealth::new(
                            &settings.name,
                            addr,
                            settings.max_fails,
                            settings.fail_timeout,
                            settings.health.is_some(),
                            timeouts.upstream_connect,
                            metrics.server_up(&settings.name, addr),
                        )),
                        in_flight: AtomicUsize::new(0),
                        score: ServerScore::new(
                            settings.fail_timeout,
                            match settings.health_score_header {
                                Some(_) => metrics.server_health_score(&settings.name, addr),
                                None => Gauge::default(),
                            },
                        ),
                    })
                })
                .collect(),
            balancer: Balancer::new(settings.balance, &settings.servers),
            health: settings.health.clone(),
            score_header: settings.health_score_header.clone(),
            no_server: NoServerLog::default(),
            timeouts,
            preserve_header_case,
            pinned: metrics.pinned().clone(),
            tls,
            send_proxy_protocol: settings.send_proxy_protocol,
        }
    }

    /// Sends a request from `client` (its address chooses the server for
    /// ip-hash) and returns the response head with the server that
    /// answered. `affinity` is the client connection's: a connection pinned
    /// there for this upstream (NTLM/Negotiate) is used first and kept,
    /// whatever the balancer and the servers' health say, and a connection
    /// this request authenticates is pinned there. Without one (an h2
    /// client, whose streams may be anyone's) such a connection is closed
    /// after its response, never pooled.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        client: IpAddr,
        affinity: Option<&Affinity>,
        timeouts: &RequestTimeouts,
    ) -> Result<(Response<Incoming>, String, Option<PoolReturn>), UpstreamError> {
        let progress = req.body_mut().progress();
        // Decided before the request moves: once it is on a connection, that
        // connection speaks for whoever these credentials are.
        let credentials = carries_connection_credentials(req.headers());
        let bind = |resp: &Response<Incoming>| credentials || binds_connection(resp);
        if let Some(pinned) = affinity.and_then(|a| a.take(&self.name)) {
            let Pinned {
                server, mut sender, ..
            } = pinned;
            // Waits until the previous response on it has been read.
            if sender.ready().await.is_ok() {
                let counted = CountedRequest::new(&server);
                match self
                    .response(
                        sender.try_send_request(req),
                        progress.clone(),
                        &server,
                        timeouts,
                    )
                    .await
                {
                    Err(e) => return Err(e),
                    Ok(Ok(resp)) => {
                        let answered = Answered {
                            server: &server,
                            sender,
                            resp,
                            tls_name: None,
                            counted,
                        };
                        return Ok(self.finish(answered, affinity, Binding::Pinned));
                    }
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
        let Some(first) = self.pick(client, &[]) else {
            return Err(self.no_server());
        };
        let server = self.servers[first].clone();
        let mut counted = CountedRequest::new(&server);
        // TLS: pooled connections are reused only with the server name
        // (SNI) this request would open one with.
        let host = self.tls.as_ref().and_then(|_| upstream_host(&req));
        let tls_name = self.tls_name(host.as_deref(), &server)?;
        // Each pass either sends on a pooled connection or, at the end, on a
        // fresh one. A request the pool could not send comes back and tries
        // the next connection; an idempotent request without a body that died
        // on a reused connection is rebuilt and tried once on a fresh one.
        while let Some(mut sender) = server
            .idle
            .checkout(self.timeouts.upstream_idle, tls_name.as_ref())
        {
            // The backend may close a kept-alive connection just as a request
            // arrives (its keep-alive timer, a recycle): a GET or HEAD that
            // then dies unanswered is sent again, so keep a copy of it.
            let replay = replayable(&req);
            let sent = match self
                .response(
                    sender.try_send_request(req),
                    progress.clone(),
                    &server,
                    timeouts,
                )
                .await
            {
                Err(e) => return Err(e),
                Ok(sent) => sent,
            };
            match sent {
                Ok(resp) => {
                    let after = Binding::of(bind(&resp));
                    let answered = Answered {
                        server: &server,
                        sender,
                        resp,
                        tls_name,
                        counted,
                    };
                    return Ok(self.finish(answered, affinity, after));
                }
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
        let (server, mut sender, tls_name) = self
            .connect_any(first, host.as_deref(), client, &mut counted)
            .await?;
        match self
            .response(sender.send_request(req), progress, &server, timeouts)
            .await
        {
            Err(e) => Err(e),
            Ok(Err(e)) => Err(protocol(&server, &e)),
            Ok(Ok(resp)) => {
                let after = Binding::of(bind(&resp));
                let answered = Answered {
                    server: &server,
                    sender,
                    resp,
                    tls_name,
                    counted,
                };
                Ok(self.finish(answered, affinity, after))
            }
        }
    }

    /// Waits for a response head: first while the request body is still
    /// being sent (failing only if the client stalls for `client_idle`), then
    /// at most `upstream_response`, so that a slow upload is never cut. The
    /// timeouts are the request's (its route may override the global ones).
    async fn response<F: std::future::Future>(
        &self,
        send: F,
        progress: Option<Arc<UploadProgress>>,
        server: &Server,
        timeouts: &RequestTimeouts,
    ) -> Result<F::Output, UpstreamError> {
        tokio::pin!(send);
        if let Some(progress) = progress {
            let stall = timeouts.client_idle;
            let mut seen = progress.bytes.load(Ordering::Relaxed);
            let done = progress.done.notified();
            tokio::pin!(done);
            loop {
                // Biased: an answer or the end of the upload is seen before
                // the stall timer, and no random number is drawn per poll.
                tokio::select! {
                    biased;
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
        let timeout = timeouts.upstream_response;
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| UpstreamError::Timeout {
                server: server.addr.clone(),
                timeout,
            })
    }

    /// The server (its index) for a request from `client`: the balancer's
    /// choice among the servers in rotation that are not in `tried`. `None`
    /// when there is none.
    fn pick(&self, client: IpAddr, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        // A server due for a trial (passive health) is reserved by the
        // first request that picks it; one that loses that race looks again.
        for _ in 0..=self.servers.len() {
            let i = self.balancer.choose(
                client,
                |i| {
                    let s = &self.servers[i];
                    !tried.contains(&i) && s.health.usable(now) && s.score.accepts(now)
                },
                |i| self.servers[i].in_flight.load(Ordering::Relaxed),
                |i| self.servers[i].score.weight(),
            )?;
            if self.servers[i].health.claim(now) {
                return Some(i);
            }
        }
        None
    }

    /// The error for a request when no server is in rotation, with a warning
    /// at most every [`NO_SERVER_LOG_EVERY`] per upstream (the count says how
    /// many requests were refused since the last one).
    fn no_server(&self) -> UpstreamError {
        let error = UpstreamError::NoServer {
            upstream: self.name.clone(),
            servers: self.servers.len(),
        };
        self.no_server.refused.fetch_add(1, Ordering::Relaxed);
        let mut last = crate::sync::lock(&self.no_server.last);
        if last.is_none_or(|t| t.elapsed() >= NO_SERVER_LOG_EVERY) {
            *last = Some(Instant::now());
            let refused = self.no_server.refused.swap(0, Ordering::Relaxed);
            tracing::warn!(upstream = %self.name, refused, "{error}");
        }
        error
    }

    /// What the active health checker watches: every server, when the
    /// upstream (`id` in the state) has `health`.
    pub fn health_targets(&self, id: UpstreamId) -> Vec<crate::upstream::health::Target> {
        let Some(settings) = &self.health else {
            return Vec::new();
        };
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| crate::upstream::health::Target {
                upstream: id,
                server: i,
                settings: settings.clone(),
                health: s.health.clone(),
            })
            .collect()
    }

    /// One active health check of the server at `index` (see
    /// [`crate::upstream::health`]): a new connection, over TLS when the upstream has
    /// `tls` (the server name as for a request without Host, which is also
    /// the check's Host). The caller bounds it with the check's timeout.
    pub async fn health_check(
        &self,
        index: usize,
        settings: &HealthSettings,
    ) -> Result<(), String> {
        let server = &self.servers[index];
        let stream = TcpStream::connect(server.addr.as_str())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let headers = match &self.tls {
            None => {
                let host = crate::upstream::health::host_header(&server.addr);
                crate::upstream::health::check(stream, &server.addr, host, settings).await?
            }
            Some(tls) => {
                let name = tls.server_name(None, &server.addr)?;
                let host = name.to_str().into_owned();
                let stream = tls
                    .connect(name, stream, self.timeouts.upstream_connect)
                    .await?;
                crate::upstream::health::check(stream, &server.addr, &host, settings).await?
            }
        };
        self.observe_score(server, &headers);
        Ok(())
    }

    /// Notes the load score a response of `server` reports, when the
    /// upstream has `health_score_header` (see [`crate::upstream::score`]).
    fn observe_score(&self, server: &Server, headers: &http::HeaderMap) {
        let Some(header) = &self.score_header else {
            return;
        };
        if server.score.observe(headers, header) {
            tracing::warn!(upstream = %self.name, server = %server.addr, header = %header,
                "server reports it is throttling (score 10): no new requests until its score drops");
        }
    }

    /// Each server's address, its last load score and whether it takes no
    /// new request for it now (`/healthz`).
    pub fn scores(&self) -> Vec<(&str, Option<u8>, bool)> {
        let now = Instant::now();
        self.servers
            .iter()
            .map(|s| (s.addr.as_str(), s.score.last(), !s.score.accepts(now)))
            .collect()
    }

    /// Whether its servers report load scores (`health_score_header`).
    pub fn has_scores(&self) -> bool {
        self.score_header.is_some()
    }

    /// After a response head: a connection that is (or becomes) bound to a
    /// client's identity stays with that client connection (`affinity`; an
    /// h2 client has none, and the connection is closed after this response
    /// instead); any other goes back to the pool when its response body has
    /// been read to the end, through the returned [`PoolReturn`] (at once
    /// when there is no body).
    fn finish(
        &self,
        answered: Answered<'_>,
        affinity: Option<&Affinity>,
        binding: Binding,
    ) -> (Response<Incoming>, String, Option<PoolReturn>) {
        let Answered {
            server,
            sender,
            resp,
            tls_name,
            counted,
        } = answered;
        let addr = server.addr.clone();
        self.observe_score(server, resp.headers());
        if binding != Binding::Pinned && !server.health.in_rotation() {
            // A trial request (passive health) answered on a pooled connection.
            server.health.connected();
        }
        // Until the response body ends, the request counts as in flight.
        let ends = resp.body().is_end_stream();
        if binding != Binding::Shared {
            match affinity {
                Some(affinity) => {
                    if binding == Binding::Binds {
                        tracing::debug!(upstream = %self.name, server = %addr, "NTLM/Negotiate: pinning the upstream connection to the client connection");
                    }
                    affinity.put(Pinned {
                        upstream: self.name.clone(),
                        server: server.clone(),
                        sender,
                        _counted: PinnedCount::new(&self.pinned),
                    });
                }
                // No client connection to keep it for: dropping the sender
                // closes the connection once this response has been read.
                None => drop(sender),
            }
            return (resp, addr, PoolReturn::count_only(server, counted, ends));
        }
        let closing = resp
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        // A 101 hands the connection over to the upgraded protocol: it is
        // no longer HTTP and must never go back to the pool.
        let upgraded = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        if closing || upgraded || sender.is_closed() {
            return (resp, addr, PoolReturn::count_only(server, counted, ends));
        }
        let back = PoolReturn {
            server: server.clone(),
            sender: Some(sender),
            tls_name,
            _in_flight: counted,
        };
        if ends {
            back.release();
            return (resp, addr, None);
        }
        (resp, addr, Some(back))
    }

    /// A TCP connection to `server` (one attempt, within `upstream_connect`;
    /// failover and health are the callers': [`Upstream::connect_any`],
    /// [`Upstream::connect_raw`]).
    async fn dial(&self, server: Arc<Server>) -> Result<(Arc<Server>, TcpStream), UpstreamError> {
        let timeout = self.timeouts.upstream_connect;
        let reason =
            match tokio::time::timeout(timeout, TcpStream::connect(server.addr.as_str())).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((server, stream));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no connection within {timeout:?}"),
            };
        Err(UpstreamError::Connect {
            server: server.addr.clone(),
            reason,
        })
    }

    /// A new connection (see [`Upstream::connect`]) to the server at
    /// `index`, or, if it cannot be reached, to the next one the balancer
    /// chooses for `client` among those in rotation and not tried yet (as
    /// nginx's `proxy_next_upstream error`): the request was never sent, so
    /// it is safe to send elsewhere. Each failure counts for the server's
    /// passive health; `counted` moves to the server connected to.
    async fn connect_any(
        &self,
        mut index: usize,
        host: Option<&str>,
        client: IpAddr,
        counted: &mut CountedRequest,
    ) -> Result<
        (
            Arc<Server>,
            SendRequest<RequestBody>,
            Option<ServerName<'static>>,
        ),
        UpstreamError,
    > {
        let mut tried = Vec::new();
        loop {
            let server = self.servers[index].clone();
            if !Arc::ptr_eq(&counted.0, &server) {
                *counted = CountedRequest::new(&server);
            }
            match self.connect(server.clone(), host).await {
                Err(e @ UpstreamError::Connect { .. }) => {
                    index = self.failover(&server, index, e, client, &mut tried)?;
                }
                Err(e) => return Err(e),
                Ok(connected) => {
                    server.health.connected();
                    return Ok(connected);
                }
            }
        }
    }

    /// After `server` (at `index`) could not be reached with `error`: counts
    /// the failure and returns the next server to try, or the error when
    /// there is none.
    fn failover(
        &self,
        server: &Server,
        index: usize,
        error: UpstreamError,
        client: IpAddr,
        tried: &mut Vec<usize>,
    ) -> Result<usize, UpstreamError> {
        server.health.connect_failed(&error.to_string());
        tried.push(index);
        let Some(next) = self.pick(client, tried) else {
            return Err(error);
        };
        tracing::warn!(upstream = %self.name, error = %error, "server unreachable; trying the next one");
        Ok(next)
    }

    /// A new HTTP/1.1 connection to `first` (see [`Upstream::connect_any`]
    /// for failover), over TLS when the upstream has `tls`, with the server
    /// name for a request whose Host is `host`. A failed TCP connect is
    /// [`UpstreamError::Connect`]; a failed TLS handshake (the request was not
    /// sent either: 502) is [`UpstreamError::Protocol`], tried on no other
    /// server. Returns the server name used, the pool key.
    async fn connect(
        &self,
        first: Arc<Server>,
        host: Option<&str>,
    ) -> Result<
        (
            Arc<Server>,
            SendRequest<RequestBody>,
            Option<ServerName<'static>>,
        ),
        UpstreamError,
    > {
        let (server, stream) = self.dial(first).await?;
        let tls_name = self.tls_name(host, &server)?;
        let sender = match (&self.tls, &tls_name) {
            (Some(tls), Some(name)) => {
                // A failed handshake is not the server's fault alone (the SNI
                // comes from the client's Host): no failover, no passive-health
                // failure, so a client cannot take servers out of rotation.
                let stream = tls
                    .connect(name.clone(), stream, self.timeouts.upstream_connect)
                    .await
                    .map_err(|reason| UpstreamError::Protocol {
                        server: server.addr.clone(),
                        reason,
                    })?;
                self.handshake(stream, &server).await?
            }
            _ => self.handshake(stream, &server).await?,
        };
        Ok((server, sender, tls_name))
    }

    /// The HTTP/1.1 client handshake on a connected (maybe TLS) stream; the
    /// connection is driven by a task of its own.
    async fn handshake<IO>(
        &self,
        io: IO,
        server: &Server,
    ) -> Result<SendRequest<RequestBody>, UpstreamError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .preserve_header_case(self.preserve_header_case)
            .title_case_headers(!self.preserve_header_case)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| protocol(server, &e))?;
        let addr = server.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(server = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The server name (SNI) a request whose Host is `host` uses towards
    /// `server`; `None` without TLS.
    fn tls_name(
        &self,
        host: Option<&str>,
        server: &Server,
    ) -> Result<Option<ServerName<'static>>, UpstreamError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        tls.server_name(host, &server.addr)
            .map(Some)
            .map_err(|reason| UpstreamError::Protocol {
                server: server.addr.clone(),
                reason,
            })
    }

    /// A raw TCP connection for `client` to the server the balancer
    /// chooses, or the next reachable one (passthrough). Passthrough
    /// connections are not counted for least-conn.
    pub async fn connect_raw(&self, client: IpAddr) -> Result<(&str, TcpStream), UpstreamError> {
        let Some(mut index) = self.pick(client, &[]) else {
            return Err(self.no_server());
        };
        let mut tried = Vec::new();
        loop {
            let server = self.servers[index].clone();
            match self.dial(server.clone()).await {
                Ok((server, stream)) => {
                    server.health.connected();
                    return Ok((self.servers[index].addr.as_str(), stream));
                }
                Err(e) => index = self.failover(&server, index, e, client, &mut tried)?,
            }
        }
    }

    /// Closes idle connections older than `upstream_idle`.
    pub fn prune_idle(&self) {
        for s in &self.servers {
            s.idle.prune(self.timeouts.upstream_idle);
        }
    }
}

/// A failed exchange with `server`: the client's body error when that is
/// what ended it (see [`client_body_error`]), else the server's.
fn protocol(server: &Server, e: &hyper::Error) -> UpstreamError {
    match client_body_error(e) {
        Some(cause) => UpstreamError::ClientBody {
            server: server.addr.clone(),
            reason: cause.to_string(),
        },
        None => UpstreamError::Protocol {
            server: server.addr.clone(),
            reason: e.to_string(),
        },
    }
}

/// The client's error when an upstream exchange failed because the request
/// body could not be read from the client: hyper reports an error of the
/// body it was sending as a user error whose source is that body's error,
/// and a [`RequestBody`]'s errors are the client connection's
/// `hyper::Error` (bad chunked framing, the client gone mid-body).
fn client_body_error(e: &hyper::Error) -> Option<&hyper::Error> {
    if !e.is_user() {
        return None;
    }
    std::error::Error::source(e)?.downcast_ref::<hyper::Error>()
}

/// A response head and the backend connection it came on, with what goes
/// with that connection: what [`Upstream::finish`] disposes of.
struct Answered<'a> {
    server: &'a Arc<Server>,
    sender: SendRequest<RequestBody>,
    resp: Response<Incoming>,
    /// The server name (SNI) the connection was opened with (TLS only).
    tls_name: Option<ServerName<'static>>,
    counted: CountedRequest,
}

/// Whether the exchange on a backend connection ties that connection to
/// one client: see [`Upstream::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// Nothing ties it to a client: it may serve anyone (the pool).
    Shared,
    /// This exchange authenticated it (or began to): it belongs to the client.
    Binds,
    /// It was already the client's own.
    Pinned,
}

impl Binding {
    fn of(binds: bool) -> Self {
        if binds {
            Binding::Binds
        } else {
            Binding::Shared
        }
    }
}

/// Whether a header value names the NTLM or Negotiate scheme: as the
/// credentials of `Authorization` (`NTLM <token>`), or among the challenges
/// of `WWW-Authenticate` (`Negotiate, NTLM`, `Basic realm="x", NTLM`).
/// Looser than RFC 9110's grammar on purpose: a false match only keeps a
/// connection private, a missed one would share a user's identity.
fn names_connection_scheme(value: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|element| {
        let scheme = element
            .split(|b| b.is_ascii_whitespace())
            .find(|t| !t.is_empty())
            .unwrap_or(&[]);
        scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
    })
}

/// Whether a request carries NTLM or Negotiate (Kerberos) credentials in
/// `Authorization` or `Proxy-Authorization`. IIS binds these to the TCP
/// connection (Kerberos too, with `authPersistNonNTLM`, the default), even
/// when they come pre-emptively and are answered 200 at once; Basic and
/// Bearer authenticate one request and bind nothing.
pub fn carries_connection_credentials(headers: &http::HeaderMap) -> bool {
    [
        http::header::AUTHORIZATION,
        http::header::PROXY_AUTHORIZATION,
    ]
    .iter()
    .flat_map(|name| headers.get_all(name))
    .any(|v| names_connection_scheme(v.as_bytes()))
}

/// IIS's header saying the identity stays with the connection.
const PERSISTENT_AUTH: http::HeaderName = http::HeaderName::from_static("persistent-auth");

/// Whether a response, whatever its status, says its connection is (being)
/// authenticated: an NTLM or Negotiate challenge or mutual-authentication
/// token in `WWW-Authenticate`/`Proxy-Authenticate`, or `Persistent-Auth`
/// (IIS: the identity stays with the connection).
pub fn binds_connection<B>(resp: &Response<B>) -> bool {
    let headers = resp.headers();
    headers.contains_key(PERSISTENT_AUTH)
        || [
            http::header::WWW_AUTHENTICATE,
            http::header::PROXY_AUTHENTICATE,
        ]
        .iter()
        .flat_map(|name| headers.get_all(name))
        .any(|v| names_connection_scheme(v.as_bytes()))
}

/// A 401/407 whose challenge is NTLM or Negotiate: the backend asks the
/// client to authenticate the connection (the request was not carried out).
pub fn asks_for_connection_auth<B>(resp: &Response<B>) -> bool {
    let header = match resp.status().as_u16() {
        401 => http::header::WWW_AUTHENTICATE,
        407 => http::header::PROXY_AUTHENTICATE,
        _ => return false,
    };
    resp.headers()
        .get_all(header)
        .iter()
        .any(|v| names_connection_scheme(v.as_bytes()))
}

/// A pooled connection on its way back: released into the pool when the
/// response body it carries has been read to its end. Dropped unreleased (the
/// client went away mid-body), it closes the connection, which still has
/// unread response bytes.
pub struct PoolReturn {
    server: Arc<Server>,
    /// `None`: the connection does not go back (pinned, or closing); the
    /// response still counts as in flight until its body ends.
    sender: Option<SendRequest<RequestBody>>,
    tls_name: Option<ServerName<'static>>,
    _in_flight: CountedRequest,
}

impl PoolReturn {
    /// Puts the connection back into its server's pool.
    pub fn release(self) {
        if let Some(sender) = self.sender {
            if !sender.is_closed() {
                self.server.idle.checkin(sender, self.tls_name);
            }
        }
    }

    /// Only counts the response in flight until its body ends (`None` when
    /// it has no body).
    fn count_only(server: &Arc<Server>, counted: CountedRequest, ends: bool) -> Option<PoolReturn> {
        (!ends).then(|| PoolReturn {
            server: server.clone(),
            sender: None,
            tls_name: None,
            _in_flight: counted,
        })
    }
}

/// A request counted in its server's in-flight requests (least-conn) from
/// the moment the server is chosen until the guard is dropped: when its
/// response body has ended, or the request failed.
struct CountedRequest(Arc<Server>);

impl CountedRequest {
    fn new(server: &Arc<Server>) -> Self {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(server.clone())
    }
}

impl Drop for CountedRequest {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every how often at most an upstream logs that it has no server in rotation.
const NO_SERVER_LOG_EVERY: Duration = Duration::from_secs(10);

/// The last "no server available" warning of an upstream, and the requests
/// refused since.
#[derive(Default)]
struct NoServerLog {
    last: Mutex<Option<Instant>>,
    refused: AtomicU64,
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
        let mut pinned = crate::sync::lock(&self.pinned);
        let at = pinned.iter().position(|p| p.upstream == upstream)?;
        Some(pinned.swap_remove(at))
    }

    fn put(&self, conn: Pinned) {
        let mut pinned = crate::sync::lock(&self.pinned);
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

/// The host the upstream request names (its Host header as the proxy sends
/// it, or an absolute URI's authority), normalized: the default server name.
fn upstream_host(req: &Request<RequestBody>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return normalize_host(a.as_str());
    }
    normalize_host(req.headers().get(http::header::HOST)?.to_str().ok()?)
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
