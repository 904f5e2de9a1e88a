//! The compatibility report (README, "Compatibility report"): which
//! clients send no SNI, which fail their handshake, why, and what would fix
//! it.
//!
//! It is fed live by the proxy ([`Report::handshake`] for every handshake-log
//! record, then [`Report::request`] for requests on the connections of
//! tracked clients) and offline from the JSON-lines logs ([`from_logs`]).
//! Both paths convert their input into the same borrowed events
//! (`HandshakeEvent`, `RequestEvent`) and drive the same aggregation, so
//! they give the same [`ReportSnapshot`].
//!
//! Memory is bounded whatever the traffic: at most `kinds` client kinds and
//! `clients` client entries (evicted ones are folded into `other_kinds` and
//! `other` so totals stay exact), `addresses` address hashes, a ring of
//! `buckets` time buckets, `per_client` values per list and clipped strings.

mod clients;
mod csv;
mod document;
mod facts;
mod html;
mod kinds;
mod logs;
mod snapshot;
mod table;
mod text;
mod timeline;
mod user_agent;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::observe::handshake_log::LoggedHello;
use crate::observe::hellos_seen::{HellosSeen, SeenDocument, SeenHandshake, SeenLimits};
use crate::observe::outcome::HandshakeOutcome;
use crate::observe::telemetry::{AccessRecord, HandshakeRecord};
use crate::sync::lock;

pub use csv::render_csv;
pub use document::{html_document, json_document, DEFAULT_CLIENTS, HTML_MAX_BYTES, JSON_MAX_BYTES};
pub use html::render_html;
pub use logs::from_logs;
pub use snapshot::{
    Bucket, CertificateSeen, ClientReport, Counted, HostSeen, KindReport, Listed, LogInput,
    OtherClients, OtherKinds, OutcomeSplit, ReasonSeen, ReportSnapshot, Summary, Timeline,
};
pub use text::render_text;

use clients::ClientTable;
use kinds::KindTable;
use table::Place;
use timeline::Ring;

/// Requests joined per connection: the first ones say what the client is
/// (User-Agent, Host); the rest would only cost a lock each. Enforced by
/// [`Report::request`] itself (per [`ClientRef`]), live and offline alike,
/// so the caller may hand it every request.
pub const REQUESTS_PER_CONNECTION: u32 = 16;

/// Outcome names kept apart in the summary; any further names are counted
/// under `other` (log files may hold anything). Every [`HandshakeOutcome`]
/// is listed, even at zero.
const MAX_OUTCOME_NAMES: usize = 16;

/// How much the report keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportLimits {
    /// Client kinds kept (the rest are folded into `other_kinds`).
    pub kinds: usize,
    /// Distinct addresses counted exactly, over all kinds (beyond it a
    /// kind's count is a lower bound).
    pub addresses: usize,
    /// Client entries kept (the rest are folded into `other`).
    pub clients: usize,
    /// Width of one timeline bucket.
    pub bucket: Duration,
    /// Timeline buckets kept (older ones are dropped).
    pub buckets: usize,
    /// User-Agents, Hosts, reasons, ... kept per client.
    pub per_client: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        Self {
            kinds: 1000,
            addresses: 262_144,
            clients: 1000,
            bucket: Duration::from_secs(60),
            buckets: 1440,
            per_client: 8,
        }
    }
}

/// The live report: cheap to feed from many threads at once.
///
/// Short mutex sections: `totals` (every handshake: a few counters and one
/// timeline bucket, no allocation), `kinds` (every connection, once, and
/// the first requests of each) and `clients` (tracked clients only). Each
/// is one hash lookup and a handful of small bounded lists.
pub struct Report {
    limits: ReportLimits,
    totals: Mutex<Totals>,
    kinds: Arc<Kinds>,
    clients: Mutex<ClientTable>,
    /// Every hello by (listener, hello, SNI), for `report --against`.
    hellos: Mutex<HellosSeen>,
}

