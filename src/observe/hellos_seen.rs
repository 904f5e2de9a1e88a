//! The hellos snigate has seen, grouped as `snigate report --against`
//! replays them: by listener, hello (its [`HelloId`], or its JA4 on log
//! lines written before there were ids) and SNI, with today's outcomes,
//! handshakes and distinct addresses, and each hello's details once.
//!
//! Two sources fill the same table: the live report (every handshake, with
//! or without a handshake log: `GET /report/hellos` saves it as a
//! [`SeenDocument`]) and `--against` reading handshake logs or saved
//! documents. Everything read back is hostile input: strings, kinds,
//! addresses and details are bounded by [`SeenLimits`], details must hash
//! to their id, and what does not fit is counted, not kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::observe::hello_details::{HelloDetails, HelloId};
use crate::observe::outcome::HandshakeOutcome;
use crate::sync::ClientKeyHasher;

/// The first bytes of a saved [`SeenDocument`] (`GET /report/hellos`):
/// how `--against` tells one from a log file.
pub const DOCUMENT_MARK: &str = "snigate-hellos-seen";

/// Longest listener name, SNI, JA4 or reason kept (longer are cut).
const MAX_TEXT: usize = 512;

/// How much one table keeps.
#[derive(Debug, Clone, Copy)]
pub struct SeenLimits {
    /// Kinds kept, over all listeners; handshakes of further kinds are
    /// counted per listener as `more`.
    pub kinds: usize,
    /// Addresses remembered, over all kinds; beyond, counts are lower bounds.
    pub addresses: usize,
    /// Values of hello details kept (a real hello has a few hundred).
    pub detail_values: usize,
}

impl SeenLimits {
    /// What a running snigate keeps: about 4 MiB at most, a saved document
    /// about as much.
    pub const LIVE: SeenLimits = SeenLimits {
        kinds: 4_096,
        addresses: 65_536,
        detail_values: 131_072,
    };
    /// What `--against` keeps while it reads logs and documents.
    pub const OFFLINE: SeenLimits = SeenLimits {
        kinds: 10_000,
        addresses: 1_000_000,
        detail_values: 4_000_000,
    };
}

/// How a kind's hello is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HelloKey {
    /// By its `hello_id`.
    Id(HelloId),
    /// A log line without `hello_id` (written by an older snigate): its JA4.
    Ja4(String),
}

/// What is grouped together: one listener, one hello, one SNI.
///
/// Hashed as its borrowed view ([`KindRef`]), so that a handshake of a
/// kind already in the table is looked up without making a key (three
/// allocations) first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KindKey {
    pub listener: String,
    pub hello: HelloKey,
    pub sni: Option<String>,
}

impl KindKey {
    fn of(key: KindRef<'_>) -> Self {
        KindKey {
            listener: key.listener.to_string(),
            hello: match key.hello {
                HelloRef::Id(id) => HelloKey::Id(id),
                HelloRef::Ja4(ja4) => HelloKey::Ja4(ja4.to_string()),
            },
            sni: key.sni.map(str::to_string),
        }
    }
}

/// A [`KindKey`], borrowed (its texts already clipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KindRef<'a> {
    listener: &'a str,
    hello: HelloRef<'a>,
    sni: Option<&'a str>,
}

/// A [`HelloKey`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum HelloRef<'a> {
    Id(HelloId),
    Ja4(&'a str),
}

crate::observe::borrowed_key::borrowed_key!(KindKey, KindRef, AsKindRef, kind_ref);

impl AsKindRef for KindKey {
    fn kind_ref(&self) -> KindRef<'_> {
        KindRef {
            listener: &self.listener,
            hello: match &self.hello {
                HelloKey::Id(id) => HelloRef::Id(*id),
                HelloKey::Ja4(ja4) => HelloRef::Ja4(ja4),
            },
            sni: self.sni.as_deref(),
        }
    }
}

