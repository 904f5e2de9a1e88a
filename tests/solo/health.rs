//! Server health. Passive: a server that refuses connections `max_fails`
//! times in a row is out of rotation for `fail_timeout` (its gauge 0, no
//! request tries it), then tried again and back once it answers. Active:
//! `health = { path, interval, ... }` takes a server whose check fails out
//! and puts it back when the check passes; with every server out, requests
//! get 503 and a warning says why. ip-hash clients keep a fallback while
//! their server is out and return to it.
//!
//! In the `solo` binary, not `it`: the tests read snigate's log through a
//! global tracing subscriber (debug level, for the whole process), which
//! would capture, and slow, every other test in a shared process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

// ---------------------------------------------------------------------------
// What snigate logs (tracing), captured for the whole test binary
// ---------------------------------------------------------------------------

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing snigate's log (once per test binary).
fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("snigate=debug")
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .init();
        buf
    });
}

/// The captured log lines that contain every one of `parts`.
fn log_lines(parts: &[&str]) -> Vec<String> {
    let buf = LOGS.get().expect("capture_logs first").lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// Backends and helpers
// ---------------------------------------------------------------------------

/// Serves `x-backend: NAME` on `listener`; `GET /health` answers 200 while
/// `healthy` holds, else 500, and is counted in `checks`.
fn serve(
    name: &'static str,
    listener: TcpListener,
    healthy: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (healthy, checks) = (healthy.clone(), checks.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let status = if req.uri().path() == "/health" {
                        checks.fetch_add(1, Ordering::SeqCst);
                        if healthy.load(Ordering::SeqCst) {
                            200
                        } else {
                            500
                        }
                    } else {
                        200
                    };
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("x-backend", name)
                                .body(full(name))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A backend whose health check can be made to fail.
struct Switch {
    name: &'static str,
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
}

async fn switch_backend(name: &'static str) -> Switch {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let checks = Arc::new(AtomicUsize::new(0));
    serve(name, listener, healthy.clone(), checks.clone());
    Switch {
        name,
        addr,
        healthy,
        checks,
    }
}

/// A port that refuses connections (bound, not listening, so that nobody
/// else takes it) until [`Refusing::listen`] makes it a backend.
struct Refusing {
    addr: SocketAddr,
    socket: TcpSocket,
}

fn refusing() -> Refusing {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Refusing {
        addr: socket.local_addr().unwrap(),
        socket,
    }
}

impl Refusing {
    /// Starts answering as backend `name`.
    fn listen(self, name: &'static str) {
        let listener = self.socket.listen(64).unwrap();
        serve(
            name,
            listener,
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicUsize::new(0)),
        );
    }
}

/// `GET path` on a new connection from `source` (a loopback address).
async fn get_from(proxy: SocketAddr, source: Ipv4Addr, path: &str) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    H1::new(stream).await.send(get("farm.test", path)).await
}

/// `GET path` on a new connection.
async fn get_new(proxy: SocketAddr, path: &str) -> Reply {
    get_from(proxy, Ipv4Addr::LOCALHOST, path).await
}

fn answered(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.backend().expect("x-backend")
}

/// Polls `probe` until it returns `Some`, for at most 5 s.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `snigate_upstream_server_up` of one server.
async fn server_up(proxy: &Proxy, upstream: &str, server: SocketAddr) -> f64 {
    let reply = admin_get(proxy, "/metrics").await;
    Scrape::parse(&reply.text()).value(
        "snigate_upstream_server_up",
        &[("upstream", upstream), ("server", &server.to_string())],
    )
}

/// Waits until a server's gauge says `up`.
async fn wait_up(proxy: &Proxy, upstream: &str, server: SocketAddr, up: f64) {
    until(&format!("{upstream} {server} up = {up}"), || async move {
        (server_up(proxy, upstream, server).await == up).then_some(())
    })
    .await
}

fn upstream_toml(name: &str, servers: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[upstream]]\nname = \"{name}\"\nservers = [{}]\n{extra}\n",
        list.join(", ")
    )
}