/// The kinds table and the connections not yet in it.
struct Kinds {
    table: Mutex<KindTable>,
    pending: AtomicU64,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A connection as the report sees it: joins the connection's requests to
/// its client kind (and, for a tracked client, its client entry). Cheap to
/// clone (one `Arc`); clones share the connection. When the last clone
/// goes and the connection made no request, its handshake joins its kind
/// without a User-Agent.
#[derive(Clone, Debug)]
pub struct ClientRef {
    conn: Arc<Connection>,
}

struct Connection {
    /// The tracked client's entry, if the client is tracked.
    client: Option<Place>,
    requests: AtomicU32,
    kind: Mutex<KindJoin>,
    kinds: Arc<Kinds>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Where a connection stands with its kind.
enum KindJoin {
    /// Waiting for the first request (its User-Agent names the kind).
    Pending(Box<OwnedHandshake>),
    /// Counted in the kind at this place.
    Joined(Place),
}

impl Drop for Connection {
    fn drop(&mut self) {
        let join = self.kind.get_mut().unwrap_or_else(|e| e.into_inner());
        if let KindJoin::Pending(h) = join {
            self.kinds.pending.fetch_sub(1, Ordering::Relaxed);
            h.join(&self.kinds, None);
        }
    }
}

impl ClientRef {
    /// Whether [`Report::request`] still takes requests of this connection
    /// (the first [`REQUESTS_PER_CONNECTION`]): callers skip building the
    /// record otherwise.
    pub fn wants_requests(&self) -> bool {
        self.conn.requests.load(Ordering::Relaxed) < REQUESTS_PER_CONNECTION
    }
}

/// A handshake kept until its connection's first request: what its kind
/// counts of it.
struct OwnedHandshake {
    ts: Option<u64>,
    listener: String,
    peer: OwnedPeer,
    sni: bool,
    fallback: bool,
    certificate: Option<String>,
    offered_versions: Vec<String>,
    ja4: String,
    outcome: HandshakeOutcome,
    version: Option<String>,
}

impl OwnedHandshake {
    /// Only handshakes that succeeded wait for requests: no reason or hint.
    fn new(ev: &HandshakeEvent<'_>, outcome: HandshakeOutcome, ts: Option<u64>) -> Self {
        Self {
            ts,
            listener: ev.listener.to_string(),
            peer: OwnedPeer::of(ev.peer),
            sni: ev.sni.is_some(),
            fallback: ev.fallback,
            certificate: ev.certificate.map(str::to_string),
            offered_versions: ev.offered_versions.iter().map(|v| v.to_string()).collect(),
            ja4: ev.ja4.to_string(),
            outcome,
            version: ev.version.map(str::to_string),
        }
    }

    /// Joins its kind, with the connection's first request if there was
    /// one.
    fn join(&self, kinds: &Kinds, request: Option<(&RequestEvent<'_>, Option<u64>)>) -> Place {
        let offered: Vec<&str> = self.offered_versions.iter().map(String::as_str).collect();
        lock(&kinds.table).join(&self.event(&offered), self.ts, request)
    }

    /// The event again. The SNI's value is not kept (a kind counts only whether there was one).
    fn event<'a>(&'a self, offered_versions: &'a [&'a str]) -> HandshakeEvent<'a> {
        HandshakeEvent {
            ts: self.ts,
            listener: &self.listener,
            peer: self.peer.borrow(),
            sni: self.sni.then_some(""),
            fallback: self.fallback,
            certificate: self.certificate.as_deref(),
            offered_versions,
            ja4: &self.ja4,
            outcome: EventOutcome::Known(self.outcome),
            version: self.version.as_deref(),
            reason: None,
            hint: None,
        }
    }
}

/// A handshake's client: its IP (port dropped, an IPv4-mapped address as
/// IPv4), or the `peer` of a log line that is no address (a hand-edited
/// log), as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Peer<'a> {
    Ip(IpAddr),
    Text(&'a str),
}

impl<'a> Peer<'a> {
    /// A log line's `peer` (`ip:port`, or an IP).
    pub(crate) fn of_log(peer: &'a str) -> Self {
        crate::observe::log_lines::peer_ip(peer).map_or(Peer::Text(peer), Peer::Ip)
    }

    /// As the report shows it (a text bounded).
    fn shown(self) -> String {
        match self {
            Peer::Ip(ip) => ip.to_string(),
            Peer::Text(text) => clip(text, 64).into_owned(),
        }
    }
}

/// A [`Peer`] kept past its line.
#[derive(Debug)]
enum OwnedPeer {
    Ip(IpAddr),
    Text(String),
}

impl OwnedPeer {
    fn of(peer: Peer<'_>) -> Self {
        match peer {
            Peer::Ip(ip) => OwnedPeer::Ip(ip),
            Peer::Text(text) => OwnedPeer::Text(text.to_string()),
        }
    }

