//! TLS towards backends (`[[upstream]] tls = { ... }`): the rustls client
//! configuration of an upstream, how its backends' certificates are checked,
//! the server name (SNI) a request is re-encrypted with, and handshake
//! failures in plain words.
//!
//! How a backend certificate is accepted:
//!
//! - `ca`: the chain must lead to a certificate of that PEM file and the leaf
//!   must be valid now and for the server name (below).
//! - `pin_sha256`: the SHA-256 of the **leaf** certificate's DER (base64) must
//!   be one of the pins. Only the leaf counts, as HAProxy and nginx users
//!   expect (an intermediate or a root is what `ca` is for). A pin alone is
//!   the whole trust: neither chain, name nor validity dates are checked, so
//!   an IIS self-signed certificate works.
//! - `ca` and `pin_sha256` together: both must hold.
//! - `insecure_skip_verify = true`: any certificate is accepted (`ca` is then
//!   ignored; pins, when given, are still required).
//! - none of them: the system CA bundle, with the name checked (as `ca`).
//!
//! In every mode the handshake signatures are verified with the
//! certificate's key, so the backend holds the key of what it presented.
//!
//! The server name is `server_name` when set, else the request's Host
//! (without port), else the server's host. An IP address sends no SNI and is
//! checked against the certificate's IP subjectAltNames.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::UpstreamTlsSettings;

/// Where the system CA bundle is looked for when an upstream sets neither
/// `ca`, `pin_sha256` nor `insecure_skip_verify` (after `SSL_CERT_FILE`).
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// An upstream's TLS client side, built once at start.
pub struct UpstreamTls {
    connector: TlsConnector,
    /// `server_name`, when configured.
    fixed_name: Option<ServerName<'static>>,
    /// What the chain is checked against, for messages: `the ca file X`.
    trust: Option<String>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("fixed_name", &self.fixed_name)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The client configuration for upstream `upstream`: TLS 1.2 and 1.3,
    /// ALPN `http/1.1`, certificates checked as the module describes. The
    /// error names the upstream and, for a CA file, the file.
    pub fn new(
        upstream: &str,
        settings: &UpstreamTlsSettings,
        provider: Arc<CryptoProvider>,
    ) -> Result<UpstreamTls, String> {
        let fixed_name = match &settings.server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                format!("upstream \"{upstream}\": tls server_name \"{n}\" is not a DNS name or an IP address")
            })?),
            None => None,
        };
        let roots = if settings.insecure_skip_verify {
            None
        } else if let Some(ca) = &settings.ca {
            Some((
                load_roots(ca).map_err(|e| {
                    format!("upstream \"{upstream}\": tls ca {}: {e}", ca.display())
                })?,
                format!("the ca file {}", ca.display()),
            ))
        } else if settings.pin_sha256.is_empty() {
            let Some(bundle) = system_bundle() else {
                return Err(format!("upstream \"{upstream}\": tls sets no ca, pin_sha256 or insecure_skip_verify, and no system CA bundle was found (SSL_CERT_FILE, {}): set ca", SYSTEM_BUNDLES.join(", ")));
            };
            Some((
                load_roots(&bundle).map_err(|e| {
                    format!(
                        "upstream \"{upstream}\": system CA bundle {}: {e}",
                        bundle.display()
                    )
                })?,
                format!("a CA of the system bundle {}", bundle.display()),
            ))
        } else {
            None
        };
        let (webpki, trust) = match roots {
            Some((roots, trust)) => {
                let v =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("upstream \"{upstream}\": tls: {e}"))?;
                (Some(v), Some(trust))
            }
            None => (None, None),
        };
        let verifier = Arc::new(BackendVerifier {
            webpki,
            pins: settings.pin_sha256.clone(),
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("upstream \"{upstream}\": tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            fixed_name,
            trust,
        })
    }

    /// What an operator should hear about these settings: at start as a
    /// warning, from `snigate check` as a note.
    pub fn notes(upstream: &str, settings: &UpstreamTlsSettings) -> Vec<String> {
        let mut notes = Vec::new();
        if settings.insecure_skip_verify {
            if settings.pin_sha256.is_empty() {
                notes.push(format!("upstream \"{upstream}\": tls insecure_skip_verify = true: backend certificates are NOT verified; anyone on the network path can impersonate the backend and read the traffic"));
            }
            if settings.ca.is_some() {
                notes.push(format!("upstream \"{upstream}\": tls ca is ignored because insecure_skip_verify = true"));
            }
        }
        notes
    }

    /// The server name for a request whose Host (normalized, without port)
    /// is `host`, to `server_addr` (`host:port`).
    pub fn server_name(
        &self,
        host: Option<&str>,
        server_addr: &str,
    ) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.fixed_name {
            return Ok(n.clone());
        }
        let name = match host {
            Some(h) => h,
            None => addr_host(server_addr),
        };
        ServerName::try_from(name.to_string())
            .map_err(|_| format!("TLS: \"{name}\" is not a valid server name for SNI"))
    }

    /// The TLS handshake on a connected socket, within `timeout`; the error
    /// in plain words, naming the server name.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, String> {
        let shown = show_name(&name);
        match tokio::time::timeout(timeout, self.connector.connect(name, stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("TLS handshake for {shown}: {}", self.describe(&e))),
            Err(_) => Err(format!(
                "TLS handshake for {shown}: no answer within {timeout:?}"
            )),
        }
    }

    fn describe(&self, e: &io::Error) -> String {
        let Some(err) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return format!("the backend ended the handshake: {e}");
        };
        match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::Other(OtherError(inner)) => inner.to_string(),
                CertificateError::UnknownIssuer => format!(
                    "backend certificate is not issued by {}",
                    self.trust.as_deref().unwrap_or("a trusted CA")
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!("backend {cert}"),
                other => format!("backend certificate rejected: {other}"),
            },
            rustls::Error::AlertReceived(alert) => {
                format!("the backend refused the handshake (alert {alert:?})")
            }
            other => other.to_string(),
        }
    }
}

