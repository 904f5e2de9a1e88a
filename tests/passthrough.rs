//! Passthrough listeners route the raw TLS stream by SNI without
//! terminating it: the backend receives the ClientHello byte for byte,
//! no SNI goes to default_upstream, SSLv2-format hellos too.

mod common;

use common::{capture, wait_for_json_lines};
use std::net::SocketAddr;
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