    fn borrow(&self) -> Peer<'_> {
        match self {
            OwnedPeer::Ip(ip) => Peer::Ip(*ip),
            OwnedPeer::Text(text) => Peer::Text(text),
        }
    }
}

/// One handshake-log record, borrowed: what live records and parsed log
/// lines both become.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandshakeEvent<'a> {
    /// Milliseconds since the Unix epoch; `None` for a log line whose
    /// time does not parse.
    pub ts: Option<u64>,
    pub listener: &'a str,
    pub peer: Peer<'a>,
    pub sni: Option<&'a str>,
    pub fallback: bool,
    pub certificate: Option<&'a str>,
    pub offered_versions: &'a [&'a str],
    pub ja4: &'a str,
    pub outcome: EventOutcome<'a>,
    pub version: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl<'a> HandshakeEvent<'a> {
    fn from_record(rec: &'a HandshakeRecord) -> Self {
        Self {
            ts: epoch_millis(rec.ts),
            listener: &rec.listener,
            peer: Peer::Ip(rec.peer.ip().to_canonical()),
            sni: rec.sni.as_deref(),
            fallback: rec.fallback,
            certificate: rec.certificate.as_deref(),
            offered_versions: &rec.offered_versions,
            ja4: &rec.ja4,
            outcome: EventOutcome::Known(rec.outcome),
            version: rec.version,
            reason: rec.reason.as_deref(),
            hint: rec.hint.as_deref(),
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.outcome, EventOutcome::Known(o) if o.succeeded())
    }

    /// Clients without SNI and clients whose handshake did not succeed are
    /// the ones the report lists.
    fn tracked(&self) -> bool {
        // Clients handed to the legacy upstream are listed too: they are the
        // ones whose TLS stack needs fixing.
        self.sni.is_none() || !self.succeeded() || self.is(HandshakeOutcome::LegacyPassthrough)
    }

    fn is(&self, outcome: HandshakeOutcome) -> bool {
        self.outcome == EventOutcome::Known(outcome)
    }
}

/// A handshake's outcome as a record or log line gives it: one of
/// snigate's, or any other name a log file holds (counted under its name,
/// never a success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventOutcome<'a> {
    Known(HandshakeOutcome),
    Other(&'a str),
}

impl<'a> EventOutcome<'a> {
    /// The outcome a log line's `outcome` names.
    pub(crate) fn parse(name: &'a str) -> Self {
        HandshakeOutcome::from_name(name).map_or(EventOutcome::Other(name), EventOutcome::Known)
    }

    /// The name counted in the summary.
    fn name(self) -> &'a str {
        match self {
            EventOutcome::Known(o) => o.as_str(),
            EventOutcome::Other(name) => name,
        }
    }
}

/// One access-log record, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestEvent<'a> {
    pub ts: &'a str,
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub covered: Option<bool>,
}

impl<'a> RequestEvent<'a> {
    fn from_record(rec: &'a AccessRecord) -> Self {
        Self {
            ts: &rec.ts,
            host: rec.host.as_deref(),
            user_agent: rec.user_agent.as_deref(),
            covered: rec.covered,
        }
    }
}

impl Report {
    /// An empty report.
    pub fn new(limits: ReportLimits) -> Self {
        let limits = ReportLimits {
            kinds: limits.kinds.clamp(1, u32::MAX as usize),
            addresses: limits.addresses,
            clients: limits.clients.clamp(1, u32::MAX as usize),
            bucket: limits.bucket.max(Duration::from_millis(1)),
            buckets: limits.buckets.max(1),
            per_client: limits.per_client,
        };
        let kinds = KindTable::new(limits.kinds, limits.per_client, limits.addresses);
        Self {
            totals: Mutex::new(Totals::new(&limits)),
            kinds: Arc::new(Kinds {
                table: Mutex::new(kinds),
                pending: AtomicU64::new(0),
            }),
            clients: Mutex::new(ClientTable::new(limits.clients, limits.per_client)),
            hellos: Mutex::new(HellosSeen::new(SeenLimits::LIVE)),
            limits,
        }
    }

