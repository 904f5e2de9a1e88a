//! The OpenSSL server context of a listener's `legacy_tls` (cargo feature
//! `legacy-tls`): built with the state, used by
//! [`crate::frontend::legacy_tls`] for the clients rustls cannot serve.

use std::path::Path;

use openssl::ssl::{
    AlpnError, HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod,
    SslOptions, SslRef, SslVersion,
};

use crate::config::{CertificateSource, LegacyTlsSettings, LegacyTlsVersion};

/// ALPN protocols offered, in wire format: HTTP/1.1 only (h2 requires TLS
/// 1.2 with AEAD suites, which rustls already serves).
const ALPN: &[u8] = b"\x08http/1.1";

/// The OpenSSL server context for one listener's `legacy_tls` and one
/// certificate (its PEM chain and key files, or its pfx).
pub fn context(
    settings: &LegacyTlsSettings,
    source: &CertificateSource,
) -> Result<SslContext, String> {
    let mut b = SslContext::builder(SslMethod::tls_server())
        .map_err(|e| format!("cannot set up OpenSSL: {}", openssl_words(&e)))?;
    let min = match settings.min_version {
        LegacyTlsVersion::Tls10 => SslVersion::TLS1,
        LegacyTlsVersion::Tls11 => SslVersion::TLS1_1,
        LegacyTlsVersion::Tls12 => SslVersion::TLS1_2,
    };
    b.set_min_proto_version(Some(min))
        .and_then(|_| b.set_max_proto_version(Some(SslVersion::TLS1_2)))
        .map_err(|e| format!("legacy_tls min_version: {}", openssl_words(&e)))?;
    b.set_cipher_list(&settings.ciphers).map_err(|e| {
        format!(
            "legacy_tls ciphers \"{}\" are not usable: {}",
            settings.ciphers,
            openssl_words(&e)
        )
    })?;
    match source {
        CertificateSource::Pem { chain, key, .. } => pem_files(&mut b, chain, key)?,
        CertificateSource::Pfx {
            file,
            password_file,
            ..
        } => {
            // The pfx is read by snigate's own loader (OpenSSL 3 would need
            // its legacy provider for RC2-40), in the order rustls serves.
            let provider = crate::tls::crypto_provider();
            let (certs, key) = crate::tls::pfx::read_pfx(file, password_file.as_deref(), &provider)
                .map_err(|e| e.to_string())?;
            let words = |e: openssl::error::ErrorStack| {
                format!(
                    "OpenSSL cannot use {}: {}",
                    file.display(),
                    openssl_words(&e)
                )
            };
            for (i, der) in certs.iter().enumerate() {
                let x509 = openssl::x509::X509::from_der(der.as_ref()).map_err(words)?;
                if i == 0 {
                    b.set_certificate(&x509).map_err(words)?;
                } else {
                    b.add_extra_chain_cert(x509).map_err(words)?;
                }
            }
            let pkey =
                openssl::pkey::PKey::private_key_from_der(key.secret_der()).map_err(words)?;
            b.set_private_key(&pkey).map_err(words)?;
        }
    }
    b.check_private_key().map_err(|e| {
        format!(
            "OpenSSL: the key does not match the certificate: {}",
            openssl_words(&e)
        )
    })?;
    // The server's order (the cipher string's), as rustls does; no
    // renegotiation (old clients do not need it, and client-initiated
    // renegotiation is a cheap way to make a server work).
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::NO_RENEGOTIATION);
    b.set_alpn_select_callback(|_, offered| {
        openssl::ssl::select_next_proto(ALPN, offered).ok_or(AlpnError::NOACK)
    });
    Ok(b.build())
}

/// The PEM chain and key files of a certificate into `b`.
fn pem_files(b: &mut SslContextBuilder, chain: &Path, key: &Path) -> Result<(), String> {
    b.set_certificate_chain_file(chain).map_err(|e| {
        format!(
            "OpenSSL cannot read the chain {}: {}",
            chain.display(),
            openssl_words(&e)
        )
    })?;
    b.set_private_key_file(key, SslFiletype::PEM).map_err(|e| {
        format!(
            "OpenSSL cannot read the key {}: {}",
            key.display(),
            openssl_words(&e)
        )
    })
}

