//! Clients: TLS with and without SNI (rustls, with a recording verifier),
//! HTTP/1.1 and h2 over them, and raw sockets watched for closing.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedCipherSuite,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{full, TestBody};

/// How a test client connects.
#[derive(Clone, Default)]
pub struct ClientOpts {
    /// SNI to send; `None` connects by IP address, which sends no SNI.
    pub sni: Option<String>,
    /// The name the served certificate must be valid for (default: `sni`).
    /// Without SNI and without this, the chain is still verified against the
    /// test CA but the name is not checked.
    pub verify_as: Option<String>,
    /// Restrict the cipher suites offered (in this order).
    pub suites: Option<Vec<SupportedCipherSuite>>,
    /// Offer TLS 1.2 only.
    pub tls12_only: bool,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
    /// Key exchange groups to offer, in this order (the first gets a key
    /// share); empty: the provider's default.
    pub kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
}

impl ClientOpts {
    /// A client that sends SNI `name` and verifies the certificate for it.
    pub fn sni(name: &str) -> Self {
        Self {
            sni: Some(name.into()),
            ..Default::default()
        }
    }

    /// A client that sends no SNI; the served chain must be valid for `verify_as`.
    pub fn no_sni(verify_as: &str) -> Self {
        Self {
            verify_as: Some(verify_as.into()),
            ..Default::default()
        }
    }

    /// Offer TLS 1.2 only, with exactly these suites.
    pub fn tls12_suites(mut self, suites: Vec<SupportedCipherSuite>) -> Self {
        self.tls12_only = true;
        self.suites = Some(suites);
        self
    }

    /// Offer exactly these key exchange groups, in this order.
    pub fn kx_groups(mut self, groups: &[&'static dyn rustls::crypto::SupportedKxGroup]) -> Self {
        self.kx_groups = groups.to_vec();
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }
}

/// Records the leaf the server presented, and verifies the chain against the
/// test CA for the expected name.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verify_as: Option<ServerName<'static>>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        match (&self.verify_as, server_name) {
            (Some(name), _) => {
                self.inner
                    .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            }
            // No name to check against: accept after recording; callers
            // compare the recorded leaf with the one they expect.
            (None, ServerName::IpAddress(_)) => Ok(ServerCertVerified::assertion()),
            (None, name) => {
                self.inner
                    .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The crypto provider test clients use, optionally restricted to `suites`.
pub fn client_provider(suites: Option<Vec<SupportedCipherSuite>>) -> Arc<CryptoProvider> {
    let base = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(match suites {
        Some(cipher_suites) => CryptoProvider {
            cipher_suites,
            ..base
        },
        None => base,
    })
}

fn client_config(
    ca: &CertificateDer<'static>,
    opts: &ClientOpts,
) -> (Arc<ClientConfig>, Arc<RecordingVerifier>) {
    let mut provider = client_provider(opts.suites.clone());
    if !opts.kx_groups.is_empty() {
        provider = Arc::new(CryptoProvider {
            kx_groups: opts.kx_groups.clone(),
            ..(*provider).clone()
        });
    }
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let verify_as = opts
        .verify_as
        .as_ref()
        .map(|n| ServerName::try_from(n.clone()).unwrap());
    let verifier = Arc::new(RecordingVerifier {
        inner,
        verify_as,
        seen: Mutex::new(None),
    });
    let versions: &[&'static rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = opts.alpn.clone();
    // A fresh configuration per connection: no session resumption, so every
    // handshake presents (and we record) a certificate.
    (Arc::new(config), verifier)
}

fn server_name(addr: SocketAddr, opts: &ClientOpts) -> ServerName<'static> {
    match &opts.sni {
        Some(n) => ServerName::try_from(n.clone()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    }
}

/// A completed client handshake.
pub struct Tls {
    pub stream: TlsStream<TcpStream>,
    /// The leaf certificate the server presented.
    pub leaf: CertificateDer<'static>,
    /// The client's own address (the proxy's `peer`).
    pub local: SocketAddr,
}

impl Tls {
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    pub fn suite(&self) -> Option<rustls::CipherSuite> {
        self.stream
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .map(|s| s.suite())
    }

    pub fn alpn(&self) -> Option<String> {
        self.stream
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }
}

/// Connects and completes a TLS handshake; the error is the client's view
/// (see [`rustls_error`]).
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    opts: &ClientOpts,
) -> io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, ca, opts).await
}

/// TLS handshake over an already connected socket.
pub async fn tls_over(
    tcp: TcpStream,
    ca: &CertificateDer<'static>,
    opts: &ClientOpts,
) -> io::Result<Tls> {
    let local = tcp.local_addr()?;
    let addr = tcp.peer_addr()?;
    let (config, verifier) = client_config(ca, opts);
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name(addr, opts), tcp)
        .await?;
    let leaf = verifier
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("handshake completed without a certificate");
    Ok(Tls {
        stream,
        leaf,
        local,
    })
}

