//! Which server of an upstream gets a request (`balance`): round-robin,
//! least-conn or ip-hash, among the servers that are in rotation.
//!
//! The balancer knows nothing about health: the caller says which servers
//! may be chosen (in rotation and not yet tried for this request) and how
//! busy each is.
//!
//! - **round-robin**: the servers that may be chosen take turns, one request
//!   each; a server out of rotation leaves the turn to the others evenly.
//! - **least-conn**: the server with the fewest requests in flight; ties go
//!   round-robin.
//! - **ip-hash**: rendezvous (highest random weight) hashing of the client's
//!   full IP address (IPv4: all 4 bytes; IPv6: all 16, an IPv4-mapped IPv6
//!   address counts as its IPv4 address) with each server's address as
//!   written in `servers`. A client keeps its server for as long as that
//!   server is in rotation; while it is out, the client goes to its second
//!   choice (the same one on every request, and different clients' second
//!   choices spread over the other servers), and it comes back when its
//!   server does. The order of `servers` does not matter, and adding or
//!   removing one server moves only the clients that it gains or loses.
//!   Unlike nginx (first three octets), every address is its own key, so
//!   clients of one /24 spread too.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

/// The choice of server for one upstream.
#[derive(Debug)]
pub struct Balancer {
    kind: Balance,
    /// Round-robin turn (round-robin, and least-conn's tie-break).
    next: AtomicUsize,
    /// Per server: the hash of its address (ip-hash).
    keys: Vec<u64>,
}

impl Balancer {
    /// A balancer of kind `kind` over `servers` (addresses as written).
    pub fn new(kind: Balance, servers: &[String]) -> Self {
        Self {
            kind,
            next: AtomicUsize::new(0),
            keys: servers.iter().map(|s| mix(fnv1a(s.as_bytes()))).collect(),
        }
    }

    /// How many servers it chooses among.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it has no server at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The index of the server for a request from `client`, among those for
    /// which `usable` holds; `load` is a server's requests in flight
    /// (least-conn), `weight` its share (1 or more; the same for every
    /// server unless they report load scores, see `upstream::score`).
    /// `None` when no server is usable.
    pub fn choose(
        &self,
        client: IpAddr,
        usable: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> usize,
        weight: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = self.keys.len();
        if n == 0 {
            return None;
        }
        match self.kind {
            Balance::RoundRobin => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                round_robin(n, turn, usable, weight)
            }
            Balance::LeastConn => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                // The fewest requests in flight per unit of weight:
                // (load + 1) / weight, compared without division.
                let mut best: Option<(usize, u64, u64)> = None;
                for i in (start..n).chain(0..start) {
                    if !usable(i) {
                        continue;
                    }
                    let (l, w) = (load(i) as u64 + 1, u64::from(weight(i).max(1)));
                    if best.is_none_or(|(_, bl, bw)| l * bw < bl * w) {
                        best = Some((i, l, w));
                    }
                }
                best.map(|(i, _, _)| i)
            }
            Balance::IpHash => {
                let c = client_key(client);
                (0..n)
                    .filter(|&i| usable(i))
                    .max_by_key(|&i| (mix(c ^ self.keys[i]), std::cmp::Reverse(i)))
            }
        }
    }
}

/// The `turn`-th pick of interleaved weighted round-robin over the usable
/// servers: in round `r` every usable server of weight above `r` takes one
/// turn, in order; a cycle is the rounds up to the largest weight. So each
/// server's share is its weight over the sum of weights, spread over the
/// cycle rather than in a burst, and with equal weights (the common case,
/// taken without the rounds) this is plain round-robin. Only usable servers
/// count, so that a server out of rotation does not double its successor's
/// share.
fn round_robin(
    n: usize,
    turn: usize,
    usable: impl Fn(usize) -> bool,
    weight: impl Fn(usize) -> u32,
) -> Option<usize> {
    let share = |i: usize| if usable(i) { weight(i).max(1) } else { 0 };
    let (mut total, mut largest, mut equal) = (0u64, 0u32, true);
    for w in (0..n).map(share).filter(|&w| w > 0) {
        equal &= largest == 0 || w == largest;
        largest = largest.max(w);
        total += u64::from(w);
    }
    if total == 0 {
        return None;
    }
    let picked = if equal {
        let k = (turn as u64 % (total / u64::from(largest))) as usize;
        (0..n).filter(|&i| usable(i)).nth(k)
    } else {
        let mut k = turn as u64 % total;
        (0..largest).find_map(|round| {
            let taking = (0..n).filter(|&i| share(i) > round).count() as u64;
            if k >= taking {
                k -= taking;
                return None;
            }
            (0..n).filter(|&i| share(i) > round).nth(k as usize)
        })
    };
    // Health changed between the passes: any usable server will do.
    picked.or_else(|| (0..n).find(|&i| usable(i)))
}

/// The hash of a client address: the address's bytes, IPv4-mapped IPv6 as
/// IPv4 (a dual-stack listener sees both forms of one client).
fn client_key(ip: IpAddr) -> u64 {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let h = match ip {
        IpAddr::V4(v4) => fnv1a(&v4.octets()),
        IpAddr::V6(v6) => fnv1a(&v6.octets()),
    };
    mix(h)
}

