//! The tracked clients: a bounded table keyed by (peer IP, JA4).
//!
//! Eviction policy: sampled least-frequently-used. When the table is full
//! and a new client arrives, [`SAMPLE`] entries picked at random are
//! compared and the one with the fewest handshakes (ties: seen least
//! recently) is folded into `other` and its slot reused. This costs O(1)
//! per event whatever the table size, and keeps frequent clients: an entry
//! is evicted only when it is the least frequent of its sample, which for a
//! client with many handshakes does not happen while the table also holds
//! one-off clients (a flood of random peers only ever evicts its own
//! members). Rejected alternatives: an exact minimum (a heap updated on
//! every count change costs O(log n) per event); the space-saving algorithm
//! (a newcomer inherits the evicted count, so the counts shown for a client
//! would no longer be its own). The random numbers come from a fixed-seed
//! generator, so the same events in the same order give the same table, live
//! or offline.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::snapshot::{
    CertificateSeen, ClientReport, Counted, HostSeen, Listed, OtherClients, ReasonSeen,
};
use super::{clip, format_ts, HandshakeEvent, RequestEvent, MAX_VALUE_BYTES};
use crate::observe::outcome::HandshakeOutcome;

/// Entries compared to choose one to evict.
const SAMPLE: usize = 8;

/// Who a client is: its IP (without port) and its ClientHello fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    ip: String,
    ja4: String,
}

impl ClientKey {
    pub(super) fn new(peer: &str, ja4: &str) -> Self {
        Self {
            ip: peer_ip(peer),
            ja4: clip(ja4, 64).into_owned(),
        }
    }
}

/// The IP of a `peer` field ("192.0.2.1:51234", "[2001:db8::1]:443"); an
/// IPv4-mapped IPv6 address counts as the IPv4 address.
fn peer_ip(peer: &str) -> String {
    let ip = peer
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<IpAddr>());
    match ip {
        Ok(ip) => ip.to_canonical().to_string(),
        // Not an address (a hand-edited log): keep it, bounded.
        Err(_) => clip(peer, 64).into_owned(),
    }
}

/// A bounded list of distinct values with their counts.
#[derive(Debug)]
struct Tally<K, V = u64> {
    items: Vec<(K, V)>,
    more: u64,
}

impl<K, V> Default for Tally<K, V> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<K, V: Default> Tally<K, V> {
    /// The counts of the value `is` matches, added (`make`) when there is
    /// room; `None` (and counted in `more`) when there is not.
    fn entry(
        &mut self,
        limit: usize,
        is: impl Fn(&K) -> bool,
        make: impl FnOnce() -> K,
    ) -> Option<&mut V> {
        match self.items.iter().position(|(k, _)| is(k)) {
            Some(i) => Some(&mut self.items[i].1),
            None if self.items.len() < limit => {
                self.items.push((make(), V::default()));
                self.items.last_mut().map(|(_, v)| v)
            }
            None => {
                self.more += 1;
                None
            }
        }
    }
}

impl Tally<String> {
    fn add(&mut self, limit: usize, value: &str) {
        let value = clip(value, MAX_VALUE_BYTES);
        if let Some(n) = self.entry(limit, |k| *k == value, || value.to_string()) {
            *n += 1;
        }
    }

    fn listed(&self) -> Listed<Counted> {
        listed(self, |(value, count)| Counted {
            value: value.clone(),
            count: *count,
        })
    }
}

/// `tally` as a sorted list (highest count first, then by value).
fn listed<K, V, T>(tally: &Tally<K, V>, item: impl Fn(&(K, V)) -> T) -> Listed<T>
where
    T: SortKey,
{
    let mut items: Vec<T> = tally.items.iter().map(item).collect();
    items.sort_by(|a, b| {
        b.count()
            .cmp(&a.count())
            .then_with(|| a.name().cmp(&b.name()))
    });
    Listed {
        items,
        more: tally.more,
    }
}

trait SortKey {
    fn count(&self) -> u64;
    fn name(&self) -> (&str, &str);
}

impl SortKey for Counted {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.value, "")
    }
}

impl SortKey for CertificateSeen {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.name, if self.fallback { "1" } else { "0" })
    }
}

impl SortKey for HostSeen {
    fn count(&self) -> u64 {
        self.requests
    }
    fn name(&self) -> (&str, &str) {
        (&self.host, "")
    }
}

impl SortKey for ReasonSeen {
    fn count(&self) -> u64 {
        self.count
    }
    fn name(&self) -> (&str, &str) {
        (&self.reason, self.hint.as_deref().unwrap_or(""))
    }
}

