//! The OpenSSL server context of a listener's `legacy_tls` (cargo feature
//! `legacy-tls`): built with the state, used by
//! [`crate::frontend::legacy_tls`] for the clients rustls cannot serve.

use std::path::Path;

use openssl::ssl::{AlpnError, SslContext, SslFiletype, SslMethod, SslOptions, SslVersion};

use crate::config::{LegacyTlsSettings, LegacyTlsVersion};

/// ALPN protocols offered, in wire format: HTTP/1.1 only (h2 requires TLS
/// 1.2 with AEAD suites, which rustls already serves).
const ALPN: &[u8] = b"\x08http/1.1";

/// The OpenSSL server context for one listener's `legacy_tls` and one
/// certificate (its PEM chain and key files).
pub fn context(
    settings: &LegacyTlsSettings,
    chain: &Path,
    key: &Path,
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
    })?;
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
