//! TLS termination: which certificate a ClientHello gets, the rustls server
//! configuration per (listener, certificate), and the handshake itself.
//!
//! snigate reads and parses the ClientHello itself (see `hello.rs`) and picks
//! the certificate from that, so the choice, the log line and the fallback
//! all come from one place; rustls then runs the handshake, reading those
//! bytes first, with a configuration that holds exactly that certificate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::tls::certs::{KeyKind, LoadedCertificate};
use crate::tls::failure::HandshakeFailure;
use crate::tls::hello::ClientHelloInfo;
use crate::tls::server_stream::{self, ServerTlsStream, Transport};

/// A certificate of the [`CertificateStore`]: its place in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateId(usize);

impl CertificateId {
    /// The place in declaration order, which also indexes anything kept per
    /// certificate (a listener's rustls configurations, OpenSSL contexts).
    pub fn index(self) -> usize {
        self.0
    }
}

/// The crypto provider snigate uses: aws-lc-rs with the suites in server
/// preference order.
///
/// For TLS 1.2, ECDHE_ECDSA with AES-128-GCM comes first: old Windows SChannel
/// (7, 8, 8.1) pairs AES-256-GCM-SHA384 with P-384 and behaves best with
/// AES-128-GCM on P-256; AES-128 is also the cheaper cipher everywhere.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let base = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..base
    })
}

/// Every loaded certificate, indexed by the names it serves.
#[derive(Debug, Default)]
pub struct CertificateStore {
    certificates: Vec<LoadedCertificate>,
    /// Configuration name -> certificate (names are unique).
    by_name: HashMap<String, CertificateId>,
    /// Exact name -> certificates in declaration order.
    exact: HashMap<String, Vec<CertificateId>>,
    /// Wildcard suffix without `*.` (`apps.test` for `*.apps.test`).
    wildcard: HashMap<String, Vec<CertificateId>>,
}

/// What the certificate choice for one ClientHello came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Serve this certificate; `fallback` when it is the listener's fallback
    /// (no SNI, or an SNI that matches no certificate).
    Serve {
        certificate: CertificateId,
        fallback: bool,
    },
    /// Refuse the handshake (strict SNI), with the reason in plain words.
    Refuse(String),
}

impl CertificateStore {
    /// Indexes certificates by their names.
    pub fn new(certificates: Vec<LoadedCertificate>) -> Self {
        let mut store = CertificateStore {
            certificates,
            ..Default::default()
        };
        for (i, c) in store.certificates.iter().enumerate() {
            let id = CertificateId(i);
            store.by_name.entry(c.name.clone()).or_insert(id);
            for name in &c.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut store.wildcard, suffix.to_string()),
                    None => (&mut store.exact, name.clone()),
                };
                let ids = map.entry(key).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        store
    }

    /// The certificate with this configuration name.
    pub fn by_name(&self, name: &str) -> Option<CertificateId> {
        self.by_name.get(name).copied()
    }

    /// The certificate behind an id.
    pub fn get(&self, id: CertificateId) -> &LoadedCertificate {
        &self.certificates[id.0]
    }

    /// Every certificate.
    pub fn all(&self) -> &[LoadedCertificate] {
        &self.certificates
    }

    /// Chooses the certificate for a ClientHello on a listener: exact SNI >
    /// one-label wildcard > fallback; strict listeners refuse the last case.
    /// Among equal matches the client's capabilities choose (ECDSA if it can
    /// take one, else RSA), then declaration order.
    pub fn select(
        &self,
        hello: &ClientHelloInfo,
        fallback: Option<CertificateId>,
        strict: bool,
    ) -> Selection {
        let sni = hello.server_name();
        let sni = sni.as_deref();
        if let Some(sni) = sni {
            let candidates = self.exact.get(sni).or_else(|| {
                let (_, parent) = sni.split_once('.')?;
                self.wildcard.get(parent)
            });
            if let Some(ids) = candidates {
                return Selection::Serve {
                    certificate: self.prefer(ids, hello),
                    fallback: false,
                };
            }
        }
        if strict {
            return Selection::Refuse(match sni {
                None => "the client sent no SNI and the listener has strict_sni = true".into(),
                Some(s) => {
                    format!("no certificate for SNI \"{s}\" and the listener has strict_sni = true")
                }
            });
        }
        match fallback {
            Some(id) => Selection::Serve {
                certificate: id,
                fallback: true,
            },
            None => Selection::Refuse(
                "no certificate matches and the listener has no fallback_certificate".into(),
            ),
        }
    }

    fn prefer(&self, ids: &[CertificateId], hello: &ClientHelloInfo) -> CertificateId {
        let want = if hello.offers_ecdsa() {
            KeyKind::Ecdsa
        } else {
            KeyKind::Rsa
        };
        ids.iter()
            .copied()
            .find(|id| self.certificates[id.0].key_kind == want)
            .unwrap_or(ids[0])
    }
}

