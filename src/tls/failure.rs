//! Why a rustls handshake did not complete: one case per reason the
//! handshake log words differently, so the diagnosis (`diagnose.rs`)
//! branches on the case, not on the words.

use std::io;

use rustls::{AlertDescription, Error, InvalidMessage, PeerIncompatible, PeerMisbehaved};

/// A failed rustls handshake; its `Display` is the handshake log's reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandshakeFailure {
    #[error("TLS handshake did not complete within the handshake timeout")]
    Timeout,
    #[error("the client closed the connection during the handshake")]
    ClientClosed,
    #[error("the client reset the connection during the handshake")]
    ClientReset,
    /// Any other I/O error, in its own words.
    #[error("I/O error during the handshake: {0}")]
    Io(String),
    #[error("no cipher suite in common")]
    NoCipherSuite,
    #[error("the client sent no signature_algorithms extension (a TLS 1.0/1.1-era client)")]
    NoSignatureAlgorithms,
    #[error("the client offers no TLS version snigate serves (TLS 1.2 or 1.3)")]
    NoVersion,
    #[error("no key exchange group in common")]
    NoKeyExchangeGroup,
    #[error("no signature scheme in common with the certificate's key")]
    NoSignatureScheme,
    /// Another incompatibility rustls names.
    #[error("client incompatible: {0:?}")]
    Incompatible(PeerIncompatible),
    /// The client ended the handshake with an alert after the server's flight.
    #[error("the client sent alert {0:?} after our certificate (it rejected the certificate or the parameters)")]
    AlertReceived(AlertDescription),
    /// A missing key share or a misplaced ChangeCipherSpec.
    #[error("client misbehaved: {0}")]
    Misbehaved(Error),
    #[error("malformed TLS message from the client: {0:?}")]
    Malformed(InvalidMessage),
    /// Anything else rustls reports, in its words.
    #[error("{0}")]
    Other(Error),
}

impl HandshakeFailure {
    /// The failure behind an error of the handshake
    /// ([`crate::tls::server_stream::accept`]): rustls' error inside it, or
    /// the socket's.
    pub fn of_io(e: &io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            Some(err) => err.clone().into(),
            None => match e.kind() {
                io::ErrorKind::UnexpectedEof => HandshakeFailure::ClientClosed,
                io::ErrorKind::ConnectionReset => HandshakeFailure::ClientReset,
                _ => HandshakeFailure::Io(e.to_string()),
            },
        }
    }
}

impl From<Error> for HandshakeFailure {
    fn from(err: Error) -> Self {
        match err {
            Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon) => {
                HandshakeFailure::NoCipherSuite
            }
            Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired) => {
                HandshakeFailure::NoSignatureAlgorithms
            }
            Error::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired)
            | Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered)
            | Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled) => {
                HandshakeFailure::NoVersion
            }
            Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)
            | Error::PeerIncompatible(PeerIncompatible::NoEcPointFormatsInCommon) => {
                HandshakeFailure::NoKeyExchangeGroup
            }
            Error::PeerIncompatible(PeerIncompatible::NoSignatureSchemesInCommon) => {
                HandshakeFailure::NoSignatureScheme
            }
            Error::PeerIncompatible(other) => HandshakeFailure::Incompatible(other),
            Error::AlertReceived(alert) => HandshakeFailure::AlertReceived(alert),
            Error::PeerMisbehaved(PeerMisbehaved::MissingKeyShare)
            | Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec) => {
                HandshakeFailure::Misbehaved(err)
            }
            Error::InvalidMessage(m) => HandshakeFailure::Malformed(m),
            other => HandshakeFailure::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are the handshake log's, as they were when they were strings.
    #[test]
    fn reasons_keep_their_words() {
        let io_err = |kind, err: Option<Error>| match err {
            Some(e) => io::Error::new(kind, e),
            None => io::Error::from(kind),
        };
        let cases = [
            (
                HandshakeFailure::of_io(&io_err(io::ErrorKind::UnexpectedEof, None)),
                "the client closed the connection during the handshake",
            ),
            (
                HandshakeFailure::of_io(&io_err(
                    io::ErrorKind::InvalidData,
                    Some(Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon)),
                )),
                "no cipher suite in common",
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate).into(),
                "the client sent alert BadCertificate after our certificate (it rejected the certificate or the parameters)",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::NullCompressionRequired).into(),
                "client incompatible: NullCompressionRequired",
            ),
            (
                Error::InvalidMessage(InvalidMessage::InvalidContentType).into(),
                "malformed TLS message from the client: InvalidContentType",
            ),
            (
                Error::PeerMisbehaved(PeerMisbehaved::MissingKeyShare).into(),
                "client misbehaved: peer misbehaved: MissingKeyShare",
            ),
            (
                Error::NoApplicationProtocol.into(),
                "peer doesn't support any known protocol",
            ),
        ];
        for (failure, words) in cases {
            assert_eq!(failure.to_string(), words, "{failure:?}");
        }
    }
}
