//! Helpers shared by the end-to-end tests: a test PKI minted with rcgen,
//! in-process backends, TLS clients with and without SNI, HTTP/1.1 and h2
//! clients, and log polling.
//!
//! Everything runs on 127.0.0.1 with port 0; nothing synchronises by sleeping.
#![allow(dead_code)]

pub mod child;
pub mod process;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedCipherSuite,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// Upper bound for one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    bounded_for(TEST_TIMEOUT, f).await
}

/// Runs a test body under `limit`.
pub async fn bounded_for<F: Future>(limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// Key type of a minted leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Ecdsa,
    Rsa,
}

/// A minted leaf certificate, written to disk as PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub label: String,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

/// A test CA in a folder, and every leaf it issued (to tell which one a
/// server presented).
pub struct Pki {
    pub dir: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<Vec<(String, CertificateDer<'static>)>>,
}

impl Pki {
    /// A fresh ECDSA P-256 CA written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "snigate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_der: cert.der().clone(),
            ca_pem,
            issuer: Issuer::new(params, key),
            issued: Mutex::new(Vec::new()),
        }
    }

    /// Issues a leaf for `names` (DNS subjectAltNames; the first is also the
    /// CN) and writes `dir/LABEL.crt` and `dir/LABEL.key`.
    pub fn leaf(&self, label: &str, names: &[&str], key: Key) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let kp = match key {
            Key::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Key::Rsa => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        }
        .unwrap();
        let cert = params.signed_by(&kp, &self.issuer).unwrap();
        let chain = self.dir.join(format!("{label}.crt"));
        let keyf = self.dir.join(format!("{label}.key"));
        std::fs::write(&chain, cert.pem()).unwrap();
        std::fs::write(&keyf, kp.serialize_pem()).unwrap();
        self.issued
            .lock()
            .unwrap()
            .push((label.to_string(), cert.der().clone()));
        Leaf {
            label: label.to_string(),
            chain,
            key: keyf,
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// The label of the leaf with this DER, or "unknown certificate".
    pub fn which(&self, der: &CertificateDer<'_>) -> String {
        self.issued
            .lock()
            .unwrap()
            .iter()
            .find(|(_, d)| d.as_ref() == der.as_ref())
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| "unknown certificate".into())
    }
}

/// A `[[certificate]]` block for a leaf.
pub fn cert_toml(name: &str, leaf: &Leaf) -> String {
    format!(
        "[[certificate]]\nname = {}\nchain = {}\nkey = {}\n\n",
        toml_str(name),
        toml_str(&leaf.chain.display().to_string()),
        toml_str(&leaf.key.display().to_string())
    )
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// Writes `toml` to `dir/snigate.toml`, parses it and starts the proxy.
pub async fn start_proxy(dir: &Path, toml: &str) -> Proxy {
    let path = dir.join("snigate.toml");
    std::fs::write(&path, toml).unwrap();
    let settings = Settings::parse(&path, toml)
        .unwrap_or_else(|e| panic!("configuration rejected:\n{e}\n---\n{toml}"));
    match Proxy::start(settings).await {
        Ok(p) => p,
        Err(e) => panic!("proxy did not start:\n{e}\n---\n{toml}"),
    }
}

/// An address on which nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// Body type of backend responses and client requests.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

/// An in-process HTTP/1.1 backend that echoes what it saw as JSON.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
}

/// Starts an echo backend named `name`.
///
/// Every request gets `200` with `x-backend: NAME` and a JSON body:
/// `backend, method, path, version, host, headers{name: [values]}, body_len,
/// body_sha256`. `GET /download/N` instead streams N bytes of [`pattern`].
pub async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (n, r) = (name.to_string(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (name, requests) = (n.clone(), r.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let name = name.clone();
                    requests.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(echo(&name, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        name: name.to_string(),
        addr,
        requests,
    }
}

async fn echo(name: &str, req: Request<Incoming>) -> Response<TestBody> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if let Some(n) = path
        .strip_prefix("/download/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return Response::builder()
            .header("x-backend", name)
            .header("content-length", n.to_string())
            .body(PatternBody::new(n, None).boxed())
            .unwrap();
    }
    if path.starts_with("/hop-response") {
        // Hop-by-hop headers in a response, which the proxy must not pass on.
        return Response::builder()
            .header("x-backend", name)
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
            .body(full("hop"))
            .unwrap();
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get("host")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let (len, sha) = match try_hash_body(req.into_body()).await {
        Ok(r) => r,
        // The proxy gave up on the request half way; nobody reads this.
        Err(e) => {
            return Response::builder()
                .status(400)
                .body(full(format!("body failed: {e}")))
                .unwrap()
        }
    };
    let doc = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "version": version,
        "host": host,
        "headers": headers,
        "body_len": len,
        "body_sha256": sha,
    });
    Response::builder()
        .header("x-backend", name)
        .header("content-type", "application/json")
        .body(full(doc.to_string()))
        .unwrap()
}

/// Reads a body to its end, hashing it; never holds more than one frame.
pub async fn hash_body<B>(body: B) -> (u64, String)
where
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    try_hash_body(body).await.expect("body failed")
}

