//! Would rustls serve this ClientHello? The predicate behind the legacy
//! paths (`legacy_upstream`, `legacy_tls`): clients that rustls cannot
//! serve — TLS 1.1 or older, SSL 3.0, SSLv2-format hellos, no
//! `signature_algorithms`, nothing in common with the certificate's key —
//! go there instead of failing their handshake.
//!
//! - [`check`] (and [`can_serve`], its reason in words): would rustls serve
//!   this parsed ClientHello with this listener's configuration and this
//!   certificate? It mirrors, step by step and in the same order, what a
//!   rustls 0.23 server does with a ClientHello (`server/hs.rs`
//!   `with_certified_key` and `choose_suite_and_kx_group`, then
//!   `tls12.rs`/`tls13.rs` `handle_client_hello`), from the fields snigate
//!   parsed itself and the provider, ALPN list and signing key the real
//!   handshake would use — no handshake is run. It answers with the very
//!   `rustls::Error` the handshake would end in, so the log's reason is the
//!   one a failed handshake would have had. `tests/legacy.rs` holds it
//!   against real in-memory rustls handshakes for every captured and many
//!   crafted hellos and four kinds of key.
//!
//! What the predicate leaves to rustls: malformed or misbehaving hellos
//! (compression without null, duplicate extensions or key shares, invalid
//! SNI, PSK errors). Those are not a client's missing capability but a
//! broken client; rustls fails them with its reason as on any listener.

use rustls::crypto::{CryptoProvider, KeyExchangeAlgorithm, SupportedKxGroup};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{
    Error, InvalidMessage, NamedGroup, PeerIncompatible, ProtocolVersion, ServerConfig,
    SignatureAlgorithm, SignatureScheme, SupportedCipherSuite,
};

use crate::tls::failure::HandshakeFailure;
use crate::tls::hello::ClientHelloInfo;

/// Extension types the decision looks at.
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_EXTENDED_MASTER_SECRET: u16 = 0x0017;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_KEY_SHARE: u16 = 0x0033;

/// The error rustls gives (`Error::General`) when the TLS 1.2 suite's
/// signature schemes and the client's overlap but the key signs with none
/// of them (an ECDSA P-256 key and a client offering only
/// ecdsa_secp384r1_sha384, say).
const INCOMPATIBLE_SIGNING_KEY: &str = "incompatible signing key";

/// Whether rustls, configured as `config`, would answer this ClientHello
/// with a ServerHello (or a HelloRetryRequest) and carry the handshake on
/// with the certificate `key`: `Ok`, or the error its handshake would end
/// in. See the module documentation for what it does not judge.
pub fn check(
    hello: &ClientHelloInfo,
    config: &ServerConfig,
    key: &CertifiedKey,
) -> Result<(), Error> {
    if hello.sslv2 {
        // rustls reads the first byte (0x80..) as a record content type.
        return Err(Error::InvalidMessage(InvalidMessage::InvalidContentType));
    }
    let has = |ext: u16| hello.extensions.contains(&ext);
    // process_client_hello: the extension is required before anything else.
    if !has(EXT_SIGNATURE_ALGORITHMS) {
        return Err(incompatible(
            PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        ));
    }
    // with_certified_key: snigate enables TLS 1.3 and 1.2 (tls.rs).
    let version = if has(EXT_SUPPORTED_VERSIONS) {
        if hello.supported_versions.contains(&0x0304) {
            ProtocolVersion::TLSv1_3
        } else if !hello.supported_versions.contains(&0x0303) {
            return Err(incompatible(PeerIncompatible::Tls12NotOfferedOrEnabled));
        } else {
            ProtocolVersion::TLSv1_2
        }
    } else if hello.client_version < 0x0303 {
        return Err(incompatible(PeerIncompatible::Tls12NotOffered));
    } else {
        ProtocolVersion::TLSv1_2
    };
    let provider = config.crypto_provider();
    // The offered signature schemes, reduced to those usable with a suite
    // both sides have.
    let common_suites: Vec<SupportedCipherSuite> = provider
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| hello.cipher_suites.contains(&u16::from(s.suite())))
        .collect();
    let schemes: Vec<SignatureScheme> = hello
        .signature_algorithms
        .iter()
        .map(|s| SignatureScheme::from(*s))
        .filter(|s| compatible_with_suites(*s, &common_suites))
        .collect();
    let signing: &dyn SigningKey = &*key.key;
    let suite = choose_suite(
        provider,
        config.ignore_client_order,
        version,
        signing.algorithm(),
        hello,
    )
    .map_err(incompatible)?;
    match suite {
        SupportedCipherSuite::Tls13(_) => {
            if !has(EXT_KEY_SHARE) {
                return Err(incompatible(PeerIncompatible::KeyShareExtensionRequired));
            }
            // (A key share for another group only costs a HelloRetryRequest.)
            alpn(hello, config)?;
            let schemes: Vec<SignatureScheme> = schemes
                .into_iter()
                .filter(|s| supported_in_tls13(*s))
                .collect();
            if signing.choose_scheme(&schemes).is_none() {
                return Err(incompatible(PeerIncompatible::NoSignatureSchemesInCommon));
            }
        }
        SupportedCipherSuite::Tls12(suite) => {
            if config.require_ems && !has(EXT_EXTENDED_MASTER_SECRET) {
                return Err(incompatible(
                    PeerIncompatible::ExtendedMasterSecretExtensionRequired,
                ));
            }
            // Without the extension, uncompressed points are implied.
            if has(EXT_EC_POINT_FORMATS) && !hello.ec_point_formats.contains(&0) {
                return Err(incompatible(PeerIncompatible::UncompressedEcPointsRequired));
            }
            let schemes: Vec<SignatureScheme> = suite
                .sign
                .iter()
                .copied()
                .filter(|s| schemes.contains(s))
                .collect();
            if schemes.is_empty() {
                return Err(incompatible(PeerIncompatible::NoSignatureSchemesInCommon));
            }
            alpn(hello, config)?;
            if signing.choose_scheme(&schemes).is_none() {
                return Err(Error::General(INCOMPATIBLE_SIGNING_KEY.into()));
            }
        }
    }
    Ok(())
}