    /// Called once per handshake-log record (every ClientHello read).
    /// Returns the connection's handle when its requests are wanted (a
    /// handshake that succeeded and may carry requests: their User-Agent
    /// names the client kind) or its client is tracked (no SNI, or a
    /// handshake that did not succeed). Hold it as long as the connection.
    /// `hello`: what `report --against` needs of the ClientHello, if one
    /// was read.
    pub fn handshake(
        &self,
        rec: &HandshakeRecord,
        hello: Option<&LoggedHello>,
    ) -> Option<ClientRef> {
        self.hello_seen(rec, hello);
        self.handshake_event(&HandshakeEvent::from_record(rec))
    }

    /// Counts the handshake in the hellos table (`GET /report/hellos`).
    fn hello_seen(&self, rec: &HandshakeRecord, hello: Option<&LoggedHello>) {
        let peer = rec.peer.ip().to_canonical();
        let mut seen = lock(&self.hellos);
        if let Some(h) = hello.filter(|h| !seen.has_details(h.id)) {
            seen.keep_details(h.id, h.details.clone());
        }
        seen.add(&SeenHandshake {
            listener: &rec.listener,
            peer,
            sni: rec.sni.as_deref(),
            ja4: &rec.ja4,
            outcome: rec.outcome,
            reason: rec.reason.as_deref(),
            hello: hello.map(|h| h.id),
        });
    }

    /// The hellos table, as `GET /report/hellos` serves it.
    pub fn hellos_seen(&self) -> SeenDocument {
        lock(&self.hellos).document()
    }

    /// Called for requests on a connection with a handle. Only the first
    /// [`REQUESTS_PER_CONNECTION`] of each connection are joined; later ones
    /// cost one atomic increment.
    pub fn request(&self, client: &ClientRef, rec: &AccessRecord) {
        self.request_event(client, &RequestEvent::from_record(rec));
    }

    pub(crate) fn handshake_event(&self, ev: &HandshakeEvent<'_>) -> Option<ClientRef> {
        let ts = ev.ts;
        lock(&self.totals).add(ev, ts);
        let client = ev.tracked().then(|| {
            let key = clients::ClientKey::new(ev.peer, ev.ja4);
            lock(&self.clients).handshake(key, ev, ts)
        });
        let kind = match ev.outcome {
            // Requests may follow: the first one's User-Agent names the kind.
            EventOutcome::Known(o @ HandshakeOutcome::Ok) => {
                self.kinds.pending.fetch_add(1, Ordering::Relaxed);
                KindJoin::Pending(Box::new(OwnedHandshake::new(ev, o, ts)))
            }
            _ => KindJoin::Joined(lock(&self.kinds.table).join(ev, ts, None)),
        };
        if client.is_none() && matches!(kind, KindJoin::Joined(_)) {
            return None;
        }
        Some(ClientRef {
            conn: Arc::new(Connection {
                client,
                requests: AtomicU32::new(0),
                kind: Mutex::new(kind),
                kinds: self.kinds.clone(),
            }),
        })
    }

    pub(crate) fn request_event(&self, client: &ClientRef, ev: &RequestEvent<'_>) {
        let conn = &client.conn;
        if conn.requests.fetch_add(1, Ordering::Relaxed) >= REQUESTS_PER_CONNECTION {
            // Keep the count from wrapping on a connection with 4 billion requests.
            conn.requests
                .store(REQUESTS_PER_CONNECTION, Ordering::Relaxed);
            return;
        }
        let ts = parse_ts(ev.ts);
        {
            let mut join = lock(&conn.kind);
            match &*join {
                KindJoin::Pending(h) => {
                    let place = h.join(&conn.kinds, Some((ev, ts)));
                    conn.kinds.pending.fetch_sub(1, Ordering::Relaxed);
                    *join = KindJoin::Joined(place);
                }
                KindJoin::Joined(place) => lock(&conn.kinds.table).request(*place, ev, ts),
            }
        }
        if let Some(place) = conn.client {
            lock(&self.clients).request(place, ev, ts);
        }
    }

    /// The report as it stands.
    pub fn snapshot(&self) -> ReportSnapshot {
        // Copy the ring under the lock (a memcpy), format it outside.
        let (summary_totals, ring) = {
            let totals = lock(&self.totals);
            (totals.summary(), totals.timeline.clone())
        };
        let timeline = ring.snapshot();
        let (clients, other, requests_joined) = lock(&self.clients).snapshot();
        let ((kinds, other_kinds), (addresses, addresses_exact)) = {
            let table = lock(&self.kinds.table);
            (table.snapshot(), table.addresses())
        };
        let summary = Summary {
            addresses,
            addresses_exact,
            kinds_listed: kinds.len() as u64,
            kinds_limit: self.limits.kinds as u64,
            kinds_pending: self.kinds.pending.load(Ordering::Relaxed),
            clients_tracked: clients.len() as u64,
            clients_limit: self.limits.clients as u64,
            requests_joined,
            ..summary_totals
        };
        ReportSnapshot {
            summary,
            timeline,
            kinds,
            other_kinds,
            folded: Vec::new(),
            clients,
            other,
            input: None,
        }
    }
}