fn proxy_toml(upstream: &str) -> String {
    format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n[log]\naccess_log = \"access.jsonl\"\n\n\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"{upstream}\"\n\n"
    )
}

// ---------------------------------------------------------------------------
// Passive
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_a_refusing_server_is_taken_out_and_not_tried() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let live = backend("live").await;
        let down = refusing();
        let toml = proxy_toml("passive-out")
            + &upstream_toml(
                "passive-out",
                &[down.addr, live.addr],
                "max_fails = 2\nfail_timeout = \"1h\"",
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        let retried = |n: usize| {
            let l = log_lines(&["upstream=passive-out", "trying the next one"]);
            assert_eq!(l.len(), n, "{l:#?}");
        };

        // Round-robin: the down server's turns fail over to the live one.
        // The first failure leaves it in rotation (1 of max_fails = 2).
        assert_eq!(answered(&get_new(addr, "/1").await), "live");
        retried(1);
        assert_eq!(server_up(&proxy, "passive-out", down.addr).await, 1.0);
        until("the second failure", || async move {
            assert_eq!(answered(&get_new(addr, "/n").await), "live");
            (log_lines(&["upstream=passive-out", "trying the next one"]).len() == 2).then_some(())
        })
        .await;
        let out = log_lines(&["upstream=passive-out", "taken out of rotation"]);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(
            out[0].contains("after 2 failed connection attempts"),
            "{}",
            out[0]
        );
        assert_eq!(server_up(&proxy, "passive-out", down.addr).await, 0.0);

        // Out: every request goes to the live server without trying it.
        for i in 0..10 {
            assert_eq!(
                answered(&get_new(addr, &format!("/after/{i}")).await),
                "live"
            );
        }
        retried(2);
        assert_eq!(server_up(&proxy, "passive-out", live.addr).await, 1.0);
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_a_server_comes_back_after_fail_timeout() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let live = backend("live").await;
        let down = refusing();
        let down_addr = down.addr;
        let toml = proxy_toml("passive-back")
            + &upstream_toml(
                "passive-back",
                &[down_addr, live.addr],
                "max_fails = 1\nfail_timeout = \"300ms\"",
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();

        // One failure takes it out (max_fails = 1).
        let p = &proxy;
        until("the down server taken out", || async move {
            assert_eq!(answered(&get_new(addr, "/").await), "live");
            (server_up(p, "passive-back", down_addr).await == 0.0).then_some(())
        })
        .await;
        // Still refusing after fail_timeout: the trial fails and it is out
        // again; requests never fail.
        until("a failed trial", || async move {
            assert_eq!(answered(&get_new(addr, "/").await), "live");
            (!log_lines(&["upstream=passive-back", "still unreachable"]).is_empty()).then_some(())
        })
        .await;
        assert_eq!(server_up(&proxy, "passive-back", down_addr).await, 0.0);

        // The server starts answering: after fail_timeout a request tries
        // it, and it is back in rotation.
        down.listen("back");
        until("requests reach the server again", || async move {
            (answered(&get_new(addr, "/").await) == "back").then_some(())
        })
        .await;
        assert_eq!(server_up(&proxy, "passive-back", down_addr).await, 1.0);
        let mut seen = BTreeMap::new();
        for i in 0..10 {
            *seen
                .entry(answered(&get_new(addr, &format!("/{i}")).await))
                .or_insert(0) += 1;
        }
        assert_eq!(
            seen,
            BTreeMap::from([("back".into(), 5), ("live".into(), 5)])
        );
        proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// Active
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_a_failing_check_takes_a_server_out_until_it_passes() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let a = switch_backend("A").await;
        let b = switch_backend("B").await;
        let toml = proxy_toml("active")
            + &upstream_toml(
                "active",
                &[a.addr, b.addr],
                "health = { path = \"/health\", interval = \"100ms\", timeout = \"1s\" }",
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        let access = dir.path().join("access.jsonl");

        // Both pass their checks; requests go to both.
        let (ca, cb) = (a.checks.clone(), b.checks.clone());
        until("checks reach both backends", || {
            let (ca, cb) = (ca.clone(), cb.clone());
            async move {
                (ca.load(Ordering::SeqCst) > 0 && cb.load(Ordering::SeqCst) > 0).then_some(())
            }
        })
        .await;
        let mut h1 = H1::new(TcpStream::connect(addr).await.unwrap()).await;
        let both: Vec<_> = [
            h1.send(get("farm.test", "/1")).await,
            h1.send(get("farm.test", "/2")).await,
        ]
        .iter()
        .map(answered)
        .collect();
        assert!(
            both.contains(&"A".into()) && both.contains(&"B".into()),
            "{both:?}"
        );

        // A's check fails: within a few intervals it is out, and every
        // request goes to B.
        a.healthy.store(false, Ordering::SeqCst);
        wait_up(&proxy, "active", a.addr, 0.0).await;
        let out = log_lines(&["upstream=active ", "health checks in a row"]);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(out[0].contains(&a.addr.to_string()), "{}", out[0]);
        for i in 0..10 {
            assert_eq!(
                answered(&h1.send(get("farm.test", &format!("/b/{i}"))).await),
                b.name
            );
        }

        // It passes again: back in rotation.
        a.healthy.store(true, Ordering::SeqCst);
        wait_up(&proxy, "active", a.addr, 1.0).await;
        let mut seen = BTreeMap::new();
        for i in 0..4 {
            *seen
                .entry(answered(
                    &h1.send(get("farm.test", &format!("/ab/{i}"))).await,
                ))
                .or_insert(0) += 1;
        }
        assert_eq!(seen, BTreeMap::from([("A".into(), 2), ("B".into(), 2)]));

        // Both fail: 503 without trying either, a warning, and the access
        // log says the same.
        a.healthy.store(false, Ordering::SeqCst);
        b.healthy.store(false, Ordering::SeqCst);
        wait_up(&proxy, "active", a.addr, 0.0).await;
        wait_up(&proxy, "active", b.addr, 0.0).await;
        let message = "upstream active: no server available (all 2 servers are down)";
        for i in 0..3 {
            let reply = h1.send(get("farm.test", &format!("/none/{i}"))).await;
            assert_eq!(reply.status, 503, "{}", reply.text());
            assert_eq!(reply.backend(), None);
        }
        let warned = log_lines(&["WARN", "snigate::upstream:", message]);
        assert_eq!(warned.len(), 1, "rate-limited: {warned:#?}");
        let line =
            wait_for_json_line(&access, Duration::from_secs(5), |v| v["path"] == "/none/0").await;
        assert_eq!(line["status"], 503);
        assert_eq!(line["upstream"], "active");
        assert_eq!(line["error"], message);

        // One comes back: served again.
        b.healthy.store(true, Ordering::SeqCst);
        wait_up(&proxy, "active", b.addr, 1.0).await;
        assert_eq!(answered(&h1.send(get("farm.test", "/again")).await), "B");
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_a_server_that_refuses_connections_is_out_and_back_when_it_answers() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let live = switch_backend("live").await;
        let down = refusing();
        let down_addr = down.addr;
        // max_fails = 0: only the checks decide.
        let toml = proxy_toml("active-conn")
            + &upstream_toml(
                "active-conn",
                &[down_addr, live.addr],
                "max_fails = 0\nhealth = { path = \"/health\", interval = \"100ms\", timeout = \"1s\" }",
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        wait_up(&proxy, "active-conn", down_addr, 0.0).await;
        let before = log_lines(&["upstream=active-conn", "trying the next one"]).len();
        for i in 0..6 {
            assert_eq!(answered(&get_new(addr, &format!("/{i}")).await), "live");
        }
        let after = log_lines(&["upstream=active-conn", "trying the next one"]).len();
        assert_eq!(before, after, "a server out of rotation is not tried");
        down.listen("back");
        wait_up(&proxy, "active-conn", down_addr, 1.0).await;
        until("requests reach the server again", || async move {
            (answered(&get_new(addr, "/").await) == "back").then_some(())
        })
        .await;
        proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// ip-hash with a server out
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_clients_keep_a_fallback_while_their_server_is_out() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let backends = [
            switch_backend("A").await,
            switch_backend("B").await,
            switch_backend("C").await,
        ];
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let toml = proxy_toml("hashed")
            + &upstream_toml(
                "hashed",
                &addrs,
                "balance = \"ip-hash\"\nhealth = { path = \"/health\", interval = \"100ms\" }",
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        let ips: Vec<Ipv4Addr> = (2..=21).map(|l| Ipv4Addr::new(127, 0, 0, l)).collect();
        let mut home = BTreeMap::new();
        for ip in &ips {
            home.insert(*ip, answered(&get_from(addr, *ip, "/").await));
        }

        // Take out the server of the first client.
        let first = ips[0];
        let gone = backends.iter().find(|b| b.name == home[&first]).unwrap();
        gone.healthy.store(false, Ordering::SeqCst);
        wait_up(&proxy, "hashed", gone.addr, 0.0).await;
        let mut fallback = BTreeMap::new();
        for round in 0..3 {
            for ip in &ips {
                let b = answered(&get_from(addr, *ip, &format!("/{round}")).await);
                if home[ip] == gone.name {
                    assert_ne!(b, gone.name, "{ip}");
                    // The same fallback on every request.
                    assert_eq!(fallback.entry(*ip).or_insert_with(|| b.clone()), &b, "{ip}");
                } else {
                    assert_eq!(b, home[ip], "{ip} moved though its server is in rotation");
                }
            }
        }

        // Back in rotation: its clients return.
        gone.healthy.store(true, Ordering::SeqCst);
        wait_up(&proxy, "hashed", gone.addr, 1.0).await;
        for ip in &ips {
            assert_eq!(
                answered(&get_from(addr, *ip, "/back").await),
                home[ip],
                "{ip}"
            );
        }
        proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// A TLS upstream: checks go over TLS too
// ---------------------------------------------------------------------------

/// An HTTPS backend presenting `leaf`; `GET /health` answers as `healthy`
/// says, and records the SNI and Host it came with.
async fn tls_switch_backend(leaf: &Leaf) -> (SocketAddr, Arc<AtomicBool>, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (healthy.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, healthy, seen) = (acceptor.clone(), h.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let mut status = 200;
                    if req.uri().path() == "/health" {
                        let host = req.headers().get("host").map(|v| v.to_str().unwrap());
                        seen.lock()
                            .unwrap()
                            .push(format!("sni={sni} host={}", host.unwrap_or("-")));
                        if !healthy.load(Ordering::SeqCst) {
                            status = 500;
                        }
                    }
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("x-backend", "tls")
                                .body(full("tls"))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, healthy, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_of_a_tls_upstream_go_over_tls() {
    capture_logs();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("backend", &["backend.test"], Key::Ecdsa);
        let (server, healthy, seen) = tls_switch_backend(&leaf).await;
        let tls = format!(
            "tls = {{ server_name = \"backend.test\", ca = {} }}",
            toml_str(&pki.ca_pem.display().to_string())
        );
        let toml = proxy_toml("tls-checked")
            + &upstream_toml(
                "tls-checked",
                &[server],
                &format!("{tls}\nhealth = {{ path = \"/health\", interval = \"100ms\" }}"),
            );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();
        let s = seen.clone();
        until("two checks", || {
            let s = s.clone();
            async move { (s.lock().unwrap().len() >= 2).then_some(()) }
        })
        .await;
        assert_eq!(
            seen.lock().unwrap()[0],
            "sni=backend.test host=backend.test"
        );
        assert_eq!(server_up(&proxy, "tls-checked", server).await, 1.0);
        assert_eq!(answered(&get_new(addr, "/").await), "tls");

        healthy.store(false, Ordering::SeqCst);
        wait_up(&proxy, "tls-checked", server, 0.0).await;
        assert_eq!(get_new(addr, "/").await.status, 503);
        healthy.store(true, Ordering::SeqCst);
        wait_up(&proxy, "tls-checked", server, 1.0).await;
        assert_eq!(answered(&get_new(addr, "/").await), "tls");
        proxy.shutdown().await;
    })
    .await
}
