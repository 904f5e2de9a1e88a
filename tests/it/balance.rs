//! `balance`: round-robin spreads requests evenly, least-conn sends a new
//! request to a backend that is not busy, ip-hash keeps each client address
//! on one backend.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::common::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A plain-HTTP listener whose default upstream "farm" has these servers
/// and `balance`.
async fn farm(dir: &std::path::Path, servers: &[SocketAddr], balance: &str) -> Proxy {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    let toml = format!(
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [{}]\nbalance = \"{balance}\"\n",
        list.join(", ")
    );
    start_proxy(dir, &toml).await
}

/// `GET path` on a new connection from `source` (a loopback address).
async fn get_from(proxy: SocketAddr, source: Ipv4Addr, path: &str) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    H1::new(stream).await.send(get("farm.test", path)).await
}

/// The backend that answered, asserting that one did.
fn answered(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.backend().expect("x-backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let backends = [backend("A").await, backend("B").await, backend("C").await];
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let proxy = farm(dir.path(), &addrs, "round-robin").await;
        let mut h1 = H1::new(
            TcpStream::connect(proxy.addr("main").unwrap())
                .await
                .unwrap(),
        )
        .await;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..30 {
            let b = answered(&h1.send(get("farm.test", &format!("/{i}"))).await);
            *counts.entry(b.clone()).or_default() += 1;
            order.push(b);
        }
        assert_eq!(
            counts,
            BTreeMap::from([("A".into(), 10), ("B".into(), 10), ("C".into(), 10)]),
            "{order:?}"
        );
        // Turns, not runs: three requests in a row reach three backends.
        for w in order.chunks(3) {
            assert_eq!(w.iter().collect::<BTreeSet<_>>().len(), 3, "{order:?}");
        }
        proxy.shutdown().await;
    })
    .await
}

/// A backend that answers `x-backend: NAME`; `GET /hold` gets its response
/// head at once and a body that stays open until the test lets it go.
struct Holding {
    addr: SocketAddr,
    /// The open `/hold` bodies: dropping a sender ends its body.
    held: Arc<Mutex<Vec<tokio::sync::mpsc::Sender<Bytes>>>>,
}

async fn holding_backend(name: &'static str) -> Holding {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let held = keep.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let held = held.clone();
                    async move {
                        let body = if req.uri().path() == "/hold" {
                            let (tx, body) = ChannelBody::new();
                            tx.send(Bytes::from_static(b"held ")).await.unwrap();
                            held.lock().unwrap().push(tx);
                            body.boxed()
                        } else {
                            full("ok")
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("x-backend", name)
                                .body(body)
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
    Holding { addr, held }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_new_requests_to_the_backend_that_is_not_busy() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let backends = [
            holding_backend("A").await,
            holding_backend("B").await,
            holding_backend("C").await,
        ];
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let proxy = farm(dir.path(), &addrs, "least-conn").await;
        let addr = proxy.addr("main").unwrap();

        // Two long responses, each on its own client connection, keep two
        // backends busy (their heads have arrived, their bodies have not
        // ended).
        let mut busy = BTreeSet::new();
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut h1 = H1::new(TcpStream::connect(addr).await.unwrap()).await;
            let resp = h1.send_streaming(get("farm.test", "/hold")).await.unwrap();
            assert_eq!(resp.status(), 200);
            let b = resp.headers()["x-backend"].to_str().unwrap().to_string();
            assert!(busy.insert(b.clone()), "both long requests went to {b}");
            open.push((h1, resp));
        }
        let idle = ["A", "B", "C"]
            .into_iter()
            .find(|b| !busy.contains(*b))
            .unwrap();

        // Every new request goes to the one that is not busy, one after the
        // other and several at once.
        let mut h1 = H1::new(TcpStream::connect(addr).await.unwrap()).await;
        for i in 0..10 {
            let reply = h1.send(get("farm.test", &format!("/{i}"))).await;
            assert_eq!(answered(&reply), idle, "request {i}");
        }
        let (r1, r2) = tokio::join!(
            get_from(addr, Ipv4Addr::LOCALHOST, "/x"),
            get_from(addr, Ipv4Addr::LOCALHOST, "/y")
        );
        // Two at once: the second may find the idle one busy with the
        // first (a tie at 1 with the others), so only the first is sure.
        let at_once = [answered(&r1), answered(&r2)];
        assert!(at_once.contains(&idle.to_string()), "{at_once:?}");

        // The long responses end: the load is even again, and ties go
        // round-robin, so every backend gets requests.
        for b in &backends {
            b.held.lock().unwrap().clear();
        }
        for (_, resp) in open {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "held ");
        }
        let mut seen = BTreeSet::new();
        for i in 0..9 {
            seen.insert(answered(
                &h1.send(get("farm.test", &format!("/after/{i}"))).await,
            ));
        }
        assert_eq!(seen.len(), 3, "after the long requests ended: {seen:?}");
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_keeps_each_client_address_on_one_backend() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let backends = [backend("A").await, backend("B").await, backend("C").await];
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let proxy = farm(dir.path(), &addrs, "ip-hash").await;
        let addr = proxy.addr("main").unwrap();

        // 127.0.0.0/8 is loopback: each client binds its own source address.
        let mut by_ip: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        for round in 0..3 {
            for last in 2..=25u8 {
                let ip = Ipv4Addr::new(127, 0, 0, last);
                let b = answered(&get_from(addr, ip, &format!("/{round}")).await);
                match by_ip.get(&ip) {
                    Some(first) => assert_eq!(&b, first, "client {ip} moved (round {round})"),
                    None => {
                        by_ip.insert(ip, b);
                    }
                }
            }
        }
        // A client's requests on one connection stay together too.
        let ip = Ipv4Addr::new(127, 0, 0, 9);
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        let mut h1 = H1::new(socket.connect(addr).await.unwrap()).await;
        for i in 0..5 {
            let b = answered(&h1.send(get("farm.test", &format!("/same/{i}"))).await);
            assert_eq!(b, by_ip[&ip]);
        }
        // Different addresses spread over the backends.
        let mut spread: BTreeMap<&str, usize> = BTreeMap::new();
        for b in by_ip.values() {
            *spread.entry(b.as_str()).or_default() += 1;
        }
        assert_eq!(spread.len(), 3, "24 client addresses on {spread:?}");
        proxy.shutdown().await;
    })
    .await
}
