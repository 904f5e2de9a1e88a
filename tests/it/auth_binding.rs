//! A backend connection that carried NTLM or Negotiate credentials, or whose
//! response speaks for them, belongs to one client connection: it never goes
//! back to the shared pool (issue 11, item 1). IIS binds NTLM, and Kerberos
//! too by default (`authPersistNonNTLM`), to the TCP connection, also when
//! the credentials come pre-emptively and are answered 200 at once.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::common::{ClientOpts, Key, Pki, H1, H2};

/// What the backend saw: per request, its TCP connection number and the
/// `Authorization` scheme it carried.
type Seen = Arc<Mutex<Vec<(u64, String)>>>;

/// A backend that remembers an identity per TCP connection, as IIS with
/// Windows authentication does:
/// - `Authorization: Negotiate <name>` authenticates the connection as
///   `name` and answers 200 at once (pre-emptive Kerberos);
/// - `X-Test-Login: <name>` authenticates it too, and only the response
///   says so (`Persistent-Auth: true`);
/// - `Authorization: Basic ...` is per request and remembers nothing.
///
/// Every answer is `conn N as NAME` or `conn N anonymous`.
async fn identity_backend() -> (SocketAddr, Seen) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let next = Arc::new(AtomicU64::new(1));
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let conn = next.fetch_add(1, Ordering::Relaxed);
            let identity: Arc<Mutex<Option<String>>> = Arc::default();
            let log = log.clone();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let identity = identity.clone();
                let log = log.clone();
                async move {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let auth = header("authorization").unwrap_or_default();
                    let scheme = auth.split(' ').next().unwrap_or("").to_string();
                    log.lock().unwrap().push((conn, scheme));
                    let mut persistent = false;
                    let mut who = identity.lock().unwrap();
                    if let Some(name) = auth.strip_prefix("Negotiate ") {
                        *who = Some(name.to_string());
                    } else if let Some(name) = header("x-test-login") {
                        *who = Some(name);
                        persistent = true;
                    }
                    let body = match (&*who, auth.starts_with("Basic ")) {
                        (Some(name), _) => format!("conn {conn} as {name}"),
                        (None, true) => format!("conn {conn} basic"),
                        (None, false) => format!("conn {conn} anonymous"),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    if persistent {
                        resp.headers_mut()
                            .insert("persistent-auth", "true".parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A proxy with one https listener (h2 and http/1.1) in front of `backend`.
async fn proxy(dir: &std::path::Path, backend: SocketAddr) -> (snigate::server::Proxy, Pki) {
    let pki = Pki::new(dir);
    let leaf = pki.leaf("portal", &["portal.contoso.test"], Key::Ecdsa);
    let text = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"portal\"\n\
         default_upstream = \"farm\"\n\n[[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n",
        common::cert_toml("portal", &leaf)
    );
    (common::start_proxy(dir, &text).await, pki)
}

async fn h1(addr: SocketAddr, pki: &Pki) -> H1 {
    let opts = ClientOpts::sni("portal.contoso.test").alpn(&["http/1.1"]);
    let tls = common::tls_connect(addr, &pki.ca_der, &opts).await.unwrap();
    tls.into_h1().await.1
}

async fn h2(addr: SocketAddr, pki: &Pki) -> H2 {
    let opts = ClientOpts::sni("portal.contoso.test").alpn(&["h2"]);
    let tls = common::tls_connect(addr, &pki.ca_der, &opts).await.unwrap();
    assert_eq!(tls.alpn().as_deref(), Some("h2"));
    H2::new(tls.stream).await
}

fn request(uri: &str, header: Option<(&str, &str)>) -> Request<common::TestBody> {
    let mut b = Request::builder()
        .uri(uri)
        .header("host", "portal.contoso.test");
    if let Some((name, value)) = header {
        b = b.header(name, value);
    }
    b.body(common::full("")).unwrap()
}

const H1_URI: &str = "/_layouts/15/start.aspx";
const H2_URI: &str = "https://portal.contoso.test/_layouts/15/start.aspx";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemptive_negotiate_keeps_the_connection_from_other_clients() {
    common::bounded(async {
        let (backend, seen) = identity_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend).await;
        let addr = proxy.addr("main").unwrap();

        let mut alice = h1(addr, &pki).await;
        let first = alice
            .send(request(H1_URI, Some(("authorization", "Negotiate alice"))))
            .await;
        assert_eq!(first.status, 200);
        assert!(first.text().ends_with("as alice"), "{}", first.text());

        // Another client, over HTTP/1.1 and over h2, gets no identity.
        let mut bob = h1(addr, &pki).await;
        let reply = bob.send(request(H1_URI, None)).await;
        assert!(reply.text().ends_with("anonymous"), "bob: {}", reply.text());
        let mut carol = h2(addr, &pki).await;
        let reply = carol.send(request(H2_URI, None)).await;
        assert!(
            reply.text().ends_with("anonymous"),
            "carol: {}",
            reply.text()
        );

        // Alice keeps hers, without sending credentials again.
        for _ in 0..3 {
            let reply = alice.send(request(H1_URI, None)).await;
            assert_eq!(reply.text(), first.text());
        }
        // Her pinned connection is counted.
        let scrape = common::scrape_until(&proxy, |s| {
            s.value("snigate_ntlm_pinned_connections", &[]) == 1.0
        })
        .await;
        assert_eq!(scrape.value("snigate_ntlm_pinned_connections", &[]), 1.0);
        let negotiate = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s == "Negotiate")
            .count();
        assert_eq!(negotiate, 1);
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_binds_the_connection_keeps_it_from_other_clients() {
    common::bounded(async {
        let (backend, _) = identity_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend).await;
        let addr = proxy.addr("main").unwrap();

        // Only the response says the connection is now dave's.
        let mut dave = h1(addr, &pki).await;
        let reply = dave
            .send(request(H1_URI, Some(("x-test-login", "dave"))))
            .await;
        assert!(reply.text().ends_with("as dave"), "{}", reply.text());
        let mut erin = h1(addr, &pki).await;
        let reply = erin.send(request(H1_URI, None)).await;
        assert!(
            reply.text().ends_with("anonymous"),
            "erin: {}",
            reply.text()
        );
        let reply = dave.send(request(H1_URI, None)).await;
        assert!(reply.text().ends_with("as dave"), "dave: {}", reply.text());

        // Over h2 there is no client connection to keep it for: the backend
        // connection is closed after the response, never pooled.
        let mut frank = h2(addr, &pki).await;
        let reply = frank
            .send(request(H2_URI, Some(("x-test-login", "frank"))))
            .await;
        assert!(reply.text().ends_with("as frank"), "{}", reply.text());
        for _ in 0..3 {
            let mut grace = h2(addr, &pki).await;
            let reply = grace.send(request(H2_URI, None)).await;
            assert!(
                reply.text().ends_with("anonymous"),
                "grace: {}",
                reply.text()
            );
            let reply = frank.send(request(H2_URI, None)).await;
            assert!(
                reply.text().ends_with("anonymous"),
                "frank: {}",
                reply.text()
            );
        }
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_over_h2_is_sent_back_to_http_1_1_before_any_backend_sees_it() {
    common::bounded(async {
        let (backend, seen) = identity_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend).await;
        let addr = proxy.addr("main").unwrap();

        let mut heidi = h2(addr, &pki).await;
        for credentials in ["Negotiate heidi", "NTLM TlRMTVNTUAABAAAA"] {
            let err = heidi
                .send_streaming(request(H2_URI, Some(("authorization", credentials))))
                .await
                .expect_err("connection-bound credentials over h2");
            let reason = std::error::Error::source(&err)
                .and_then(|e| e.downcast_ref::<h2::Error>())
                .and_then(|e| e.reason());
            assert_eq!(reason, Some(h2::Reason::HTTP_1_1_REQUIRED), "{err:?}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "the backend saw credentials"
        );
        // The h2 connection goes on serving; nobody is anyone.
        let reply = heidi.send(request(H2_URI, None)).await;
        assert!(reply.text().ends_with("anonymous"), "{}", reply.text());
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_is_per_request_and_the_connection_is_pooled() {
    common::bounded(async {
        let (backend, _) = identity_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let (proxy, pki) = proxy(dir.path(), backend).await;
        let addr = proxy.addr("main").unwrap();

        let mut ivan = h1(addr, &pki).await;
        let reply = ivan
            .send(request(
                H1_URI,
                Some(("authorization", "Basic aXZhbjpwdw==")),
            ))
            .await;
        let conn = reply.text().strip_suffix(" basic").unwrap().to_string();
        // The next client reuses the same backend connection.
        let mut judy = h1(addr, &pki).await;
        let reply = judy.send(request(H1_URI, None)).await;
        assert_eq!(reply.text(), format!("{conn} anonymous"));
        proxy.shutdown().await;
    })
    .await
}

#[test]
fn schemes_that_bind_a_connection() {
    use snigate::upstream::{binds_connection, carries_connection_credentials};
    let headers = |pairs: &[(&str, &str)]| {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    };
    for (name, value) in [
        ("authorization", "NTLM TlRMTVNTUAABAAAA"),
        ("authorization", "negotiate YIIG"),
        ("proxy-authorization", "Negotiate YIIG"),
    ] {
        assert!(
            carries_connection_credentials(&headers(&[(name, value)])),
            "{name}: {value}"
        );
    }
    for (name, value) in [
        ("authorization", "Basic aXZhbjpwdw=="),
        ("authorization", "Bearer eyJ0"),
        ("x-authorization", "NTLM x"),
    ] {
        assert!(
            !carries_connection_credentials(&headers(&[(name, value)])),
            "{name}: {value}"
        );
    }
    let response = |status: u16, pairs: &[(&str, &str)]| {
        let mut r = Response::new(());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        *r.headers_mut() = headers(pairs);
        r
    };
    assert!(binds_connection(&response(
        200,
        &[("www-authenticate", "Negotiate oYG2MIGz")]
    )));
    assert!(binds_connection(&response(
        401,
        &[("www-authenticate", "Basic realm=\"x\", NTLM")]
    )));
    assert!(binds_connection(&response(
        200,
        &[("persistent-auth", "true")]
    )));
    assert!(binds_connection(&response(
        407,
        &[("proxy-authenticate", "NTLM")]
    )));
    assert!(!binds_connection(&response(
        401,
        &[("www-authenticate", "Basic realm=\"NTLM\"")]
    )));
    assert!(!binds_connection(&response(200, &[])));
}
