//! One request has one host (issue 11, item 2): the route, the 421 check,
//! the access log and the backend see the same host; two Host headers, a
//! request target or `:authority` that names another host, and a Host that
//! is not a host[:port] get 400 (RFC 9112 §3.2, RFC 9113 §8.3.1).

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{ClientOpts, Key, Pki, H2};

/// Writes `request` on a new connection and reads the answer to its end
/// (the request asks to close): status and body.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// A plain listener that routes only `a.test` (no default) and one with a
/// default, both in front of the echo backend, with an access log.
async fn proxy(dir: &std::path::Path, backend: SocketAddr) -> snigate::server::Proxy {
    let log = dir.join("access.jsonl");
    let text = format!(
        "[log]\naccess_log = {}\n\n\
         [[listener]]\nname = \"only-a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\n\
         [[listener]]\nname = \"default\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[route]]\nhosts = [\"a.test\"]\nupstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n",
        common::toml_str(log.to_str().unwrap())
    );
    common::start_proxy(dir, &text).await
}

fn echo(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_host_is_the_host_the_backend_sees() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr).await;
        let only_a = proxy.addr("only-a").unwrap();

        // The leak: routed as a.test, sent to the backend as
        // secret.internal.
        let (status, body) = raw(
            only_a,
            "GET https://a.test/ HTTP/1.1\r\nHost: secret.internal\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            backend.requests.load(std::sync::atomic::Ordering::SeqCst),
            0
        );

        // Absolute form alone, or with the same host: the target's authority.
        for request in [
            "GET http://a.test/x HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET http://a.test/x HTTP/1.1\r\nHost: A.TEST:80\r\nConnection: close\r\n\r\n",
        ] {
            let (status, body) = raw(only_a, request).await;
            assert_eq!(status, 200, "{request:?}: {body}");
            let doc = echo(&body);
            assert_eq!(doc["host"], "a.test", "{request:?}");
            assert_eq!(doc["path"], "/x");
            assert_eq!(
                doc["headers"]["x-forwarded-host"],
                serde_json::json!(["a.test"])
            );
        }
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_cannot_be_told_get_400() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr).await;
        let default = proxy.addr("default").unwrap();
        for request in [
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: secret.internal\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: secret.internal@a.test\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test/evil\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test:80x\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        ] {
            let (status, body) = raw(default, request).await;
            assert_eq!(status, 400, "{request:?}: {body}");
        }
        assert_eq!(
            backend.requests.load(std::sync::atomic::Ordering::SeqCst),
            0
        );

        // Each refusal is in the access log, blamed on the request.
        let lines = common::wait_for_json_lines(
            &dir.path().join("access.jsonl"),
            7,
            Duration::from_secs(5),
        )
        .await;
        assert!(lines.iter().all(|l| l["status"] == 400), "{lines:?}");
        assert!(lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("more than one Host"));
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_without_host_gets_the_default_and_a_host_snigate_writes() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr).await;
        let default = proxy.addr("default").unwrap();
        let (status, body) = raw(
            default,
            "GET /legacy HTTP/1.0\r\nX-Forwarded-Host: secret.internal\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let doc = echo(&body);
        let written = default.to_string();
        assert_eq!(doc["host"], written.as_str());
        assert_eq!(
            doc["headers"]["x-forwarded-host"],
            serde_json::json!([written])
        );
        // The access log names the same host.
        let line = common::wait_for_json_lines(
            &dir.path().join("access.jsonl"),
            1,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(line[0]["host"], "127.0.0.1");
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_and_host_must_agree() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("a", &["a.test", "b.test"], Key::Ecdsa);
        let text = format!(
            "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"a\"\n\n\
             [[route]]\nhosts = [\"a.test\"]\nupstream = \"farm\"\n\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{}\"]\n",
            common::cert_toml("a", &leaf),
            backend.addr
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let addr = proxy.addr("main").unwrap();
        let opts = ClientOpts::sni("a.test").alpn(&["h2"]);
        let tls = common::tls_connect(addr, &pki.ca_der, &opts).await.unwrap();
        let mut h2 = H2::new(tls.stream).await;

        let req = |host: Option<&str>| {
            let mut b = Request::builder().uri("https://a.test/p");
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(common::full("")).unwrap()
        };
        let reply = h2.send(req(Some("b.test"))).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        let reply = h2.send(req(Some("a.test"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["host"], "a.test");
        let reply = h2.send(req(None)).await;
        assert_eq!(reply.json()["host"], "a.test");
        assert_eq!(backend.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
        proxy.shutdown().await;
    })
    .await
}
