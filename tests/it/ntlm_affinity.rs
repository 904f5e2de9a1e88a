//! NTLM/Negotiate authenticate a TCP connection, not a request: once the
//! backend challenges, the client connection keeps that upstream connection,
//! and two clients never share one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);

/// A backend that authenticates per TCP connection like IIS with Windows
/// authentication: type-1 gets a challenge, type-3 on the same connection
/// authenticates it; anything else gets 401.
async fn ntlm_backend() -> (SocketAddr, Arc<Mutex<HashMap<u64, String>>>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let users = Arc::new(Mutex::new(HashMap::new()));
    let seen = users.clone();
    let next = Arc::new(AtomicU64::new(1));
    tokio::spawn(async move {
        while let Ok((s, _)) = socket.accept().await {
            let conn = next.fetch_add(1, Ordering::Relaxed);
            let users = users.clone();
            // Per-connection: None, Challenged, or Authenticated(user).
            let state: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    let users = users.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let mut st = state.lock().unwrap();
                        let (status, challenge, body) = if let Some(user) =
                            st.as_deref().and_then(|s| s.strip_prefix("user:"))
                        {
                            (
                                StatusCode::OK,
                                None,
                                format!("conn {conn} authenticated as {user}"),
                            )
                        } else if let Some(t1) = auth.strip_prefix("NTLM type1-") {
                            *st = Some(format!("challenged:{t1}"));
                            (
                                StatusCode::UNAUTHORIZED,
                                Some(format!("NTLM challenge-{conn}")),
                                String::new(),
                            )
                        } else if let Some(t3) = auth.strip_prefix("NTLM type3-") {
                            // The type-3 answers this connection's challenge only.
                            let ok = st.as_deref()
                                == Some(&format!(
                                    "challenged:{}",
                                    t3.split('-').next().unwrap_or("")
                                ))
                                && t3.ends_with(&format!("-{conn}"));
                            if ok {
                                let user = t3.split('-').next().unwrap_or("").to_string();
                                users.lock().unwrap().insert(conn, user.clone());
                                *st = Some(format!("user:{user}"));
                                (
                                    StatusCode::OK,
                                    None,
                                    format!("conn {conn} authenticated as {user}"),
                                )
                            } else {
                                *st = None;
                                (
                                    StatusCode::UNAUTHORIZED,
                                    Some("NTLM".to_string()),
                                    "type-3 on the wrong connection".to_string(),
                                )
                            }
                        } else {
                            (
                                StatusCode::UNAUTHORIZED,
                                Some("NTLM".to_string()),
                                String::new(),
                            )
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = status;
                        if let Some(c) = challenge {
                            resp.headers_mut()
                                .insert("www-authenticate", c.parse().unwrap());
                        } else if status == StatusCode::UNAUTHORIZED {
                            resp.headers_mut()
                                .insert("www-authenticate", "NTLM".parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn client(proxy: SocketAddr) -> Sender {
    let s = TcpStream::connect(proxy).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("h1");
    tokio::spawn(conn);
    send
}

async fn get(send: &mut Sender, auth: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .uri("/_layouts/15/start.aspx")
        .header("host", "portal.contoso.test");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    send.ready().await.expect("ready");
    let resp = send
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .expect("response");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The NTLM dance: anonymous -> 401, type-1 -> challenge, type-3 -> 200.
async fn authenticate(send: &mut Sender, user: &str) -> String {
    let (status, _, _) = get(send, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, challenge, _) = get(send, Some(&format!("NTLM type1-{user}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let conn = challenge
        .strip_prefix("NTLM challenge-")
        .expect("challenge")
        .to_string();
    let (status, _, body) = get(send, Some(&format!("NTLM type3-{user}-{conn}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn ntlm_clients_keep_their_own_upstream_connection() {
    tokio::time::timeout(LIMIT, async {
        let (backend, users) = ntlm_backend().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n"
        );
        let settings = Settings::parse(&dir.path().join("snigate.toml"), &text).expect("config");
        let proxy = Proxy::start(settings).await.expect("start");
        let addr = proxy.addr("main").expect("addr");

        // Two clients interleave their handshakes step by step.
        let mut alice = client(addr).await;
        let mut bob = client(addr).await;
        assert_eq!(get(&mut alice, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&mut bob, None).await.0, StatusCode::UNAUTHORIZED);
        let (_, ca, _) = get(&mut alice, Some("NTLM type1-alice")).await;
        let (_, cb, _) = get(&mut bob, Some("NTLM type1-bob")).await;
        let ca = ca.strip_prefix("NTLM challenge-").expect("alice challenge").to_string();
        let cb = cb.strip_prefix("NTLM challenge-").expect("bob challenge").to_string();
        assert_ne!(ca, cb, "two clients must never share an upstream connection");
        let (sa, _, ba) = get(&mut alice, Some(&format!("NTLM type3-alice-{ca}"))).await;
        let (sb, _, bb) = get(&mut bob, Some(&format!("NTLM type3-bob-{cb}"))).await;
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{ba} / {bb}");

        // Later requests on each client connection stay authenticated as
        // that client, without Authorization headers.
        for _ in 0..5 {
            let (s, _, body) = get(&mut alice, None).await;
            assert_eq!(s, StatusCode::OK);
            assert!(body.ends_with("authenticated as alice"), "{body}");
            let (s, _, body) = get(&mut bob, None).await;
            assert!(body.ends_with("authenticated as bob"), "{s} {body}");
        }
        // A new client is not let in on someone else's authenticated connection.
        let mut eve = client(addr).await;
        assert_eq!(get(&mut eve, None).await.0, StatusCode::UNAUTHORIZED);
        let body = authenticate(&mut eve, "eve").await;
        assert!(body.ends_with("authenticated as eve"));
        assert_eq!(users.lock().unwrap().len(), 3);
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}

use crate::common;

/// h2 multiplexes requests of many users' tabs over one connection, which
/// NTLM cannot authenticate: like IIS, snigate answers the challenge with
/// RST_STREAM HTTP_1_1_REQUIRED, and the client retries over HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_over_h2_asks_the_client_for_http_1_1() {
    common::bounded(async {
        let (backend, _) = ntlm_backend().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = common::Pki::new(dir.path());
        let leaf = pki.leaf("portal", &["portal.contoso.test"], common::Key::Ecdsa);
        let text = format!(
            "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"portal\"\n\
             default_upstream = \"farm\"\n\n[[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n",
            common::cert_toml("portal", &leaf)
        );
        let proxy = common::start_proxy(dir.path(), &text).await;
        let addr = proxy.addr("main").expect("addr");

        let opts = common::ClientOpts::sni("portal.contoso.test").alpn(&["h2", "http/1.1"]);
        let tls = common::tls_connect(addr, &pki.ca_der, &opts).await.unwrap();
        assert_eq!(tls.alpn().as_deref(), Some("h2"));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls.stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("https://portal.contoso.test/_layouts/15/start.aspx")
            .body(common::full(""))
            .unwrap();
        let err = sender
            .send_request(req)
            .await
            .expect_err("an NTLM challenge must not reach an h2 client");
        let reason = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<h2::Error>())
            .and_then(|e| e.reason());
        assert_eq!(reason, Some(h2::Reason::HTTP_1_1_REQUIRED), "{err:?}");
        // The connection stays usable for other requests.
        assert!(!sender.is_closed());

        // Over HTTP/1.1 the same client authenticates.
        let opts = common::ClientOpts::sni("portal.contoso.test").alpn(&["http/1.1"]);
        let tls = common::tls_connect(addr, &pki.ca_der, &opts).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls.stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut send: Sender = send;
        let body = authenticate(&mut send, "carol").await;
        assert!(body.ends_with("authenticated as carol"), "{body}");
    })
    .await
}