/// The name as an operator reads it in a log line.
fn show_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => format!("{} (no SNI)", std::net::IpAddr::from(*ip)),
        other => format!("{other:?}"),
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn addr_host(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map(|(h, _)| h).unwrap_or(rest);
    }
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

/// Every certificate of a PEM file, as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut bad = 0;
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        other => other.to_string(),
    })?;
    for cert in iter {
        let cert = cert.map_err(|e| format!("not a PEM certificate file: {e}"))?;
        if roots.add(cert).is_err() {
            bad += 1;
        }
    }
    if roots.is_empty() {
        return Err(if bad > 0 {
            format!("none of its {bad} certificate(s) can be used as a CA")
        } else {
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()
        });
    }
    Ok(roots)
}

/// The system CA bundle: `SSL_CERT_FILE`, else the first of
/// [`SYSTEM_BUNDLES`] that exists.
fn system_bundle() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(p));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The pin of a certificate: base64 (standard, padded) SHA-256 of its DER.
pub fn pin_of(der: &[u8]) -> String {
    base64(&Sha256::digest(der))
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The leaf matched none of the pins.
#[derive(Debug)]
struct PinMismatch {
    got: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backend certificate does not match pin_sha256 (got \"{}\")",
            self.got
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Checks a backend's certificate: the chain through `webpki` when there is
/// one, then the leaf against `pins` when there are any; handshake
/// signatures always.
#[derive(Debug)]
struct BackendVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(webpki) = &self.webpki {
            webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
        }
        if !self.pins.is_empty() {
            let got = pin_of(end_entity.as_ref());
            if !self.pins.contains(&got) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(PinMismatch { got })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        // SHA-256 of "abc", as `openssl dgst -sha256 -binary | base64` prints it.
        assert_eq!(
            pin_of(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn host_of_an_address() {
        assert_eq!(addr_host("10.0.0.5:443"), "10.0.0.5");
        assert_eq!(addr_host("iis1.corp:443"), "iis1.corp");
        assert_eq!(addr_host("[::1]:443"), "::1");
    }
}
