//! `[route.timeouts]` (issue 13, item 2): a route overrides
//! `upstream_response`, `upstream_read` and `client_idle` for the requests
//! it routes (ActiveSync's long poll, Outlook Anywhere's long requests),
//! while every other request keeps the short global ones.
//!
//! The global timeouts here are 400 ms and the backend pauses 1.5 s where a
//! test asks it to; the route `/long` allows 30 s. So a request on `/long`
//! rides out every pause, and the same request elsewhere is cut.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, read_response, wait_closed, ChannelBody, Ended, TestBody};

/// How long the backend (or the client) pauses: well over the global
/// 400 ms, well under the route's 30 s.
const PAUSE: Duration = Duration::from_millis(1500);

/// A backend that answers by the last segment of the path: `hold` answers
/// after [`PAUSE`]; `stall` sends its head and half its body, then the
/// rest after [`PAUSE`]; anything else reads the whole request body and
/// answers with its length.
async fn pausing_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let body: TestBody = if path.ends_with("/hold") {
                        tokio::time::sleep(PAUSE).await;
                        common::full("held")
                    } else if path.ends_with("/stall") {
                        let (tx, body) = ChannelBody::new();
                        tokio::spawn(async move {
                            let _ = tx.send(Bytes::from_static(b"hello")).await;
                            tokio::time::sleep(PAUSE).await;
                            let _ = tx.send(Bytes::from_static(b"world")).await;
                        });
                        body.boxed()
                    } else {
                        let got = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        common::full(format!("got {}", got.unwrap_or(0)))
                    };
                    let mut resp = Response::new(body);
                    if path.ends_with("/stall") {
                        resp.headers_mut()
                            .insert(http::header::CONTENT_LENGTH, 10.into());
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A plain-HTTP proxy with 400 ms global timeouts, and a route `/long`
/// that allows 30 s for each of the three.
async fn proxy(dir: &std::path::Path) -> snigate::server::Proxy {
    let backend = pausing_backend().await;
    let text = format!(
        r#"
[timeouts]
upstream_response = "400ms"
upstream_read = "400ms"
client_idle = "400ms"

[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"

[[route]]
name = "long"
hosts = ["mail.contoso.test"]
paths = ["/long"]
upstream = "farm"
buffer_request = false

[route.timeouts]
upstream_response = "30s"
upstream_read = "30s"
client_idle = "30s"

[[route]]
name = "short"
hosts = ["mail.contoso.test"]
upstream = "farm"

[[upstream]]
name = "farm"
servers = ["{backend}"]
"#
    );
    common::start_proxy(dir, &text).await
}

/// One response read off `s`: status and body, or `None` when the
/// connection ends before its end.
async fn response(s: &mut TcpStream) -> Option<(u16, String)> {
    read_response(s).await.map(|r| (r.status, r.body))
}

async fn ask(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: mail.contoso.test\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    response(&mut s).await
}

fn listener_addr(proxy: &snigate::server::Proxy) -> SocketAddr {
    proxy.addr("front").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlives_the_global_upstream_response_on_its_route_only() {
    common::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = listener_addr(&proxy);
        let (long, short) = tokio::join!(
            ask(addr, "/long/Microsoft-Server-ActiveSync/hold"),
            ask(addr, "/other/hold")
        );
        assert_eq!(long, Some((200, "held".to_string())));
        assert_eq!(short.map(|(status, _)| status), Some(504));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_in_the_response_body_is_cut_by_the_global_upstream_read_only() {
    common::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = listener_addr(&proxy);
        let (long, short) = tokio::join!(ask(addr, "/long/rpc/stall"), ask(addr, "/other/stall"));
        assert_eq!(long, Some((200, "helloworld".to_string())));
        // Cut: the connection ends before the 10 bytes announced.
        assert_eq!(short, None);
    })
    .await;
}

/// Sends a 10-byte upload in two halves with [`PAUSE`] between them.
async fn paused_upload(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: mail.contoso.test\r\nContent-Length: 10\r\n\r\nhello"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(PAUSE).await;
    // The short route may have answered 408 and closed by now.
    let _ = s.write_all(b"world").await;
    response(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_pauses_is_cut_by_the_global_client_idle_only() {
    common::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = listener_addr(&proxy);
        let (long, short) = tokio::join!(
            paused_upload(addr, "/long/rpc/rpcproxy.dll"),
            paused_upload(addr, "/other/upload")
        );
        assert_eq!(long, Some((200, "got 10".to_string())));
        assert_eq!(short.map(|(status, _)| status), Some(408));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_alive_wait_after_a_request_is_its_routes_client_idle() {
    common::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = listener_addr(&proxy);
        let request = |target: &str| {
            format!("GET {target} HTTP/1.1\r\nHost: mail.contoso.test\r\n\r\n").into_bytes()
        };

        // After a request on `/long`, the connection waits 30 s for the next.
        let mut long = TcpStream::connect(addr).await.unwrap();
        long.write_all(&request("/long/a")).await.unwrap();
        assert_eq!(response(&mut long).await.map(|r| r.0), Some(200));
        tokio::time::sleep(PAUSE).await;
        long.write_all(&request("/long/b")).await.unwrap();
        assert_eq!(response(&mut long).await.map(|r| r.0), Some(200));

        // After one on another path, the global 400 ms close it.
        let mut short = TcpStream::connect(addr).await.unwrap();
        short.write_all(&request("/other/a")).await.unwrap();
        assert_eq!(response(&mut short).await.map(|r| r.0), Some(200));
        let ended = wait_closed(&mut short, Duration::from_secs(20)).await;
        assert_eq!(ended, Some(Ended::Eof(0)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_buffer_request_true_and_a_zero_route_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snigate.toml");
    let text = r#"
[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"

[[route]]
hosts = ["mail.contoso.test"]
upstream = "farm"
buffer_request = true

[route.timeouts]
upstream_read = "0s"
upstream_connect = "1s"

[[upstream]]
name = "farm"
servers = ["127.0.0.1:9"]
"#;
    let errors = snigate::config::Settings::parse(&path, text)
        .expect_err("must be refused")
        .to_string();
    assert!(errors.contains("upstream_connect"), "{errors}");
    let text = text.replace("upstream_connect = \"1s\"\n", "");
    let errors = snigate::config::Settings::parse(&path, &text)
        .expect_err("must be refused")
        .to_string();
    assert!(
        errors.contains("buffer_request = true is not supported"),
        "{errors}"
    );
    assert!(errors.contains("\"0s\" is zero"), "{errors}");
}
