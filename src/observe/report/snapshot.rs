//! The report as data: the body of `GET /report`, the input of the HTML and
//! text renderings, and what `snigate report --json` prints.
//!
//! Timestamps are RFC 3339 UTC with milliseconds, as in the logs. Lists are
//! sorted by count, highest first (ties: most recent first, then by name),
//! so two snapshots of the same events compare equal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReportSnapshot {
    pub summary: Summary,
    pub timeline: Timeline,
    /// Every client kind seen (JA4 and User-Agent family), most addresses
    /// first: the report's first table.
    #[serde(default)]
    pub kinds: Vec<KindReport>,
    /// What the kinds left out of `kinds` (memory bound or document size)
    /// add up to.
    #[serde(default)]
    pub other_kinds: OtherKinds,
    /// What was left out of this document, and why, in plain words (empty
    /// when nothing was).
    #[serde(default)]
    pub folded: Vec<String>,
    /// Clients without SNI or with handshakes that did not succeed, keyed by
    /// (peer IP, JA4); most handshakes first.
    pub clients: Vec<ClientReport>,
    /// What the clients pushed out of `clients` (memory bound) add up to.
    pub other: OtherClients,
    /// Offline only: what was read from the log files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<LogInput>,
}

/// Counts over every handshake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    pub handshakes: u64,
    pub with_sni: OutcomeSplit,
    pub without_sni: OutcomeSplit,
    /// Handshakes served the listener's fallback certificate (passthrough:
    /// sent to the default upstream).
    pub fallback_served: u64,
    /// Requests joined to tracked clients (the first
    /// `REQUESTS_PER_CONNECTION` of each connection).
    pub requests_joined: u64,
    /// The earliest and latest handshake timestamps.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Entries in `clients`, and the most that are kept.
    pub clients_tracked: u64,
    pub clients_limit: u64,
    /// Entries in `kinds`, and the most that are kept.
    #[serde(default)]
    pub kinds_listed: u64,
    #[serde(default)]
    pub kinds_limit: u64,
    /// Connections whose handshake succeeded but that have made no request
    /// yet: their kind is known at their first request (or when they end),
    /// so they are not in `kinds` yet.
    #[serde(default)]
    pub kinds_pending: u64,
    /// Distinct client addresses over every kind; a lower bound when
    /// `addresses_exact` is false (the report's memory for addresses ran
    /// out).
    #[serde(default)]
    pub addresses: u64,
    #[serde(default = "yes")]
    pub addresses_exact: bool,
}

fn yes() -> bool {
    true
}

/// Handshakes of one kind (with or without SNI) by outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OutcomeSplit {
    pub total: u64,
    /// `ok`, `failed`, `rejected`, `passthrough`, `legacy_passthrough`
    /// (always present), any other outcome name seen, and `other` for names
    /// beyond the first 16.
    pub outcomes: BTreeMap<String, u64>,
}

/// Handshakes over time, for a chart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Timeline {
    /// Width of one bucket.
    pub bucket_ms: u64,
    /// Buckets that saw handshakes, oldest first (empty ones are left out).
    pub buckets: Vec<Bucket>,
}

/// Handshakes whose timestamp falls in `[start, start + bucket_ms)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: String,
    /// Succeeded with SNI.
    pub sni_ok: u64,
    /// Succeeded without SNI.
    pub no_sni_ok: u64,
    /// Did not succeed (failed, rejected, ...), with or without SNI.
    pub failed: u64,
}

/// One kind of client: the clients (addresses) whose connections sent the
/// same ClientHello (JA4) and the same User-Agent family (the first
/// User-Agent of the connection, normalised).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KindReport {
    /// JA4 fingerprint of the ClientHello (empty when not TLS).
    pub ja4: String,
    /// The client software the [catalogue](crate::observe::catalogue) names
    /// for that JA4; `null` when it has no entry (never guessed).
    pub client: Option<String>,
    /// The catalogue's note on that software; `null` without an entry.
    pub client_note: Option<String>,
    /// The normalised User-Agent of the connections' first request; `""`
    /// when they sent none (or made no request: failed handshakes).
    pub user_agent: String,
    /// Distinct client addresses.
    pub addresses: u64,
    /// `false` when `addresses` is a lower bound (the report's memory for
    /// distinct addresses ran out: "at least").
    pub addresses_exact: bool,
    /// Up to 5 of those addresses.
    pub examples: Vec<String>,
    pub handshakes: u64,
    /// Handshakes with and without SNI.
    pub with_sni: u64,
    pub without_sni: u64,
    /// Handshakes by outcome (`ok`, `failed`, `rejected`, `passthrough`,
    /// `legacy_passthrough`, or another name a log holds); only outcomes
    /// seen.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests on its connections (the first `REQUESTS_PER_CONNECTION` of
    /// each).
    pub requests: u64,
    /// TLS versions offered in the ClientHellos ("1.3", "1.2", ...).
    pub offered_versions: Listed<Counted>,
    /// TLS versions negotiated.
    pub negotiated_versions: Listed<Counted>,
    pub listeners: Listed<Counted>,
    pub certificates: Listed<CertificateSeen>,
    /// Hosts asked for, with whether the certificate served covered them.
    pub hosts: Listed<HostSeen>,
    /// Why handshakes failed, with hints.
    pub reasons: Listed<ReasonSeen>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

