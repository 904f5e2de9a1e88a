//! The admin endpoint against a browser: a page whose DNS name was rebound
//! to the admin address gets `421` for its own Host, a cross-site
//! `POST /reload` gets `403`, `/report.html` carries a Content-Security-Policy
//! and every answer `X-Content-Type-Options: nosniff`.

use std::net::SocketAddr;

use crate::common::*;
use bytes::Bytes;
use http::Request;
use snigate::server::Proxy;
use tokio::net::TcpStream;

/// A proxy with the admin endpoint on 127.0.0.1 (port 0) and one https listener.
async fn proxy(dir: &std::path::Path) -> Proxy {
    let pki = Pki::new(dir);
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let be = backend("a").await;
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n{}\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
         default_upstream = \"a\"\n\n\
         [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        be.addr
    );
    start_proxy(dir, &toml).await
}

/// One request to the admin endpoint on a fresh connection, with exactly
/// the headers given (no Host unless one is among them).
async fn admin(admin: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(full(Bytes::new())).unwrap();
    let mut h1 = H1::new(TcpStream::connect(admin).await.unwrap()).await;
    h1.send(req).await
}

/// The configuration generation serving now (1 until a reload succeeds).
async fn generation(addr: SocketAddr) -> u64 {
    let host = addr.to_string();
    let reply = admin(addr, "GET", "/healthz", &[("host", &host)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["generation"].as_u64().expect("generation")
}

fn assert_nosniff(reply: &Reply, what: &str) {
    assert_eq!(
        reply
            .headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}: {:?}",
        reply.headers
    );
}

#[tokio::test]
async fn a_host_that_is_not_the_admin_address_gets_421_on_every_path() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = proxy.admin_addr().expect("admin endpoint");
        let port = addr.port();
        let rebound = [
            format!("evil.test:{port}"),
            "evil.test".to_string(),
            format!("localhost.evil.test:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
        ];
        for host in &rebound {
            for (method, path) in [
                ("GET", "/healthz"),
                ("GET", "/metrics"),
                ("GET", "/report"),
                ("GET", "/report.html"),
                ("GET", "/nothing-here"),
                ("POST", "/reload"),
            ] {
                let reply = admin(addr, method, path, &[("host", host)]).await;
                assert_eq!(
                    reply.status,
                    421,
                    "{method} {path} Host {host}: {}",
                    reply.text()
                );
                assert_nosniff(&reply, host);
                assert!(!reply.text().contains("generation"), "{}", reply.text());
            }
        }
        // Two Host headers, one of them fine, are refused too.
        let reply = admin(
            addr,
            "GET",
            "/healthz",
            &[("host", &addr.to_string()), ("host", "evil.test")],
        )
        .await;
        assert_eq!(reply.status, 421);
        assert_eq!(generation(addr).await, 1, "no reload went through");

        let own = [
            addr.to_string(),
            format!("localhost:{port}"),
            "LOCALHOST".to_string(),
            format!("[::1]:{port}"),
            "127.0.0.1".to_string(),
        ];
        for host in &own {
            let reply = admin(addr, "GET", "/healthz", &[("host", host)]).await;
            assert_eq!(reply.status, 200, "Host {host}: {}", reply.text());
        }
        // HTTP/1.0 tools send no Host: not a browser, so answered.
        let reply = admin(addr, "GET", "/healthz", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn post_reload_with_a_foreign_origin_is_refused() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = proxy.admin_addr().expect("admin endpoint");
        let (host, port) = (addr.to_string(), addr.port());
        let other_local_app = format!("http://127.0.0.1:{}", port ^ 1);
        for origin in ["http://evil.test", "null", other_local_app.as_str()] {
            let reply = admin(
                addr,
                "POST",
                "/reload",
                &[("host", &host), ("origin", origin)],
            )
            .await;
            assert_eq!(reply.status, 403, "Origin {origin}: {}", reply.text());
            assert!(reply.text().contains(origin), "{}", reply.text());
            assert_nosniff(&reply, origin);
        }
        assert_eq!(generation(addr).await, 1, "a refused reload did not run");

        // The endpoint's own pages, and clients that send no Origin (curl,
        // snigate's own tools), reload.
        let own = [
            format!("http://{addr}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ];
        let mut expected = 1;
        for origin in own.iter().map(|o| Some(o.as_str())).chain([None]) {
            let mut headers = vec![("host", host.as_str())];
            headers.extend(origin.map(|o| ("origin", o)));
            let reply = admin(addr, "POST", "/reload", &headers).await;
            assert_eq!(reply.status, 200, "Origin {origin:?}: {}", reply.text());
            expected += 1;
            assert_eq!(generation(addr).await, expected);
        }
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_report_page_has_a_content_security_policy_and_every_answer_nosniff() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = proxy(dir.path()).await;
        let addr = proxy.admin_addr().expect("admin endpoint");
        let host = addr.to_string();

        let page = admin(addr, "GET", "/report.html", &[("host", &host)]).await;
        assert_eq!(page.status, 200);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, snigate::server::admin::REPORT_CSP);
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        // What the policy allows is all the page uses: inline style, inline
        // SVG and its one inline script (the kinds table's sorting, allowed
        // by its hash), nothing loaded from elsewhere.
        let html = page.text();
        assert!(html.contains("<style>") && html.contains("<h1>"), "{html}");
        assert_eq!(html.matches("<script").count(), 1, "one inline script");
        assert!(html.contains("<script>(function () {"), "no src: {html}");
        for absent in ["src=", "<link", "<img", "<iframe", "<form", "url("] {
            assert!(!html.contains(absent), "the page uses {absent}");
        }

        for (method, path, status) in [
            ("GET", "/healthz", 200),
            ("GET", "/metrics", 200),
            ("GET", "/report", 200),
            ("GET", "/report.html", 200),
            ("GET", "/report.csv", 200),
            ("GET", "/nothing-here", 404),
            ("GET", "/reload", 405),
        ] {
            let reply = admin(addr, method, path, &[("host", &host)]).await;
            assert_eq!(reply.status, status, "{method} {path}");
            assert_nosniff(&reply, path);
            if path != "/report.html" {
                assert!(
                    reply.headers.get("content-security-policy").is_none(),
                    "{path}"
                );
            }
        }
        proxy.shutdown().await;
    })
    .await
}