/// Counters over every handshake.
struct Totals {
    handshakes: u64,
    fallback: u64,
    with_sni: Outcomes,
    without_sni: Outcomes,
    first: Option<u64>,
    last: Option<u64>,
    timeline: Ring,
}

impl Totals {
    fn new(limits: &ReportLimits) -> Self {
        Self {
            handshakes: 0,
            fallback: 0,
            with_sni: Outcomes::default(),
            without_sni: Outcomes::default(),
            first: None,
            last: None,
            timeline: Ring::new(limits.bucket, limits.buckets),
        }
    }

    fn add(&mut self, ev: &HandshakeEvent<'_>, ts: Option<u64>) {
        self.handshakes += 1;
        self.fallback += u64::from(ev.fallback);
        match ev.sni {
            Some(_) => self.with_sni.add(ev.outcome.name()),
            None => self.without_sni.add(ev.outcome.name()),
        }
        if let Some(ts) = ts {
            self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
            let kind = match (ev.succeeded(), ev.sni.is_some()) {
                (true, true) => timeline::Kind::SniOk,
                (true, false) => timeline::Kind::NoSniOk,
                (false, _) => timeline::Kind::Failed,
            };
            self.timeline.add(ts, kind);
        }
    }

    fn summary(&self) -> Summary {
        Summary {
            handshakes: self.handshakes,
            with_sni: self.with_sni.snapshot(),
            without_sni: self.without_sni.snapshot(),
            fallback_served: self.fallback,
            requests_joined: 0,
            first_seen: self.first.map(format_ts),
            last_seen: self.last.map(format_ts),
            clients_tracked: 0,
            clients_limit: 0,
            kinds_listed: 0,
            kinds_limit: 0,
            kinds_pending: 0,
            addresses: 0,
            addresses_exact: true,
        }
    }
}

/// Handshakes by outcome name, a bounded set of names.
#[derive(Default)]
struct Outcomes {
    total: u64,
    names: Vec<(String, u64)>,
    other: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: &str) {
        self.total += 1;
        if let Some((_, n)) = self.names.iter_mut().find(|(name, _)| name == outcome) {
            *n += 1;
        } else if self.names.len() < MAX_OUTCOME_NAMES {
            self.names.push((clip(outcome, 32).into_owned(), 1));
        } else {
            self.other += 1;
        }
    }

    fn snapshot(&self) -> OutcomeSplit {
        let mut outcomes: std::collections::BTreeMap<String, u64> = HandshakeOutcome::ALL
            .iter()
            .map(|o| (o.to_string(), 0))
            .collect();
        for (name, n) in &self.names {
            *outcomes.entry(name.clone()).or_default() += n;
        }
        if self.other > 0 {
            *outcomes.entry("other".into()).or_default() += self.other;
        }
        OutcomeSplit {
            total: self.total,
            outcomes,
        }
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 log timestamp; `None`
/// when it does not parse (or is before 1970). Live and offline both use it.
pub(crate) fn parse_ts(ts: &str) -> Option<u64> {
    epoch_millis(humantime::parse_rfc3339_weak(ts.trim()).ok()?)
}

/// Milliseconds since the Unix epoch; `None` before it or too far after.
fn epoch_millis(t: SystemTime) -> Option<u64> {
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// The log format's timestamp for milliseconds since the Unix epoch.
pub(crate) fn format_ts(ms: u64) -> String {
    // The format has four digits for the year.
    const LAST_MS: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    crate::observe::telemetry::timestamp(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS)))
}

/// Longest string kept from a log or the network (User-Agents, Hosts,
/// reasons): enough to read, small enough that memory stays bounded.
pub(crate) const MAX_VALUE_BYTES: usize = 400;

/// `s` cut to at most `max` bytes on a character boundary, marked with `…`;
/// borrowed when it is short enough already (the common case).
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

#[cfg(test)]
mod tests;
