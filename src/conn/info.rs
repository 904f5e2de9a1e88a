//! What snigate knows about one client connection, from accept to its
//! end: ids, addresses, what TLS settled; shared by every stage after it.

use std::net::{IpAddr, SocketAddr};
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

impl ConnInfo {
    /// The client's address as an X-Forwarded-For value, for a request.
    /// Not kept in the connection: there it cost every connection about
    /// 100 bytes (the value's 40, its bytes, and the shared copy its first
    /// clone made); [`last_forwarded_for`] keeps one per thread instead.
    pub fn forwarded_for(&self) -> HeaderValue {
        last_forwarded_for(self.peer.ip())
    }
}

thread_local! {
    /// The last address made into a value on this thread, and its value.
    static LAST_FORWARDED_FOR: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`forwarded_for`], remembered for the last address on this thread:
/// formatting an address costs more than the rest of what a request adds
/// to its headers (about 1.5k instructions; callgrind-request), and a
/// keep-alive client's requests come one after another from one address.
/// A clone of the value shares its bytes.
fn last_forwarded_for(ip: IpAddr) -> HeaderValue {
    LAST_FORWARDED_FOR.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, value)) if *at == ip => value.clone(),
            _ => {
                let value = forwarded_for(ip);
                *last = Some((ip, value.clone()));
                value
            }
        }
    })
}

/// `ip` as an X-Forwarded-For value (made once per address change on a
/// thread, see [`last_forwarded_for`]).
fn forwarded_for(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remembered_value_is_always_the_address_asked_for() {
        for ip in ["192.0.2.7", "192.0.2.7", "2001:db8::1", "192.0.2.7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(last_forwarded_for(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn forwarded_for_is_the_address_as_text() {
        for ip in [
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:192.0.2.7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(ip), ip.to_string().as_str());
        }
    }
}