/// [`check`], with the reason in the words of the handshake log: those of a
/// handshake that failed for it ([`HandshakeFailure`], made precise by
/// `diagnose::reason`).
pub fn can_serve(
    hello: &ClientHelloInfo,
    config: &ServerConfig,
    key: &CertifiedKey,
) -> Result<(), String> {
    check(hello, config, key).map_err(|e| reason(hello, e))
}

/// The handshake-log reason for a [`check`] error.
pub fn reason(hello: &ClientHelloInfo, error: Error) -> String {
    crate::tls::diagnose::reason(hello, &failure(error))
}

/// The failed handshake a [`check`] error stands for: the one a rustls
/// handshake would have ended in.
pub fn failure(error: Error) -> HandshakeFailure {
    // rustls names this one only in words (`Error::General`).
    match error {
        Error::General(m) if m == INCOMPATIBLE_SIGNING_KEY => HandshakeFailure::NoSignatureScheme,
        other => HandshakeFailure::from(other),
    }
}

fn incompatible(why: PeerIncompatible) -> Error {
    Error::PeerIncompatible(why)
}

/// rustls's `choose_suite_and_kx_group`: the suite it would pick, after
/// checking that a key exchange group is in common.
fn choose_suite(
    provider: &CryptoProvider,
    ignore_client_order: bool,
    version: ProtocolVersion,
    key: SignatureAlgorithm,
    hello: &ClientHelloInfo,
) -> Result<SupportedCipherSuite, PeerIncompatible> {
    let mut ecdhe_possible = false;
    let mut ffdhe_possible = false;
    let mut ffdhe_offered = false;
    let mut supported: Vec<&dyn SupportedKxGroup> = Vec::with_capacity(hello.groups.len());
    for &offered in &hello.groups {
        let offered = NamedGroup::from(offered);
        let ours = provider
            .kx_groups
            .iter()
            .copied()
            .find(|g| g.usable_for_version(version) && g.name() == offered);
        if offered.key_exchange_algorithm() == KeyExchangeAlgorithm::DHE {
            ffdhe_possible |= ours.is_some();
            ffdhe_offered = true;
        } else {
            ecdhe_possible |= ours.is_some();
        }
        supported.extend(ours);
    }
    // TLS 1.2 lets the server pick an FFDHE group on its own (RFC 7919);
    // snigate's provider has none, but follow rustls all the same.
    let first_dhe = (version == ProtocolVersion::TLSv1_2)
        .then(|| {
            provider
                .kx_groups
                .iter()
                .copied()
                .find(|g| g.name().key_exchange_algorithm() == KeyExchangeAlgorithm::DHE)
        })
        .flatten();
    ffdhe_possible |= !ffdhe_offered && first_dhe.is_some();
    if !ecdhe_possible && !ffdhe_possible {
        return Err(PeerIncompatible::NoKxGroupsInCommon);
    }
    let offered = |s: &SupportedCipherSuite| hello.cipher_suites.contains(&u16::from(s.suite()));
    let suitable = |s: &&SupportedCipherSuite| {
        s.usable_for_signature_algorithm(key)
            && s.version().version == version
            && (ecdhe_possible && kx_usable(s, KeyExchangeAlgorithm::ECDHE)
                || ffdhe_possible && kx_usable(s, KeyExchangeAlgorithm::DHE))
    };
    let suite = if ignore_client_order {
        provider
            .cipher_suites
            .iter()
            .filter(suitable)
            .find(|s| offered(s))
            .copied()
    } else {
        let ours: Vec<&SupportedCipherSuite> =
            provider.cipher_suites.iter().filter(suitable).collect();
        hello
            .cipher_suites
            .iter()
            .find_map(|c| ours.iter().find(|s| u16::from(s.suite()) == *c))
            .map(|s| **s)
    }
    .ok_or(PeerIncompatible::NoCipherSuitesInCommon)?;
    let group = supported
        .iter()
        .find(|g| kx_usable(&suite, g.name().key_exchange_algorithm()));
    match (group, version) {
        (Some(_), _) | (None, ProtocolVersion::TLSv1_3) => Ok(suite),
        (None, _) if kx_usable(&suite, KeyExchangeAlgorithm::DHE) && first_dhe.is_some() => {
            Ok(suite)
        }
        (None, _) => Err(PeerIncompatible::NoKxGroupsInCommon),
    }
}

