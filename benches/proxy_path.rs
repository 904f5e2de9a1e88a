//! Load benchmark of the proxy path, in-process: a TLS client pool doing
//! keep-alive GETs through snigate to a hyper backend, and a burst of full
//! handshakes. Prints req/s and latency percentiles.
//!
//!   cargo bench --bench proxy_path            (DURATION=5 CONNS=50 by default)
//!
//! For numbers to compare with nginx and HAProxy use the shared harness:
//!   ../shared/bench/run.sh custom "$PWD/benches/bench-snigate.sh" snigate

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpStream};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn backend() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = socket.local_addr().expect("backend addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = socket.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"hello from backend\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("b.test").expect("name");
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["a.test".to_string(), "b.test".to_string()];
        let set = snigate::tools::gen_certs::generate(dir.path(), &names, snigate::tools::gen_certs::KeyAlgorithm::Ecdsa).expect("certs");
        let be = backend().await;
        let text = format!(
            "[[certificate]]\nname = \"b\"\nchain = \"b.test.crt\"\nkey = \"b.test.key\"\n\
             [[certificate]]\nname = \"fallback\"\nchain = \"fallback.crt\"\nkey = \"fallback.key\"\n\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fallback\"\ndefault_upstream = \"be\"\nalpn = [\"http/1.1\"]\n\
             [[upstream]]\nname = \"be\"\nservers = [\"{be}\"]\n"
        );
        let settings = Settings::parse(&dir.path().join("bench.toml"), &text).expect("config");
        let proxy = Proxy::start(settings).await.expect("proxy");
        let addr = proxy.addr("main").expect("addr");
        let cfg = client_config(&set.ca_cert);
        let duration = Duration::from_secs(env("DURATION", 5));
        let conns = env("CONNS", 50) as usize;

        // Keep-alive requests.
        let deadline = Instant::now() + duration;
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                let tls = connect(addr, cfg).await;
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("h1");
                tokio::spawn(conn);
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let req = hyper::Request::builder().uri("/").header("host", "b.test").body(Empty::<Bytes>::new()).expect("req");
                    let t = Instant::now();
                    let resp = send.send_request(req).await.expect("response");
                    resp.into_body().collect().await.expect("body");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all.sort();
        println!(
            "keep-alive GET: {} requests in {:?} = {:.0} req/s, p50 {:?}, p99 {:?} ({conns} connections, client in-process)",
            all.len(),
            duration,
            all.len() as f64 / duration.as_secs_f64(),
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );

        // Full handshakes (resumption disabled on the client).
        let n = env("HANDSHAKES", 2000) as usize;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for chunk in 0..conns {
            let cfg = cfg.clone();
            let per = n / conns + usize::from(chunk < n % conns);
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    drop(connect(addr, cfg.clone()).await);
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let took = start.elapsed();
        println!("full TLS 1.3 ECDSA handshakes: {n} in {took:?} = {:.0}/s (client and proxy share the CPU)", n as f64 / took.as_secs_f64());
        proxy.shutdown().await;
    });
}
