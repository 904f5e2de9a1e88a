//! What snigate knows about one client connection, from accept to its
//! end: ids, addresses, what TLS settled; shared by every stage after it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderValue;

use crate::observe::report::ClientRef;
use crate::state::ListenerId;
use crate::tls::hello::ClientHelloInfo;
use crate::tls::CertificateId;

/// What the stages after accept know about a client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub conn: u64,
    pub listener: ListenerId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// SNI as sent, lower-cased; `None` without TLS or without SNI.
    pub sni: Option<String>,
    /// The certificate served on this connection (TLS only).
    pub certificate: Option<CertificateId>,
    pub tls: bool,
    /// The client's address as an X-Forwarded-For value, made once.
    pub peer_ip: HeaderValue,
    /// Upstream connections pinned to this client connection (NTLM).
    pub affinity: Arc<crate::upstream::Affinity>,
    /// The compatibility report's entry for this client, when it tracks it
    /// (no SNI): the first requests add their User-Agent and Host to it.
    pub report: Option<ClientRef>,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A new connection id, unique in this process.
pub fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// The client's address as an X-Forwarded-For value.
pub fn peer_ip(ip: std::net::IpAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&ip.to_string())
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// What HTTP needs to know of a completed TLS handshake (rustls or the
/// OpenSSL engine): the SNI for Host checks and the certificate served.
pub fn established(info: &mut ConnInfo, hello: &ClientHelloInfo, certificate: CertificateId) {
    // An IP address in SNI is not a name (RFC 6066; wrk and some old
    // stacks send one): for Host checks it counts as no SNI.
    info.sni = hello
        .server_name()
        .filter(|s| s.parse::<std::net::IpAddr>().is_err());
    info.certificate = Some(certificate);
    info.tls = true;
}
