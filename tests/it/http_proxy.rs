//! The HTTP stage as a client sees it: routing by Host, 421 for a Host the
//! certificate does not cover, WebDAV methods, X-Forwarded-*, hop-by-hop
//! headers, 256 MiB streamed both ways in bounded memory, stale pooled
//! upstream connections, 502 and 504.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use snigate::server::Proxy;

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
}

impl Farm {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.proxy.addr(listener).unwrap()
    }

    /// One request over a fresh TLS connection with SNI `sni`.
    async fn send(&self, listener: &str, sni: &str, req: http::Request<TestBody>) -> Reply {
        https_once(
            self.addr(listener),
            &self.pki.ca_der,
            &ClientOpts::sni(sni),
            req,
        )
        .await
        .0
    }
}

/// Certificates: fallback fb.test, a.test, b.test, multi (m1.test +
/// m2.test), *.w.test. Listeners: "main" (default upstream D), "nodefault"
/// (no default), "trusted" (trusted_proxies 127.0.0.0/8, default D). Routes:
/// a.test->A, b.test->B, m1.test->M1, m2.test->M2, *.w.test->W.
async fn farm(extra: &str) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let certs = [
        ("fb", pki.leaf("fb", &["fb.test"], Key::Ecdsa)),
        ("a", pki.leaf("a", &["a.test"], Key::Ecdsa)),
        ("b", pki.leaf("b", &["b.test"], Key::Ecdsa)),
        (
            "multi",
            pki.leaf("multi", &["m1.test", "m2.test"], Key::Ecdsa),
        ),
        ("wild", pki.leaf("wild", &["*.w.test"], Key::Ecdsa)),
    ];
    let mut toml: String = certs.iter().map(|(n, l)| cert_toml(n, l)).collect();
    toml.push_str(
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"d\"\n\n\
         [[listener]]\nname = \"nodefault\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\n\
         [[listener]]\nname = \"trusted\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"d\"\n\
         trusted_proxies = [\"127.0.0.0/8\"]\n\n",
    );
    for (host, up) in [
        ("a.test", "a"),
        ("b.test", "b"),
        ("m1.test", "m1"),
        ("m2.test", "m2"),
        ("*.w.test", "w"),
    ] {
        toml.push_str(&format!(
            "[[route]]\nhosts = [\"{host}\"]\nupstream = \"{up}\"\n\n"
        ));
    }
    for (name, label) in [
        ("a", "A"),
        ("b", "B"),
        ("m1", "M1"),
        ("m2", "M2"),
        ("w", "W"),
        ("d", "D"),
    ] {
        let be = backend(label).await;
        toml.push_str(&format!(
            "[[upstream]]\nname = \"{name}\"\nservers = [\"{}\"]\n\n",
            be.addr
        ));
    }
    toml.push_str(extra);
    let proxy = start_proxy(dir.path(), &toml).await;
    Farm {
        _dir: dir,
        pki,
        proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_exact_wildcard_default_and_404() {
    bounded(async {
        let f = farm("").await;
        let no_sni = ClientOpts::no_sni("fb.test");
        let cases = [
            ("main", "a.test", Some("A")),
            ("main", "A.Test:443", Some("A")),
            ("main", "x.w.test", Some("W")),
            ("main", "deep.x.w.test", Some("W")),
            ("main", "unknown.test", Some("D")),
            ("nodefault", "a.test", Some("A")),
            ("nodefault", "unknown.test", None),
        ];
        for (listener, host, want) in cases {
            let (reply, _) =
                https_once(f.addr(listener), &f.pki.ca_der, &no_sni, get(host, "/r")).await;
            match want {
                Some(b) => {
                    assert_eq!(reply.status, 200, "{listener} {host}: {}", reply.text());
                    assert_eq!(reply.backend().as_deref(), Some(b), "{listener} {host}");
                }
                None => {
                    assert_eq!(reply.status, 404, "{listener} {host}: {}", reply.text());
                    assert_eq!(reply.backend(), None);
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_not_covered_by_the_served_certificate_gets_421() {
    bounded(async {
        let f = farm("").await;
        // SNI a.test, Host b.test: the a.test certificate does not speak for b.test.
        let reply = f.send("main", "a.test", get("b.test", "/secret")).await;
        assert_eq!(reply.status, 421, "{}", reply.text());
        assert_eq!(
            reply.backend(),
            None,
            "the request must not reach a backend"
        );

        // Also on a connection that already served a request for a.test.
        let tls = tls_connect(f.addr("main"), &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(
            h1.send(get("a.test", "/")).await.backend().as_deref(),
            Some("A")
        );
        assert_eq!(h1.send(get("b.test", "/")).await.status, 421);

        // The served certificate covers both names: no 421, routed by Host.
        let reply = f.send("main", "m1.test", get("m2.test", "/shared")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.backend().as_deref(), Some("M2"));

        // Without SNI there is no name to compare: routed by Host.
        let (reply, _) = https_once(
            f.addr("main"),
            &f.pki.ca_der,
            &ClientOpts::no_sni("fb.test"),
            get("b.test", "/"),
        )
        .await;
        assert_eq!(reply.backend().as_deref(), Some("B"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webdav_method_and_any_token_passes_with_its_body() {
    bounded(async {
        let f = farm("").await;
        let tls = tls_connect(f.addr("main"), &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let methods = [
            "OPTIONS",
            "PROPFIND",
            "PROPPATCH",
            "MKCOL",
            "COPY",
            "MOVE",
            "LOCK",
            "UNLOCK",
            "PUT",
            "DELETE",
            "SEARCH",
            "BREW",
        ];
        for m in methods {
            let body = format!("<?xml version=\"1.0\"?><D:{m} xmlns:D=\"DAV:\"><D:prop/></D:{m}>");
            let mut req = request(
                m,
                "a.test",
                "/sites/team/Shared%20Documents/file.docx",
                body.clone(),
            );
            let h = req.headers_mut();
            h.insert("depth", "1".parse().unwrap());
            h.insert(
                "destination",
                "https://a.test/sites/team/copy.docx".parse().unwrap(),
            );
            h.insert("overwrite", "F".parse().unwrap());
            h.insert(
                "user-agent",
                "Microsoft-WebDAV-MiniRedir/6.1.7601".parse().unwrap(),
            );
            let reply = h1.send(req).await;
            assert_eq!(reply.status, 200, "{m}: {}", reply.text());
            let echo = reply.json();
            assert_eq!(echo["method"], m);
            assert_eq!(echo["path"], "/sites/team/Shared%20Documents/file.docx");
            assert_eq!(echo["body_len"], body.len() as u64, "{m}");
            assert_eq!(echo["body_sha256"], sha256_hex(body.as_bytes()), "{m}");
            // Same host: the scheme may be rewritten for the plain-HTTP
            // backend; host and path must stay.
            let dest = echo["headers"]["destination"][0]
                .as_str()
                .unwrap_or_default();
            assert!(
                dest == "https://a.test/sites/team/copy.docx"
                    || dest == "http://a.test/sites/team/copy.docx",
                "{m}: Destination became {dest}"
            );
            assert_eq!(echo["headers"]["depth"][0], "1");
            assert_eq!(echo["headers"]["overwrite"][0], "F");
        }
        // OPTIONS * keeps its asterisk form.
        let reply = h1.send(request("OPTIONS", "a.test", "*", "")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["method"], "OPTIONS");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_set_and_host_is_preserved() {
    bounded(async {
        let f = farm("").await;
        let spoofed = |host: &str| {
            let mut req = get(host, "/who");
            req.headers_mut()
                .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
            req.headers_mut()
                .insert("x-forwarded-proto", "http".parse().unwrap());
            req
        };
        // From an untrusted peer, X-Forwarded-For is replaced.
        let echo = f
            .send("main", "a.test", spoofed("a.test:8443"))
            .await
            .json();
        assert_eq!(
            echo["headers"]["x-forwarded-for"],
            serde_json::json!(["127.0.0.1"])
        );
        assert_eq!(
            echo["headers"]["x-forwarded-proto"],
            serde_json::json!(["https"])
        );
        assert_eq!(
            echo["host"], "a.test:8443",
            "Host goes upstream as the client sent it"
        );
        assert_eq!(echo["headers"]["host"].as_array().unwrap().len(), 1);

        // From a trusted proxy, it is extended.
        let echo = f.send("trusted", "a.test", spoofed("a.test")).await.json();
        assert_eq!(
            echo["headers"]["x-forwarded-for"],
            serde_json::json!(["203.0.113.7, 127.0.0.1"])
        );
        assert_eq!(
            echo["headers"]["x-forwarded-proto"],
            serde_json::json!(["https"])
        );
        assert_eq!(echo["host"], "a.test");

        // Trusted, but nothing to extend.
        let echo = f.send("trusted", "a.test", get("a.test", "/")).await.json();
        assert_eq!(
            echo["headers"]["x-forwarded-for"],
            serde_json::json!(["127.0.0.1"])
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    bounded(async {
        let f = farm("").await;
        let mut req = get("a.test", "/hop");
        let h = req.headers_mut();
        // Named in any case: header names are case-insensitive.
        h.insert("connection", "Foo, keep-alive".parse().unwrap());
        h.insert("foo", "bar".parse().unwrap());
        h.insert("keep-alive", "timeout=5, max=100".parse().unwrap());
        h.insert("te", "gzip, trailers".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        let echo = f.send("main", "a.test", req).await.json();
        let headers = echo["headers"].as_object().unwrap();
        for gone in ["foo", "keep-alive", "proxy-connection"] {
            assert!(
                !headers.contains_key(gone),
                "{gone} was forwarded: {headers:?}"
            );
        }
        // TE is hop-by-hop, but snigate takes trailers, so it asks for them.
        assert_eq!(echo["headers"]["te"], serde_json::json!(["trailers"]));
        if let Some(c) = headers.get("connection") {
            assert!(
                !c.to_string().contains("foo"),
                "Connection: foo was forwarded: {c}"
            );
        }
        assert_eq!(echo["headers"]["x-end-to-end"][0], "kept");

        // And in the other direction.
        let reply = f
            .send("main", "a.test", get("a.test", "/hop-response"))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply
                .headers
                .get("x-end-to-end")
                .map(|v| v.to_str().unwrap()),
            Some("kept")
        );
        assert!(
            reply.headers.get("x-secret").is_none(),
            "a header named in Connection was passed on"
        );
        assert!(
            reply.headers.get("keep-alive").is_none(),
            "Keep-Alive was passed on"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_backend_closed_is_not_a_client_error() {
    bounded(async {
        let (stale_addr, conns) = close_after_one_backend("STALE").await;
        let f = farm(&format!(
            "[[listener]]\nname = \"stale\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"stale\"\n\n\
             [[upstream]]\nname = \"stale\"\nservers = [\"{stale_addr}\"]\n"
        ))
        .await;
        let addr = f.addr("stale");
        // One client connection, many requests, each of which finds the
        // previous upstream connection closed by the backend.
        let tls = tls_connect(addr, &f.pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        const N: usize = 12;
        for i in 0..N {
            let reply = h1.send(get("stale.test", &format!("/{i}"))).await;
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
            assert_eq!(reply.json()["backend"], "STALE");
        }
        // And on fresh client connections, back to back.
        for i in 0..4 {
            let (reply, _) = https_once(addr, &f.pki.ca_der, &ClientOpts::no_sni("fb.test"), get("stale.test", "/")).await;
            assert_eq!(reply.status, 200, "fresh connection {i}: {}", reply.text());
        }
        assert!(conns.load(Ordering::SeqCst) >= N + 4, "the backend saw {} connections", conns.load(Ordering::SeqCst));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_racing_the_backends_keep_alive_close_is_retried() {
    bounded(async {
        let (addr_b, conns) = answer_once_backend("RACY", OnReuse::Close).await;
        let f = farm(&format!(
            "[[listener]]\nname = \"racy\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"racy\"\n\n\
             [[upstream]]\nname = \"racy\"\nservers = [\"{addr_b}\"]\n"
        ))
        .await;
        let tls = tls_connect(f.addr("racy"), &f.pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        // Every request after the first lands on a pooled connection that the
        // backend closes on arrival, before answering: the request was never
        // processed, and a GET may be sent again (RFC 9110 9.2.2).
        for i in 0..5 {
            let reply = h1.send(get("racy.test", &format!("/{i}"))).await;
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        }
        assert!(conns.load(Ordering::SeqCst) >= 5);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_timeout_applies_on_a_reused_connection() {
    bounded(async {
        let (addr_b, _) = answer_once_backend("HANG", OnReuse::Hang).await;
        let f = farm(&format!(
            "[timeouts]\nupstream_response = \"300ms\"\n\n\
             [[listener]]\nname = \"hang\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"hang\"\n\n\
             [[upstream]]\nname = \"hang\"\nservers = [\"{addr_b}\"]\n"
        ))
        .await;
        let tls = tls_connect(f.addr("hang"), &f.pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let reply = h1.send(get("hang.test", "/first")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The backend connection goes back to the pool; the next request is
        // sent on it and never answered: 504 after upstream_response, not a
        // request that hangs until the client gives up.
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(5), h1.send(get("hang.test", "/second")))
            .await
            .expect("no answer within 5 s although upstream_response = 300ms (pooled connection has no response timeout)");
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert!(started.elapsed() >= Duration::from_millis(280));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_upstream_response_is_not_cut() {
    bounded(async {
        // upstream_response is the time the backend takes to answer, counted
        // once it has the request: an upload that takes longer (a big WebDAV
        // PUT, an RPC_IN_DATA body) must not be answered 504 half way.
        let f = farm("[timeouts]\nupstream_response = \"300ms\"\n\n").await;
        let tls = tls_connect(f.addr("main"), &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let (tx, body) = ChannelBody::new();
        const CHUNKS: usize = 10;
        let chunk = bytes::Bytes::from(vec![b'u'; 1024]);
        let feeder = {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                // 10 chunks, 100 ms apart: the upload lasts about 1 s.
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                for _ in 0..CHUNKS {
                    tick.tick().await;
                    if tx.send(chunk.clone()).await.is_err() {
                        return;
                    }
                }
            })
        };
        let req = http::Request::builder()
            .method("PUT")
            .uri("/slow-upload")
            .header("host", "a.test")
            .header("content-length", (CHUNKS * chunk.len()).to_string())
            .body(http_body_util::BodyExt::boxed(body))
            .unwrap();
        let started = Instant::now();
        let reply = h1.send(req).await;
        let took = started.elapsed();
        feeder.abort();
        assert_eq!(reply.status, 200, "after {took:?}: {}", reply.text());
        assert_eq!(reply.json()["body_len"], (CHUNKS * chunk.len()) as u64);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_gives_502() {
    bounded(async {
        let dead = dead_addr().await;
        let f = farm(&format!(
            "[[listener]]\nname = \"dead\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"dead\"\n\n\
             [[upstream]]\nname = \"dead\"\nservers = [\"{dead}\"]\n"
        ))
        .await;
        let tls = tls_connect(f.addr("dead"), &f.pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let reply = h1.send(get("x.test", "/")).await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        // The client connection survives the upstream failure.
        let reply = h1.send(get("a.test", "/")).await;
        assert_eq!(reply.backend().as_deref(), Some("A"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_gives_504_after_upstream_response_timeout() {
    bounded(async {
        let silent = silent_backend().await;
        let f = farm(&format!(
            "[timeouts]\nupstream_response = \"300ms\"\n\n\
             [[listener]]\nname = \"silent\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"silent\"\n\n\
             [[upstream]]\nname = \"silent\"\nservers = [\"{silent}\"]\n"
        ))
        .await;
        let tls = tls_connect(f.addr("silent"), &f.pki.ca_der, &ClientOpts::no_sni("fb.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let started = Instant::now();
        let reply = h1.send(get("x.test", "/")).await;
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert!(took >= Duration::from_millis(280), "504 after only {took:?}");
        assert!(took < Duration::from_secs(5), "504 only after {took:?}");
        // A POST too (the pool may hold no connection for it).
        let started = Instant::now();
        let reply = h1.send(request("POST", "x.test", "/", "data")).await;
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await
}