/// One kind as it was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub ja4: String,
    /// Handshakes per outcome.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// The reason of the last failed handshake.
    pub reason: Option<String>,
    pub handshakes: u64,
    /// Distinct peer addresses (IP, no port).
    pub addresses: HashSet<IpAddr, ClientKeyHasher>,
    /// Some addresses were not remembered ([`SeenLimits::addresses`]).
    pub addresses_capped: bool,
}

impl Observed {
    /// The outcome most of its handshakes had (ties: the first by name).
    pub fn main_outcome(&self) -> Option<&'static str> {
        let mut best: Option<(&'static str, u64)> = None;
        for (name, n) in &self.outcomes {
            if best.is_none_or(|(_, b)| *n > b) {
                best = Some((name, *n));
            }
        }
        best.map(|(name, _)| name)
    }
}

/// Handshakes of one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerTotals {
    pub handshakes: u64,
    /// Handshakes of kinds beyond [`SeenLimits::kinds`].
    pub more: u64,
}

/// One handshake of a hello, as the proxy or a log line tells it.
#[derive(Debug, Clone, Copy)]
pub struct SeenHandshake<'a> {
    pub listener: &'a str,
    pub peer: IpAddr,
    pub sni: Option<&'a str>,
    pub ja4: &'a str,
    pub outcome: HandshakeOutcome,
    pub reason: Option<&'a str>,
    pub hello: Option<HelloId>,
}

/// The table.
#[derive(Debug)]
pub struct HellosSeen {
    pub kinds: HashMap<KindKey, Observed, ClientKeyHasher>,
    pub listeners: BTreeMap<String, ListenerTotals>,
    pub details: HashMap<HelloId, HelloDetails, ClientKeyHasher>,
    limits: SeenLimits,
    addresses: usize,
    detail_values: usize,
}

impl HellosSeen {
    pub fn new(limits: SeenLimits) -> Self {
        HellosSeen {
            kinds: HashMap::default(),
            listeners: BTreeMap::new(),
            details: HashMap::default(),
            limits,
            addresses: 0,
            detail_values: 0,
        }
    }

    /// Counts one handshake; `false` when it is not one of a hello (bytes
    /// that were not TLS, a bad PROXY header: no id and no JA4).
    pub fn add(&mut self, seen: &SeenHandshake<'_>) -> bool {
        let hello = match (seen.hello, seen.ja4) {
            (Some(id), _) => HelloRef::Id(id),
            (None, "") => return false,
            (None, ja4) => HelloRef::Ja4(clipped(ja4)),
        };
        let key = KindRef {
            listener: clipped(seen.listener),
            hello,
            sni: seen.sni.map(clipped),
        };
        let reason = match seen.outcome {
            HandshakeOutcome::Failed => seen.reason,
            _ => None,
        };
        self.merge_kind(
            key,
            seen.ja4,
            [(seen.outcome.as_str(), 1)],
            reason,
            1,
            &[seen.peer],
            false,
        );
        true
    }

    /// Keeps the details of `id`: the first ones of a size a hello could
    /// have that hash to `id`, within [`SeenLimits::detail_values`].
    pub fn keep_details(&mut self, id: HelloId, details: HelloDetails) {
        if self.details.contains_key(&id) || !details.within_bounds() || details.id() != id {
            return;
        }
        let size = details.size();
        if self.detail_values + size <= self.limits.detail_values {
            self.detail_values += size;
            self.details.insert(id, details);
        }
    }

    /// Whether the details of `id` are kept.
    pub fn has_details(&self, id: HelloId) -> bool {
        self.details.contains_key(&id)
    }

