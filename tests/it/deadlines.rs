//! Every wait has a deadline (issue 11, item 3): a client that stops
//! reading a response (HTTP/1.1, or h2 with a shut flow-control window
//! while it answers pings) is cut after `client_send`, and so is its
//! backend connection; a backend that stops sending after the response
//! head is cut after `upstream_read`. Pauses shorter than either cut
//! nothing.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use crate::common::{bounded_for, ChannelBody, ClientOpts, Key, Pki, TestBody, H1};

const LIMIT: Duration = Duration::from_secs(60);
/// What the big response weighs: far more than every socket buffer between
/// backend and client can hold, so a client that does not read stalls it.
const BIG: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// What a test backend saw of its one streamed response.
#[derive(Default)]
struct Seen {
    /// Notified when the proxy dropped the backend's connection (the
    /// response body could no longer be fed).
    closed: Notify,
}

/// A backend whose every response streams chunks from `feed(sender)`: the
/// closure decides what to send and when; `seen.closed` fires when the
/// connection is gone before the feed finished.
async fn feeding_backend<F, Fut>(feed: F) -> (SocketAddr, Arc<Seen>)
where
    F: Fn(mpsc::Sender<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<mpsc::Sender<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (feed, seen) = (feed.clone(), s.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let (feed, seen) = (feed.clone(), seen.clone());
                    async move {
                        let (tx, body) = ChannelBody::new();
                        tokio::spawn(async move {
                            // The feed returns its sender when it stops
                            // without ending the body (a stalled backend).
                            if let Some(tx) = feed(tx).await {
                                tx.closed().await;
                            }
                            seen.closed.notify_one();
                        });
                        let body: TestBody = body.boxed();
                        Ok::<_, std::convert::Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Sends `total` bytes as fast as the proxy takes them; false when the
/// receiver went away first.
async fn send_all(tx: &mpsc::Sender<Bytes>, total: usize) -> bool {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    for _ in 0..total / CHUNK {
        if tx.send(chunk.clone()).await.is_err() {
            return false;
        }
    }
    true
}

/// Sends `BIG` bytes; `None` when the receiver went away first.
async fn big(tx: mpsc::Sender<Bytes>) -> Option<mpsc::Sender<Bytes>> {
    if send_all(&tx, BIG).await {
        // Sent in full: the test failed to stall the proxy; never "closed".
        std::future::pending::<()>().await;
    }
    None
}

/// What a test backend's feed returns (see [`feeding_backend`]).
type Feed =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<mpsc::Sender<Bytes>>> + Send>>;

/// Sends `total` bytes and ends the body.
fn whole(total: usize) -> impl Fn(mpsc::Sender<Bytes>) -> Feed + Clone + Send + Sync + 'static {
    move |tx| {
        Box::pin(async move {
            send_all(&tx, total).await;
            None
        })
    }
}

/// A proxy with an http listener "web" and an https listener "tls" (h2 and
/// http/1.1) in front of `backend`, an access log, and `timeouts`.
async fn proxy(dir: &Path, backend: SocketAddr, timeouts: &str) -> (snigate::server::Proxy, Pki) {
    let pki = Pki::new(dir);
    let leaf = pki.leaf("site", &["site.test"], Key::Ecdsa);
    let log = dir.join("access.jsonl");
    let text = format!(
        "[log]\naccess_log = {}\n\n[timeouts]\n{timeouts}\n\n{}\n\
         [[listener]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[listener]]\nname = \"tls\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"site\"\ndefault_upstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n",
        common::toml_str(log.to_str().unwrap()),
        common::cert_toml("site", &leaf),
    );
    (common::start_proxy(dir, &text).await, pki)
}

/// A raw connection to `addr` that has sent `request`.
async fn sent(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(request).await.unwrap();
    client
}

/// The access log once it holds `n` lines (its own thread writes it).
async fn access_lines(dir: &Path, n: usize) -> Vec<Value> {
    let lines = common::wait_for_json_lines(&dir.join("access.jsonl"), n, LIMIT).await;
    assert_eq!(lines.len(), n, "{lines:?}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_with_its_backend_after_client_send() {
    bounded_for(LIMIT, async {
        let (backend, seen) = feeding_backend(big).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, _) = proxy(dir.path(), backend, "client_send = \"1s\"").await;
        let request = b"GET /big HTTP/1.1\r\nHost: site.test\r\n\r\n";
        let mut client = sent(proxy.addr("web").unwrap(), request).await;
        let mut head = [0u8; 1024];
        let n = client.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);

        // The client reads nothing more: the backend's connection goes.
        seen.closed.notified().await;
        // And the client's: what was on its way arrives, then the end.
        let ended = common::wait_closed(&mut client, Duration::from_secs(20))
            .await
            .expect("the client connection is closed");
        let (common::Ended::Eof(got) | common::Ended::Reset(got)) = ended;
        assert!(got < BIG, "the whole response arrived: nothing was cut");
        let line = common::wait_for_json_line(&dir.path().join("access.jsonl"), LIMIT, |v| {
            v["path"] == "/big"
        })
        .await;
        assert!(
            line["error"].as_str().unwrap_or("").contains("client_send"),
            "{line}"
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_shuts_its_window_is_cut_with_its_backend_after_client_send() {
    bounded_for(LIMIT, async {
        let (backend, seen) = feeding_backend(big).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend, "client_send = \"1s\"").await;
        let opts = ClientOpts::sni("site.test").alpn(&["h2"]);
        let tls = common::tls_connect(proxy.addr("tls").unwrap(), &pki.ca_der, &opts)
            .await
            .unwrap();
        // A stream window of zero: the proxy may send the head, no data.
        // The connection task keeps answering pings.
        let (mut client, conn) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tls.stream)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get("https://site.test/big").body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);

        seen.closed.notified().await;
        // The proxy closed the connection: the client's connection task ends.
        let _ = conn.await;
        let line = common::wait_for_json_line(&dir.path().join("access.jsonl"), LIMIT, |v| {
            v["path"] == "/big"
        })
        .await;
        assert!(
            line["error"].as_str().unwrap_or("").contains("client_send"),
            "{line}"
        );
        drop(resp);
        proxy.shutdown().await;
    })
    .await;
}

/// Sends one chunk, then nothing, keeping the body open.
async fn one_chunk_then_stall(tx: mpsc::Sender<Bytes>) -> Option<mpsc::Sender<Bytes>> {
    tx.send(Bytes::from_static(b"first")).await.ok()?;
    Some(tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_sending_is_cut_after_upstream_read() {
    bounded_for(LIMIT, async {
        let (backend, seen) = feeding_backend(one_chunk_then_stall).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend, "upstream_read = \"1s\"").await;

        // HTTP/1.1: the body ends in an error (the connection is cut
        // before the chunked body's end), and the backend's connection goes.
        let tcp = TcpStream::connect(proxy.addr("web").unwrap())
            .await
            .unwrap();
        let mut h1 = H1::new(tcp).await;
        let resp = h1
            .send_streaming(common::get("site.test", "/stalled"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first");
        assert!(
            body.collect().await.is_err(),
            "a cut response must not look complete"
        );
        seen.closed.notified().await;

        // h2: the stream is reset.
        let opts = ClientOpts::sni("site.test").alpn(&["h2"]);
        let tls = common::tls_connect(proxy.addr("tls").unwrap(), &pki.ca_der, &opts)
            .await
            .unwrap();
        let mut h2 = common::H2::new(tls.stream).await;
        let resp = h2
            .send_streaming(common::get("site.test", "/stalled-h2"))
            .await
            .unwrap();
        assert!(resp.into_body().collect().await.is_err());
        seen.closed.notified().await;

        // The access log is written by its own thread: wait for the lines.
        for path in ["/stalled", "/stalled-h2"] {
            let log = dir.path().join("access.jsonl");
            let line = common::wait_for_json_line(&log, LIMIT, |v| v["path"] == path).await;
            assert!(
                line["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("upstream_read"),
                "{line}"
            );
        }
        proxy.shutdown().await;
    })
    .await;
}

/// Ten chunks 150 ms apart: slower than a buffer fill, faster than any cut.
async fn slow_but_steady(tx: mpsc::Sender<Bytes>) -> Option<mpsc::Sender<Bytes>> {
    for i in 0..10u8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(Bytes::from(vec![b'a' + i; 1000])).await.ok()?;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_shorter_than_the_deadlines_cut_nothing() {
    bounded_for(LIMIT, async {
        let (backend, _) = feeding_backend(slow_but_steady).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, _) = proxy(
            dir.path(),
            backend,
            "upstream_read = \"2s\"\nclient_send = \"2s\"",
        )
        .await;
        let tcp = TcpStream::connect(proxy.addr("web").unwrap())
            .await
            .unwrap();
        let mut h1 = H1::new(tcp).await;
        // A backend that pauses 150 ms between chunks...
        let reply = h1.send(common::get("site.test", "/steady")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), 10_000);
        assert!(access_lines(dir.path(), 1)
            .await
            .iter()
            .all(|l| l.get("error").is_none()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_reading_shorter_than_client_send_gets_everything() {
    bounded_for(LIMIT, async {
        let (backend, _) = feeding_backend(whole(16 << 20)).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, _) = proxy(dir.path(), backend, "client_send = \"2s\"").await;
        let request = b"GET /pauses HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n";
        let mut client = sent(proxy.addr("web").unwrap(), request).await;
        // Two pauses of 700 ms (more than the socket buffers hold is on
        // its way, so the proxy's writes block during each).
        let mut got = 0usize;
        let mut buf = vec![0u8; CHUNK];
        let mut paused = 0;
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
            if (paused == 0 && got > 1 << 20) || (paused == 1 && got > 8 << 20) {
                paused += 1;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        assert_eq!(paused, 2);
        assert!(got > 16 << 20, "head and all 16 MiB: {got}");
        assert!(access_lines(dir.path(), 1)
            .await
            .iter()
            .all(|l| l.get("error").is_none()));
        proxy.shutdown().await;
    })
    .await;
}

/// A client that never stops but reads slowly (640 KiB/s, a small receive
/// buffer) is not cut by a `client_send` of 1 s: the kernel has to report
/// its progress well within the limit, not once a third of a send buffer
/// of megabytes has drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_is_not_cut_by_client_send() {
    bounded_for(LIMIT, async {
        let (backend, _) = feeding_backend(whole(6 << 20)).await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, _) = proxy(dir.path(), backend, "client_send = \"1s\"").await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut client = socket.connect(proxy.addr("web").unwrap()).await.unwrap();
        client
            .write_all(b"GET /steady HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 32 << 10];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert!(got > 6 << 20, "head and all 6 MiB: {got}");
        assert!(access_lines(dir.path(), 1)
            .await
            .iter()
            .all(|l| l.get("error").is_none()));
        proxy.shutdown().await;
    })
    .await;
}