#[derive(Debug, Default)]
struct HostCounts {
    requests: u64,
    covered: u64,
    uncovered: u64,
}

/// Everything kept about one client.
#[derive(Debug)]
struct Client {
    key: ClientKey,
    handshakes: u64,
    ok: u64,
    failed: u64,
    no_sni: u64,
    requests: u64,
    first: Option<u64>,
    last: Option<u64>,
    offered_versions: Tally<String>,
    versions: Tally<String>,
    listeners: Tally<String>,
    certificates: Tally<(String, bool)>,
    user_agents: Tally<String>,
    hosts: Tally<String, HostCounts>,
    reasons: Tally<(String, Option<String>)>,
}

impl Client {
    fn new(key: ClientKey) -> Self {
        Self {
            key,
            handshakes: 0,
            ok: 0,
            failed: 0,
            no_sni: 0,
            requests: 0,
            first: None,
            last: None,
            offered_versions: Tally::default(),
            versions: Tally::default(),
            listeners: Tally::default(),
            certificates: Tally::default(),
            user_agents: Tally::default(),
            hosts: Tally::default(),
            reasons: Tally::default(),
        }
    }

    fn seen(&mut self, ts: Option<u64>) {
        if let Some(ts) = ts {
            self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
        }
    }

    fn handshake(&mut self, limit: usize, ev: &HandshakeEvent<'_>, ts: Option<u64>) {
        self.handshakes += 1;
        if ev.succeeded() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.no_sni += u64::from(ev.sni.is_none());
        self.seen(ts);
        for v in ev.offered_versions {
            self.offered_versions.add(limit, v);
        }
        if let Some(v) = ev.version {
            self.versions.add(limit, v);
        }
        self.listeners.add(limit, ev.listener);
        if let Some(name) = ev.certificate {
            let name = clip(name, MAX_VALUE_BYTES);
            let fallback = ev.fallback;
            let is = |(n, f): &(String, bool)| *n == name && *f == fallback;
            if let Some(n) = self
                .certificates
                .entry(limit, is, || (name.to_string(), fallback))
            {
                *n += 1;
            }
        }
        let keep_reason = !ev.succeeded() || ev.is(HandshakeOutcome::LegacyPassthrough);
        if let (true, Some(reason)) = (keep_reason, ev.reason) {
            let reason = clip(reason, MAX_VALUE_BYTES);
            let hint = ev.hint.map(|h| clip(h, MAX_VALUE_BYTES));
            let is =
                |(r, h): &(String, Option<String>)| *r == reason && h.as_deref() == hint.as_deref();
            let make = || (reason.to_string(), hint.as_ref().map(|h| h.to_string()));
            if let Some(n) = self.reasons.entry(limit, is, make) {
                *n += 1;
            }
        }
    }

    fn request(&mut self, limit: usize, ev: &RequestEvent<'_>, ts: Option<u64>) {
        self.requests += 1;
        self.seen(ts);
        if let Some(ua) = ev.user_agent {
            self.user_agents
                .add(limit, &super::user_agent::normalise(ua));
        }
        if let Some(host) = ev.host {
            let host: Cow<'_, str> = clip(host, MAX_VALUE_BYTES);
            if let Some(h) = self.hosts.entry(limit, |k| *k == host, || host.to_string()) {
                h.requests += 1;
                match ev.covered {
                    Some(true) => h.covered += 1,
                    Some(false) => h.uncovered += 1,
                    None => {}
                }
            }
        }
    }

    fn report(&self) -> ClientReport {
        ClientReport {
            ip: self.key.ip.clone(),
            ja4: self.key.ja4.clone(),
            client: crate::observe::catalogue::identify(&self.key.ja4).map(|k| k.name.clone()),
            handshakes: self.handshakes,
            ok: self.ok,
            failed: self.failed,
            no_sni: self.no_sni,
            requests: self.requests,
            first_seen: self.first.map(format_ts),
            last_seen: self.last.map(format_ts),
            offered_versions: self.offered_versions.listed(),
            versions: self.versions.listed(),
            listeners: self.listeners.listed(),
            certificates: listed(&self.certificates, |((name, fallback), count)| {
                CertificateSeen {
                    name: name.clone(),
                    fallback: *fallback,
                    count: *count,
                }
            }),
            user_agents: self.user_agents.listed(),
            hosts: listed(&self.hosts, |(host, c)| HostSeen {
                host: host.clone(),
                requests: c.requests,
                covered: match (c.uncovered, c.covered) {
                    (0, 0) => None,
                    (0, _) => Some(true),
                    _ => Some(false),
                },
                uncovered: c.uncovered,
            }),
            reasons: listed(&self.reasons, |((reason, hint), count)| ReasonSeen {
                reason: reason.clone(),
                hint: hint.clone(),
                count: *count,
            }),
        }
    }
}

