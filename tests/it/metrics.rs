//! `GET /metrics` on the admin endpoint: Prometheus text that counts what the
//! proxy did, checked after a known mix of clients.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_handshakes_requests_connections_and_servers() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let be = backend("A").await;
        let dead = dead_addr().await;
        let toml = format!(
            "[admin]\nbind = \"127.0.0.1:0\"\n\n{}{}\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\n\
             [[route]]\nhosts = [\"a.test\"]\nupstream = \"a\"\n\n\
             [[route]]\nhosts = [\"dead.test\"]\nupstream = \"dead\"\n\n\
             [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n\n\
             [[upstream]]\nname = \"dead\"\nservers = [\"{}\"]\nmax_fails = 1\n",
            cert_toml("fb", &fb),
            cert_toml("a", &a),
            be.addr,
            dead
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();

        // Two requests with SNI, one without (fallback), a 404, a 502.
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("a.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("a.test", "/1")).await.status, 200);
        assert_eq!(h1.send(get("a.test", "/2")).await.status, 200);
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut nosni) = tls.into_h1().await;
        assert_eq!(nosni.send(get("a.test", "/3")).await.status, 200);
        assert_eq!(nosni.send(get("nobody.test", "/")).await.status, 404);
        assert_eq!(nosni.send(get("dead.test", "/")).await.status, 502);
        // Not TLS at all.
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        wait_closed(&mut junk, Duration::from_secs(5)).await.expect("closed");

        let main = ("listener", "main");
        let m = scrape_until(&proxy, |m| {
            m.value("snigate_request_duration_seconds_count", &[main]) >= 5.0
                && m.value("snigate_handshakes_total", &[main, ("sni", "absent"), ("outcome", "rejected")]) >= 1.0
                && m.value("snigate_active_connections", &[main]) == 2.0
        })
        .await;
        let hs = |sni, outcome| {
            m.value(
                "snigate_handshakes_total",
                &[main, ("sni", sni), ("outcome", outcome)],
            )
        };
        assert_eq!(hs("present", "ok"), 1.0);
        assert_eq!(hs("absent", "ok"), 1.0);
        assert_eq!(hs("absent", "rejected"), 1.0);
        assert_eq!(hs("present", "failed"), 0.0);
        assert_eq!(
            m.value(
                "snigate_fallback_certificate_served_total",
                &[main, ("certificate", "fb")]
            ),
            1.0
        );
        let req = |upstream, class| {
            m.value(
                "snigate_requests_total",
                &[main, ("upstream", upstream), ("class", class)],
            )
        };
        assert_eq!(req("a", "2xx"), 3.0);
        assert_eq!(req("none", "4xx"), 1.0);
        assert_eq!(req("dead", "5xx"), 1.0);
        assert_eq!(m.value("snigate_request_duration_seconds_count", &[main]), 5.0);
        assert_eq!(
            m.value(
                "snigate_request_duration_seconds_bucket",
                &[main, ("le", "+Inf")]
            ),
            5.0
        );
        assert_eq!(
            m.value(
                "snigate_upstream_server_up",
                &[("upstream", "dead"), ("server", &dead.to_string())]
            ),
            0.0
        );
        assert_eq!(
            m.value(
                "snigate_upstream_server_up",
                &[("upstream", "a"), ("server", &be.addr.to_string())]
            ),
            1.0
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
        for cert in ["fb", "a"] {
            let expiry = m.value(
                "snigate_certificate_expiry_timestamp_seconds",
                &[("certificate", cert)],
            );
            assert!(expiry > now, "{cert}: {expiry}");
        }
        // The two TLS connections were still open, the junk one gone; now
        // the clients leave.
        drop((h1, nosni));
        scrape_until(&proxy, |m| m.value("snigate_active_connections", &[main]) == 0.0).await;
    })
    .await
}