    /// Adds a kind's counts (one handshake, or a saved document's kind).
    /// Allocates only for a listener or kind not seen before.
    #[allow(clippy::too_many_arguments)]
    fn merge_kind(
        &mut self,
        key: KindRef<'_>,
        ja4: &str,
        outcomes: impl IntoIterator<Item = (&'static str, u64)>,
        reason: Option<&str>,
        handshakes: u64,
        peers: &[IpAddr],
        capped: bool,
    ) {
        let listeners_full = self.listeners.len() >= self.limits.kinds;
        let totals = match self.listeners.get_mut(key.listener) {
            Some(totals) => totals,
            // Only a document can name this many listeners: nothing to keep.
            None if listeners_full => return,
            None => self.listeners.entry(key.listener.to_string()).or_default(),
        };
        totals.handshakes = totals.handshakes.saturating_add(handshakes);
        let kinds_full = self.kinds.len() >= self.limits.kinds;
        let kind = match self.kinds.get_mut(&key as &dyn AsKindRef) {
            Some(kind) => kind,
            None if kinds_full => {
                totals.more = totals.more.saturating_add(handshakes);
                return;
            }
            None => self.kinds.entry(KindKey::of(key)).or_default(),
        };
        if kind.ja4.is_empty() {
            kind.ja4 = clip(ja4);
        }
        kind.handshakes = kind.handshakes.saturating_add(handshakes);
        for (name, n) in outcomes {
            let count = kind.outcomes.entry(name).or_default();
            *count = count.saturating_add(n);
        }
        if let Some(reason) = reason {
            kind.reason = Some(clip(reason));
        }
        kind.addresses_capped |= capped;
        for ip in peers {
            if kind.addresses.contains(ip) {
                continue;
            }
            if self.addresses < self.limits.addresses {
                kind.addresses.insert(*ip);
                self.addresses += 1;
            } else {
                kind.addresses_capped = true;
            }
        }
    }

    /// The table as `GET /report/hellos` serves it.
    pub fn document(&self) -> SeenDocument {
        let mut kinds: Vec<(&KindKey, &Observed)> = self.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.handshakes.cmp(&a.1.handshakes).then(a.0.cmp(b.0)));
        let mut details: Vec<(&HelloId, &HelloDetails)> = self.details.iter().collect();
        details.sort_by_key(|(id, _)| **id);
        SeenDocument {
            document: DOCUMENT_MARK.to_string(),
            version: 1,
            listeners: self.listeners.clone(),
            kinds: kinds
                .into_iter()
                .map(|(key, seen)| {
                    let mut addresses: Vec<IpAddr> = seen.addresses.iter().copied().collect();
                    addresses.sort();
                    SeenKind {
                        listener: key.listener.clone(),
                        hello_id: match &key.hello {
                            HelloKey::Id(id) => Some(id.as_hex()),
                            HelloKey::Ja4(_) => None,
                        },
                        ja4: seen.ja4.clone(),
                        sni: key.sni.clone(),
                        outcomes: seen
                            .outcomes
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                        reason: seen.reason.clone(),
                        handshakes: seen.handshakes,
                        addresses,
                        addresses_capped: seen.addresses_capped,
                    }
                })
                .collect(),
            hellos: details
                .into_iter()
                .map(|(id, d)| (id.as_hex(), d.clone()))
                .collect(),
        }
    }

    /// Adds a saved document. Kinds with an unknown outcome, a bad id or
    /// no hello are skipped; handshakes a listener counted beyond its kinds
    /// stay counted as `more`. Returns the kinds skipped.
    pub fn merge(&mut self, doc: SeenDocument) -> u64 {
        for (id, details) in doc.hellos {
            if let Some(id) = HelloId::parse(&id) {
                self.keep_details(id, details);
            }
        }
        let mut skipped = 0;
        let mut listed: HashMap<String, u64> = HashMap::new();
        for kind in doc.kinds {
            match self.merge_saved_kind(kind) {
                Some((listener, handshakes)) => {
                    let n = listed.entry(listener).or_default();
                    *n = n.saturating_add(handshakes);
                }
                None => skipped += 1,
            }
        }
        // What the document counted beyond its kinds (and kinds skipped).
        for (name, totals) in doc.listeners {
            let name = clip(&name);
            let beyond = totals
                .handshakes
                .saturating_sub(listed.get(&name).copied().unwrap_or(0));
            if beyond == 0 {
                continue;
            }
            if self.listeners.contains_key(&name) || self.listeners.len() < self.limits.kinds {
                let t = self.listeners.entry(name).or_default();
                t.handshakes = t.handshakes.saturating_add(beyond);
                t.more = t.more.saturating_add(beyond);
            }
        }
        skipped
    }