/// [`hash_body`], with the body's error.
pub async fn try_hash_body<B>(mut body: B) -> Result<(u64, String), String>
where
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{e:?}"))?;
        if let Ok(d) = frame.into_data() {
            len += d.remaining_len() as u64;
            hasher.update(d.chunk_bytes());
        }
    }
    Ok((len, hex(&hasher.finalize())))
}

/// Access to frame data without naming `bytes::Buf` at every call site.
pub trait DataBytes {
    fn remaining_len(&self) -> usize;
    fn chunk_bytes(&self) -> &[u8];
}

impl<T: bytes::Buf> DataBytes for T {
    fn remaining_len(&self) -> usize {
        self.remaining()
    }
    fn chunk_bytes(&self) -> &[u8] {
        self.chunk()
    }
}

/// A raw-socket backend: answers one request per connection with
/// `Connection: keep-alive`, then closes the socket anyway (a backend whose
/// keep-alive timer fired). Counts connections.
pub async fn close_after_one_backend(name: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (name, counter) = (name.to_string(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = format!("{{\"backend\":\"{name}\",\"connection\":{n}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.flush().await;
                // Dropping the socket closes it: the proxy holds a dead pooled connection.
            });
        }
    });
    (addr, conns)
}

/// What [`answer_once_backend`] does when a connection is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReuse {
    /// Close the connection as the next request arrives, without answering:
    /// its keep-alive timer fired just as the proxy reused the connection.
    Close,
    /// Read the next request and never answer it.
    Hang,
}

/// A raw-socket backend that answers the first request on a connection with
/// `Connection: keep-alive`, keeps the socket open, and then does `on_reuse`.
/// Counts connections.
pub async fn answer_once_backend(name: &str, on_reuse: OnReuse) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (name, counter) = (name.to_string(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = format!("{{\"backend\":\"{name}\",\"connection\":{n}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                match on_reuse {
                    OnReuse::Close => {
                        // Wait for the first byte of the next request, then
                        // drop the connection without reading or answering it.
                        let mut one = [0u8; 1];
                        let _ = s.peek(&mut one).await;
                    }
                    OnReuse::Hang => while let Ok(1..) = s.read(&mut chunk).await {},
                }
            });
        }
    });
    (addr, conns)
}

/// A backend that accepts connections, reads whatever comes, and never answers.
pub async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Streamed pattern bodies
// ---------------------------------------------------------------------------

/// Size of one generated chunk.
pub const CHUNK: usize = 64 * 1024;

fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Chunk `index` of the pattern: a fixed pseudo-random block stamped with
/// its index, so lost, duplicated or reordered chunks change the hash.
pub fn pattern_chunk(index: u64, len: usize) -> Bytes {
    let mut b = BytesMut::from(&block()[..len]);
    let stamp = index.to_le_bytes();
    let n = stamp.len().min(len);
    b[..n].copy_from_slice(&stamp[..n]);
    b.freeze()
}

/// SHA-256 (hex) of the first `total` bytes of the pattern.
pub fn pattern_sha256(total: u64) -> String {
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    let mut index = 0u64;
    while sent < total {
        let len = (total - sent).min(CHUNK as u64) as usize;
        hasher.update(pattern_chunk(index, len));
        sent += len as u64;
        index += 1;
    }
    hex(&hasher.finalize())
}

/// A body of `total` pattern bytes generated chunk by chunk, never held
/// whole; optionally hashing what it yields.
pub struct PatternBody {
    total: u64,
    sent: u64,
    index: u64,
    hasher: Option<Arc<Mutex<Sha256>>>,
}

