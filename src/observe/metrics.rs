//! Prometheus metrics for `GET /metrics` (text exposition format, through
//! `prometheus-client`).
//!
//! Metric families are registered once; the hot paths (a handshake, a
//! request) do not look labels up: each listener gets its counters resolved
//! ahead of time in a [`ListenerMetrics`], whose handles share their atomics
//! with the registry.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::observe::outcome::HandshakeOutcome;

/// Key exchange groups whose counters each listener resolves at start: the
/// groups of snigate's crypto provider (rustls with aws-lc-rs and
/// prefer-post-quantum, in its order), then `"none"` for completed
/// handshakes without a group known (a resumed TLS 1.2 session, the
/// OpenSSL engine). Another name (another provider) is looked up when seen.
pub const KEY_EXCHANGE_GROUPS: [&str; 5] = [
    "X25519MLKEM768",
    "X25519",
    "secp256r1",
    "secp384r1",
    NO_GROUP,
];

/// The `group` label of a completed handshake without a known group.
pub const NO_GROUP: &str = "none";

/// Why a ClientHello did not become a served connection: the `reason`
/// label of `snigate_handshake_failures_total`. Every handshake-log record
/// with outcome `failed` or `rejected` counts one, so the reasons of a
/// listener add up to those two outcomes. A closed set (the log's `reason`
/// has the words): the series are made at start, at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No complete ClientHello within the `client_hello` timeout.
    HelloTimeout,
    /// The client closed or reset the connection before a complete hello.
    HelloClosed,
    /// The first bytes were not a TLS handshake record.
    NotTls,
    /// A malformed or oversized ClientHello.
    BadHello,
    /// A PROXY header missing, malformed or from an untrusted source.
    ProxyHeader,
    /// An SSLv2-format hello on a listener without a legacy path.
    Sslv2,
    /// No SNI, or one without a certificate (strict_sni) or route
    /// (passthrough), refused.
    UnknownName,
    /// The TLS handshake did not complete within the `handshake` timeout.
    HandshakeTimeout,
    /// The client closed or reset the connection during the handshake
    /// (often: it did not accept the certificate, without saying so).
    ClientClosed,
    /// The client ended the handshake with an alert after the server's
    /// flight (it rejected the certificate or the parameters).
    ClientAlert,
    /// No TLS version in common.
    NoVersion,
    /// No cipher suite in common.
    NoCipherSuite,
    /// No signature scheme in common (or none offered).
    NoSignatureScheme,
    /// Another incompatibility (key exchange groups, compression, ...).
    Incompatible,
    /// A malformed or misplaced TLS message, or another TLS or I/O error.
    ProtocolError,
    /// The OpenSSL engine (`legacy_tls`) did not complete the handshake.
    LegacyTls,
    /// A passthrough or `legacy_upstream` upstream could not be reached.
    UpstreamUnreachable,
    /// snigate lacked what the decision needed (never expected).
    Internal,
}

impl FailureReason {
    /// Every reason, in declaration order (so `reason as usize` indexes it).
    pub const ALL: [FailureReason; 18] = [
        FailureReason::HelloTimeout,
        FailureReason::HelloClosed,
        FailureReason::NotTls,
        FailureReason::BadHello,
        FailureReason::ProxyHeader,
        FailureReason::Sslv2,
        FailureReason::UnknownName,
        FailureReason::HandshakeTimeout,
        FailureReason::ClientClosed,
        FailureReason::ClientAlert,
        FailureReason::NoVersion,
        FailureReason::NoCipherSuite,
        FailureReason::NoSignatureScheme,
        FailureReason::Incompatible,
        FailureReason::ProtocolError,
        FailureReason::LegacyTls,
        FailureReason::UpstreamUnreachable,
        FailureReason::Internal,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::HelloTimeout => "hello_timeout",
            FailureReason::HelloClosed => "hello_closed",
            FailureReason::NotTls => "not_tls",
            FailureReason::BadHello => "bad_hello",
            FailureReason::ProxyHeader => "proxy_header",
            FailureReason::Sslv2 => "sslv2",
            FailureReason::UnknownName => "unknown_name",
            FailureReason::HandshakeTimeout => "handshake_timeout",
            FailureReason::ClientClosed => "client_closed",
            FailureReason::ClientAlert => "client_alert",
            FailureReason::NoVersion => "no_version",
            FailureReason::NoCipherSuite => "no_cipher_suite",
            FailureReason::NoSignatureScheme => "no_signature_scheme",
            FailureReason::Incompatible => "incompatible",
            FailureReason::ProtocolError => "protocol_error",
            FailureReason::LegacyTls => "legacy_tls",
            FailureReason::UpstreamUnreachable => "upstream_unreachable",
            FailureReason::Internal => "internal",
        }
    }
}

