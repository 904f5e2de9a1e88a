//! What an https listener does with a ClientHello, decided before any
//! handshake: which certificate, which engine (rustls, the listener's
//! `legacy_upstream`, or OpenSSL with `legacy_tls`), or a refusal with its
//! reason and hint. Pure: no I/O, no clock. The proxy
//! (`frontend/connection.rs`) and `snigate explain` both call [`decide`],
//! so what `explain` tells an operator is what the proxy does.

use std::sync::Arc;

use rustls::ServerConfig;

use super::diagnose;
use super::failure::HandshakeFailure;
use super::hello::{sslv2_reason, ClientHelloInfo};
use super::store::{CertificateId, CertificateStore, Selection};

/// What the decision needs of a listener (`state::ListenerState::tls`).
#[derive(Clone, Copy)]
pub struct ListenerTls<'a> {
    /// The certificate for hellos no certificate name covers.
    pub fallback: Option<CertificateId>,
    pub strict_sni: bool,
    /// `legacy_upstream`: where a client rustls cannot serve is forwarded.
    pub legacy_upstream: Option<&'a str>,
    /// `legacy_tls`: OpenSSL serves a client rustls cannot (only in builds
    /// with the `legacy-tls` feature).
    pub legacy_tls: bool,
    /// The rustls configuration per certificate id.
    pub server_configs: &'a [Arc<ServerConfig>],
}

/// The decision for one ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it, with this certificate and engine.
    Serve(Served),
    /// Refuse it: logged as a failed handshake.
    Refuse(Refusal),
}

/// A hello that is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub certificate: CertificateId,
    /// The certificate is the listener's fallback (no SNI, or an SNI no
    /// certificate covers).
    pub fallback: bool,
    pub engine: Engine,
}

/// Which TLS engine handles a served hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// rustls (which may still fail the handshake for reasons the hello
    /// does not show, or a client that gives up).
    Rustls,
    /// Forwarded byte for byte to the named `legacy_upstream`; `reason` is
    /// why rustls cannot serve it.
    LegacyUpstream { upstream: String, reason: String },
    /// OpenSSL's handshake; `reason` is why rustls cannot serve it.
    LegacyTls { reason: String },
}

/// A refused hello, with its reason and hint for the handshake log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
    pub hint: Option<String>,
}

/// Why a hello is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// An SSLv2-format hello on a listener with no legacy path: closed
    /// without a word (an SSLv2 client cannot read a TLS alert).
    Sslv2,
    /// No certificate covers the name (strict_sni) and none is the
    /// fallback: an `unrecognized_name` alert.
    NoCertificate,
    /// The listener has no TLS configuration for the certificate chosen
    /// (the state is built with one per certificate; never expected).
    NoConfiguration,
}

/// Decides what `listener` does with `hello`, given the `certificates`.
///
/// In this order: an SSLv2-format hello without a legacy path is refused;
/// then the certificate is chosen (a strict listener refuses a name it has
/// no certificate for even when a legacy path could take the client: that
/// path is for what a client can do, not for names snigate was told to
/// refuse); then a client rustls cannot serve goes to `legacy_upstream`,
/// else to `legacy_tls`; everything else is rustls's.
pub fn decide(
    listener: ListenerTls<'_>,
    hello: &ClientHelloInfo,
    certificates: &CertificateStore,
) -> Decision {
    let legacy_path = listener.legacy_upstream.is_some() || listener.legacy_tls;
    if hello.sslv2 && !legacy_path {
        return Decision::Refuse(Refusal {
            kind: RefusalKind::Sslv2,
            reason: sslv2_reason(hello),
            hint: Some(diagnose::SSLV2.into()),
        });
    }
    let (certificate, fallback) =
        match certificates.select(hello, listener.fallback, listener.strict_sni) {
            Selection::Serve {
                certificate,
                fallback,
            } => (certificate, fallback),
            Selection::Refuse(reason) => {
                return Decision::Refuse(Refusal {
                    kind: RefusalKind::NoCertificate,
                    reason,
                    hint: Some(diagnose::refusal_hint(hello.sni.is_some()).into()),
                })
            }
        };
    let cert = certificates.get(certificate);
    let Some(config) = listener.server_configs.get(certificate.index()) else {
        return Decision::Refuse(Refusal {
            kind: RefusalKind::NoConfiguration,
            reason: format!(
                "no TLS configuration for certificate \"{}\" on this listener",
                cert.name
            ),
            hint: None,
        });
    };
    let served = |engine| {
        Decision::Serve(Served {
            certificate,
            fallback,
            engine,
        })
    };
    if !legacy_path {
        return served(Engine::Rustls);
    }
    // A cheap look at what the hello offers, no handshake: a failed
    // handshake cannot be undone, so the choice is made before rustls sees it.
    let Err(reason) = super::fit::can_serve(hello, config, &cert.certified_key) else {
        return served(Engine::Rustls);
    };
    match listener.legacy_upstream {
        Some(upstream) => served(Engine::LegacyUpstream {
            upstream: upstream.to_string(),
            reason,
        }),
        None => served(Engine::LegacyTls { reason }),
    }
}

/// The reason and hint for a handshake rustls failed (`failure`), made
/// precise by what the hello shows and the certificate served.
pub fn handshake_failure(
    hello: &ClientHelloInfo,
    served: &Served,
    certificates: &CertificateStore,
    failure: &HandshakeFailure,
) -> (String, Option<String>) {
    let cert = certificates.get(served.certificate);
    let reason = diagnose::reason(hello, failure);
    let hint = diagnose::hint(hello, failure, cert.key_kind, &cert.name, served.fallback);
    (reason, hint)
}
