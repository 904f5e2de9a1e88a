//! A connection between its decision and a legacy path (`legacy_upstream`
//! in `passthrough/legacy.rs`, OpenSSL in `legacy_tls.rs`), boxed. An async
//! fn keeps its arguments for as long as it runs (they are never
//! overlapped with later state), and these paths run for the connection's
//! whole life: a `Box<Pending>` costs 8 bytes there, a `Pending` its full
//! size (about 1 KiB). The rustls path keeps the same values as locals
//! (`connection.rs`).

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::conn::ConnInfo;
use crate::observe::handshake_log::HandshakeLine;
use crate::state::State;
use crate::tls::hello::ClientHello;

/// A connection whose hello is read and decided, on its way to a TLS engine.
pub(crate) struct Pending {
    pub state: Arc<State>,
    pub info: ConnInfo,
    pub stream: TcpStream,
    pub hello: ClientHello,
    /// Its handshake-log line, certificate and fallback filled in.
    pub rec: HandshakeLine,
    /// When the connection was accepted (the line's `ms`).
    pub start: Instant,
    /// For the HTTP stage after an OpenSSL handshake.
    #[cfg_attr(not(feature = "legacy-tls"), allow(dead_code))]
    pub current: crate::state::Current,
}