impl PatternBody {
    pub fn new(total: u64, hasher: Option<Arc<Mutex<Sha256>>>) -> Self {
        Self {
            total,
            sent: 0,
            index: 0,
            hasher,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - self.sent).min(CHUNK as u64) as usize;
        let chunk = pattern_chunk(self.index, len);
        if let Some(h) = &self.hasher {
            h.lock().unwrap().update(&chunk);
        }
        self.sent += len as u64;
        self.index += 1;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

/// A body fed chunk by chunk through a channel (a client uploading slowly).
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// The body, and the sender that feeds it; dropping the sender ends it.
    pub fn new() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

// ---------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------

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
    pub alpn: Option<String>,
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
            alpn: self.alpn(),
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

// ---------------------------------------------------------------------------
// Logs and process facts
// ---------------------------------------------------------------------------

/// Polls a JSON-lines file until a line satisfies `pred`, up to `limit`.
pub async fn wait_for_json_line(
    path: &Path,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if pred(&v) {
                    return v;
                }
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "no matching line in {} within {limit:?}; file:\n{text}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls a JSON-lines file until it holds at least `n` lines, up to
/// `limit`; returns what is there then.
pub async fn wait_for_json_lines(path: &Path, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let lines = json_lines(path);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every JSON line of a file.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// This process's resident set size in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A ClientHello record: `version` as legacy_version, these suites, an SNI
/// when given, supported_groups P-256/P-384, uncompressed points, and a
/// signature_algorithms extension when `sigalgs` is given.
pub fn client_hello(
    version: u16,
    suites: &[u16],
    sni: Option<&str>,
    sigalgs: Option<&[u16]>,
) -> Vec<u8> {
    fn u16s(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut d = Vec::new();
        d.extend(((name.len() + 3) as u16).to_be_bytes());
        d.push(0);
        d.extend((name.len() as u16).to_be_bytes());
        d.extend(name.as_bytes());
        ext(&mut exts, 0x0000, &d);
    }
    let groups = u16s(&[0x0017, 0x0018]);
    let mut d = (groups.len() as u16).to_be_bytes().to_vec();
    d.extend(groups);
    ext(&mut exts, 0x000a, &d);
    ext(&mut exts, 0x000b, &[1, 0]);
    if let Some(algs) = sigalgs {
        let a = u16s(algs);
        let mut d = (a.len() as u16).to_be_bytes().to_vec();
        d.extend(a);
        ext(&mut exts, 0x000d, &d);
    }
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x5a; 32]);
    body.push(0);
    let s = u16s(suites);
    body.extend((s.len() as u16).to_be_bytes());
    body.extend(s);
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// The bytes of a captured ClientHello in `tests/data/hellos` (hex text).
pub fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hellos")
        .join(name);
    let hex = std::fs::read_to_string(&path).expect("capture");
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------------------
// The admin endpoint
// ---------------------------------------------------------------------------

/// `GET path` on the admin endpoint of `proxy`, on a fresh plain connection.
pub async fn admin_get(proxy: &Proxy, path: &str) -> Reply {
    let addr = proxy.admin_addr().expect("admin endpoint configured");
    let mut h1 = H1::new(TcpStream::connect(addr).await.unwrap()).await;
    h1.send(get("127.0.0.1", path)).await
}

/// One series of a scrape: name, labels, value.
pub type Series = (String, Vec<(String, String)>, f64);

/// A Prometheus text exposition, parsed into series and values.
pub struct Scrape(pub Vec<Series>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (head, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), Vec::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closing brace");
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            series.push((name, labels, value));
        }
        Scrape(series)
    }

    /// The value of the one series named `name` whose labels include
    /// `labels`; 0 when there is none (a counter never touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches several series");
        found.first().copied().unwrap_or(0.0)
    }
}

/// Scrapes `/metrics` until `ready` holds (up to 5 s), and returns that scrape.
pub async fn scrape_until(proxy: &Proxy, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = admin_get(proxy, "/metrics").await;
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body.to_vec()).expect("UTF-8 metrics");
        let scrape = Scrape::parse(&text);
        if ready(&scrape) {
            return scrape;
        }
        if Instant::now() >= deadline {
            panic!("metrics never reached the expected state:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
