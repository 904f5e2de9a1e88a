//! Request smuggling, differentially (issue 15): snigate parks an idle
//! HTTP/1.1 connection between requests and starts hyper again when bytes
//! arrive (src/http/h1.rs), replaying what it read. The same bytes must
//! mean the same requests as when hyper served the connection throughout,
//! which is what snigate did before: a reference hyper server, built as
//! snigate builds its own, serves each case directly, and snigate serves it
//! in front of the same recording backend. The backend must see the same
//! requests (method, target, body) and the client the same statuses.
//!
//! Each case goes three ways, to both: all at once; in pieces of 7 bytes
//! (heads and bodies split across reads, and across parks); and after a
//! first request whose answer is awaited, so that snigate's connection is
//! parked before the case's bytes arrive. Every case ends the connection:
//! a last request asks to close, or hyper refuses the bytes.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What a server saw of one request: method, target, and the body (`None`
/// when reading it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    body: Option<Vec<u8>>,
}

/// The requests a recording server saw, in order.
#[derive(Default)]
struct Record {
    seen: Mutex<Vec<Seen>>,
    more: Notify,
}

impl Record {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Waits until `n` requests were seen (at most 5 s), then takes them.
    async fn take_when(&self, n: usize) -> Vec<Seen> {
        let wait = async {
            loop {
                let notified = self.more.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        };
        // Fewer after 5 s: the comparison shows what was missing.
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        self.take()
    }
}

/// Records the request (its whole body) and answers 200, or 400 when the
/// body failed (as snigate answers a client whose body fails).
async fn record(req: Request<Incoming>, log: Arc<Record>) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
    let status = if body.is_some() { 200 } else { 400 };
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    log.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target,
        body,
    });
    log.more.notify_waiters();
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(resp)
}

/// A recording HTTP/1.1 server on port 0, its hyper connections built as
/// snigate builds its own (src/http/h1.rs `builder`, default settings).
async fn recording_server() -> (SocketAddr, Arc<Record>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Record::default());
    let served = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = served.clone();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .max_header_size(snigate::config::DEFAULT_MAX_HEADER_BYTES)
                    .title_case_headers(true);
                let service = service_fn(move |req| record(req, log.clone()));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, log)
}

/// The requests that arrived whole. One whose body failed (a bad chunk
/// size) reaches the reference server's service, but behind snigate its
/// backend may see it cut or not at all, depending on how far the request
/// got upstream before the body failed; either way no backend gets a
/// complete request, and the client gets 400 from both.
fn whole(seen: Vec<Seen>) -> Vec<Seen> {
    seen.into_iter().filter(|s| s.body.is_some()).collect()
}

/// How a case's bytes are sent.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    AtOnce,
    Pieces,
    AfterAnsweredRequest,
}

const FIRST: &str = "GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// Sends `bytes` to `addr` as `how` says; the statuses of the answers,
/// read until the server closes.
async fn statuses(addr: SocketAddr, bytes: &[u8], how: Delivery) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    // A server that refuses the bytes closes without reading the rest:
    // writing then fails, and what it answered is still read below.
    match how {
        Delivery::AtOnce => {
            let _ = s.write_all(bytes).await;
        }
        Delivery::Pieces => {
            for piece in bytes.chunks(7) {
                if s.write_all(piece).await.is_err() {
                    break;
                }
            }
        }
        Delivery::AfterAnsweredRequest => {
            s.write_all(FIRST.as_bytes()).await.unwrap();
            // The whole answer (200, Content-Length: 2, "ok") before more.
            while !(out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"ok")) {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after the first request: {out:?}");
                out.extend_from_slice(&buf[..n]);
            }
            let _ = s.write_all(bytes).await;
        }
    }
    // A server that refuses the bytes may reset the connection rather than
    // close it: what was read until then is the answer.
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    status_lines(&out)
}

