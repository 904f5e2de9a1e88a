//! Which certificate a client gets: SNI exact > one-label wildcard > the
//! listener's fallback (strict: refused), ECDSA or RSA by what the client
//! offers, declaration order among equals, one fallback per listener, server
//! cipher order, and ALPN h2.

use std::net::SocketAddr;

use crate::common::*;
use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::{AlertDescription, CipherSuite, ProtocolVersion};
use snigate::server::Proxy;

/// A tempdir with a CA, an ECDSA fallback (fb.test) and leaves a.test,
/// b.test and *.w.test; backends A (a.test), W (*.w.test) and D (default).
struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    addr: SocketAddr,
}

async fn farm(listener_extra: &str) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let b = pki.leaf("b", &["b.test"], Key::Ecdsa);
    let w = pki.leaf("wild", &["*.w.test"], Key::Ecdsa);
    let (ba, bw, bd) = (backend("A").await, backend("W").await, backend("D").await);
    let toml = format!(
        "{}{}{}{}
[[listener]]
name = \"main\"
bind = [\"127.0.0.1:0\"]
fallback_certificate = \"fb\"
default_upstream = \"d\"
{listener_extra}

[[route]]
hosts = [\"a.test\"]
upstream = \"a\"

[[route]]
hosts = [\"*.w.test\"]
upstream = \"w\"

[[upstream]]
name = \"a\"
servers = [\"{}\"]

[[upstream]]
name = \"w\"
servers = [\"{}\"]

[[upstream]]
name = \"d\"
servers = [\"{}\"]
",
        cert_toml("fb", &fb),
        cert_toml("a", &a),
        cert_toml("b", &b),
        cert_toml("wild", &w),
        ba.addr,
        bw.addr,
        bd.addr
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    let addr = proxy.addr("main").unwrap();
    Farm {
        _dir: dir,
        pki,
        proxy,
        addr,
    }
}

impl Farm {
    /// Handshakes with `opts` and names the certificate served.
    async fn served(&self, opts: &ClientOpts) -> String {
        let tls = tls_connect(self.addr, &self.pki.ca_der, opts)
            .await
            .unwrap_or_else(|e| panic!("handshake with SNI {:?} failed: {e}", opts.sni));
        self.pki.which(&tls.leaf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_exact_name_gets_its_certificate_and_route() {
    bounded(async {
        let f = farm("").await;
        assert_eq!(f.served(&ClientOpts::sni("a.test")).await, "a");
        assert_eq!(f.served(&ClientOpts::sni("b.test")).await, "b");
        // DNS names compare case-insensitively.
        assert_eq!(f.served(&ClientOpts::sni("A.Test")).await, "a");

        let (reply, info) = https_once(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::sni("a.test"),
            get("a.test", "/hello"),
        )
        .await;
        assert_eq!(f.pki.which(&info.leaf), "a");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend().as_deref(), Some("A"));
        assert_eq!(reply.json()["path"], "/hello");
        let _ = &f.proxy;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_covers_exactly_one_label() {
    bounded(async {
        let f = farm("").await;
        assert_eq!(f.served(&ClientOpts::sni("x.w.test")).await, "wild");
        assert_eq!(f.served(&ClientOpts::sni("other.w.test")).await, "wild");

        // Two labels below the wildcard, or the bare parent: not covered, so
        // the fallback (which the client can verify only as fb.test).
        for sni in ["y.x.w.test", "w.test"] {
            let opts = ClientOpts {
                verify_as: Some("fb.test".into()),
                ..ClientOpts::sni(sni)
            };
            assert_eq!(f.served(&opts).await, "fb", "SNI {sni}");
        }

        let (reply, _) = https_once(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::sni("x.w.test"),
            get("x.w.test", "/"),
        )
        .await;
        assert_eq!(reply.backend().as_deref(), Some("W"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_gets_the_listener_fallback() {
    bounded(async {
        let f = farm("").await;
        assert_eq!(f.served(&ClientOpts::no_sni("fb.test")).await, "fb");
        // Routed by Host even without SNI.
        let (reply, info) = https_once(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::no_sni("fb.test"),
            get("a.test", "/x"),
        )
        .await;
        assert_eq!(f.pki.which(&info.leaf), "fb");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend().as_deref(), Some("A"));
        let (reply, _) = https_once(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::no_sni("fb.test"),
            get("127.0.0.1", "/"),
        )
        .await;
        assert_eq!(reply.backend().as_deref(), Some("D"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_gets_the_fallback() {
    bounded(async {
        let f = farm("").await;
        let opts = ClientOpts {
            verify_as: Some("fb.test".into()),
            ..ClientOpts::sni("nobody.example")
        };
        assert_eq!(f.served(&opts).await, "fb");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_refuses_missing_and_unknown_sni() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let ba = backend("A").await;
        let toml = format!(
            "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nstrict_sni = true\ndefault_upstream = \"a\"\n\n\
             [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
            cert_toml("a", &a),
            ba.addr
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();

        let (reply, info) = https_once(addr, &pki.ca_der, &ClientOpts::sni("a.test"), get("a.test", "/")).await;
        assert_eq!(pki.which(&info.leaf), "a");
        assert_eq!(reply.status, 200);

        for opts in [ClientOpts::no_sni("a.test"), ClientOpts { verify_as: Some("a.test".into()), ..ClientOpts::sni("unknown.test") }] {
            let err = match tls_connect(addr, &pki.ca_der, &opts).await {
                Ok(t) => panic!("strict listener served {} to SNI {:?}", pki.which(&t.leaf), opts.sni),
                Err(e) => e,
            };
            match rustls_error(&err) {
                Some(rustls::Error::AlertReceived(AlertDescription::UnrecognisedName)) => {}
                other => panic!("SNI {:?}: expected an unrecognized_name alert, got {other:?} ({err})", opts.sni),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_capabilities_choose_ecdsa_or_rsa() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
        // RSA declared first, so picking ECDSA is not declaration order.
        let rsa = pki.leaf("a-rsa", &["a.test"], Key::Rsa);
        let ecdsa = pki.leaf("a-ecdsa", &["a.test"], Key::Ecdsa);
        let ba = backend("A").await;
        let toml = format!(
            "{}{}{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"a\"\n\n\
             [[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
            cert_toml("fb", &fb),
            cert_toml("a-rsa", &rsa),
            cert_toml("a-ecdsa", &ecdsa),
            ba.addr
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let addr = proxy.addr("main").unwrap();

        // An old client: TLS 1.2 with ECDHE_RSA suites only.
        let rsa_only = ClientOpts::sni("a.test")
            .tls12_suites(vec![cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]);
        let (reply, info) = https_once(addr, &pki.ca_der, &rsa_only, get("a.test", "/")).await;
        assert_eq!(pki.which(&info.leaf), "a-rsa");
        assert_eq!(info.version, Some(ProtocolVersion::TLSv1_2));
        assert_eq!(info.suite, Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert_eq!(reply.status, 200);

        // A TLS 1.2 client offering ECDHE_ECDSA.
        let tls12_ecdsa = ClientOpts::sni("a.test").tls12_suites(vec![
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]);
        let tls = tls_connect(addr, &pki.ca_der, &tls12_ecdsa).await.unwrap();
        assert_eq!(pki.which(&tls.leaf), "a-ecdsa");
        assert_eq!(tls.suite(), Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));

        // A modern client (TLS 1.3, ECDSA schemes).
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("a.test")).await.unwrap();
        assert_eq!(pki.which(&tls.leaf), "a-ecdsa");
        assert_eq!(tls.version(), Some(ProtocolVersion::TLSv1_3));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaration_order_breaks_ties_between_equal_certificates() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
        let d1 = pki.leaf("d1", &["d.test"], Key::Ecdsa);
        let d2 = pki.leaf("d2", &["d.test", "other.test"], Key::Ecdsa);
        let bd = backend("D").await;
        for (first, second, want) in [(("d1", &d1), ("d2", &d2), "d1"), (("d2", &d2), ("d1", &d1), "d2")] {
            let sub = tempfile::tempdir_in(dir.path()).unwrap();
            let toml = format!(
                "{}{}{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"d\"\n\n\
                 [[upstream]]\nname = \"d\"\nservers = [\"{}\"]\n",
                cert_toml("fb", &fb),
                cert_toml(first.0, first.1),
                cert_toml(second.0, second.1),
                bd.addr
            );
            let proxy = start_proxy(sub.path(), &toml).await;
            let addr = proxy.addr("main").unwrap();
            let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("d.test")).await.unwrap();
            assert_eq!(pki.which(&tls.leaf), want, "declared {} before {}", first.0, second.0);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_serves_its_own_fallback_and_default_upstream() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb1 = pki.leaf("fb-main", &["portal.test"], Key::Ecdsa);
        let fb2 = pki.leaf("fb-second", &["mysite.test"], Key::Ecdsa);
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let (b1, b2, ba) = (
            backend("PORTAL").await,
            backend("MYSITE").await,
            backend("A").await,
        );
        let toml = format!(
            "{}{}{}
[[listener]]
name = \"main\"
bind = [\"127.0.0.1:0\"]
fallback_certificate = \"fb-main\"
default_upstream = \"portal\"

[[listener]]
name = \"second\"
bind = [\"127.0.0.1:0\"]
fallback_certificate = \"fb-second\"
default_upstream = \"mysite\"

[[route]]
hosts = [\"a.test\"]
upstream = \"a\"

[[upstream]]
name = \"portal\"
servers = [\"{}\"]

[[upstream]]
name = \"mysite\"
servers = [\"{}\"]

[[upstream]]
name = \"a\"
servers = [\"{}\"]
",
            cert_toml("fb-main", &fb1),
            cert_toml("fb-second", &fb2),
            cert_toml("a", &a),
            b1.addr,
            b2.addr,
            ba.addr
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let (main, second) = (proxy.addr("main").unwrap(), proxy.addr("second").unwrap());
        assert_ne!(main, second);

        // A client without SNI is routed by the address it connected to; it
        // sends the address as Host, as such clients do.
        let (reply, info) = https_once(
            main,
            &pki.ca_der,
            &ClientOpts::no_sni("portal.test"),
            get(&main.to_string(), "/"),
        )
        .await;
        assert_eq!(pki.which(&info.leaf), "fb-main");
        assert_eq!(reply.backend().as_deref(), Some("PORTAL"));

        let (reply, info) = https_once(
            second,
            &pki.ca_der,
            &ClientOpts::no_sni("mysite.test"),
            get(&second.to_string(), "/"),
        )
        .await;
        assert_eq!(pki.which(&info.leaf), "fb-second");
        assert_eq!(reply.backend().as_deref(), Some("MYSITE"));

        // A host name route applies on both listeners, with SNI.
        for addr in [main, second] {
            let (reply, info) = https_once(
                addr,
                &pki.ca_der,
                &ClientOpts::sni("a.test"),
                get("a.test", "/"),
            )
            .await;
            assert_eq!(pki.which(&info.leaf), "a");
            assert_eq!(reply.backend().as_deref(), Some("A"));
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_uses_server_cipher_order() {
    bounded(async {
        let f = farm("").await;
        // The client lists AES-256 first; snigate prefers AES-128.
        let opts = ClientOpts::sni("a.test").tls12_suites(vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]);
        let (reply, info) = https_once(f.addr, &f.pki.ca_der, &opts, get("a.test", "/")).await;
        assert_eq!(info.version, Some(ProtocolVersion::TLSv1_2));
        assert_eq!(
            info.suite,
            Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        );
        assert_eq!(f.pki.which(&info.leaf), "a");
        assert_eq!(reply.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_serves_http2_and_routes() {
    bounded(async {
        let f = farm("").await;
        let tls = tls_connect(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["h2", "http/1.1"]),
        )
        .await
        .unwrap();
        assert_eq!(tls.alpn().as_deref(), Some("h2"));
        let mut h2 = H2::new(tls.stream).await;

        let req = |uri: &str| {
            http::Request::builder()
                .method("GET")
                .uri(uri)
                .body(full(""))
                .unwrap()
        };
        let reply = h2.send(req("https://a.test/over-h2?q=1")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend().as_deref(), Some("A"));
        let echo = reply.json();
        assert_eq!(echo["path"], "/over-h2?q=1");
        assert_eq!(echo["host"], "a.test");
        assert_eq!(
            echo["version"], "HTTP/1.1",
            "the upstream is spoken to in HTTP/1.1"
        );

        // Same connection, a host the certificate does not cover: 421.
        let reply = h2.send(req("https://b.test/")).await;
        assert_eq!(reply.status, 421);

        // A POST with a body over h2.
        let post = http::Request::builder()
            .method("POST")
            .uri("https://a.test/upload")
            .body(full("h2 body"))
            .unwrap();
        let reply = h2.send(post).await;
        assert_eq!(reply.json()["body_sha256"], sha256_hex(b"h2 body"));

        // A client offering only http/1.1 gets it.
        let tls = tls_connect(
            f.addr,
            &f.pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
        assert_eq!(tls.alpn().as_deref(), Some("http/1.1"));
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(
            h1.send(get("a.test", "/")).await.backend().as_deref(),
            Some("A")
        );
    })
    .await
}