    /// One kind of a saved document: its listener and handshakes, or `None`
    /// when it is not one snigate could have written.
    fn merge_saved_kind(&mut self, kind: SeenKind) -> Option<(String, u64)> {
        let hello = match &kind.hello_id {
            Some(id) => HelloRef::Id(HelloId::parse(id)?),
            None if kind.ja4.is_empty() => return None,
            None => HelloRef::Ja4(clipped(&kind.ja4)),
        };
        let mut outcomes = BTreeMap::new();
        for (name, n) in &kind.outcomes {
            let outcome = HandshakeOutcome::from_name(name)?;
            outcomes.insert(outcome.as_str(), *n);
        }
        let key = KindRef {
            listener: clipped(&kind.listener),
            hello,
            sni: kind.sni.as_deref().map(clipped),
        };
        self.merge_kind(
            key,
            &kind.ja4,
            outcomes,
            kind.reason.as_deref(),
            kind.handshakes,
            &kind.addresses,
            kind.addresses_capped,
        );
        Some((key.listener.to_string(), kind.handshakes))
    }
}

/// `GET /report/hellos`: what `snigate report --against NEW.toml FILE`
/// replays, saved (README, "What-if over observed traffic").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenDocument {
    /// Always [`DOCUMENT_MARK`], written first.
    pub document: String,
    pub version: u32,
    /// Handshakes of hellos per listener (`more`: of kinds not kept).
    pub listeners: BTreeMap<String, ListenerTotals>,
    /// Most handshakes first.
    pub kinds: Vec<SeenKind>,
    /// The details of each hello, by `hello_id`.
    pub hellos: BTreeMap<String, HelloDetails>,
}

/// One kind in a [`SeenDocument`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenKind {
    pub listener: String,
    /// Null for kinds known only by JA4 (log lines without `hello_id`).
    pub hello_id: Option<String>,
    pub ja4: String,
    pub sni: Option<String>,
    /// Handshakes per outcome, as the handshake log names outcomes.
    pub outcomes: BTreeMap<String, u64>,
    /// The reason of the last failed handshake.
    pub reason: Option<String>,
    pub handshakes: u64,
    /// Distinct client addresses.
    pub addresses: Vec<IpAddr>,
    /// More addresses were seen than kept.
    #[serde(default)]
    pub addresses_capped: bool,
}

/// `text`, cut to [`MAX_TEXT`] bytes at a character boundary.
pub fn clip(text: &str) -> String {
    clipped(text).to_string()
}