/// Always answers with one certificate: the choice was made before rustls
/// saw the hello.
#[derive(Debug)]
struct FixedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What every server configuration shares: provider, session cache, tickets.
#[derive(Clone)]
pub struct TlsShared {
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    /// Rotating random keys (rustls's ticketer): the default for listeners
    /// without `session_ticket_keys`.
    ticketer: Arc<dyn ProducesTickets>,
}

/// Session cache entries kept for TLS 1.2 session-id resumption.
const SESSION_CACHE_SIZE: usize = 16_384;

impl TlsShared {
    /// A provider and resumption state for one process.
    pub fn new(provider: Arc<CryptoProvider>) -> Result<Self, rustls::Error> {
        Ok(Self {
            provider,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        })
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// A server configuration that serves `key` with the listener's ALPN list.
    ///
    /// Resumption is on for TLS 1.3 (tickets) and TLS 1.2 (session ids in
    /// the shared cache, and tickets): tickets are sealed by `tickets` (a
    /// listener's `session_ticket_keys` file, see [`crate::tls::tickets`]) or,
    /// when `None`, by the shared rotating ticketer. Both tickets and cached
    /// sessions are bound to `key`'s certificate: see [`CertificateBound`].
    pub fn server_config(
        &self,
        key: Arc<CertifiedKey>,
        alpn: &[String],
        tickets: Option<Arc<dyn ProducesTickets>>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let bound = CertificateBound::context(&key)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCertificate(key)));
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.ignore_client_order = true;
        config.session_storage = Arc::new(CertificateBound {
            inner: self.sessions.clone(),
            certificate: bound,
        });
        config.ticketer = Arc::new(CertificateBound {
            inner: tickets.unwrap_or_else(|| self.ticketer.clone()),
            certificate: bound,
        });
        Ok(Arc::new(config))
    }
}

/// Resumption state (a ticket, a cached TLS 1.2 session) that only a
/// configuration serving the same certificate can use.
///
/// rustls checks the SNI, the suite and extended master secret before it
/// resumes, not the certificate: every listener shares one session cache
/// and ticketer, and one SNI (or none) can be served different
/// certificates (each listener its own fallback), so without this a client
/// that keys its sessions by host or IP address alone (rustls, and many
/// others, ignore the port) would resume, on one listener, a session
/// whose certificate another listener presented. Bound to the certificate
/// (not to the listener's name), a session still resumes on any instance
/// that serves the same certificate with the same ticket keys.
#[derive(Debug)]
struct CertificateBound<T: ?Sized> {
    inner: Arc<T>,
    /// The first bytes of the SHA-256 of the leaf certificate's DER.
    certificate: [u8; CERTIFICATE_CONTEXT_LEN],
}

/// Bytes of the certificate hash kept: enough to tell a process's
/// certificates apart, and added to every ticket and cache key.
const CERTIFICATE_CONTEXT_LEN: usize = 16;

