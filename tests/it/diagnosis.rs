//! Failure diagnosis: every failed handshake is logged with a `reason` in
//! plain words and a `hint` that says what would fix it. Each case is a real
//! handshake attempt against the proxy: a ClientHello built byte by byte
//! (the old clients rustls cannot imitate), a real capture, or a rustls
//! client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use snigate::server::Proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// TLS 1.2 signature schemes a 2014 client sends (RSA and ECDSA with SHA-2).
const SIGALGS: [u16; 4] = [0x0401, 0x0403, 0x0501, 0x0201];
/// ECDHE_ECDSA AES-GCM and CBC suites, RSA CBC: Windows 7 SChannel's shape.
const WIN7_SUITES: [u16; 6] = [0xc02c, 0xc02b, 0xc024, 0xc023, 0x003d, 0x002f];
/// Only CBC and static-RSA suites.
const CBC_ONLY: [u16; 5] = [0xc014, 0xc013, 0x0035, 0x002f, 0x000a];

struct Lab {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    handshakes: PathBuf,
}

impl Lab {
    /// Sends `hello` to listener `listener`, waits until the proxy closes
    /// the connection, and returns the connection's handshake-log line.
    async fn attempt(&self, listener: &str, hello: &[u8]) -> Value {
        let proxy = self.proxy.addr(listener).unwrap();
        let mut s = TcpStream::connect(proxy).await.unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(hello).await.unwrap();
        assert!(
            wait_closed(&mut s, Duration::from_secs(5)).await.is_some(),
            "the proxy kept a failing connection open"
        );
        self.line(local, proxy).await
    }

    /// The handshake line of the connection from `client` to `listener`.
    async fn line(&self, client: SocketAddr, listener: SocketAddr) -> Value {
        wait_for_json_line(&self.handshakes, LOG_WAIT, |v| {
            is_connection(v, client, listener)
        })
        .await
    }
}

/// Three listeners: "ecdsa" (ECDSA fallback fb.test, a.test), "rsa" (RSA
/// fallback only) and "strict" (strict_sni, a.test only).
async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let rsa = pki.leaf("rsa", &["rsa.test"], Key::Rsa);
    let toml = format!(
        "[log]\nhandshake_log = \"logs/handshakes.jsonl\"\n\n{}{}{}\
         [[listener]]\nname = \"ecdsa\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\n\
         [[listener]]\nname = \"rsa\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"rsa\"\n\n\
         [[listener]]\nname = \"strict\"\nbind = [\"127.0.0.1:0\"]\nstrict_sni = true\n",
        cert_toml("fb", &fb),
        cert_toml("a", &a),
        cert_toml("rsa", &rsa),
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    Lab {
        handshakes: dir.path().join("logs/handshakes.jsonl"),
        _dir: dir,
        pki,
        proxy,
    }
}

