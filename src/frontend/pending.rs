//! A connection between its decision and its TLS engine: what the rustls
//! path (`connection.rs`) and the OpenSSL path (`legacy_tls.rs`) are handed.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::conn::ConnInfo;
use crate::observe::telemetry::HandshakeRecord;
use crate::state::State;
use crate::tls::hello::ClientHello;

/// A connection whose hello is read and decided, on its way to a TLS engine.
pub(crate) struct Pending {
    pub state: Arc<State>,
    pub info: ConnInfo,
    pub stream: TcpStream,
    pub hello: ClientHello,
    /// Its handshake-log line, certificate and fallback filled in.
    pub rec: HandshakeRecord,
    /// When the connection was accepted (the line's `ms`).
    pub start: Instant,
    pub current: crate::state::Current,
}
