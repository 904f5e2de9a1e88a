//! Why a client failed its handshake and what would fix it: a `hint` for the
//! handshake log, derived from the parsed ClientHello, the certificate that
//! was offered and rustls's reason. A pure function, no I/O.

use crate::tls::certs::KeyKind;
use crate::tls::failure::HandshakeFailure;
use crate::tls::hello::ClientHelloInfo;

/// TLS 1.2 ECDHE_ECDSA suites with AES-GCM, as Windows 7/8/8.1 SChannel offers them.
const ECDSA_GCM: [u16; 2] = [0xc02b, 0xc02c];
/// TLS 1.2 ECDHE_RSA suites that rustls implements.
const RSA_AEAD: [u16; 3] = [0xc02f, 0xc030, 0xcca8];
/// Every suite rustls implements (TLS 1.3 and TLS 1.2 AEAD).
const RUSTLS_SUITES: [u16; 9] = [
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02c, 0xcca9, 0xc02f, 0xc030, 0xcca8,
];

/// The reason a handshake failed, in plain words: rustls's error, made
/// precise with what the hello shows when the hello alone explains it (a
/// client that offers only TLS 1.1 or older fails in rustls with whatever
/// check comes first, often the missing signature_algorithms extension).
pub fn reason(hello: &ClientHelloInfo, failure: &HandshakeFailure) -> String {
    if hello.sslv2 {
        return "SSLv2-format ClientHello: rustls reads only TLS records".into();
    }
    let max = hello.max_version();
    if max < 0x0303 && !matches!(failure, HandshakeFailure::AlertReceived(_)) {
        let versions = hello.offered_versions();
        let what = if max <= 0x0300 {
            "SSL 3.0".to_string()
        } else {
            format!("TLS {}", versions.join(", TLS "))
        };
        return format!(
            "the client offers only {what}; snigate serves TLS 1.2 and 1.3 (rustls: {failure})"
        );
    }
    failure.to_string()
}

/// What the operator could do about a failed handshake, if snigate knows.
pub fn hint(
    hello: &ClientHelloInfo,
    failure: &HandshakeFailure,
    served: KeyKind,
    certificate: &str,
    fallback: bool,
) -> Option<String> {
    let offers = |suites: &[u16]| hello.cipher_suites.iter().any(|s| suites.contains(s));
    if hello.sslv2 {
        return Some(SSLV2.into());
    }
    if hello.max_version() <= 0x0300 {
        return Some(
            "the client offers only SSL 3.0, which is broken (POODLE) and which no current server should \
             offer: update or retire the client; a backend that still enables SSL 3.0, reached through the \
             listener's legacy_upstream or a passthrough listener, is the only way to serve it"
                .into(),
        );
    }
    if hello.max_version() < 0x0303 {
        return Some(
            "enable TLS 1.2 on the client (Windows 7/8 WinHTTP and WebDAV: KB3140245 and \
             DefaultSecureProtocols), or send it to a backend that still speaks TLS 1.0: set legacy_upstream \
             on the listener, or use a passthrough listener"
                .into(),
        );
    }
    if hello.signature_algorithms.is_empty() && *failure == HandshakeFailure::NoSignatureAlgorithms
    {
        return Some(
            "the client sends no signature_algorithms extension, which rustls requires: an old TLS stack; \
             update the client, or pass it to a backend that serves it (legacy_upstream on the listener, \
             or a passthrough listener)"
                .into(),
        );
    }
    if *failure == HandshakeFailure::NoCipherSuite {
        if offers(&ECDSA_GCM) && !offers(&RSA_AEAD) && served != KeyKind::Ecdsa {
            return Some(format!(
                "the client offers ECDHE_ECDSA with AES-GCM but no ECDHE_RSA AES-GCM suite (Windows 7/8/8.1 \
                 SChannel): an ECDSA certificate for this name would serve it (certificate \"{certificate}\" is {})",
                served.as_str()
            ));
        }
        if !offers(&RUSTLS_SUITES) {
            return Some(
                "the client offers only RSA-key-exchange and CBC suites, which rustls does not implement: \
                 a backend that still offers them would serve it (legacy_upstream on the listener, or a \
                 passthrough listener)"
                    .into(),
            );
        }
    }
    if let HandshakeFailure::AlertReceived(_) = failure {
        return Some(if fallback {
            format!(
                "the client rejected the fallback certificate \"{certificate}\": it probably does not cover the \
                 host the client asked for (clients without SNI cannot say which); add that name to the fallback \
                 certificate, or give the site a listener of its own on a separate IP:port"
            )
        } else {
            format!(
                "the client rejected certificate \"{certificate}\": check that the client trusts its issuer and \
                 that the chain file holds the intermediates"
            )
        });
    }
    None
}