/// The kinds not listed, added up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct OtherKinds {
    /// Kinds left out.
    pub kinds: u64,
    pub handshakes: u64,
    pub ok: u64,
    pub failed: u64,
    pub without_sni: u64,
    pub requests: u64,
}

impl OtherKinds {
    /// Adds one kind's counts.
    pub fn add(&mut self, handshakes: u64, ok: u64, without_sni: u64, requests: u64) {
        self.kinds += 1;
        self.handshakes += handshakes;
        self.ok += ok;
        self.failed += handshakes.saturating_sub(ok);
        self.without_sni += without_sni;
        self.requests += requests;
    }
}

/// One client: a peer IP with one ClientHello fingerprint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientReport {
    /// Peer IP address, without port.
    pub ip: String,
    /// JA4 fingerprint of its ClientHello (empty when not TLS).
    pub ja4: String,
    /// The client software the [catalogue](crate::observe::catalogue) names
    /// for that JA4; `null` when it has no entry (never guessed).
    #[serde(default)]
    pub client: Option<String>,
    pub handshakes: u64,
    /// Handshakes that succeeded (ok, passthrough, legacy_passthrough).
    pub ok: u64,
    /// Handshakes that did not.
    pub failed: u64,
    /// Handshakes without SNI.
    pub no_sni: u64,
    /// Requests joined from its connections.
    pub requests: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// TLS versions offered in its ClientHellos ("1.2", ...).
    pub offered_versions: Listed<Counted>,
    /// TLS versions negotiated.
    pub versions: Listed<Counted>,
    pub listeners: Listed<Counted>,
    pub certificates: Listed<CertificateSeen>,
    pub user_agents: Listed<Counted>,
    pub hosts: Listed<HostSeen>,
    pub reasons: Listed<ReasonSeen>,
}

/// A bounded list: the values kept and how many occurrences of values that
/// did not fit were counted but not kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    /// Occurrences of other values (shown as "+N more").
    pub more: u64,
}

/// A value and how often it was seen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Counted {
    pub value: String,
    pub count: u64,
}

/// A certificate served to the client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CertificateSeen {
    pub name: String,
    /// Whether it was served as the listener's fallback certificate.
    pub fallback: bool,
    pub count: u64,
}

/// A Host the client asked for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HostSeen {
    pub host: String,
    pub requests: u64,
    /// Whether the certificate served on the connection covered this Host:
    /// `false` when it did not for at least one request (the client saw a
    /// certificate warning), `null` when unknown (plain HTTP).
    pub covered: Option<bool>,
    /// Requests for this Host whose certificate did not cover it.
    pub uncovered: u64,
}

/// Why handshakes failed, and what would fix it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReasonSeen {
    pub reason: String,
    pub hint: Option<String>,
    pub count: u64,
}

/// The clients pushed out of the table, added up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct OtherClients {
    /// Client entries evicted.
    pub clients: u64,
    pub handshakes: u64,
    pub ok: u64,
    pub failed: u64,
    pub no_sni: u64,
    /// Requests of evicted clients, including those joined after eviction.
    pub requests: u64,
}

/// What `from_logs` read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LogInput {
    pub files: u64,
    /// Non-empty lines read.
    pub lines: u64,
    /// Handshake lines (`"event":"tls_handshake"`).
    pub handshakes: u64,
    /// Access lines (`"event":"http_request"`).
    pub requests: u64,
    /// Access lines whose connection's handshake line is not in the files
    /// given (or was too far back to keep).
    pub requests_unjoined: u64,
    /// Lines of other kinds, or not parsable: skipped.
    pub skipped: u64,
}
