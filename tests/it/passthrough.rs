//! Passthrough listeners route the raw TLS stream by SNI without
//! terminating it: the backend receives the ClientHello byte for byte,
//! no SNI goes to default_upstream, SSLv2-format hellos too.

use crate::common;

use crate::common::{capture, wait_for_json_lines};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

/// A backend that reads everything until the client half-closes, reports
/// it, then answers with its name and closes.
async fn recording_backend(name: &'static str) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                let _ = tx.send(got);
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

/// Sends `hello` plus a trailer, half-closes, and returns what came back.
async fn exchange(proxy: SocketAddr, hello: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(hello).await.expect("write");
    s.write_all(b"...more client bytes").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.expect("read");
    String::from_utf8_lossy(&back).into_owned()
}

#[tokio::test]
async fn passthrough_routes_raw_tls_by_sni() {
    tokio::time::timeout(LIMIT, async {
        let (labs, mut labs_rx) = recording_backend("ssllabs-backend").await;
        let (legacy, mut legacy_rx) = recording_backend("legacy-backend").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            r#"
[log]
handshake_log = "handshakes.jsonl"
[[listener]]
name = "pt"
bind = ["127.0.0.1:0"]
mode = "passthrough"
default_upstream = "legacy"
[[route]]
hosts = ["dev.ssllabs.com"]
upstream = "labs"
[[upstream]]
name = "labs"
servers = ["{labs}"]
[[upstream]]
name = "legacy"
servers = ["{legacy}"]
"#
        );
        let settings = Settings::parse(&dir.path().join("snigate.toml"), &text).expect("config");
        let proxy = Proxy::start(settings).await.expect("start");
        let addr = proxy.addr("pt").expect("addr");

        let win10 = capture("win10_ie11_schannel_tls12.hex");
        assert_eq!(exchange(addr, &win10).await, "ssllabs-backend");
        let mut want = win10.clone();
        want.extend_from_slice(b"...more client bytes");
        assert_eq!(
            labs_rx.recv().await.expect("labs saw it"),
            want,
            "hello and later bytes arrive intact"
        );

        for file in [
            "xp_ie8_schannel_tls10_nosni.hex",
            "java6u45_sslv2hello_nosni.hex",
        ] {
            let hello = capture(file);
            assert_eq!(exchange(addr, &hello).await, "legacy-backend", "{file}");
            let got = legacy_rx.recv().await.expect("legacy saw it");
            assert_eq!(&got[..hello.len()], &hello[..], "{file}");
        }

        // Every connection has its line with outcome "passthrough".
        let log = dir.path().join("handshakes.jsonl");
        let lines = wait_for_json_lines(&log, 3, LIMIT).await;
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines.iter().all(|l| l["outcome"] == "passthrough"),
            "{lines:#?}"
        );
        assert_eq!(lines[0]["upstream"], "labs");
        assert_eq!(lines[0]["sni"], "dev.ssllabs.com");
        assert_eq!(lines[1]["upstream"], "legacy");
        assert_eq!(lines[1]["sni"], serde_json::Value::Null);
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}

/// A TLS server presenting `leaf` (and nothing else) that answers one
/// HTTP/1.1 request per connection with `name` and the SNI it received.
async fn tls_backend(name: &'static str, leaf: &common::Leaf) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from(leaf.der.to_vec())];
    let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = socket.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                // Read the request head, then answer and close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name} sni={sni}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// The client completes its handshake with the backend itself: SNI a.test
/// sees a.test's certificate, b.test b.test's (RSA), and a client without
/// SNI or with a name no route has sees the default backend's.
#[tokio::test]
async fn passthrough_reaches_real_tls_backends_by_sni() {
    use common::{get, https_once, ClientOpts, Key, Pki};
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(dir.path());
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let b = pki.leaf("b", &["b.test"], Key::Rsa);
        let fallback = pki.leaf("fallback", &["fallback.test"], Key::Ecdsa);
        let a_addr = tls_backend("backend-a", &a).await;
        let b_addr = tls_backend("backend-b", &b).await;
        let default_addr = tls_backend("backend-default", &fallback).await;
        let text = format!(
            r#"
[log]
handshake_log = "handshakes.jsonl"
[[listener]]
name = "pt"
bind = ["127.0.0.1:0"]
mode = "passthrough"
default_upstream = "default"
[[route]]
hosts = ["a.test"]
upstream = "a"
[[route]]
hosts = ["b.test"]
upstream = "b"
[[upstream]]
name = "a"
servers = ["{a_addr}"]
[[upstream]]
name = "b"
servers = ["{b_addr}"]
[[upstream]]
name = "default"
servers = ["{default_addr}"]
"#
        );
        let settings = Settings::parse(&dir.path().join("snigate.toml"), &text).expect("config");
        let proxy = Proxy::start(settings).await.expect("start");
        let addr = proxy.addr("pt").expect("addr");

        let cases = [
            (ClientOpts::sni("a.test"), "a", "backend-a sni=a.test"),
            (ClientOpts::sni("b.test"), "b", "backend-b sni=b.test"),
            (
                ClientOpts::no_sni("fallback.test"),
                "fallback",
                "backend-default sni=-",
            ),
            (
                ClientOpts {
                    sni: Some("other.test".into()),
                    verify_as: Some("fallback.test".into()),
                    ..Default::default()
                },
                "fallback",
                "backend-default sni=other.test",
            ),
        ];
        for (opts, cert, answer) in &cases {
            let (reply, info) = https_once(addr, &pki.ca_der, opts, get("x", "/")).await;
            assert_eq!(pki.which(&info.leaf), *cert, "{:?}", opts.sni);
            assert_eq!(reply.text(), *answer, "{:?}", opts.sni);
        }
        let b_tls = https_once(addr, &pki.ca_der, &cases[1].0, get("b.test", "/"))
            .await
            .1;
        assert!(
            matches!(
                b_tls.version,
                Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
            ),
            "{b_tls:?}"
        );

        let log = dir.path().join("handshakes.jsonl");
        let lines = wait_for_json_lines(&log, 5, LIMIT).await;
        let upstreams: Vec<_> = lines.iter().map(|l| l["upstream"].clone()).collect();
        assert_eq!(
            upstreams,
            ["a", "b", "default", "default", "b"],
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| l["outcome"] == "passthrough"));
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}
