//! The floor under a TLS-terminating HTTP/1.1 reverse proxy built on
//! tokio, rustls and hyper: about the least such a proxy does per
//! keep-alive request, for `benches/cpu-request.sh` to measure beside
//! snigate and nginx. What snigate spends above it is snigate's own
//! (routing by SNI and Host, header rewriting and checks, limits, the
//! backend pool and balancing, metrics and logs); what it spends above
//! nginx is the stack's.
//!
//! It accepts on LISTEN, does the TLS handshake with tokio-rustls (CERT and
//! KEY, PEM files; ALPN http/1.1), serves HTTP/1.1 with hyper's server and
//! sends each request as it came, unchanged, to BACKEND over one hyper
//! client connection per client connection (opened with the connection,
//! kept for its life, driven by a task of its own as snigate's are), on one
//! current-thread runtime as snigate's `workers = 1`. No timeouts, no
//! limits, no header rewriting, no checks: not a proxy to deploy.
//!
//!   cargo bench --bench request_floor --no-run   (prints the executable)
//!   FLOOR_BIN=target/release/deps/request_floor-… benches/cpu-request.sh
//!
//! By hand: `request_floor LISTEN BACKEND CERT KEY`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, backend, cert, key] = &args[..] else {
        // `cargo bench` runs bench targets with `--bench`: nothing to do.
        eprintln!("usage: request_floor LISTEN BACKEND CERT KEY");
        return Ok(());
    };
    let listen: SocketAddr = listen.parse().map_err(invalid)?;
    let backend: SocketAddr = backend.parse().map_err(invalid)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(cert, key)?));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (client, _) = listener.accept().await?;
            let _ = client.set_nodelay(true);
            tokio::spawn(serve(client, acceptor.clone(), backend));
        }
    })
}

fn tls_config(cert: &str, key: &str) -> io::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(io::Error::other)?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(client: TcpStream, acceptor: TlsAcceptor, backend: SocketAddr) {
    let Ok(tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(upstream) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    tokio::spawn(connection);
    // hyper's server asks for the next request only once the response
    // before it has been written, so one request at a time holds the
    // sender; the lock is never held across an await.
    let sender = Arc::new(Mutex::new(Some(sender)));
    let service = service_fn(move |req| forward(sender.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

type Sender = Arc<Mutex<Option<SendRequest<Incoming>>>>;

async fn forward(sender: Sender, req: Request<Incoming>) -> Result<Response<Incoming>, io::Error> {
    let taken = sender
        .lock()
        .map_err(|_| io::Error::other("poisoned"))?
        .take();
    let Some(mut send) = taken else {
        return Err(io::Error::other("the backend connection is busy"));
    };
    send.ready().await.map_err(io::Error::other)?;
    let response = send.send_request(req);
    *sender.lock().map_err(|_| io::Error::other("poisoned"))? = Some(send);
    response.await.map_err(io::Error::other)
}

fn invalid(e: std::net::AddrParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}