fn text<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_only_old_tls_versions() {
    bounded(async {
        let lab = lab().await;
        // A TLS 1.0 client that even sends signature_algorithms: the version
        // is what rules it out.
        let l = lab
            .attempt(
                "ecdsa",
                &client_hello(0x0301, &CBC_ONLY, Some("a.test"), Some(&SIGALGS)),
            )
            .await;
        assert_eq!(l["outcome"], "failed");
        assert!(
            text(&l, "reason").starts_with("the client offers only TLS 1.0;"),
            "{l}"
        );
        assert!(
            text(&l, "hint").contains("enable TLS 1.2 on the client"),
            "{l}"
        );

        let l = lab
            .attempt("ecdsa", &client_hello(0x0302, &CBC_ONLY, None, None))
            .await;
        assert!(
            text(&l, "reason").starts_with("the client offers only TLS 1.1, TLS 1.0;"),
            "{l}"
        );

        let l = lab
            .attempt(
                "ecdsa",
                &client_hello(0x0300, &[0x000a, 0x0005], None, None),
            )
            .await;
        assert!(
            text(&l, "reason").starts_with("the client offers only SSL 3.0;"),
            "{l}"
        );
        assert!(text(&l, "hint").contains("SSL 3.0"), "{l}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslv2_format_hello() {
    bounded(async {
        let lab = lab().await;
        let l = lab
            .attempt("ecdsa", &capture("java6u45_sslv2hello_nosni.hex"))
            .await;
        assert_eq!(l["outcome"], "failed");
        assert!(text(&l, "reason").contains("SSLv2"), "{l}");
        assert!(text(&l, "hint").contains("Java 6"), "{l}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_without_signature_algorithms() {
    bounded(async {
        let lab = lab().await;
        let l = lab
            .attempt(
                "ecdsa",
                &client_hello(0x0303, &[0xc02b, 0xc02f], Some("a.test"), None),
            )
            .await;
        assert_eq!(l["outcome"], "failed");
        assert!(text(&l, "reason").contains("signature_algorithms"), "{l}");
        assert!(
            text(&l, "hint").contains("no signature_algorithms extension"),
            "{l}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_suite_split_by_what_would_fix_it() {
    bounded(async {
        let lab = lab().await;
        // Windows 7/8/8.1: ECDHE_ECDSA+GCM but no ECDHE_RSA+GCM, against an
        // RSA certificate.
        let l = lab
            .attempt(
                "rsa",
                &client_hello(0x0303, &WIN7_SUITES, None, Some(&SIGALGS)),
            )
            .await;
        assert_eq!(l["outcome"], "failed");
        assert_eq!(l["certificate"], "rsa");
        assert!(
            text(&l, "reason").contains("no cipher suite in common"),
            "{l}"
        );
        assert!(text(&l, "hint").contains("an ECDSA certificate"), "{l}");

        // The same client is served once the listener has an ECDSA
        // certificate: the hint was right. (The handshake then stalls on our
        // crafted client, which is fine: the ServerHello is what counts.)
        let mut s = TcpStream::connect(lab.proxy.addr("ecdsa").unwrap())
            .await
            .unwrap();
        s.write_all(&client_hello(0x0303, &WIN7_SUITES, None, Some(&SIGALGS)))
            .await
            .unwrap();
        let mut head = [0u8; 6];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut head)
            .await
            .unwrap();
        assert_eq!(head[0], 0x16, "a handshake record, not an alert");
        assert_eq!(head[5], 2, "a ServerHello");

        // CBC and static RSA only: nothing rustls offers.
        let l = lab
            .attempt(
                "ecdsa",
                &client_hello(0x0303, &CBC_ONLY, Some("a.test"), Some(&SIGALGS)),
            )
            .await;
        assert!(
            text(&l, "reason").contains("no cipher suite in common"),
            "{l}"
        );
        assert!(text(&l, "hint").contains("CBC"), "{l}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_listener_refuses_missing_and_unknown_sni() {
    bounded(async {
        let lab = lab().await;
        let hello = |sni| client_hello(0x0303, &[0x1301, 0xc02b], sni, Some(&SIGALGS));
        let l = lab.attempt("strict", &hello(Some("nobody.test"))).await;
        assert_eq!(l["outcome"], "failed");
        assert!(
            text(&l, "reason").contains("no certificate for SNI \"nobody.test\""),
            "{l}"
        );
        assert!(text(&l, "hint").contains("add a [[certificate]]"), "{l}");
        let l = lab.attempt("strict", &hello(None)).await;
        assert!(text(&l, "reason").contains("sent no SNI"), "{l}");
        assert!(text(&l, "hint").contains("fallback_certificate"), "{l}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_rejects_the_fallback_certificate() {
    bounded(async {
        let lab = lab().await;
        // A client without SNI that wanted portal.test: the fallback (fb.test)
        // does not cover it, so the client aborts after our certificate.
        let proxy = lab.proxy.addr("ecdsa").unwrap();
        let tcp = TcpStream::connect(proxy).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let err = tls_over(tcp, &lab.pki.ca_der, &ClientOpts::no_sni("portal.test"))
            .await
            .err()
            .expect("the client must refuse fb.test for portal.test");
        assert!(err.to_string().contains("not valid for name"), "{err}");
        let l = lab.line(local, proxy).await;
        assert_eq!(l["outcome"], "failed");
        assert_eq!(l["fallback"], true);
        assert!(text(&l, "reason").contains("sent alert"), "{l}");
        assert!(
            text(&l, "hint").contains("rejected the fallback certificate \"fb\""),
            "{l}"
        );
    })
    .await
}
