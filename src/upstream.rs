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
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::config::{Timeouts, UpstreamSettings};

/// Idle connections kept per server; more are closed.
const MAX_IDLE_PER_SERVER: usize = 512;
/// A request sent on a connection idle this long is copied first, so it can
/// be sent again if the backend had just closed that connection.
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Why an upstream request failed, and so what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("{server} sent no response head within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("{server} failed: {reason}")]
    Protocol { server: String, reason: String },
}

impl UpstreamError {
    /// The status snigate answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The server it concerns.
    pub fn server(&self) -> &str {
        match self {
            UpstreamError::Connect { server, .. }
            | UpstreamError::Timeout { server, .. }
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
}

/// A named group of servers (`[[upstream]]`).
pub struct Upstream {
    pub name: String,
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    timeouts: Timeouts,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

impl Upstream {
    /// An upstream from its settings.
    pub fn new(settings: &UpstreamSettings, timeouts: Timeouts) -> Self {
        Self {
            name: settings.name.clone(),
            servers: settings
                .servers
                .iter()
                .map(|addr| {
                    Arc::new(Server {
                        addr: addr.clone(),
                        idle: Mutex::new(VecDeque::new()),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            timeouts,
        }
    }

    /// Sends a request to the next server (round-robin) and returns the
    /// response head, with the server that answered.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, String), UpstreamError> {
        let server = self.pick();
        let timeout = self.timeouts.upstream_response;
        // Each pass either sends on a pooled connection or, at the end, on a
        // fresh one. A request the pool could not send comes back and tries
        // the next connection; an idempotent request without a body that died
        // on a reused connection is rebuilt and tried once on a fresh one.
        loop {
            let Some((mut sender, idle_for)) = server.checkout(self.timeouts.upstream_idle) else {
                break;
            };
            // Only a connection that sat idle can have been closed by the
            // backend's keep-alive timer under our feet; copying the request
            // for every hot connection would cost more than it saves.
            let replay = if idle_for >= REPLAY_AFTER_IDLE {
                replayable(&req)
            } else {
                None
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.finish(&server, sender, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(server = %server.addr, error = %e.error(), "pooled connection unusable; retrying");
                        req = unsent;
                    }
                    None => match replay {
                        Some(again) => {
                            tracing::debug!(server = %server.addr, error = %e.error(), "reused connection failed; retrying idempotent request");
                            req = again;
                            break;
                        }
                        None => {
                            return Err(UpstreamError::Protocol {
                                server: server.addr.clone(),
                                reason: e.error().to_string(),
                            })
                        }
                    },
                },
            }
        }
        let mut sender = self.connect(&server).await?;
        let sent = tokio::time::timeout(timeout, sender.send_request(req)).await;
        match sent {
            Err(_) => Err(UpstreamError::Timeout {
                server: server.addr.clone(),
                timeout,
            }),
            Ok(Err(e)) => Err(UpstreamError::Protocol {
                server: server.addr.clone(),
                reason: e.to_string(),
            }),
            Ok(Ok(resp)) => Ok(self.finish(&server, sender, resp)),
        }
    }

    fn pick(&self) -> Arc<Server> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len().max(1);
        self.servers[i].clone()
    }

    /// Puts the connection back in the pool once the response body has been
    /// read to its end (hyper reports the connection ready again then).
    fn finish(
        &self,
        server: &Arc<Server>,
        mut sender: SendRequest<RequestBody>,
        resp: Response<Incoming>,
    ) -> (Response<Incoming>, String) {
        let addr = server.addr.clone();
        if !sender.is_closed() {
            let server = server.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    server.checkin(sender);
                }
            });
        }
        (resp, addr)
    }

    async fn connect(&self, server: &Server) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let fail = |reason: String| UpstreamError::Connect {
            server: server.addr.clone(),
            reason,
        };
        let connect = TcpStream::connect(server.addr.as_str());
        let stream = match tokio::time::timeout(self.timeouts.upstream_connect, connect).await {
            Err(_) => {
                return Err(fail(format!(
                    "no connection within {:?}",
                    self.timeouts.upstream_connect
                )))
            }
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let addr = server.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A raw TCP connection to the next server (passthrough).
    pub async fn connect_raw(&self, timeout: Duration) -> Result<TcpStream, UpstreamError> {
        let server = self.pick();
        let fail = |reason: String| UpstreamError::Connect {
            server: server.addr.clone(),
            reason,
        };
        match tokio::time::timeout(timeout, TcpStream::connect(server.addr.as_str())).await {
            Err(_) => Err(fail(format!("no connection within {timeout:?}"))),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
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
    fn checkout(&self, max_idle: Duration) -> Option<(SendRequest<RequestBody>, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop_back() {
            let idle_for = c.since.elapsed();
            if idle_for < max_idle && c.sender.is_ready() {
                return Some((c.sender, idle_for));
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
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

/// A copy of a request that may be sent again: idempotent method, no body.
fn replayable(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    use http_body::Body;
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
