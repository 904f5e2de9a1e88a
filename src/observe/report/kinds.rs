//! Client kinds: the report's first table. A kind is the ClientHello
//! fingerprint (JA4) with the User-Agent family (the normalised User-Agent
//! of the connection's first request; `""` when there was none), so 5,000
//! WebDAV users are one row, not 5,000.
//!
//! A connection joins its kind once its first request is seen (or when it
//! ends without one; at once when its handshake did not succeed), so a
//! handshake is counted in exactly one kind. Distinct addresses are counted
//! exactly as 64-bit hashes under a shared budget; once that is spent a
//! kind's count becomes a lower bound ("at least").

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash};

use super::facts::Facts;
use super::snapshot::{KindReport, OtherKinds};
use super::table::{Place, Ranked, Table};
use super::{clip, HandshakeEvent, RequestEvent};
use crate::sync::ClientKeyHasher;

/// Example addresses kept per kind.
const EXAMPLES: usize = 5;

/// What makes a kind. Hashed as its borrowed view ([`KindRef`]), so that
/// a handshake of a kind already in the table is looked up without making
/// a key first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KindKey {
    ja4: String,
    user_agent: String,
}

/// A [`KindKey`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KindRef<'a> {
    ja4: &'a str,
    user_agent: &'a str,
}

impl<'a> KindRef<'a> {
    /// A kind's JA4 and User-Agent as the table keeps them: clipped and
    /// normalised, borrowed when they already are.
    fn parts(ja4: &'a str, user_agent: Option<&'a str>) -> (Cow<'a, str>, Cow<'a, str>) {
        (
            clip(ja4, 64),
            user_agent.map_or(Cow::Borrowed(""), super::user_agent::normalise),
        )
    }

    fn of(ja4: &'a str, user_agent: &'a str) -> Self {
        Self { ja4, user_agent }
    }

    fn to_key(self) -> KindKey {
        KindKey {
            ja4: self.ja4.to_string(),
            user_agent: self.user_agent.to_string(),
        }
    }
}

crate::observe::borrowed_key::borrowed_key!(KindKey, KindRef, AsKindRef, kind_ref);

impl AsKindRef for KindKey {
    fn kind_ref(&self) -> KindRef<'_> {
        KindRef::of(&self.ja4, &self.user_agent)
    }
}

/// Everything kept about one kind.
#[derive(Debug, Default)]
struct Kind {
    facts: Facts,
    /// Hashes of the distinct addresses counted exactly.
    addresses: HashSet<u64, ClientKeyHasher>,
    /// Some address could not be counted (budget spent).
    inexact: bool,
    examples: Vec<String>,
}

impl Ranked for Kind {
    fn rank(&self) -> (u64, u64) {
        (self.facts.handshakes, self.facts.last.unwrap_or(0))
    }
}

impl Kind {
    fn report(&self, key: &KindKey) -> KindReport {
        let f = &self.facts;
        let entry = crate::observe::catalogue::identify(&key.ja4);
        let mut outcomes: BTreeMap<String, u64> = f
            .outcomes
            .items
            .iter()
            .map(|(name, n)| (name.clone(), *n))
            .collect();
        if f.outcomes.more > 0 {
            *outcomes.entry("other".into()).or_default() += f.outcomes.more;
        }
        KindReport {
            ja4: key.ja4.clone(),
            client: entry.map(|k| k.name.clone()),
            client_note: entry.map(|k| k.note.clone()),
            user_agent: key.user_agent.clone(),
            addresses: self.addresses.len() as u64,
            addresses_exact: !self.inexact,
            examples: self.examples.clone(),
            handshakes: f.handshakes,
            with_sni: f.handshakes - f.no_sni,
            without_sni: f.no_sni,
            outcomes,
            requests: f.requests,
            offered_versions: f.offered_versions.listed(),
            negotiated_versions: f.versions.listed(),
            listeners: f.listeners.listed(),
            certificates: f.certificates(),
            hosts: f.hosts(),
            reasons: f.reasons(),
            first_seen: f.first_seen(),
            last_seen: f.last_seen(),
        }
    }
}