/// The status of every response in `bytes` (status lines at the start of
/// a response: after the previous one's body, which is at most "ok" or a
/// line of text here).
fn status_lines(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// The cases: (name, bytes). Each ends with a request that asks to close,
/// unless hyper refuses something before it.
fn corpus() -> Vec<(&'static str, String)> {
    let end = "GET /end HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("plain pipeline", format!("GET /a HTTP/1.1\r\nHost: a.test\r\n\r\nGET /b HTTP/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("empty lines between requests", format!("GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n\r\n\r\n{end}")),
        ("content-length body", format!("POST /cl HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("two different content-lengths", format!("POST /cl2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("two equal content-lengths", format!("POST /cl2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("content-length list", format!("POST /cll HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 5\r\n\r\nhello{end}")),
        ("content-length with a sign", format!("POST /cls HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\nhello{end}")),
        ("content-length not a number", format!("POST /cln HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5x\r\n\r\nhello{end}")),
        ("content-length and chunked", format!("POST /clte HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunked and content-length", format!("POST /tecl HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunked then identity", format!("POST /te2 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("chunked with odd case and spaces", format!("POST /tec HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunked in two fields", format!("POST /te3 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("transfer-encoding not chunked", format!("POST /tex HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunked in HTTP/1.0", format!("POST /te10 HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{end}")),
        ("space before the colon", format!("POST /sp HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("obs-fold", format!("GET /fold HTTP/1.1\r\nHost: a.test\r\nX-Folded: one\r\n two\r\n\r\n{end}")),
        ("obs-fold of transfer-encoding", format!("POST /foldte HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip,\r\n chunked\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("bare LF line ends", format!("GET /lf HTTP/1.1\nHost: a.test\n\n{end}")),
        ("bare CR in a header", format!("GET /cr HTTP/1.1\r\nHost: a.test\r\nX-A: b\rc\r\n\r\n{end}")),
        ("NUL in a header", format!("GET /nul HTTP/1.1\r\nHost: a.test\r\nX-A: b\0c\r\n\r\n{end}")),
        ("chunk size with extension", format!("POST /ext HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk size with a 0x prefix", format!("POST /hex HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk size with leading zeros", format!("POST /zeros HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk size overflowing 64 bits", format!("POST /big HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk size with a space", format!("POST /spc HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk data longer than its size", format!("POST /long HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n{end}")),
        ("chunk data without its CRLF", format!("POST /nocrlf HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n{end}")),
        ("chunk ends with bare LF", format!("POST /chlf HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{end}")),
        ("trailers", format!("POST /trail HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n{end}")),
        ("a request smuggled in a chunk", format!("POST /outer HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2c\r\nGET /inner HTTP/1.1\r\nHost: a.test\r\n\r\nxxxx\r\n0\r\n\r\n{end}")),
        ("a request smuggled in a body", format!("POST /outer HTTP/1.1\r\nHost: a.test\r\nContent-Length: 33\r\n\r\nGET /inner HTTP/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("a GET with a body", format!("GET /getbody HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello{end}")),
        ("HTTP/1.0 keep-alive", format!("GET /ten HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n{end}")),
        ("HTTP/1.0 without keep-alive", format!("GET /ten HTTP/1.0\r\nHost: a.test\r\n\r\n{end}")),
        ("unknown version", format!("GET /v HTTP/1.2\r\nHost: a.test\r\n\r\n{end}")),
        ("lowercase version", format!("GET /v http/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("two spaces in the request line", format!("GET  /two HTTP/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("tab in the request line", format!("GET\t/tab HTTP/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("a control byte in the target", format!("GET /c\x01 HTTP/1.1\r\nHost: a.test\r\n\r\n{end}")),
        ("garbage instead of a request", format!("\x16\x03\x01\x00\x05hello{end}")),
        ("a head over max_header_bytes", format!("GET /huge HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n{end}", "a".repeat(70 * 1024))),
        ("a header name with a slash", format!("GET /slash HTTP/1.1\r\nHost: a.test\r\nX/Y: z\r\n\r\n{end}")),
        ("expect 100-continue", format!("POST /expect HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello{end}")),
    ];
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_give_the_same_requests_and_answers_as_hyper_alone() {
    common::bounded_for(Duration::from_secs(120), async {
        let (reference, reference_log) = recording_server().await;
        let (backend, backend_log) = recording_server().await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[timeouts]\n\
             # Parked as soon as it is between requests: the third delivery\n\
             # sends its bytes to a connection hyper has handed back.\n\
             client_park = \"1ms\"\n\n\
             [[listener]]\nname = \"open\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             default_upstream = \"farm\"\n\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n"
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let addr = proxy.addr("open").unwrap();

        let mut differences = Vec::new();
        for (name, bytes) in corpus() {
            for how in [
                Delivery::AtOnce,
                Delivery::Pieces,
                Delivery::AfterAnsweredRequest,
            ] {
                let want_statuses = statuses(reference, bytes.as_bytes(), how).await;
                let want_seen = whole(reference_log.take());
                let got_statuses = statuses(addr, bytes.as_bytes(), how).await;
                let got_seen = whole(backend_log.take_when(want_seen.len()).await);
                if (&want_statuses, &want_seen) != (&got_statuses, &got_seen) {
                    differences.push(format!(
                        "{name} ({how:?}):\n  hyper:   {want_statuses:?} {want_seen:?}\n  \
                         snigate: {got_statuses:?} {got_seen:?}"
                    ));
                }
            }
        }
        assert!(differences.is_empty(), "{}", differences.join("\n"));
        proxy.shutdown().await;
    })
    .await
}