/// The rustls error inside a handshake I/O error.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The bytes of the ClientHello a rustls client with `opts` would send.
pub fn client_hello_bytes(ca: &CertificateDer<'static>, opts: &ClientOpts) -> Vec<u8> {
    let (config, _) = client_config(ca, opts);
    let name = match &opts.sni {
        Some(n) => ServerName::try_from(n.clone()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (the echo backend's answer).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-backend` header: which backend answered.
    pub fn backend(&self) -> Option<String> {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// A request with a complete body.
pub fn request(method: &str, host: &str, path: &str, body: impl Into<Bytes>) -> Request<TestBody> {
    let body = body.into();
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        b = b.header("content-length", body.len().to_string());
    }
    b.body(full(body)).unwrap()
}

/// `GET path` with `Host: host`.
pub fn get(host: &str, path: &str) -> Request<TestBody> {
    request("GET", host, path, Bytes::new())
}

/// An HTTP/1.1 client on one connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl H1 {
    /// Speaks HTTP/1.1 over `io`.
    pub async fn new<S>(io: S) -> H1
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H1 { sender }
    }

    /// Sends a request; the response body is left to stream.
    pub async fn send_streaming(
        &mut self,
        req: Request<TestBody>,
    ) -> hyper::Result<Response<Incoming>> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, req: Request<TestBody>) -> Reply {
        let resp = self.send_streaming(req).await.expect("request failed");
        collect(resp).await
    }
}

/// Reads a whole response.
pub async fn collect(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .expect("response body failed")
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// What a test keeps about a TLS connection after giving the stream away.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub leaf: CertificateDer<'static>,
    pub local: SocketAddr,
    pub version: Option<rustls::ProtocolVersion>,
    pub suite: Option<rustls::CipherSuite>,
}

impl Tls {
    /// The facts of this connection, and an HTTP/1.1 client on it.
    pub async fn into_h1(self) -> (TlsInfo, H1) {
        let info = self.info();
        (info, H1::new(self.stream).await)
    }

    pub fn info(&self) -> TlsInfo {
        TlsInfo {
            leaf: self.leaf.clone(),
            local: self.local,
            version: self.version(),
            suite: self.suite(),
        }
    }
}

/// Connects with TLS (`opts`) and sends one HTTP/1.1 request.
pub async fn https_once(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    opts: &ClientOpts,
    req: Request<TestBody>,
) -> (Reply, TlsInfo) {
    let tls = tls_connect(addr, ca, opts)
        .await
        .expect("TLS handshake failed");
    let (info, mut h1) = tls.into_h1().await;
    (h1.send(req).await, info)
}

/// An h2 client over a TLS stream that negotiated "h2".
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<TestBody>,
}

impl H2 {
    pub async fn new<S>(io: S) -> H2
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .expect("h2 handshake failed");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { sender }
    }

    /// Sends a request; the response body is left to stream.
    pub async fn send_streaming(
        &mut self,
        req: Request<TestBody>,
    ) -> hyper::Result<Response<Incoming>> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }

    /// Sends a request (`uri` absolute: it carries `:authority`).
    pub async fn send(&mut self, req: Request<TestBody>) -> Reply {
        self.sender.ready().await.expect("h2 connection not ready");
        let resp = self
            .sender
            .send_request(req)
            .await
            .expect("h2 request failed");
        collect(resp).await
    }
}

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// How a connection ended from the client's side.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Orderly close (EOF) after `n` bytes from the server.
    Eof(usize),
    /// Reset or another read error after `n` bytes.
    Reset(usize),
}

/// Reads until the server closes the connection; `None` if it is still open
/// after `limit`.
pub async fn wait_closed(stream: &mut TcpStream, limit: Duration) -> Option<Ended> {
    let mut got = 0usize;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) => return Some(Ended::Eof(got)),
            Ok(Ok(n)) => got += n,
            Ok(Err(_)) => return Some(Ended::Reset(got)),
        }
    }
}

/// Whether the server has closed `stream` already (non-blocking look).
pub fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match stream.try_read(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Ok(0) | Err(_) => false,
        Ok(_) => true,
    }
}

/// A client configuration for `opts` to reuse across connections: its
/// session store then offers the sessions of earlier ones (resumption).
pub fn reusable_client_config(
    ca: &CertificateDer<'static>,
    opts: &ClientOpts,
) -> Arc<ClientConfig> {
    client_config(ca, opts).0
}

/// One HTTP/1.1 response read off a raw connection, as the bytes said it.
#[derive(Debug, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (no length: an
/// empty body) from `s`, leaving the connection open for the next one;
/// `None` when the connection ends or fails before the response's end.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<RawResponse> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let headers: std::collections::HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                return Some(RawResponse {
                    status,
                    headers,
                    body,
                });
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