/// FNV-1a, 64 bits: stable across builds and restarts (a client keeps its
/// server when snigate restarts).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:80", i + 1)).collect()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, last))
    }

    #[test]
    fn round_robin_takes_turns_among_usable_servers() {
        let b = Balancer::new(Balance::RoundRobin, &servers(3));
        let picks: Vec<_> = (0..6)
            .map(|_| b.choose(ip(1), |_| true, |_| 0, |_| 1).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // Server 1 out: 0 and 2 share evenly.
        let mut counts = [0; 3];
        for _ in 0..100 {
            counts[b.choose(ip(1), |i| i != 1, |_| 0, |_| 1).unwrap()] += 1;
        }
        assert_eq!(counts, [50, 0, 50]);
        assert_eq!(b.choose(ip(1), |_| false, |_| 0, |_| 1), None);
    }

    #[test]
    fn weighted_round_robin_gives_shares_in_proportion_interleaved() {
        let b = Balancer::new(Balance::RoundRobin, &servers(3));
        let weight = [11, 5, 1];
        let picks: Vec<_> = (0..17)
            .map(|_| b.choose(ip(1), |_| true, |_| 0, |i| weight[i]).unwrap())
            .collect();
        let count = |s| picks.iter().filter(|&&p| p == s).count();
        assert_eq!((count(0), count(1), count(2)), (11, 5, 1));
        // Interleaved: the heavy server never takes more than its turn in a row
        // while the others still have turns in that round.
        assert_eq!(&picks[..6], &[0, 1, 2, 0, 1, 0]);
        // A server out of rotation leaves its share to the others.
        let b = Balancer::new(Balance::RoundRobin, &servers(3));
        let picks: Vec<_> = (0..12)
            .map(|_| b.choose(ip(1), |i| i != 0, |_| 0, |i| weight[i]).unwrap())
            .collect();
        assert_eq!(picks, [1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]);
    }

    #[test]
    fn least_conn_weighs_requests_in_flight_by_share() {
        let b = Balancer::new(Balance::LeastConn, &servers(2));
        // 4 in flight on a server of weight 10 is lighter than 1 on weight 1.
        let load = [4, 1];
        let weight = [10, 1];
        assert_eq!(
            b.choose(ip(1), |_| true, |i| load[i], |i| weight[i]),
            Some(0)
        );
        assert_eq!(b.choose(ip(1), |_| true, |i| load[i], |_| 1), Some(1));
    }

    #[test]
    fn least_conn_prefers_the_idle_server_and_rotates_ties() {
        let b = Balancer::new(Balance::LeastConn, &servers(3));
        let load = [2, 0, 1];
        for _ in 0..5 {
            assert_eq!(b.choose(ip(1), |_| true, |i| load[i], |_| 1), Some(1));
        }
        assert_eq!(b.choose(ip(1), |i| i != 1, |i| load[i], |_| 1), Some(2));
        let mut seen = [false; 3];
        for _ in 0..3 {
            seen[b.choose(ip(1), |_| true, |_| 0, |_| 1).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3], "ties go round-robin");
    }

    #[test]
    fn ip_hash_is_stable_spreads_and_falls_back_stably() {
        let b = Balancer::new(Balance::IpHash, &servers(4));
        let mut counts = [0; 4];
        for last in 1..=200 {
            let first = b.choose(ip(last), |_| true, |_| 0, |_| 1).unwrap();
            for _ in 0..3 {
                assert_eq!(b.choose(ip(last), |_| true, |_| 0, |_| 1), Some(first));
            }
            counts[first] += 1;
            // Its server out: always the same second choice, and back after.
            let second = b.choose(ip(last), |i| i != first, |_| 0, |_| 1).unwrap();
            assert_ne!(second, first);
            assert_eq!(
                b.choose(ip(last), |i| i != first, |_| 0, |_| 1),
                Some(second)
            );
            // A third server going out moves nobody whose choice it was not.
            let other = (0..4).find(|&i| i != first && i != second).unwrap();
            assert_eq!(
                b.choose(ip(last), |i| i != other, |_| 0, |_| 1),
                Some(first)
            );
        }
        for c in counts {
            assert!((20..=80).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn ip_hash_ignores_server_order_and_mapped_addresses() {
        let s = servers(3);
        let mut r = s.clone();
        r.reverse();
        let a = Balancer::new(Balance::IpHash, &s);
        let b = Balancer::new(Balance::IpHash, &r);
        for last in 1..50 {
            let i = a.choose(ip(last), |_| true, |_| 0, |_| 1).unwrap();
            let j = b.choose(ip(last), |_| true, |_| 0, |_| 1).unwrap();
            assert_eq!(s[i], r[j]);
            let IpAddr::V4(v4) = ip(last) else {
                unreachable!()
            };
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(a.choose(mapped, |_| true, |_| 0, |_| 1), Some(i));
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(a.choose(v6, |_| true, |_| 0, |_| 1).is_some());
    }
}
