//! Header-name case on HTTP/1.1: Title-Case by default (what IIS and
//! browsers write), exactly as written with `preserve_header_case = true`.

use std::time::Duration;

use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

/// A raw backend: reports the request head it received, answers with a
/// mixed-case header.
async fn raw_backend() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nX-SharePoint-HealthScore: 0\r\nMicrosoftSharePointTeamServices: 16.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .await;
            });
        }
    });
    (addr, rx)
}

async fn exchange(preserve: bool) -> (String, String) {
    let (backend, mut seen) = raw_backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"be\"\npreserve_header_case = {preserve}\n\
         [[upstream]]\nname = \"be\"\nservers = [\"{backend}\"]\n"
    );
    let settings = Settings::parse(&dir.path().join("snigate.toml"), &text).expect("config");
    let proxy = Proxy::start(settings).await.expect("start");
    let mut c = TcpStream::connect(proxy.addr("main").expect("addr"))
        .await
        .expect("connect");
    c.write_all(b"PROPFIND /sites/team HTTP/1.1\r\nhost: portal.contoso.test\r\nx-ms-WebDAV-Test: 1\r\nDEPTH: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    c.read_to_string(&mut response).await.expect("read");
    let request = seen.recv().await.expect("backend saw the request");
    proxy.shutdown().await;
    (request, response)
}

#[tokio::test]
async fn title_case_by_default() {
    tokio::time::timeout(LIMIT, async {
        let (request, response) = exchange(false).await;
        assert!(
            request.contains("\r\nHost: portal.contoso.test\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nX-Ms-Webdav-Test: 1\r\n"), "{request}");
        assert!(request.contains("\r\nDepth: 1\r\n"), "{request}");
        assert!(
            response.contains("\r\nX-Sharepoint-Healthscore: 0\r\n"),
            "{response}"
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn exact_case_when_asked() {
    tokio::time::timeout(LIMIT, async {
        let (request, response) = exchange(true).await;
        assert!(
            request.contains("\r\nhost: portal.contoso.test\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nx-ms-WebDAV-Test: 1\r\n"), "{request}");
        assert!(request.contains("\r\nDEPTH: 1\r\n"), "{request}");
        assert!(
            response.contains("\r\nX-SharePoint-HealthScore: 0\r\n"),
            "{response}"
        );
        assert!(
            response.contains("\r\nMicrosoftSharePointTeamServices: 16.0\r\n"),
            "{response}"
        );
    })
    .await
    .expect("bounded");
}