/// [`clip`], borrowed.
fn clipped(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(suite: u16) -> HelloDetails {
        HelloDetails {
            record_version: 0x0301,
            client_version: 0x0303,
            versions: vec![0x0304, 0x0303],
            suites: vec![suite, 0x1302],
            extensions: vec![0, 10, 13, 43],
            groups: vec![29],
            signature_algorithms: vec![0x0403],
            ec_point_formats: vec![0],
            alpn: vec!["http/1.1".into()],
            sslv2: false,
        }
    }

    fn handshake<'a>(peer: &str, sni: Option<&'a str>, id: HelloId) -> SeenHandshake<'a> {
        SeenHandshake {
            listener: "main",
            peer: peer.parse().unwrap(),
            sni,
            ja4: "t13d0202h1_x_y",
            outcome: HandshakeOutcome::Ok,
            reason: None,
            hello: Some(id),
        }
    }

    #[test]
    fn a_saved_document_reads_back_as_the_same_table() {
        let mut seen = HellosSeen::new(SeenLimits::LIVE);
        let (a, b) = (details(0x1301), details(0x1303));
        seen.keep_details(a.id(), a.clone());
        seen.keep_details(b.id(), b.clone());
        seen.add(&handshake("192.0.2.1", None, a.id()));
        seen.add(&handshake("192.0.2.2", None, a.id()));
        seen.add(&handshake("192.0.2.1", Some("x.test"), b.id()));
        let failed = SeenHandshake {
            outcome: HandshakeOutcome::Failed,
            reason: Some("no shared cipher"),
            ..handshake("2001:db8::1", Some("x.test"), b.id())
        };
        seen.add(&failed);
        let doc = seen.document();
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.starts_with(&format!("{{\"document\":\"{DOCUMENT_MARK}\"")));

        let mut back = HellosSeen::new(SeenLimits::OFFLINE);
        assert_eq!(back.merge(serde_json::from_str(&text).unwrap()), 0);
        assert_eq!(back.kinds, seen.kinds);
        assert_eq!(back.listeners, seen.listeners);
        assert_eq!(back.details, seen.details);
        let kind = &back.kinds[&KindKey {
            listener: "main".into(),
            hello: HelloKey::Id(b.id()),
            sni: Some("x.test".into()),
        }];
        assert_eq!(kind.handshakes, 2);
        assert_eq!(kind.reason.as_deref(), Some("no shared cipher"));
        assert_eq!(kind.addresses.len(), 2);
    }

    #[test]
    fn a_hostile_document_is_bounded_and_checked() {
        let good = details(0x1301);
        let mut doc = SeenDocument {
            document: DOCUMENT_MARK.into(),
            version: 1,
            listeners: BTreeMap::new(),
            kinds: Vec::new(),
            hellos: BTreeMap::new(),
        };
        // Details under another hello's id, and an id that is not one.
        doc.hellos.insert(HelloId(7).as_hex(), good.clone());
        doc.hellos.insert("not an id".into(), good.clone());
        let kind = |listener: String, sni: Option<String>, outcome: &str| SeenKind {
            listener,
            hello_id: Some(good.id().as_hex()),
            ja4: "j".repeat(10_000),
            sni,
            outcomes: [(outcome.to_string(), 1)].into(),
            reason: None,
            handshakes: 1,
            addresses: vec!["192.0.2.9".parse().unwrap()],
            addresses_capped: false,
        };
        doc.kinds.push(kind("main".into(), None, "exploded"));
        for i in 0..50 {
            doc.kinds
                .push(kind(format!("l{}", i % 3), Some(format!("s{i}")), "ok"));
        }
        doc.listeners.insert(
            "main".into(),
            ListenerTotals {
                handshakes: 5,
                more: 4,
            },
        );
        let limits = SeenLimits {
            kinds: 10,
            addresses: 3,
            detail_values: 1_000,
        };
        let mut seen = HellosSeen::new(limits);
        assert_eq!(seen.merge(doc), 1, "the unknown outcome is skipped");
        assert!(seen.details.is_empty(), "details must hash to their id");
        assert_eq!(seen.kinds.len(), 10);
        let more: u64 = seen.listeners.values().map(|l| l.more).sum();
        assert_eq!(more, 40 + 5, "the kinds not kept, and main's");
        assert!(seen.kinds.values().all(|k| k.ja4.len() <= MAX_TEXT));
        let kept: usize = seen.kinds.values().map(|k| k.addresses.len()).sum();
        assert_eq!(kept, 3);
        assert!(seen.kinds.values().any(|k| k.addresses_capped));
        // main's 5 handshakes: none in a kind (its one kind was skipped).
        assert_eq!(
            seen.listeners["main"],
            ListenerTotals {
                handshakes: 5,
                more: 5
            }
        );
    }

    #[test]
    fn a_kind_seen_again_is_found_by_its_borrowed_key() {
        use std::hash::BuildHasher;
        let mut seen = HellosSeen::new(SeenLimits::LIVE);
        let (a, b) = (HelloId(1), HelloId(2));
        let long_sni = "s".repeat(MAX_TEXT + 10);
        let by_ja4 = |sni| SeenHandshake {
            hello: None,
            ja4: "t12i0000h1_old_line",
            ..handshake("192.0.2.7", sni, HelloId(0))
        };
        let handshakes = [
            handshake("192.0.2.1", None, a),
            handshake("192.0.2.1", None, a),
            handshake("192.0.2.2", Some("x.test"), a),
            SeenHandshake {
                listener: "other",
                ..handshake("192.0.2.1", None, a)
            },
            SeenHandshake {
                outcome: HandshakeOutcome::Failed,
                reason: Some("no shared cipher"),
                ..handshake("192.0.2.3", None, a)
            },
            SeenHandshake {
                outcome: HandshakeOutcome::Passthrough,
                ..handshake("192.0.2.1", Some("x.test"), a)
            },
            handshake("192.0.2.1", None, b),
            // Texts past the limit: one kind, found again once clipped.
            handshake("192.0.2.1", Some(&long_sni), b),
            handshake("192.0.2.4", Some(&long_sni[..MAX_TEXT]), b),
            by_ja4(None),
            by_ja4(None),
            by_ja4(Some("x.test")),
        ];
        for h in &handshakes {
            assert!(seen.add(h));
        }
        let doc = seen.document();
        let kinds: Vec<_> = doc
            .kinds
            .iter()
            .map(|k| {
                let outcomes: Vec<_> = k.outcomes.iter().map(|(o, n)| (o.as_str(), *n)).collect();
                (
                    k.listener.as_str(),
                    k.hello_id.clone(),
                    k.sni.as_ref().map(String::len),
                    outcomes,
                    k.handshakes,
                    k.addresses.len(),
                    k.reason.as_deref(),
                )
            })
            .collect();
        let (ha, hb) = (Some(a.as_hex()), Some(b.as_hex()));
        let failed = Some("no shared cipher");
        assert_eq!(
            kinds,
            [
                (
                    "main",
                    ha.clone(),
                    None,
                    vec![("failed", 1), ("ok", 2)],
                    3,
                    2,
                    failed
                ),
                (
                    "main",
                    ha.clone(),
                    Some(6),
                    vec![("ok", 1), ("passthrough", 1)],
                    2,
                    2,
                    None
                ),
                (
                    "main",
                    hb.clone(),
                    Some(MAX_TEXT),
                    vec![("ok", 2)],
                    2,
                    2,
                    None
                ),
                ("main", None, None, vec![("ok", 2)], 2, 1, None),
                ("main", hb, None, vec![("ok", 1)], 1, 1, None),
                ("main", None, Some(6), vec![("ok", 1)], 1, 1, None),
                ("other", ha, None, vec![("ok", 1)], 1, 1, None),
            ]
        );
        assert_eq!(seen.listeners["main"].handshakes, 11);
        assert_eq!(seen.listeners["other"].handshakes, 1);
        // The map's contract: a key and its borrowed view hash alike.
        let hasher = ClientKeyHasher::default();
        for key in seen.kinds.keys() {
            let view = key.kind_ref();
            assert_eq!(
                hasher.hash_one(key),
                hasher.hash_one(&view as &dyn AsKindRef)
            );
            assert!(seen.kinds.contains_key(&view as &dyn AsKindRef));
        }
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let cut = clip(&"é".repeat(MAX_TEXT));
        assert_eq!(cut.len(), MAX_TEXT);
        assert_eq!(clip(&"é".repeat(MAX_TEXT))[..2], *"é");
        assert_eq!(
            clip(&format!("a{}", "é".repeat(MAX_TEXT))).len(),
            MAX_TEXT - 1
        );
    }

    #[test]
    fn kinds_beyond_the_limit_are_counted_not_kept() {
        let limits = SeenLimits {
            kinds: 2,
            ..SeenLimits::LIVE
        };
        let mut seen = HellosSeen::new(limits);
        for i in 0..5u64 {
            seen.add(&handshake("192.0.2.1", None, HelloId(i)));
        }
        assert_eq!(seen.kinds.len(), 2);
        assert_eq!(
            seen.listeners["main"],
            ListenerTotals {
                handshakes: 5,
                more: 3
            }
        );
        let not_a_hello = SeenHandshake {
            hello: None,
            ja4: "",
            ..handshake("192.0.2.1", None, HelloId(0))
        };
        assert!(!seen.add(&not_a_hello));
    }
}
