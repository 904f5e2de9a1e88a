//! An upstream server that cannot be reached is skipped: requests go to the
//! next server instead of failing (they were never sent).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_dead_server_is_skipped() {
    tokio::time::timeout(LIMIT, async {
        let live = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_addr = live.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = live.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"live")))) });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        // A port nobody listens on.
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{dead}\", \"{live_addr}\"]\n"
        );
        let settings = Settings::parse(&dir.path().join("snigate.toml"), &text).expect("config");
        let proxy = Proxy::start(settings).await.expect("start");
        for i in 0..6 {
            // A new client connection each time, so no pooled connection hides the dead server.
            let s = TcpStream::connect(proxy.addr("main").expect("addr")).await.expect("connect");
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.expect("h1");
            tokio::spawn(conn);
            let req = hyper::Request::builder().uri(format!("/{i}")).header("host", "x.test").body(Empty::<Bytes>::new()).expect("req");
            let resp = send.send_request(req).await.expect("response");
            assert_eq!(resp.status(), 200, "request {i}");
            assert_eq!(resp.into_body().collect().await.expect("body").to_bytes(), "live");
        }
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}
