//! `max_connections_per_ip`: how many connections one client address may
//! hold open on a listener at once.
//!
//! Why: `max_connections` alone lets one address (a scanner, a broken
//! client, a slowloris) fill every slot with idle connections, and then
//! every other client waits. With a per-address limit, the connections over
//! it are refused at once and the rest of the listener stays free for
//! everyone else.
//!
//! The source counted is the client: the socket's peer, or on a
//! `proxy_protocol` listener the address the PROXY header names (known only
//! once the header is read, in the connection's task). IPv6 sources count
//! per /64, the block one host or household is given, since anyone with one
//! can use as many addresses in it as they like. Sources in the listener's
//! `trusted_proxies` (balancers that bring many clients through one
//! address) are not limited.
//!
//! A connection holds its [`SourceSlot`] until it closes; the table drops a
//! source when its last connection closes, so it never holds more entries
//! than there are open connections.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::observe::refusal_log::RefusalLog;

/// Open connections per source on one listener, and its refusal log; kept
/// across a reload that keeps the listener, so connections opened before it
/// still count.
#[derive(Debug, Default)]
pub struct SourceCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
    /// The summary log of refusals (one line per interval).
    pub refusals: Arc<RefusalLog>,
}

impl SourceCounts {
    /// A slot for `source` (already a [`source_key`]) when it holds fewer
    /// than `limit` connections.
    pub fn take(self: &Arc<Self>, source: IpAddr, limit: usize) -> Option<SourceSlot> {
        let mut open = self.lock();
        let n = open.entry(source).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            counts: self.clone(),
            source,
        })
    }

    /// Sources with at least one open connection.
    pub fn sources(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        crate::sync::lock(&self.open)
    }
}

/// One connection's place in its source's count, given back on drop.
#[derive(Debug)]
pub struct SourceSlot {
    counts: Arc<SourceCounts>,
    source: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.counts.lock();
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// The key a client address is counted under: IPv4 (and IPv4-mapped IPv6)
/// as is, other IPv6 addresses by their /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// The source as counted ([`source_key`]).
    pub source: IpAddr,
}

/// Closes a refused connection with a reset: the client learns at once, and
/// no TIME_WAIT socket stays behind for each of thousands of refusals.
pub fn refuse(stream: tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(source_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn slots_are_limited_per_source_and_given_back_on_drop() {
        let counts = Arc::new(SourceCounts::default());
        let a = ip("192.0.2.1");
        let held: Vec<_> = (0..3).map(|_| counts.take(a, 3).unwrap()).collect();
        assert!(counts.take(a, 3).is_none(), "a fourth slot for one source");
        let b = counts.take(ip("192.0.2.2"), 3).expect("another source");
        assert_eq!(counts.sources(), 2);
        drop(b);
        assert_eq!(counts.sources(), 1, "a source without connections stays");
        drop(held);
        assert_eq!(counts.sources(), 0);
        assert!(counts.take(a, 3).is_some());
    }
}
