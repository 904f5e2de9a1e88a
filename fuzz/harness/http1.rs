//! `http1`: bytes a client writes to the proxy's HTTP/1 server. One proxy
//! (`snigate::server::Proxy`, an `http` listener on loopback) and a small
//! hyper backend run for the whole process in their own tokio runtime. Each
//! input is written to a fresh connection to the proxy and the answer read
//! until the proxy closes or goes quiet, then the write side is closed and
//! the rest read (see [`exchange`]; every step has a deadline). Nothing may panic (a panic in any of the proxy's tasks fails
//! the input), the backend must never see a request with two Host headers
//! or a Host other than the one it was routed by (the design's "one request
//! has one host", see [`host_violation`]), and every [`ALIVE_EVERY`]
//! inputs the proxy must still answer a normal request. All traffic stays
//! on 127.0.0.1. (Under libFuzzer a panic aborts the process at once; in
//! the replay test, panics on the fixture's runtime threads are counted.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use snigate::config::Settings;
use snigate::route::normalize_host;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// How often (in inputs) the proxy must prove it still serves.
pub const ALIVE_EVERY: usize = 64;
/// Each step of one input's exchange: write it, read the answer.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(3);
/// How long the proxy may be silent before an answer counts as complete
/// (the backend is on loopback and answers at once).
const QUIET: Duration = Duration::from_millis(30);
/// How long the first byte of the answer to a complete request head may
/// take (see [`exchange`]).
const FIRST_BYTE: Duration = Duration::from_secs(1);
/// The normal request that shows the proxy is alive.
const ALIVE_LIMIT: Duration = Duration::from_secs(10);
/// The name of the fixture's runtime threads (the panic hook counts panics
/// on them).
const THREAD_NAME: &str = "snigate-fuzz-http1";

/// Panics on the fixture's runtime threads (the proxy's and the backend's
/// tasks), which tokio would otherwise catch.
static TASK_PANICS: AtomicUsize = AtomicUsize::new(0);

/// The runtime, the proxy and the backend.
pub struct Fixture {
    runtime: Runtime,
    proxy: Option<Proxy>,
    addr: SocketAddr,
    /// What the backend saw that it must not have.
    violations: Arc<Mutex<Vec<String>>>,
    inputs: AtomicUsize,
}

impl Fixture {
    pub fn new() -> Fixture {
        count_task_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (proxy, addr) = runtime.block_on(async {
            // A write to a connection the peer has closed must be an error,
            // not SIGPIPE: the Rust runtime ignores that signal before main,
            // but libFuzzer's main does not. A tokio handler stays installed
            // for the life of the process.
            let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::pipe());
            start(violations.clone()).await
        });
        Fixture {
            runtime,
            proxy: Some(proxy),
            addr,
            violations,
            inputs: AtomicUsize::new(0),
        }
    }

    pub fn run(&self, data: &[u8]) {
        let n = self.inputs.fetch_add(1, Ordering::SeqCst);
        self.runtime.block_on(exchange(self.addr, data));
        self.check();
        if n % ALIVE_EVERY == ALIVE_EVERY - 1 {
            self.alive();
        }
    }

    /// The proxy answers a normal request with the backend's 200.
    pub fn alive(&self) {
        let answer = self.runtime.block_on(alive(self.addr));
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "the proxy no longer serves: {:?}",
            String::from_utf8_lossy(&answer)
        );
        self.check();
    }

    /// Fails on what went wrong since the last check, then forgets it, so
    /// that the next input starts clean.
    fn check(&self) {
        let panics = TASK_PANICS.swap(0, Ordering::SeqCst);
        let violations = std::mem::take(&mut *self.violations.lock().expect("violations"));
        assert_eq!(panics, 0, "a task of the proxy panicked");
        assert!(violations.is_empty(), "{violations:?}");
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            self.runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), proxy.shutdown()).await;
            });
        }
    }
}

pub fn fuzz(data: &[u8]) {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new).run(data);
}