/// Request duration buckets, in seconds: 1 ms to about 2 minutes.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    listener: String,
    sni: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteDurationLabels {
    listener: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyExchangeLabels {
    listener: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    listener: String,
    certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    upstream: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: String,
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: String,
    reason: &'static str,
}

/// The `reason` of connections refused because their source already held
/// `max_connections_per_ip` connections.
pub const REFUSED_PER_IP: &str = "max_connections_per_ip";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    upstream: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Every metric snigate exports.
pub struct Metrics {
    registry: Registry,
    handshakes: Family<HandshakeLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    resumed: Family<ListenerLabels, Counter>,
    legacy_tls: Family<ListenerLabels, Counter>,
    key_exchange: Family<KeyExchangeLabels, Counter>,
    fallback: Family<FallbackLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    route_requests: Family<RouteLabels, Counter>,
    duration: Family<ListenerLabels, Histogram, fn() -> Histogram>,
    route_duration: Family<RouteDurationLabels, Histogram, fn() -> Histogram>,
    active: Family<ListenerLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    limit_reached: Family<ListenerLabels, Counter>,
    server_up: Family<ServerLabels, Gauge>,
    health_score: Family<ServerLabels, Gauge>,
    expiry: Family<CertificateLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    generation: Gauge,
    pinned: Gauge,
    log_dropped: Counter<u64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The status classes requests are counted by; index = status / 100 - 1.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Metrics {
    /// Registers every family under the `snigate_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("snigate");
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshakes",
            "ClientHellos read, by listener, SNI present or absent, and outcome",
            handshakes.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "handshake_failures",
            "ClientHellos (or connections) that did not become a served connection, by listener and reason: one per handshake of outcome failed or rejected",
            failures.clone(),
        );
        let resumed = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "handshakes_resumed",
            "Completed TLS handshakes that resumed an earlier session (TLS 1.3 ticket, TLS 1.2 ticket or session id), by listener; part of snigate_handshakes_total{outcome=\"ok\"}",
            resumed.clone(),
        );
        let legacy_tls = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "legacy_tls_handshakes",
            "TLS handshakes completed by the OpenSSL engine (legacy_tls), by listener; part of snigate_handshakes_total{outcome=\"ok\"}",
            legacy_tls.clone(),
        );
        let key_exchange = Family::<KeyExchangeLabels, Counter>::default();
        registry.register(
            "tls_key_exchange",
            "Completed TLS handshakes by listener and key exchange group (X25519MLKEM768: hybrid post-quantum; none: no key exchange or not known)",
            key_exchange.clone(),
        );
        let fallback = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "fallback_certificate_served",
            "Handshakes answered with the listener's fallback certificate (no SNI, or an unknown one)",
            fallback.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by listener, upstream (\"none\" when snigate answered itself) and status class",
            requests.clone(),
        );
        let route_requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "route_requests",
            "HTTP requests by listener, [[route]] (by name; from its first request on) and status class",
            route_requests.clone(),
        );
        let duration = Family::<ListenerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response body",
            duration.clone(),
        );
        let route_duration =
            Family::<RouteDurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "route_request_duration_seconds",
            "Time from request head to the end of the response body, by listener and [[route]] (from its first request on)",
            route_duration.clone(),
        );
        let active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "active_connections",
            "Client connections open now",
            active.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once, by listener and reason (max_connections_per_ip)",
            refused.clone(),
        );
        let limit_reached = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connection_limit_reached",
            "Times a listener had max_connections open and stopped accepting (new connections wait in the kernel's queue)",
            limit_reached.clone(),
        );
        let server_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "upstream_server_up",
            "1 while the server is in rotation, 0 while health checks or connection failures keep it out",
            server_up.clone(),
        );
        let health_score = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "upstream_server_health_score",
            "The load score the server last reported in the upstream's health_score_header (SharePoint: 0 idle to 10 throttling); -1 before its first",
            health_score.clone(),
        );
        let expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of each configured certificate's leaf, as a Unix time",
            expiry.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP, POST /reload) by outcome: ok or failed",
            reloads.clone(),
        );
        for outcome in ["ok", "failed"] {
            let _ = reloads.get_or_create(&ReloadLabels { outcome });
        }
        let generation = Gauge::default();
        generation.set(1);
        registry.register(
            "config_generation",
            "The configuration serving new connections: 1 at start, +1 per successful reload",
            generation.clone(),
        );
        let pinned = Gauge::default();
        registry.register(
            "ntlm_pinned_connections",
            "Upstream connections pinned to one client connection (NTLM/Negotiate)",
            pinned.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            format!(
                "JSON log lines dropped because the log writer's queue held {} MiB already",
                crate::observe::telemetry::LOG_QUEUE_BYTES >> 20
            ),
            log_dropped.clone(),
        );
        Self {
            registry,
            handshakes,
            failures,
            resumed,
            legacy_tls,
            key_exchange,
            fallback,
            requests,
            route_requests,
            duration,
            route_duration,
            active,
            refused,
            limit_reached,
            server_up,
            health_score,
            expiry,
            reloads,
            generation,
            pinned,
            log_dropped,
        }
    }

    /// Handles for one listener, with `upstreams` the names of every upstream
    /// and `routes` of every route (each indexed as in the state) and
    /// `fallback` its fallback certificate's name.
    pub fn listener(
        &self,
        name: &str,
        upstreams: &[String],
        routes: &[String],
        fallback: Option<&str>,
    ) -> ListenerMetrics {
        let handshakes = |sni: &'static str| {
            HandshakeOutcome::ALL.map(|outcome| {
                self.handshakes.get_or_create_owned(&HandshakeLabels {
                    listener: name.to_string(),
                    sni,
                    outcome: outcome.as_str(),
                })
            })
        };
        let classes = |upstream: &str| {
            CLASSES.map(|class| {
                self.requests.get_or_create_owned(&RequestLabels {
                    listener: name.to_string(),
                    upstream: upstream.to_string(),
                    class,
                })
            })
        };
        let labels = ListenerLabels {
            listener: name.to_string(),
        };
        ListenerMetrics {
            handshakes: [handshakes("present"), handshakes("absent")],
            failures: FailureReason::ALL.map(|reason| {
                self.failures.get_or_create_owned(&FailureLabels {
                    listener: name.to_string(),
                    reason: reason.as_str(),
                })
            }),
            resumed: self.resumed.get_or_create_owned(&labels),
            legacy_tls: self.legacy_tls.get_or_create_owned(&labels),
            key_exchange: KEY_EXCHANGE_GROUPS.map(|group| {
                (
                    group,
                    self.key_exchange.get_or_create_owned(&KeyExchangeLabels {
                        listener: name.to_string(),
                        group: group.to_string(),
                    }),
                )
            }),
            other_groups: OtherGroups {
                listener: name.to_string(),
                family: self.key_exchange.clone(),
            },
            fallback: fallback.map(|c| {
                self.fallback.get_or_create_owned(&FallbackLabels {
                    listener: name.to_string(),
                    certificate: c.to_string(),
                })
            }),
            requests: upstreams
                .iter()
                .map(|u| classes(u))
                .chain(std::iter::once(classes("none")))
                .collect(),
            routes: RouteCounters {
                listener: name.to_string(),
                names: routes.to_vec(),
                rows: routes.iter().map(|_| OnceLock::new()).collect(),
                family: self.route_requests.clone(),
                durations: self.route_duration.clone(),
            },
            duration: self.duration.get_or_create_owned(&labels),
            active: self.active.get_or_create_owned(&labels),
            refused_per_ip: self.refused.get_or_create_owned(&RefusedLabels {
                listener: name.to_string(),
                reason: REFUSED_PER_IP,
            }),
            limit_reached: self.limit_reached.get_or_create_owned(&labels),
        }
    }

    /// The in-rotation gauge of one upstream server, set to 1 (servers
    /// start in rotation).
    pub fn server_up(&self, upstream: &str, server: &str) -> Gauge {
        let g = self.server_up.get_or_create_owned(&ServerLabels {
            upstream: upstream.to_string(),
            server: server.to_string(),
        });
        g.set(1);
        g
    }

    /// The load-score gauge of one server of an upstream with
    /// `health_score_header`.
    pub fn server_health_score(&self, upstream: &str, server: &str) -> Gauge {
        self.health_score.get_or_create_owned(&ServerLabels {
            upstream: upstream.to_string(),
            server: server.to_string(),
        })
    }

    /// Counts a reload attempt; `generation` is the one serving after it.
    pub fn reload(&self, ok: bool, generation: u64) {
        let outcome = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
        self.generation.set(generation as i64);
    }

    /// Forgets every certificate's expiry (a reload then records the
    /// certificates it keeps).
    pub fn clear_certificates(&self) {
        self.expiry.clear();
    }

    /// Records a certificate's expiry.
    pub fn certificate_expiry(&self, certificate: &str, not_after: SystemTime) {
        let secs = match not_after.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        self.expiry
            .get_or_create(&CertificateLabels {
                certificate: certificate.to_string(),
            })
            .set(secs);
    }

    /// The gauge of NTLM/Negotiate-pinned upstream connections.
    pub fn pinned(&self) -> &Gauge {
        &self.pinned
    }

    /// The counter of dropped JSON log lines.
    pub fn log_dropped(&self) -> Counter<u64, AtomicU64> {
        self.log_dropped.clone()
    }

    /// The whole registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One listener's counters, resolved ahead of time.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// [SNI present, absent] x [`HandshakeOutcome::ALL`].
    handshakes: [[Counter; 5]; 2],
    /// Per [`FailureReason::ALL`].
    failures: [Counter; 18],
    resumed: Counter,
    legacy_tls: Counter,
    /// Per [`KEY_EXCHANGE_GROUPS`] entry.
    key_exchange: [(&'static str, Counter); 5],
    /// Groups not in [`KEY_EXCHANGE_GROUPS`].
    other_groups: OtherGroups,
    /// The listener's fallback certificate.
    fallback: Option<Counter>,
    /// Per upstream id, then one for "none"; per status class.
    requests: Vec<[Counter; 5]>,
    routes: RouteCounters,
    duration: Histogram,
    active: Gauge,
    refused_per_ip: Counter,
    limit_reached: Counter,
}

/// A listener's per-route request counters, made on each route's first
/// request (a farm with thousands of routes lists only those in use).
#[derive(Debug)]
pub struct RouteCounters {
    listener: String,
    /// Every route's name, by route index.
    names: Vec<String>,
    rows: Vec<OnceLock<RouteRow>>,
    family: Family<RouteLabels, Counter>,
    durations: Family<RouteDurationLabels, Histogram, fn() -> Histogram>,
}

/// One route's counters (per status class) and duration histogram.
#[derive(Debug)]
struct RouteRow {
    classes: [Counter; 5],
    duration: Histogram,
}

impl ListenerMetrics {
    /// Counts one handshake-log line.
    pub fn handshake(&self, sni: bool, outcome: HandshakeOutcome) {
        self.handshakes[usize::from(!sni)][outcome as usize].inc();
    }

    /// Counts a handshake of outcome `failed` or `rejected` by its reason.
    pub fn failure(&self, reason: FailureReason) {
        self.failures[reason as usize].inc();
    }

    /// Counts a completed handshake that resumed an earlier session.
    pub fn resumed(&self) {
        self.resumed.inc();
    }

    /// Counts a handshake the OpenSSL engine completed.
    pub fn legacy_tls(&self) {
        self.legacy_tls.inc();
    }

    /// Counts a completed handshake by its key exchange group (`None`:
    /// [`NO_GROUP`]).
    pub fn key_exchange(&self, group: Option<&str>) {
        let group = group.unwrap_or(NO_GROUP);
        match self.key_exchange.iter().find(|(g, _)| *g == group) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                self.other_groups
                    .family
                    .get_or_create(&KeyExchangeLabels {
                        listener: self.other_groups.listener.clone(),
                        group: group.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Counts a handshake answered with the fallback certificate.
    pub fn fallback_served(&self) {
        if let Some(c) = &self.fallback {
            c.inc();
        }
    }

    /// Counts one finished request: `upstream` is the upstream's index, or
    /// `None` when snigate answered itself (404, 421, ...).
    pub fn request(&self, upstream: Option<usize>, status: u16, elapsed: Duration) {
        let none = self.requests.len() - 1;
        let row = &self.requests[upstream.unwrap_or(none).min(none)];
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        row[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one finished request that a `[[route]]` (its index) matched,
    /// and its duration.
    pub fn route_request(&self, route: usize, status: u16, elapsed: Duration) {
        let r = &self.routes;
        let (Some(row), Some(name)) = (r.rows.get(route), r.names.get(route)) else {
            return;
        };
        let row = row.get_or_init(|| RouteRow {
            classes: CLASSES.map(|class| {
                r.family.get_or_create_owned(&RouteLabels {
                    listener: r.listener.clone(),
                    route: name.clone(),
                    class,
                })
            }),
            duration: r.durations.get_or_create_owned(&RouteDurationLabels {
                listener: r.listener.clone(),
                route: name.clone(),
            }),
        });
        row.classes[usize::from(status / 100).clamp(1, 5) - 1].inc();
        row.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a connection refused by `max_connections_per_ip`.
    pub fn refused_per_ip(&self) {
        self.refused_per_ip.inc();
    }

    /// Counts a pause of the accept loop at `max_connections`.
    pub fn limit_reached(&self) {
        self.limit_reached.inc();
    }

    /// Counts a connection open until the guard is dropped.
    pub fn connection(&self) -> ActiveConnection {
        self.active.inc();
        ActiveConnection(self.active.clone())
    }
}

/// The key exchange family and a listener's name, for groups not resolved
/// at start.
struct OtherGroups {
    listener: String,
    family: Family<KeyExchangeLabels, Counter>,
}

impl std::fmt::Debug for OtherGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtherGroups")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// Decrements the active-connection gauge when the connection ends.
pub struct ActiveConnection(Gauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_index_their_counters_and_have_distinct_labels() {
        let mut names: Vec<&str> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        for (i, r) in FailureReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureReason::ALL.len());
    }

    #[test]
    fn new_series_exist_at_start_and_route_durations_from_the_first_request() {
        let m = Metrics::new();
        let l = m.listener("main", &["a".into()], &["r".into()], None);
        let text = m.encode();
        assert!(text.contains("snigate_handshakes_resumed_total{listener=\"main\"} 0"));
        assert!(text.contains("snigate_legacy_tls_handshakes_total{listener=\"main\"} 0"));
        assert!(text.contains(
            "snigate_handshake_failures_total{listener=\"main\",reason=\"hello_timeout\"} 0"
        ));
        assert!(!text.contains("snigate_route_request_duration_seconds_count"));
        l.route_request(0, 200, Duration::from_millis(3));
        l.failure(FailureReason::NoCipherSuite);
        l.resumed();
        let text = m.encode();
        assert!(text.contains(
            "snigate_route_request_duration_seconds_count{listener=\"main\",route=\"r\"} 1"
        ));
        assert!(text.contains(
            "snigate_handshake_failures_total{listener=\"main\",reason=\"no_cipher_suite\"} 1"
        ));
        assert!(text.contains("snigate_handshakes_resumed_total{listener=\"main\"} 1"));
    }
}