/// rustls's `SupportedCipherSuite::usable_for_kx_algorithm` (crate-private).
fn kx_usable(suite: &SupportedCipherSuite, kx: KeyExchangeAlgorithm) -> bool {
    match suite {
        SupportedCipherSuite::Tls12(s) => s.kx == kx,
        SupportedCipherSuite::Tls13(_) => true,
    }
}

/// rustls's `SignatureScheme::algorithm` (crate-private).
fn scheme_algorithm(s: SignatureScheme) -> Option<SignatureAlgorithm> {
    use SignatureScheme as S;
    match s {
        S::RSA_PKCS1_SHA1
        | S::RSA_PKCS1_SHA256
        | S::RSA_PKCS1_SHA384
        | S::RSA_PKCS1_SHA512
        | S::RSA_PSS_SHA256
        | S::RSA_PSS_SHA384
        | S::RSA_PSS_SHA512 => Some(SignatureAlgorithm::RSA),
        S::ECDSA_SHA1_Legacy
        | S::ECDSA_NISTP256_SHA256
        | S::ECDSA_NISTP384_SHA384
        | S::ECDSA_NISTP521_SHA512 => Some(SignatureAlgorithm::ECDSA),
        S::ED25519 => Some(SignatureAlgorithm::ED25519),
        S::ED448 => Some(SignatureAlgorithm::ED448),
        _ => None,
    }
}

/// rustls's `compatible_sigscheme_for_suites` (crate-private): a scheme of a
/// known algorithm needs a suite usable with it; any other needs TLS 1.3.
fn compatible_with_suites(s: SignatureScheme, suites: &[SupportedCipherSuite]) -> bool {
    suites.iter().any(|suite| match scheme_algorithm(s) {
        Some(alg) => suite.usable_for_signature_algorithm(alg),
        None => matches!(suite, SupportedCipherSuite::Tls13(_)),
    })
}

/// rustls's `SignatureScheme::supported_in_tls13` (crate-private): no
/// MD5/SHA-1/SHA-224 hashes, no RSA PKCS#1, DSA or anonymous signatures.
fn supported_in_tls13(s: SignatureScheme) -> bool {
    let [hash, sign] = u16::from(s).to_be_bytes();
    hash > 3 && sign > 2
}

/// rustls's ALPN rule: a client that offers ALPN must share a protocol with
/// a server that has a list.
fn alpn(hello: &ClientHelloInfo, config: &ServerConfig) -> Result<(), Error> {
    if !hello.extensions.contains(&EXT_ALPN) || config.alpn_protocols.is_empty() {
        return Ok(());
    }
    let shared = config
        .alpn_protocols
        .iter()
        .any(|ours| hello.alpn.iter().any(|theirs| theirs.as_bytes() == ours));
    if shared {
        Ok(())
    } else {
        Err(Error::NoApplicationProtocol)
    }
}