/// The reasons of an OpenSSL error stack, in its own words ("no shared
/// cipher", "unsupported protocol").
pub fn openssl_words(stack: &openssl::error::ErrorStack) -> String {
    let mut words: Vec<String> = Vec::new();
    for e in stack.errors() {
        let w = e
            .reason()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string());
        if !words.contains(&w) {
            words.push(w);
        }
    }
    if words.is_empty() {
        "unknown OpenSSL error".into()
    } else {
        words.join("; ")
    }
}

/// The `engine` of handshake-log lines for this engine.
pub const ENGINE: &str = "openssl";

/// What the handshake log says of a finished OpenSSL handshake.
pub struct Negotiated {
    pub version: &'static str,
    pub suite: String,
    pub alpn: Option<String>,
}

pub fn negotiated(ssl: &SslRef) -> Negotiated {
    let version = match ssl.version2() {
        Some(v) if v == SslVersion::TLS1_3 => "1.3",
        Some(v) if v == SslVersion::TLS1_2 => "1.2",
        Some(v) if v == SslVersion::TLS1_1 => "1.1",
        Some(v) if v == SslVersion::TLS1 => "1.0",
        Some(v) if v == SslVersion::SSL3 => "3.0",
        _ => "?",
    };
    let suite = ssl
        .current_cipher()
        .map(|c| c.standard_name().unwrap_or(c.name()).to_string())
        .unwrap_or_default();
    let alpn = ssl
        .selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Negotiated {
        version,
        suite,
        alpn,
    }
}

/// A failed OpenSSL handshake in plain words.
pub fn failure_reason(e: &openssl::ssl::Error) -> String {
    const CLOSED: &str = "the client closed the connection during the handshake";
    if let Some(io) = e.io_error() {
        return match io.kind() {
            std::io::ErrorKind::UnexpectedEof => CLOSED.into(),
            std::io::ErrorKind::ConnectionReset => {
                "the client reset the connection during the handshake".into()
            }
            _ => format!("I/O error during the handshake: {io}"),
        };
    }
    match e.ssl_error() {
        Some(stack) => {
            let words = openssl_words(stack);
            if words.contains("unexpected eof") {
                CLOSED.into()
            } else {
                format!("OpenSSL: {words}")
            }
        }
        // SSL_ERROR_SYSCALL without an errno: end of stream.
        None if e.code() == openssl::ssl::ErrorCode::SYSCALL => CLOSED.into(),
        None => format!("OpenSSL: {e}"),
    }
}

/// OpenSSL's answer to a ClientHello (`hello`, its records as a client
/// sent them), run in memory with `context` as the proxy would: what it
/// negotiated once its first flight is written, or why it failed. For
/// `snigate explain`; nothing touches the network.
pub fn handshake_in_memory(context: &SslContext, hello: &[u8]) -> Result<Negotiated, String> {
    let ssl =
        Ssl::new(context).map_err(|e| format!("cannot start OpenSSL: {}", openssl_words(&e)))?;
    let stream = InMemory {
        input: hello,
        output: Vec::new(),
    };
    match ssl.accept(stream) {
        // A complete handshake needs the client's second flight: never here.
        Ok(tls) => Ok(negotiated(tls.ssl())),
        Err(HandshakeError::WouldBlock(mid)) if !mid.get_ref().output.is_empty() => {
            Ok(negotiated(mid.ssl()))
        }
        Err(HandshakeError::WouldBlock(_)) => {
            Err("OpenSSL answered nothing: the hello may be incomplete".into())
        }
        Err(HandshakeError::Failure(mid)) => Err(failure_reason(mid.error())),
        Err(HandshakeError::SetupFailure(e)) => {
            Err(format!("cannot start OpenSSL: {}", openssl_words(&e)))
        }
    }
}

/// A stream whose reads are the hello's bytes, then "would block", and
/// whose writes are kept.
struct InMemory<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl std::io::Read for InMemory<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.input.read(buf)
    }
}

impl std::io::Write for InMemory<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
