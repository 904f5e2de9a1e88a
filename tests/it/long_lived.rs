//! Requests that are long or odd, as Exchange and IIS farms send them:
//! Outlook Anywhere's RPC_IN_DATA body streamed slowly, `Expect:
//! 100-continue`, WebSocket through `Upgrade`, trailers; and the client
//! timers and limits that protect the proxy from slow or oversized heads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::client::TlsStream;

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
}

impl Farm {
    async fn tls(&self) -> TlsStream<tokio::net::TcpStream> {
        tls_connect(
            self.proxy.addr("main").unwrap(),
            &self.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap()
        .stream
    }
}

/// Listener "main" (a.test) to `backend`, with `extra` TOML on top.
async fn farm(backend: SocketAddr, extra: &str) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let toml = format!(
        "{extra}\n{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"a\"\n\
         default_upstream = \"be\"\n\n[[upstream]]\nname = \"be\"\nservers = [\"{backend}\"]\n",
        cert_toml("a", &a),
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    Farm {
        _dir: dir,
        pki,
        proxy,
    }
}

/// Reads an HTTP/1.1 response head (up to the blank line) off a raw stream.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read head");
        assert!(
            n == 1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A backend that answers an `Upgrade: websocket` request with 101 and then
/// echoes every byte; anything else gets 400.
async fn websocket_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                    let wants = req
                        .headers()
                        .get("upgrade")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
                        && req.headers().contains_key("sec-websocket-key");
                    if !wants {
                        return Ok::<_, Infallible>(
                            Response::builder().status(400).body(full("")).unwrap(),
                        );
                    }
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(up) = on.await else { return };
                        let mut io = TokioIo::new(up);
                        let mut buf = [0u8; 4096];
                        loop {
                            match io.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                    Ok(Response::builder()
                        .status(101)
                        .header("upgrade", "websocket")
                        .header("connection", "Upgrade")
                        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                        .body(full(""))
                        .unwrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    bounded(async {
        let be = websocket_echo_backend().await;
        // Short client timers: the tunnel must not be subject to them.
        let f = farm(
            be,
            "[timeouts]\nclient_header = \"200ms\"\nclient_idle = \"5s\"\n",
        )
        .await;
        let mut s = f.tls().await;
        s.write_all(
            b"GET /chat HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: websocket"), "{head}");
        assert!(lower.contains("connection: upgrade"), "{head}");
        assert!(
            lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        for round in 0..3 {
            let msg = format!("frame {round} \u{1f600}");
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes());
            // Quiet for longer than client_header: a tunnel is not a head.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_an_interim_response_before_the_body() {
    bounded(async {
        let be = backend("be").await;
        let f = farm(be.addr, "").await;
        let mut s = f.tls().await;
        let body = b"the body sent only after 100 Continue";
        s.write_all(
            format!(
                "PUT /doc.txt HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let interim = read_head(&mut s).await;
        assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
        s.write_all(body).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
            .expect("content-length");
        let mut echo = vec![0u8; len];
        s.read_exact(&mut echo).await.unwrap();
        let echo: serde_json::Value = serde_json::from_slice(&echo).unwrap();
        assert_eq!(echo["body_len"], body.len());
        assert_eq!(echo["headers"]["expect"][0], "100-continue");
    })
    .await
}

/// A backend that reads the request (with its trailers) and answers a
/// chunked body with a `x-checksum` trailer; the request's trailers are
/// echoed in the response header `x-request-trailers`.
async fn trailer_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let collected = req.into_body().collect().await.unwrap();
                    let seen = collected
                        .trailers()
                        .map(|t| format!("{:?}", t.get("x-request-sum")))
                        .unwrap_or_else(|| "none".into());
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-checksum", "abc123".parse().unwrap());
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                        Ok(Frame::data(Bytes::from_static(b"part one, "))),
                        Ok(Frame::data(Bytes::from_static(b"part two"))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("trailer", "x-checksum")
                            .header("x-request-trailers", seen)
                            .body(StreamBody::new(futures_util::stream::iter(frames)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways() {
    bounded(async {
        let f = farm(trailer_backend().await, "").await;
        let mut s = f.tls().await;
        s.write_all(
            b"POST /t HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nTrailer: x-request-sum\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nx-request-sum: 42\r\n\r\n",
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok();
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(
            text.contains("x-request-trailers: some(\"42\")"),
            "the backend did not get the request trailer: {text}"
        );
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(
            text.contains("part one, ") && text.contains("part two"),
            "{text}"
        );
        assert!(
            text.contains("\r\nx-checksum: abc123\r\n"),
            "no response trailer: {text}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_but_an_idle_keep_alive_connection_is_not() {
    bounded(async {
        let be = backend("be").await;
        let f = farm(
            be.addr,
            "[timeouts]\nclient_header = \"300ms\"\nclient_idle = \"1500ms\"\n",
        )
        .await;
        // Slowloris: a head that never ends.
        let mut s = f.tls().await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a slow head was not cut: {closed:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "cut too early"
        );

        // Keep-alive: idle longer than client_header between requests is fine.
        let tls = tls_connect(
            f.proxy.addr("main").unwrap(),
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("a.test", "/1")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(h1.send(get("a.test", "/2")).await.status, 200);
        // ... but not longer than client_idle: the proxy closes it.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(
            h1.send_streaming(get("a.test", "/3")).await.is_err(),
            "an idle connection outlived client_idle"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431() {
    bounded(async {
        let be = backend("be").await;
        let f = farm(be.addr, "").await;
        let tls = tls_connect(
            f.proxy.addr("main").unwrap(),
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let mut req = get("a.test", "/big");
        req.headers_mut()
            .insert("x-big", "x".repeat(70 * 1024).parse().unwrap());
        let resp = h1.send_streaming(req).await.expect("a response");
        assert_eq!(resp.status(), 431);

        // A Kerberos-sized Authorization header (48 KiB) is fine.
        let tls = tls_connect(
            f.proxy.addr("main").unwrap(),
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let mut req = get("a.test", "/kerberos");
        req.headers_mut().insert(
            "authorization",
            format!("Negotiate {}", "Y".repeat(48 * 1024))
                .parse()
                .unwrap(),
        );
        assert_eq!(h1.send(req).await.status, 200);

        let tls = tls_connect(
            f.proxy.addr("main").unwrap(),
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let mut req = get("a.test", "/many");
        for i in 0..120 {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        let resp = h1.send_streaming(req).await.expect("a response");
        assert_eq!(resp.status(), 431);
    })
    .await
}

/// Outlook Anywhere: RPC_IN_DATA announces a 1 GiB body and streams it for
/// as long as the session lasts. Here 2 GiB (past every 32-bit counter) with
/// pauses longer than upstream_response: nothing may cut it, and every byte
/// must arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_in_data_two_gigabytes_stream_through_with_pauses() {
    bounded_for(Duration::from_secs(120), async {
        const SIZE: u64 = 2 << 30;
        let be = backend("be").await;
        let f = farm(be.addr, "[timeouts]\nupstream_response = \"400ms\"\n").await;
        let tls = tls_connect(
            f.proxy.addr("main").unwrap(),
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let (tx, body) = ChannelBody::new();
        let sent = Arc::new(Mutex::new(Sha256::new()));
        let feeder = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut total = 0u64;
                let mut index = 0u64;
                while total < SIZE {
                    let len = (SIZE - total).min(64 * 1024) as usize;
                    let chunk = pattern_chunk(index, len);
                    sent.lock().unwrap().update(&chunk);
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                    total += len as u64;
                    index += 1;
                    // Pauses longer than upstream_response.
                    if index.is_multiple_of(8192) {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                }
            })
        };
        let req = http::Request::builder()
            .method("RPC_IN_DATA")
            .uri("/rpc/rpcproxy.dll?mail.contoso.test:6001")
            .header("host", "a.test")
            .header("content-length", SIZE.to_string())
            .header("user-agent", "MSRPC")
            .body(body.boxed())
            .unwrap();
        let reply = h1.send(req).await;
        feeder.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["method"], "RPC_IN_DATA");
        assert_eq!(echo["body_len"], SIZE);
        let sent = hex(&sent.lock().unwrap().clone().finalize());
        assert_eq!(echo["body_sha256"], sent);
    })
    .await
}
