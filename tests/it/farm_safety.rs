//! Safe to put in front of a farm (issue 11): requests snigate refuses or
//! cleans before any backend sees them, over raw HTTP/1.1 so that exactly
//! the bytes under test are sent.
//!
//! - a malformed chunked request body is the client's error (400), not the
//!   backend's (502);
//! - `CONNECT` gets 405; `Upgrade` passes only for the listener's
//!   `upgrade_protocols` (default `websocket`), never `h2c`;
//! - `Forwarded` and `X-Real-IP` from an untrusted client are dropped;
//! - a request target with a `#fragment` gets 400 (the parsed target has
//!   lost it, and would name another resource).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed response: status, lower-cased head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Splits what a connection returned into responses (each with a
/// Content-Length, as the echo backend and snigate's own answers have).
fn answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let text = String::from_utf8_lossy(bytes);
        let end = text
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {text:?}"));
        let head = text[..end].to_ascii_lowercase();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no content-length: {head:?}"));
        let body_start = end + 4;
        let body = String::from_utf8_lossy(&bytes[body_start..body_start + len]).into_owned();
        bytes = &bytes[body_start + len..];
        out.push(Answer { status, head, body });
    }
    out
}

/// Writes `request` (the last request of it asks to close) on a new
/// connection and returns every response to it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<Answer> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    answers(&out)
}