/// The hint for a ClientHello refused because no certificate covers it
/// (strict_sni, or no fallback): with or without SNI.
pub fn refusal_hint(sni: bool) -> &'static str {
    if sni {
        "add a [[certificate]] whose names cover this SNI, or set strict_sni = false to serve the fallback"
    } else {
        "this client sends no SNI: give the listener a fallback_certificate (strict_sni = false), or a listener \
         of its own on a separate IP:port"
    }
}

/// The hint for SSLv2-format hellos.
pub const SSLV2: &str = "SSLv2-format ClientHello (Java 6, Windows XP era): rustls cannot serve it; enable TLS 1.2 \
     on the client, or send it to a backend that still speaks its protocol: set legacy_upstream on the listener, \
     or use a passthrough listener";

#[cfg(test)]
mod tests {
    use super::*;
    use HandshakeFailure::*;

    fn hello(versions: u16, suites: &[u16], sigalgs: &[u16]) -> ClientHelloInfo {
        ClientHelloInfo {
            client_version: versions,
            cipher_suites: suites.to_vec(),
            signature_algorithms: sigalgs.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn windows7_needs_ecdsa() {
        let h = hello(0x0303, &[0xc02c, 0xc02b, 0xc028, 0x009d], &[0x0401, 0x0403]);
        let hint = hint(&h, &NoCipherSuite, KeyKind::Rsa, "farm", true).unwrap();
        assert!(hint.contains("ECDSA certificate"), "{hint}");
    }

    #[test]
    fn cbc_only_needs_passthrough() {
        let h = hello(0x0303, &[0x002f, 0x0035, 0xc013], &[0x0401]);
        let hint = hint(&h, &NoCipherSuite, KeyKind::Ecdsa, "farm", true).unwrap();
        assert!(hint.contains("CBC"), "{hint}");
    }

    #[test]
    fn old_versions() {
        let h = hello(0x0301, &[0x002f], &[]);
        let hint = hint(&h, &ClientClosed, KeyKind::Ecdsa, "farm", true).unwrap();
        assert!(hint.contains("TLS 1.0"), "{hint}");
    }

    #[test]
    fn ssl3_reason_and_hint() {
        let h = hello(0x0300, &[0x000a, 0x002f], &[]);
        let r = reason(&h, &NoVersion);
        assert!(r.starts_with("the client offers only SSL 3.0"), "{r}");
        assert!(
            r.ends_with(
                "(rustls: the client offers no TLS version snigate serves (TLS 1.2 or 1.3))"
            ),
            "{r}"
        );
        let hint = hint(&h, &NoVersion, KeyKind::Ecdsa, "farm", true).unwrap();
        assert!(hint.contains("SSL 3.0"), "{hint}");
    }

    #[test]
    fn old_versions_reason_names_them() {
        let h = hello(0x0302, &[0x002f], &[]);
        let r = reason(&h, &NoSignatureAlgorithms);
        assert!(
            r.starts_with("the client offers only TLS 1.1, TLS 1.0;"),
            "{r}"
        );
        // A modern client keeps rustls's words.
        let m = hello(0x0303, &[0x1301], &[0x0403]);
        assert_eq!(reason(&m, &NoCipherSuite), "no cipher suite in common");
    }

    #[test]
    fn rejected_fallback() {
        let h = hello(0x0303, &[0x1301], &[0x0403]);
        let alert = AlertReceived(rustls::AlertDescription::BadCertificate);
        let hint = hint(&h, &alert, KeyKind::Ecdsa, "farm", true).unwrap();
        assert!(hint.contains("fallback certificate \"farm\""), "{hint}");
        assert_eq!(
            super::hint(&h, &ClientClosed, KeyKind::Ecdsa, "farm", true),
            None
        );
    }
}
