//! In-process backends (echo and misbehaving ones) and the bodies tests
//! stream through the proxy: generated patterns and channel-fed bodies.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::hex;

/// Body type of backend responses and client requests.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

/// An in-process HTTP/1.1 backend that echoes what it saw as JSON.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

/// Starts an echo backend named `name`.
///
/// Every request gets `200` with `x-backend: NAME` and a JSON body:
/// `backend, method, path, version, host, headers{name: [values]}, body_len,
/// body_sha256`. `GET /download/N` instead streams N bytes of [`pattern`].
pub async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (n, r, c) = (name.to_string(), requests.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (name, requests) = (n.clone(), r.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let name = name.clone();
                    requests.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(echo(&name, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        requests,
        connections,
    }
}

async fn echo(name: &str, req: Request<Incoming>) -> Response<TestBody> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if let Some(n) = path
        .strip_prefix("/download/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return Response::builder()
            .header("x-backend", name)
            .header("content-length", n.to_string())
            .body(PatternBody::new(n, None).boxed())
            .unwrap();
    }
    if path.starts_with("/hop-response") {
        // Hop-by-hop headers in a response, which the proxy must not pass on.
        return Response::builder()
            .header("x-backend", name)
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
            .body(full("hop"))
            .unwrap();
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get("host")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let (len, sha) = match try_hash_body(req.into_body()).await {
        Ok(r) => r,
        // The proxy gave up on the request half way; nobody reads this.
        Err(e) => {
            return Response::builder()
                .status(400)
                .body(full(format!("body failed: {e}")))
                .unwrap()
        }
    };
    let doc = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "version": version,
        "host": host,
        "headers": headers,
        "body_len": len,
        "body_sha256": sha,
    });
    Response::builder()
        .header("x-backend", name)
        .header("content-type", "application/json")
        .body(full(doc.to_string()))
        .unwrap()
}

/// A backend where `GET /stream` answers with a body the test feeds
/// through the sender it receives; anything else gets "hello".
pub async fn streaming_backend() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<tokio::sync::mpsc::Sender<Bytes>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body: TestBody = if req.uri().path() == "/stream" {
                            let (feed, body) = ChannelBody::new();
                            let _ = tx.send(feed);
                            body.boxed()
                        } else {
                            full("hello")
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// Reads a body to its end, hashing it; never holds more than one frame.
/// The length and the hash, or the body's error.
pub async fn try_hash_body<B>(mut body: B) -> Result<(u64, String), String>
where
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{e:?}"))?;
        if let Ok(d) = frame.into_data() {
            len += d.remaining_len() as u64;
            hasher.update(d.chunk_bytes());
        }
    }
    Ok((len, hex(&hasher.finalize())))
}

/// Access to frame data without naming `bytes::Buf` at every call site.
pub trait DataBytes {
    fn remaining_len(&self) -> usize;
    fn chunk_bytes(&self) -> &[u8];
}

impl<T: bytes::Buf> DataBytes for T {
    fn remaining_len(&self) -> usize {
        self.remaining()
    }
    fn chunk_bytes(&self) -> &[u8] {
        self.chunk()
    }
}

/// A raw-socket backend: answers one request per connection with
/// `Connection: keep-alive`, then closes the socket anyway (a backend whose
/// keep-alive timer fired). Counts connections.
pub async fn close_after_one_backend(name: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (name, counter) = (name.to_string(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = format!("{{\"backend\":\"{name}\",\"connection\":{n}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.flush().await;
                // Dropping the socket closes it: the proxy holds a dead pooled connection.
            });
        }
    });
    (addr, conns)
}

/// What [`answer_once_backend`] does when a connection is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReuse {
    /// Close the connection as the next request arrives, without answering:
    /// its keep-alive timer fired just as the proxy reused the connection.
    Close,
    /// Read the next request and never answer it.
    Hang,
}

/// A raw-socket backend that answers the first request on a connection with
/// `Connection: keep-alive`, keeps the socket open, and then does `on_reuse`.
/// Counts connections.
pub async fn answer_once_backend(name: &str, on_reuse: OnReuse) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (name, counter) = (name.to_string(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = format!("{{\"backend\":\"{name}\",\"connection\":{n}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                match on_reuse {
                    OnReuse::Close => {
                        // Wait for the first byte of the next request, then
                        // drop the connection without reading or answering it.
                        let mut one = [0u8; 1];
                        let _ = s.peek(&mut one).await;
                    }
                    OnReuse::Hang => while let Ok(1..) = s.read(&mut chunk).await {},
                }
            });
        }
    });
    (addr, conns)
}

/// A backend that accepts connections, reads whatever comes, and never answers.
pub async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Streamed pattern bodies
// ---------------------------------------------------------------------------

/// Size of one generated chunk.
pub const CHUNK: usize = 64 * 1024;

fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Chunk `index` of the pattern: a fixed pseudo-random block stamped with
/// its index, so lost, duplicated or reordered chunks change the hash.
pub fn pattern_chunk(index: u64, len: usize) -> Bytes {
    let mut b = BytesMut::from(&block()[..len]);
    let stamp = index.to_le_bytes();
    let n = stamp.len().min(len);
    b[..n].copy_from_slice(&stamp[..n]);
    b.freeze()
}

/// A body of `total` pattern bytes generated chunk by chunk, never held
/// whole; optionally hashing what it yields.
pub struct PatternBody {
    total: u64,
    sent: u64,
    index: u64,
    hasher: Option<Arc<Mutex<Sha256>>>,
}

impl PatternBody {
    pub fn new(total: u64, hasher: Option<Arc<Mutex<Sha256>>>) -> Self {
        Self {
            total,
            sent: 0,
            index: 0,
            hasher,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - self.sent).min(CHUNK as u64) as usize;
        let chunk = pattern_chunk(self.index, len);
        if let Some(h) = &self.hasher {
            h.lock().unwrap().update(&chunk);
        }
        self.sent += len as u64;
        self.index += 1;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

/// A body fed chunk by chunk through a channel (a client uploading slowly).
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// The body, and the sender that feeds it; dropping the sender ends it.
    pub fn new() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}