/// The only response to `request`.
async fn one(addr: SocketAddr, request: &str) -> Answer {
    let mut all = exchange(addr, request.as_bytes()).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// Plain listeners in front of `backend` with an access log: `open`
/// trusts nobody, `trusted` trusts 127.0.0.1, `custom` passes only the
/// `x-custom` upgrade. `extra` goes into the upstream.
async fn proxy(dir: &Path, backend: SocketAddr, extra: &str) -> snigate::server::Proxy {
    let log = dir.join("access.jsonl");
    let text = format!(
        "[log]\naccess_log = {}\n\n\
         [[listener]]\nname = \"open\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[listener]]\nname = \"trusted\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n\n\
         [[listener]]\nname = \"custom\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\
         upgrade_protocols = [\"x-custom\"]\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n{extra}",
        common::toml_str(log.to_str().unwrap())
    );
    common::start_proxy(dir, &text).await
}

fn access_log(dir: &Path) -> std::path::PathBuf {
    dir.join("access.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_400_not_a_backend_502() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        // One failure would take the server out of rotation.
        let proxy = proxy(dir.path(), backend.addr, "max_fails = 1\n").await;
        let addr = proxy.addr("open").unwrap();

        let bad = one(
            addr,
            "POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\nzz-not-hex\r\nmore\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert!(
            bad.body.contains("the client's request body failed"),
            "{bad:?}"
        );

        // The backend is still in rotation and answers.
        let good = one(
            addr,
            "GET /after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(good.status, 200, "{good:?}");
        assert_eq!(good.json()["path"], "/after");

        let lines =
            common::wait_for_json_lines(&access_log(dir.path()), 2, Duration::from_secs(5)).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l["status"] != 502), "{lines:?}");
        let refused = lines.iter().find(|l| l["path"] == "/upload").unwrap();
        assert_eq!(refused["status"], 400, "{refused}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("the client's request body failed"),
            "{refused}"
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gets_405_and_reaches_no_backend() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr, "").await;
        let addr = proxy.addr("open").unwrap();
        // The second sends what it meant for the tunnel at once: never read
        // as a request (the connection closes after the 405).
        for request in [
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nConnection: close\r\n\r\n",
            "CONNECT internal.test:22 HTTP/1.1\r\nHost: internal.test:22\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ] {
            let answer = one(addr, request).await;
            assert_eq!(answer.status, 405, "{request:?}: {answer:?}");
            assert!(answer.head.contains("connection: close"), "{answer:?}");
        }
        assert_eq!(backend.requests.load(Ordering::SeqCst), 0);
        let lines =
            common::wait_for_json_lines(&access_log(dir.path()), 2, Duration::from_secs(5)).await;
        assert!(
            lines
                .iter()
                .all(|l| l["status"] == 405 && l["method"] == "CONNECT" && l["error"].is_string()),
            "{lines:?}"
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_upgrades_reach_the_backend_and_never_h2c() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr, "").await;
        let h2c =
            "GET /h2c HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
        for listener in ["open", "custom"] {
            let answer = one(proxy.addr(listener).unwrap(), h2c).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let seen = answer.json();
            assert_eq!(seen["path"], "/h2c");
            let headers = seen["headers"].as_object().unwrap();
            for name in ["upgrade", "connection", "http2-settings"] {
                assert!(
                    !headers.contains_key(name),
                    "{listener}: {name} passed: {seen}"
                );
            }
        }

        // A protocol the listener does not list goes on as a plain request;
        // one it lists passes with Connection: upgrade.
        let custom = "GET /custom HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade, close\r\n\
                      Upgrade: websocket, x-custom\r\n\r\n";
        let seen = one(proxy.addr("custom").unwrap(), custom).await.json();
        assert_eq!(
            seen["headers"]["upgrade"],
            serde_json::json!(["x-custom"]),
            "{seen}"
        );
        assert_eq!(
            seen["headers"]["connection"],
            serde_json::json!(["upgrade"]),
            "{seen}"
        );
        let seen = one(proxy.addr("open").unwrap(), custom).await.json();
        assert_eq!(
            seen["headers"]["upgrade"],
            serde_json::json!(["websocket"]),
            "{seen}"
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_x_real_ip_only_from_trusted_proxies() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr, "").await;
        let request = "GET /who HTTP/1.1\r\nHost: a.test\r\nForwarded: for=203.0.113.9;proto=https\r\n\
                       X-Real-IP: 203.0.113.9\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n";

        let seen = one(proxy.addr("open").unwrap(), request).await.json();
        let headers = seen["headers"].as_object().unwrap();
        assert!(!headers.contains_key("forwarded"), "{seen}");
        assert!(!headers.contains_key("x-real-ip"), "{seen}");
        assert_eq!(seen["headers"]["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));

        let seen = one(proxy.addr("trusted").unwrap(), request).await.json();
        assert_eq!(
            seen["headers"]["forwarded"],
            serde_json::json!(["for=203.0.113.9;proto=https"]),
            "{seen}"
        );
        assert_eq!(seen["headers"]["x-real-ip"], serde_json::json!(["203.0.113.9"]));
        assert_eq!(
            seen["headers"]["x-forwarded-for"],
            serde_json::json!(["203.0.113.9, 127.0.0.1"])
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_in_the_target_gets_400_and_reaches_no_backend() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr, "").await;
        let addr = proxy.addr("open").unwrap();

        // litmus: without the check the backend deletes /litmus/frag/.
        for request in [
            "DELETE /litmus/frag/#ment HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            "GET /a?q=1#x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            "GET http://a.test/#top HTTP/1.1\r\nConnection: close\r\n\r\n",
        ] {
            let answer = one(addr, request).await;
            assert_eq!(answer.status, 400, "{request:?}: {answer:?}");
            assert!(answer.body.contains("fragment"), "{answer:?}");
        }
        assert_eq!(backend.requests.load(Ordering::SeqCst), 0);
        let line =
            common::wait_for_json_line(&access_log(dir.path()), Duration::from_secs(5), |l| {
                l["method"] == "DELETE"
            })
            .await;
        assert_eq!(line["status"], 400, "{line}");
        assert!(
            line["error"].as_str().unwrap().contains("fragment"),
            "{line}"
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_elsewhere_and_pipelined_requests_are_served() {
    common::bounded(async {
        let backend = common::backend("farm").await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path(), backend.addr, "").await;
        let addr = proxy.addr("open").unwrap();

        // A `#` in header values, in bodies, in trailers and a
        // percent-encoded one in the target name no fragment; a fragment
        // in the middle of a pipeline is refused, and the request after it
        // is served.
        let body = "GET /#in-body HTTP/1.1\r\n\r\n";
        let pipeline = format!(
            "GET /one%23two HTTP/1.1\r\nHost: a.test\r\nX-Note: see #3\r\nReferer: http://a.test/#x\r\n\r\n\
             PUT /put HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n{body}\
             POST /chunked HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{body}\r\n0\r\nX-Trailer: #t\r\n\r\n\
             GET /three HTTP/1.1\r\nHost: a.test\r\n\r\n\
             DELETE /coll/#frag HTTP/1.1\r\nHost: a.test\r\n\r\n\
             DELETE /coll/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            body.len(),
            body.len()
        );
        // Written in small pieces too: heads split across reads.
        for piece in [pipeline.len(), 7] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for chunk in pipeline.as_bytes().chunks(piece) {
                s.write_all(chunk).await.unwrap();
                s.flush().await.unwrap();
            }
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .expect("the proxy answers and closes")
                .unwrap();
            let all = answers(&out);
            let statuses: Vec<u16> = all.iter().map(|a| a.status).collect();
            assert_eq!(statuses, [200, 200, 200, 200, 400, 200], "{all:?}");
            let paths: Vec<Value> = [0, 1, 2, 3, 5]
                .iter()
                .map(|i| all[*i].json()["path"].clone())
                .collect();
            assert_eq!(paths, ["/one%23two", "/put", "/chunked", "/three", "/coll/"]);
            assert_eq!(all[0].json()["headers"]["x-note"], serde_json::json!(["see #3"]));
            assert_eq!(all[1].json()["body_len"], body.len());
            assert_eq!(all[2].json()["body_len"], body.len());
            assert!(all[4].body.contains("fragment"), "{:?}", all[4]);
        }
        assert_eq!(backend.requests.load(Ordering::SeqCst), 10);
        proxy.shutdown().await;
    })
    .await
}