/// The bounded kinds table.
pub(super) struct KindTable {
    per_kind: usize,
    table: Table<KindKey, Kind>,
    other: OtherKinds,
    /// Address hashes that may still be kept, over all kinds.
    budget: usize,
    /// Every distinct address, over all kinds (its own budget: `limit`).
    all: HashSet<u64, ClientKeyHasher>,
    /// What an address is counted by: a 64-bit hash, seeded per process
    /// (a collision, as unlikely as with SipHash before, undercounts by one).
    address_hash: foldhash::quality::RandomState,
    all_limit: usize,
    all_inexact: bool,
}

impl KindTable {
    pub(super) fn new(limit: usize, per_kind: usize, addresses: usize) -> Self {
        Self {
            per_kind,
            table: Table::new(limit),
            other: OtherKinds::default(),
            budget: addresses,
            all: HashSet::default(),
            address_hash: foldhash::quality::RandomState::default(),
            all_limit: addresses,
            all_inexact: false,
        }
    }

    /// Counts a handshake (and the first request of its connection, if
    /// any) in its kind; returns where the kind lives.
    pub(super) fn join(
        &mut self,
        handshake: &HandshakeEvent<'_>,
        ts: Option<u64>,
        request: Option<(&RequestEvent<'_>, Option<u64>)>,
    ) -> Place {
        let user_agent = request.and_then(|(r, _)| r.user_agent);
        let (ja4, user_agent) = KindRef::parts(handshake.ja4, user_agent);
        let key = KindRef::of(&ja4, &user_agent);
        let (place, kind, evicted) =
            self.table
                .entry(&key as &dyn AsKindRef, || key.to_key(), Kind::default);
        kind.facts.handshake(self.per_kind, handshake, ts);
        if let Some((r, ts)) = request {
            kind.facts.request(self.per_kind, r, ts);
        }
        let hash = self.address_hash.hash_one(handshake.peer);
        if self.all.len() < self.all_limit {
            self.all.insert(hash);
        } else if !self.all.contains(&hash) {
            self.all_inexact = true;
        }
        if !kind.addresses.contains(&hash) {
            if self.budget > 0 {
                self.budget -= 1;
                kind.addresses.insert(hash);
                if kind.examples.len() < EXAMPLES {
                    kind.examples.push(handshake.peer.shown());
                }
            } else {
                kind.inexact = true;
            }
        }
        if let Some((_, old)) = evicted {
            self.budget += old.addresses.len();
            let f = &old.facts;
            self.other.add(f.handshakes, f.ok, f.no_sni, f.requests);
        }
        place
    }

    /// Counts a later request of a connection that joined the kind at
    /// `place`.
    pub(super) fn request(&mut self, place: Place, ev: &RequestEvent<'_>, ts: Option<u64>) {
        match self.table.get_mut(place) {
            Some(kind) => kind.facts.request(self.per_kind, ev, ts),
            // The kind was evicted since: its requests go with it.
            None => self.other.requests += 1,
        }
    }

    /// The kinds (most addresses first, then most handshakes) and what the
    /// evicted ones add up to.
    pub(super) fn snapshot(&self) -> (Vec<KindReport>, OtherKinds) {
        let mut kinds: Vec<KindReport> = self.table.iter().map(|(k, v)| v.report(k)).collect();
        kinds.sort_by(|a, b| {
            b.addresses
                .cmp(&a.addresses)
                .then_with(|| b.handshakes.cmp(&a.handshakes))
                .then_with(|| a.ja4.cmp(&b.ja4))
                .then_with(|| a.user_agent.cmp(&b.user_agent))
        });
        (kinds, self.other.clone())
    }

    /// Distinct addresses over all kinds, and whether that is exact (else a
    /// lower bound).
    pub(super) fn addresses(&self) -> (u64, bool) {
        (self.all.len() as u64, !self.all_inexact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_borrowed_view_hash_and_compare_alike() {
        let hasher = ClientKeyHasher::default();
        for (ja4, ua) in [("t13d_x_y", ""), ("t13d_x_y", "curl/8"), ("", "curl/8")] {
            let key = KindRef::of(ja4, ua).to_key();
            let view = KindRef::of(ja4, ua);
            assert_eq!(
                hasher.hash_one(&key),
                hasher.hash_one(&view as &dyn AsKindRef)
            );
            assert!(
                <KindKey as std::borrow::Borrow<dyn AsKindRef>>::borrow(&key)
                    == &view as &dyn AsKindRef
            );
        }
    }
}
