//! Exchange and SharePoint health (issue 13, items 3 and 4).
//!
//! Per service: several upstreams list the same servers, each with its own
//! `health` path; one failing application pool takes only its own service
//! off that server, and a backend connection a client authenticated
//! through one upstream never carries another upstream's requests.
//!
//! Load scores: with `health_score_header`, servers that report a higher
//! `X-SharePointHealthScore` get fewer new requests, and a server at 10
//! none until its score drops; the scores are on `/metrics` and `/healthz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, admin_get, read_response, scrape_until, RawResponse, TestBody};

/// No score header on the responses.
const NO_SCORE: u8 = u8::MAX;

/// A farm server: answers `name` and the backend connection's client port
/// (`x-conn`), with `X-SharePointHealthScore: score` unless [`NO_SCORE`];
/// health-check paths listed in `failing` answer 503.
struct Farm {
    addr: SocketAddr,
    score: Arc<AtomicU8>,
}

async fn farm_server(name: &'static str, failing: &'static [&'static str]) -> Farm {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let score = Arc::new(AtomicU8::new(NO_SCORE));
    let shared = score.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let score = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let score = score.load(Ordering::Relaxed);
                    async move {
                        let fails = failing.contains(&req.uri().path());
                        let mut resp = Response::new(common::full(name));
                        if fails {
                            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let headers = resp.headers_mut();
                        headers.insert("x-conn", peer.port().into());
                        if score != NO_SCORE {
                            headers.insert("x-sharepointhealthscore", u16::from(score).into());
                        }
                        Ok::<Response<TestBody>, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Farm { addr, score }
}

/// Sends one request on `s` and reads its answer.
async fn exchange(s: &mut TcpStream, path: &str, extra: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: farm.contoso.test\r\n{extra}\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    read_response(s)
        .await
        .expect("connection closed before the answer's end")
}

/// Which server answers each of `n` requests to `path`, each on a
/// connection of its own.
async fn servers_for(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let a = exchange(&mut s, path, "Connection: close\r\n").await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        out.push(a.body);
    }
    out
}

fn count(of: &[String], name: &str) -> usize {
    of.iter().filter(|s| *s == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_application_pool_takes_only_its_service_off_that_server() {
    common::bounded(async {
        // Server "a" has a broken ECP application pool; OWA is fine on both.
        let a = farm_server("a", &["/ecp/healthcheck.htm"]).await;
        let b = farm_server("b", &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[admin]
bind = "127.0.0.1:0"

[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"

[[route]]
hosts = ["farm.contoso.test"]
paths = ["/owa"]
upstream = "owa"

[[route]]
hosts = ["farm.contoso.test"]
paths = ["/ecp"]
upstream = "ecp"

[[upstream]]
name = "owa"
servers = ["{a}", "{b}"]
health = {{ path = "/owa/healthcheck.htm", interval = "100ms" }}

[[upstream]]
name = "ecp"
servers = ["{a}", "{b}"]
health = {{ path = "/ecp/healthcheck.htm", interval = "100ms" }}
"#,
            a = a.addr,
            b = b.addr
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let a_addr = a.addr.to_string();
        let up = |upstream: &'static str| {
            let server = a_addr.clone();
            move |m: &common::Scrape| {
                m.value(
                    "snigate_upstream_server_up",
                    &[("upstream", upstream), ("server", &server)],
                )
            }
        };
        let (ecp_a, owa_a) = (up("ecp"), up("owa"));
        let scrape = scrape_until(&proxy, |m| ecp_a(m) == 0.0).await;
        assert_eq!(owa_a(&scrape), 1.0, "OWA on server a is healthy");

        let addr = proxy.addr("front").unwrap();
        let ecp = servers_for(addr, "/ecp/", 6).await;
        assert_eq!(count(&ecp, "b"), 6, "ECP avoids server a: {ecp:?}");
        let owa = servers_for(addr, "/owa/", 6).await;
        assert_eq!((count(&owa, "a"), count(&owa, "b")), (3, 3), "{owa:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_pinned_through_one_upstream_never_serves_another() {
    common::bounded(async {
        // EWS and MAPI on one server, as two upstreams.
        let server = farm_server("mbx1", &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"

[[route]]
hosts = ["farm.contoso.test"]
paths = ["/ews"]
upstream = "ews"

[[route]]
hosts = ["farm.contoso.test"]
paths = ["/mapi"]
upstream = "mapi"

[[upstream]]
name = "ews"
servers = ["{s}"]

[[upstream]]
name = "mapi"
servers = ["{s}"]
"#,
            s = server.addr
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let addr = proxy.addr("front").unwrap();

        // Client 1 authenticates its connection through EWS (NTLM
        // credentials pin the backend connection to it).
        let mut client = TcpStream::connect(addr).await.unwrap();
        let auth = "Authorization: NTLM TlRMTVNTUAADAAAAGAAYAEgAAAA=\r\n";
        let ews = exchange(&mut client, "/ews/exchange.asmx", auth).await;
        let pinned = ews.headers["x-conn"].clone();
        // Its MAPI request, to the same server, goes on another backend
        // connection: the EWS one speaks for this client's EWS identity only.
        let mapi = exchange(&mut client, "/mapi/emsmdb/", "").await;
        assert_eq!(mapi.body, "mbx1");
        assert_ne!(
            mapi.headers["x-conn"], pinned,
            "MAPI used the pinned EWS connection"
        );
        // Its next EWS request is on the pinned connection again.
        let again = exchange(&mut client, "/ews/exchange.asmx", "").await;
        assert_eq!(again.headers["x-conn"], pinned);

        // Another client never gets it, for either service.
        let mut other = TcpStream::connect(addr).await.unwrap();
        for path in ["/ews/exchange.asmx", "/mapi/emsmdb/"] {
            let a = exchange(&mut other, path, "").await;
            assert_ne!(
                a.headers["x-conn"], pinned,
                "{path} used client 1's connection"
            );
        }
    })
    .await;
}

/// A SharePoint farm of two web front ends behind an upstream with
/// `health_score_header`, with health checks every 100 ms.
async fn sharepoint(dir: &std::path::Path, a: &Farm, b: &Farm) -> snigate::server::Proxy {
    let text = format!(
        r#"
[admin]
bind = "127.0.0.1:0"

[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"
default_upstream = "sharepoint"

[[upstream]]
name = "sharepoint"
servers = ["{a}", "{b}"]
health_score_header = "X-SharePointHealthScore"
health = {{ path = "/", interval = "100ms" }}
"#,
        a = a.addr,
        b = b.addr
    );
    common::start_proxy(dir, &text).await
}

/// The score of server `addr` on `/healthz`, and whether it is throttling.
async fn healthz_score(proxy: &snigate::server::Proxy, addr: SocketAddr) -> (Value, bool) {
    let reply = admin_get(proxy, "/healthz").await;
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    let servers = v["health_scores"]["sharepoint"].as_array().unwrap().clone();
    let s = servers
        .iter()
        .find(|s| s["server"] == addr.to_string())
        .unwrap();
    (s["score"].clone(), s["throttling"].as_bool().unwrap())
}

/// Waits (bounded by the test) until `/healthz` shows `want` for `addr`.
async fn healthz_until(proxy: &snigate::server::Proxy, addr: SocketAddr, want: (Value, bool)) {
    loop {
        if healthz_score(proxy, addr).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharepoint_health_scores_steer_new_requests() {
    common::bounded(async {
        let (a, b) = (farm_server("a", &[]).await, farm_server("b", &[]).await);
        a.score.store(0, Ordering::Relaxed);
        b.score.store(0, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let proxy = sharepoint(dir.path(), &a, &b).await;
        let addr = proxy.addr("front").unwrap();
        healthz_until(&proxy, a.addr, (0.into(), false)).await;
        healthz_until(&proxy, b.addr, (0.into(), false)).await;

        // Equal scores: equal shares.
        let even = servers_for(addr, "/", 10).await;
        assert_eq!((count(&even, "a"), count(&even, "b")), (5, 5), "{even:?}");

        // a under load (6: five shares of sixteen), b idle (eleven).
        a.score.store(6, Ordering::Relaxed);
        healthz_until(&proxy, a.addr, (6.into(), false)).await;
        let weighted = servers_for(addr, "/", 16).await;
        assert_eq!(
            (count(&weighted, "a"), count(&weighted, "b")),
            (5, 11),
            "{weighted:?}"
        );

        // a throttles: no new request goes there, and both /metrics and
        // /healthz say so.
        a.score.store(10, Ordering::Relaxed);
        healthz_until(&proxy, a.addr, (10.into(), true)).await;
        let a_addr = a.addr.to_string();
        let labels = [("upstream", "sharepoint"), ("server", a_addr.as_str())];
        scrape_until(&proxy, |m| {
            m.value("snigate_upstream_server_health_score", &labels) == 10.0
        })
        .await;
        let throttled = servers_for(addr, "/", 12).await;
        assert_eq!(count(&throttled, "b"), 12, "{throttled:?}");

        // Its score drops (the next health check reads it): back in.
        a.score.store(0, Ordering::Relaxed);
        healthz_until(&proxy, a.addr, (0.into(), false)).await;
        let back = servers_for(addr, "/", 10).await;
        assert_eq!((count(&back, "a"), count(&back, "b")), (5, 5), "{back:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_health_score_header_that_is_no_header_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[[listener]]
name = "front"
bind = ["127.0.0.1:0"]
mode = "http"
default_upstream = "sharepoint"

[[upstream]]
name = "sharepoint"
servers = ["127.0.0.1:9"]
health_score_header = "X-SharePoint HealthScore"
"#;
    let errors = snigate::config::Settings::parse(&dir.path().join("s.toml"), text)
        .expect_err("refused")
        .to_string();
    assert!(errors.contains("is not an HTTP header name"), "{errors}");
}