struct Slot {
    /// Bumped whenever the slot gets another client, so that a
    /// `ClientRef` to the evicted one no longer matches.
    generation: u32,
    client: Client,
}

/// The bounded client table.
pub(super) struct ClientTable {
    limit: usize,
    per_client: usize,
    index: HashMap<ClientKey, u32>,
    slots: Vec<Slot>,
    other: OtherClients,
    requests_joined: u64,
    rng: u64,
}

impl ClientTable {
    pub(super) fn new(limit: usize, per_client: usize) -> Self {
        Self {
            limit: limit.max(1),
            per_client,
            index: HashMap::new(),
            slots: Vec::new(),
            other: OtherClients::default(),
            requests_joined: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Counts a handshake of the client `key`; returns its slot and
    /// generation.
    pub(super) fn handshake(
        &mut self,
        key: ClientKey,
        ev: &HandshakeEvent<'_>,
        ts: Option<u64>,
    ) -> (u32, u32) {
        let pos = match self.index.get(&key) {
            Some(&pos) => pos,
            None => self.insert(key),
        };
        let slot = &mut self.slots[pos as usize];
        slot.client.handshake(self.per_client, ev, ts);
        (pos, slot.generation)
    }

    /// Counts a request of the connection whose handshake returned
    /// (`pos`, `generation`).
    pub(super) fn request(
        &mut self,
        pos: u32,
        generation: u32,
        ev: &RequestEvent<'_>,
        ts: Option<u64>,
    ) {
        self.requests_joined += 1;
        match self.slots.get_mut(pos as usize) {
            Some(slot) if slot.generation == generation => {
                slot.client.request(self.per_client, ev, ts)
            }
            // The client was evicted since: its requests go with it.
            _ => self.other.requests += 1,
        }
    }

    fn insert(&mut self, key: ClientKey) -> u32 {
        if self.slots.len() < self.limit {
            let pos = self.slots.len() as u32;
            self.index.insert(key.clone(), pos);
            self.slots.push(Slot {
                generation: 0,
                client: Client::new(key),
            });
            return pos;
        }
        let pos = self.victim();
        self.index.insert(key.clone(), pos as u32);
        let slot = &mut self.slots[pos];
        slot.generation = slot.generation.wrapping_add(1);
        let old = std::mem::replace(&mut slot.client, Client::new(key));
        self.index.remove(&old.key);
        let other = &mut self.other;
        other.clients += 1;
        other.handshakes += old.handshakes;
        other.ok += old.ok;
        other.failed += old.failed;
        other.no_sni += old.no_sni;
        other.requests += old.requests;
        pos as u32
    }

    /// The slot to reuse: the least frequent of a random sample (see the
    /// module comment), or of all slots when there are few.
    fn victim(&mut self) -> usize {
        let n = self.slots.len();
        let rank = |s: &Slot| (s.client.handshakes, s.client.last.unwrap_or(0));
        if n <= SAMPLE {
            return (0..n).min_by_key(|&i| rank(&self.slots[i])).unwrap_or(0);
        }
        let mut best = self.next_random() % n;
        for _ in 1..SAMPLE {
            let i = self.next_random() % n;
            if rank(&self.slots[i]) < rank(&self.slots[best]) {
                best = i;
            }
        }
        best
    }

    /// xorshift64*: fast, deterministic, good enough to pick a sample.
    fn next_random(&mut self) -> usize {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize
    }

    /// The clients (sorted: most handshakes first, then most recently
    /// seen), the `other` bucket and the requests joined.
    pub(super) fn snapshot(&self) -> (Vec<ClientReport>, OtherClients, u64) {
        let mut ranked: Vec<&Client> = self.slots.iter().map(|s| &s.client).collect();
        ranked.sort_by(|a, b| {
            b.handshakes
                .cmp(&a.handshakes)
                .then_with(|| b.last.cmp(&a.last))
                .then_with(|| a.key.ip.cmp(&b.key.ip))
                .then_with(|| a.key.ja4.cmp(&b.key.ja4))
        });
        let clients = ranked.into_iter().map(Client::report).collect();
        (clients, self.other.clone(), self.requests_joined)
    }
}
