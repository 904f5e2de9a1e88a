//! `trusted_proxies`: the one reading of a listener's list of balancers, for
//! the three things it decides. Addresses are compared canonically: on a
//! dual-stack socket an IPv4 client arrives as `::ffff:a.b.c.d` and counts
//! as `a.b.c.d`.

use std::net::IpAddr;

/// A listener's `trusted_proxies` (addresses and CIDRs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// The list as configured.
    pub fn new(nets: Vec<ipnet::IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether `ip` is a listed balancer: its `X-Forwarded-For`,
    /// `Forwarded` and `X-Real-IP` are believed, and it is not held to
    /// `max_connections_per_ip`. An empty list trusts no one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether a connection from `ip` may send a PROXY protocol header: a
    /// listed balancer, or any source when the list is empty. Then anyone
    /// who can reach the listener can claim any client address, so
    /// operators should list their balancers (HAProxy and nginx leave this
    /// to a firewall).
    pub fn may_send_proxy_header(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.contains(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::TrustedProxies;

    #[test]
    fn empty_trusts_no_one_but_lets_anyone_send_a_header() {
        let none = TrustedProxies::default();
        assert!(!none.contains("192.0.2.1".parse().unwrap()));
        assert!(none.may_send_proxy_header("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn listed_sources_compare_canonically() {
        let nets = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        for ip in ["10.1.2.3", "::ffff:10.1.2.3"] {
            assert!(nets.contains(ip.parse().unwrap()), "{ip}");
            assert!(nets.may_send_proxy_header(ip.parse().unwrap()), "{ip}");
        }
        assert!(!nets.contains("127.0.0.1".parse().unwrap()));
        assert!(!nets.may_send_proxy_header("127.0.0.1".parse().unwrap()));
    }
}