/// Counts panics on the fixture's threads, then panics as before (under
/// libFuzzer that aborts the process, a crash).
fn count_task_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(THREAD_NAME) {
                TASK_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// The backend, then the proxy in front of it.
async fn start(violations: Arc<Mutex<Vec<String>>>) -> (Proxy, SocketAddr) {
    let backend = backend(violations).await;
    // A port nothing listens on: requests routed there get 502.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let toml = format!(
        r#"
[log]
access_log = "/dev/null"

[timeouts]
client_idle = "1s"
client_header = "1s"
upstream_connect = "1s"
upstream_response = "2s"
shutdown_grace = "1s"

[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
mode = "http"
default_upstream = "be"

[[route]]
hosts = ["a.test", "*.w.test"]
upstream = "be"

[[route]]
hosts = ["dead.test"]
upstream = "dead"

[[upstream]]
name = "be"
servers = ["{backend}"]

[[upstream]]
name = "dead"
servers = ["{dead}"]
"#
    );
    // Nothing in it is relative: the path only names it in errors.
    let settings = Settings::parse(std::path::Path::new("http1.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(settings)
        .await
        .unwrap_or_else(|e| panic!("the proxy did not start: {e}"));
    let addr = proxy.addr("main").expect("listener main");
    (proxy, addr)
}

/// What no request reaching the backend may be (DESIGN.md, "one request has
/// one host"): a request with two Host headers, or one whose Host is not
/// the host the proxy routed it by (which it writes as X-Forwarded-Host:
/// the request target's authority when there is one, else the Host).
/// `SNIGATE_FUZZ_HOST_CHECKS=off` turns this off, to fuzz past a known
/// violation.
fn host_violation<B>(req: &Request<B>) -> Option<String> {
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var("SNIGATE_FUZZ_HOST_CHECKS").as_deref() != Ok("off")) {
        return None;
    }
    let hosts: Vec<_> = req.headers().get_all(hyper::header::HOST).iter().collect();
    if hosts.len() > 1 {
        return Some(format!(
            "the backend got {} {} with {} Host headers: {hosts:?}",
            req.method(),
            req.uri(),
            hosts.len()
        ));
    }
    let normalized = |v: Option<&hyper::header::HeaderValue>| normalize_host(v?.to_str().ok()?);
    let host = normalized(hosts.first().copied());
    let routed = normalized(req.headers().get("x-forwarded-host"));
    match (host, routed) {
        (Some(host), Some(routed)) if host != routed => Some(format!(
            "the backend got {} {} with Host {host:?}, routed by {routed:?}",
            req.method(),
            req.uri()
        )),
        _ => None,
    }
}

/// A hyper HTTP/1 backend: answers 200 to every request at once, and
/// reads its body meanwhile.
async fn backend(violations: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let violations = violations.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let violations = violations.clone();
                    async move {
                        if let Some(v) = host_violation(&req) {
                            violations.lock().expect("violations").push(v);
                        }
                        // Answer at once; the body is read meanwhile.
                        let body = req.into_body();
                        tokio::spawn(async move {
                            let _ = body.collect().await;
                        });
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A connection to the proxy, reset at close rather than left in TIME_WAIT
/// (thousands are opened a second).
async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = tokio::time::timeout(EXCHANGE_LIMIT, TcpStream::connect(addr))
        .await
        .expect("the proxy accepts connections in time")
        .expect("connect to the proxy");
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    stream
}

/// Writes `data`, reads the answer until the proxy closes or has been quiet
/// for [`QUIET`], then closes the write side and reads until the proxy
/// closes (each step within [`EXCHANGE_LIMIT`]). The write side stays open
/// while the proxy answers: hyper drops a request whose client half-closed
/// before its response, and what reached the backend would then depend on
/// timing. For the same reason, when `data` holds a complete request head
/// (a blank line), the first byte of the answer may take up to
/// [`FIRST_BYTE`]: the proxy answers such a request (the backend answers at
/// once), and by then the backend has seen what it was sent.
async fn exchange(addr: SocketAddr, data: &[u8]) {
    let mut stream = connect(addr).await;
    // The proxy may close first (a malformed head): not a failure.
    let _ = tokio::time::timeout(EXCHANGE_LIMIT, stream.write_all(data)).await;
    let head = data.windows(4).any(|w| w == b"\r\n\r\n") || data.windows(2).any(|w| w == b"\n\n");
    let mut wait = if head { FIRST_BYTE } else { QUIET };
    let mut buf = vec![0u8; 16 * 1024];
    let quiet = async {
        loop {
            match tokio::time::timeout(wait, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => wait = QUIET,
            }
        }
    };
    let closed = tokio::time::timeout(EXCHANGE_LIMIT, quiet)
        .await
        .unwrap_or(false);
    if closed {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(EXCHANGE_LIMIT, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The proxy's answer to a normal request.
async fn alive(addr: SocketAddr) -> Vec<u8> {
    let mut stream = connect(addr).await;
    let mut answer = Vec::new();
    let request = b"GET /alive HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(ALIVE_LIMIT, async {
        stream.write_all(request).await?;
        stream.read_to_end(&mut answer).await
    })
    .await;
    answer
}
