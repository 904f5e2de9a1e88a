//! The tracked clients: a bounded [`Table`] keyed by (peer IP, JA4); the
//! clients it evicts are added up in `other`.

use super::facts::{Facts, Tally};
use super::snapshot::{ClientReport, OtherClients};
use super::table::{Place, Ranked, Table};
use super::{clip, HandshakeEvent, Peer, RequestEvent};

/// Who a client is: its IP (without port) and its ClientHello fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    ip: String,
    ja4: String,
}

impl ClientKey {
    pub(super) fn new(peer: Peer<'_>, ja4: &str) -> Self {
        Self {
            ip: peer.shown(),
            ja4: clip(ja4, 64).into_owned(),
        }
    }
}

/// Everything kept about one client.
#[derive(Debug, Default)]
struct Client {
    facts: Facts,
    user_agents: Tally<String>,
}

impl Ranked for Client {
    fn rank(&self) -> (u64, u64) {
        (self.facts.handshakes, self.facts.last.unwrap_or(0))
    }
}

impl Client {
    fn request(&mut self, limit: usize, ev: &RequestEvent<'_>, ts: Option<u64>) {
        self.facts.request(limit, ev, ts);
        if let Some(ua) = ev.user_agent {
            self.user_agents
                .add(limit, &super::user_agent::normalise(ua));
        }
    }

    fn report(&self, key: &ClientKey) -> ClientReport {
        let f = &self.facts;
        ClientReport {
            ip: key.ip.clone(),
            ja4: key.ja4.clone(),
            client: crate::observe::catalogue::identify(&key.ja4).map(|k| k.name.clone()),
            handshakes: f.handshakes,
            ok: f.ok,
            failed: f.failed,
            no_sni: f.no_sni,
            requests: f.requests,
            first_seen: f.first_seen(),
            last_seen: f.last_seen(),
            offered_versions: f.offered_versions.listed(),
            versions: f.versions.listed(),
            listeners: f.listeners.listed(),
            certificates: f.certificates(),
            user_agents: self.user_agents.listed(),
            hosts: f.hosts(),
            reasons: f.reasons(),
        }
    }
}

/// The bounded client table.
pub(super) struct ClientTable {
    per_client: usize,
    table: Table<ClientKey, Client>,
    other: OtherClients,
    requests_joined: u64,
}

impl ClientTable {
    pub(super) fn new(limit: usize, per_client: usize) -> Self {
        Self {
            per_client,
            table: Table::new(limit),
            other: OtherClients::default(),
            requests_joined: 0,
        }
    }

    /// Counts a handshake of the client `key`; returns where it lives.
    pub(super) fn handshake(
        &mut self,
        key: ClientKey,
        ev: &HandshakeEvent<'_>,
        ts: Option<u64>,
    ) -> Place {
        let (place, client, evicted) = self.table.entry(&key, || key.clone(), Client::default);
        client.facts.handshake(self.per_client, ev, ts);
        if let Some((_, old)) = evicted {
            let (other, old) = (&mut self.other, &old.facts);
            other.clients += 1;
            other.handshakes += old.handshakes;
            other.ok += old.ok;
            other.failed += old.failed;
            other.no_sni += old.no_sni;
            other.requests += old.requests;
        }
        place
    }

    /// Counts a request of the connection whose handshake returned `place`.
    pub(super) fn request(&mut self, place: Place, ev: &RequestEvent<'_>, ts: Option<u64>) {
        self.requests_joined += 1;
        match self.table.get_mut(place) {
            Some(client) => client.request(self.per_client, ev, ts),
            // The client was evicted since: its requests go with it.
            None => self.other.requests += 1,
        }
    }

    /// The clients (sorted: most handshakes first, then most recently
    /// seen), the `other` bucket and the requests joined.
    pub(super) fn snapshot(&self) -> (Vec<ClientReport>, OtherClients, u64) {
        let mut ranked: Vec<(&ClientKey, &Client)> = self.table.iter().collect();
        ranked.sort_by(|(ak, a), (bk, b)| {
            b.facts
                .handshakes
                .cmp(&a.facts.handshakes)
                .then_with(|| b.facts.last.cmp(&a.facts.last))
                .then_with(|| ak.ip.cmp(&bk.ip))
                .then_with(|| ak.ja4.cmp(&bk.ja4))
        });
        let clients = ranked.into_iter().map(|(k, c)| c.report(k)).collect();
        (clients, self.other.clone(), self.requests_joined)
    }
}
