//! Worker threads (`[runtime] workers` above one): connections from
//! clients with and without SNI are served on threads of the proxy's own,
//! each client connection's requests keep one backend connection, and a
//! stop lets a response in flight finish before the threads end, and a
//! second instance cannot join the workers' sockets. Reloads and shared
//! ports on workers are in `reload` and `shared_port`.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::common::{
    backend, bounded, cert_toml, dead_addr, get, second_start_error, start_proxy_on,
    streaming_backend, tls_connect, ClientOpts, Key, Pki,
};

/// A TLS listener "web" with `site.test`'s certificate as fallback, in
/// front of `backend`.
fn web(pki: &Pki, backend: std::net::SocketAddr) -> String {
    let leaf = pki.leaf("site", &["site.test"], Key::Ecdsa);
    format!(
        "{}[[listener]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n\
         fallback_certificate = \"site\"\ndefault_upstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\n",
        cert_toml("site", &leaf)
    )
}

#[tokio::test]
async fn clients_with_and_without_sni_are_served_on_two_workers() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let farm = backend("farm").await;
        let proxy = start_proxy_on(dir.path(), &web(&pki, farm.addr), Some(2)).await;
        let addr = proxy.addr("web").unwrap();

        // One client connection, ten requests in turn: the worker that
        // serves it takes its backend connection back from its own pool.
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        for i in 0..10 {
            let reply = h1.send(get("site.test", &format!("/one/{i}"))).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.json()["path"], format!("/one/{i}"));
        }
        assert_eq!(
            farm.connections.load(Ordering::SeqCst),
            1,
            "ten requests in turn use one backend connection"
        );

        // Sixteen clients at once, half without SNI (the fallback
        // certificate), five requests each.
        let clients = (0..16).map(|c| {
            let ca = pki.ca_der.clone();
            async move {
                let opts = if c % 2 == 0 {
                    ClientOpts::sni("site.test")
                } else {
                    ClientOpts::no_sni("site.test")
                };
                let tls = tls_connect(addr, &ca, &opts).await.expect("handshake");
                let (_, mut h1) = tls.into_h1().await;
                let mut paths = Vec::new();
                for i in 0..5 {
                    let reply = h1.send(get("site.test", &format!("/many/{c}/{i}"))).await;
                    assert_eq!(reply.status, 200);
                    paths.push(reply.json()["path"].as_str().unwrap().to_string());
                }
                paths
            }
        });
        let answered: Vec<Vec<String>> = futures_util::future::join_all(clients).await;
        for (c, paths) in answered.iter().enumerate() {
            let want: Vec<String> = (0..5).map(|i| format!("/many/{c}/{i}")).collect();
            assert_eq!(*paths, want, "client {c} got its own answers, in order");
        }
        assert_eq!(farm.requests.load(Ordering::SeqCst), 10 + 16 * 5);
        assert_eq!(proxy.shutdown().await, 0);
    })
    .await;
}

/// A stop on worker threads: no new connections, the response in flight
/// finishes intact, then the stop returns with nothing left open and the
/// threads gone with their sockets.
#[tokio::test]
async fn a_stop_on_workers_lets_the_response_in_flight_finish() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (farm, mut streams) = streaming_backend().await;
        let proxy = start_proxy_on(dir.path(), &web(&pki, farm), Some(2)).await;
        let addr = proxy.addr("web").unwrap();
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let resp = h1
            .send_streaming(get("site.test", "/stream"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let feed = streams.recv().await.unwrap();
        feed.send(Bytes::from_static(b"first ")).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first ");

        let stopping = tokio::spawn(proxy.shutdown());
        feed.send(Bytes::from_static(b"last")).await.unwrap();
        drop(feed);
        let rest = body.collect().await.expect("not cut").to_bytes();
        assert_eq!(rest, "last");
        assert_eq!(stopping.await.unwrap(), 0, "nothing left open");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listening socket is closed on every worker"
        );
    })
    .await;
}

/// Each worker listens on a socket of its own with `SO_REUSEPORT`, which
/// would let another process with the option join the address and take a
/// share of the connections: a second instance is refused instead, with or
/// without workers.
#[tokio::test]
async fn a_second_instance_cannot_join_the_workers_sockets() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let farm = backend("farm").await;
        let addr = dead_addr().await;
        let text = web(&pki, farm.addr).replace("127.0.0.1:0", &addr.to_string());
        let proxy = start_proxy_on(dir.path(), &text, Some(2)).await;
        assert_eq!(proxy.addr("web"), Some(addr));
        for workers in [Some(2), None] {
            let err = second_start_error(dir.path(), &text, workers).await;
            assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
        }
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("site.test", "/")).await.status, 200);
        assert_eq!(proxy.shutdown().await, 0);
    })
    .await;
}