impl CertificateBound<()> {
    fn context(key: &CertifiedKey) -> Result<[u8; CERTIFICATE_CONTEXT_LEN], rustls::Error> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.end_entity_cert()?);
        let mut context = [0u8; CERTIFICATE_CONTEXT_LEN];
        context.copy_from_slice(&digest[..CERTIFICATE_CONTEXT_LEN]);
        Ok(context)
    }
}

impl<T: ?Sized> CertificateBound<T> {
    /// `bytes` prefixed with the certificate context.
    fn bind(&self, bytes: &[u8]) -> Vec<u8> {
        let mut bound = Vec::with_capacity(CERTIFICATE_CONTEXT_LEN + bytes.len());
        bound.extend_from_slice(&self.certificate);
        bound.extend_from_slice(bytes);
        bound
    }
}

impl ProducesTickets for CertificateBound<dyn ProducesTickets> {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(&self.bind(plain))
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let mut plain = self.inner.decrypt(cipher)?;
        if plain.get(..CERTIFICATE_CONTEXT_LEN)? != self.certificate {
            return None;
        }
        plain.drain(..CERTIFICATE_CONTEXT_LEN);
        Some(plain)
    }
}

impl StoresServerSessions for CertificateBound<dyn StoresServerSessions> {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(self.bind(&key), value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(&self.bind(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(&self.bind(key))
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// A completed handshake's parameters, for the log.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub version: &'static str,
    pub suite: String,
    /// The key exchange group ([`group_name`]); `None` without a key
    /// exchange (a resumed TLS 1.2 session).
    pub group: Option<&'static str>,
    pub alpn: Option<String>,
    /// The client resumed an earlier session (TLS 1.3 ticket, TLS 1.2
    /// session id or ticket).
    pub resumed: bool,
}

/// The name of a key exchange group in logs and metrics: its IANA TLS
/// Supported Groups name (`X25519MLKEM768`, `X25519`, `secp256r1`, ...),
/// `"unknown"` for a code point without one (rustls negotiates only the
/// groups of its provider, which all have one).
pub fn group_name(group: rustls::NamedGroup) -> &'static str {
    super::groups::name(u16::from(group)).unwrap_or("unknown")
}

/// Runs the rustls handshake on `io` under one deadline; `hello` holds the
/// bytes already read from it (the ClientHello), which rustls reads first.
pub async fn handshake<T: Transport>(
    io: T,
    hello: Vec<u8>,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<(ServerTlsStream<T>, Negotiated), HandshakeFailure> {
    let accept = server_stream::accept(io, hello, config);
    let tls = match tokio::time::timeout(timeout, accept).await {
        Err(_) => return Err(HandshakeFailure::Timeout),
        Ok(Err(e)) => return Err(HandshakeFailure::of_io(&e)),
        Ok(Ok(tls)) => tls,
    };
    let negotiated = Negotiated::of(tls.session());
    Ok((tls, negotiated))
}

impl Negotiated {
    /// What an established connection's handshake agreed on.
    fn of(conn: &rustls::CommonState) -> Self {
        Negotiated {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
                _ => "?",
            },
            suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            group: conn
                .negotiated_key_exchange_group()
                .map(|g| group_name(g.name())),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }
}

/// A fatal `unrecognized_name` alert, sent before closing a strict refusal.
pub const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70];
/// A fatal `handshake_failure` alert.
pub const ALERT_HANDSHAKE_FAILURE: [u8; 7] = [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

#[cfg(test)]
mod tests {
    use super::*;

    /// rustls' prefer-post-quantum feature is on: the hybrid group leads the
    /// provider's list (what snigate's TLS client to backends offers first),
    /// and the classical groups follow as before.
    #[test]
    fn the_provider_prefers_the_hybrid_post_quantum_group() {
        let names: Vec<&str> = crypto_provider()
            .kx_groups
            .iter()
            .map(|g| group_name(g.name()))
            .collect();
        assert_eq!(
            names,
            ["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]
        );
        assert_eq!(names, crate::observe::metrics::KEY_EXCHANGE_GROUPS[..4]);
    }
}
