//! The runtime state built from [`Settings`]: certificates loaded, rustls
//! configurations made, route tables and upstream pools ready. Built whole
//! (every error collected) before anything starts serving.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::sync::Semaphore;

use super::source_limit::{source_key, OverLimit, SourceCounts, SourceSlot};
use crate::config::{
    CertificateSettings, CertificateSource, ConfigError, ListenerMode, ListenerSettings,
    RequestTimeouts, Settings, UpstreamSettings,
};
use crate::observe::handshake_log::HandshakeLog;
use crate::observe::metrics::{ListenerMetrics, Metrics};
use crate::observe::report::{Report, ReportLimits};
use crate::observe::telemetry::JsonLines;
use crate::route::{RouteMatch, RouteTable, UpstreamId};
use crate::tls::certs::{load_certificate, CertError, CertFile};
use crate::tls::pfx::load_pfx;
use crate::tls::{CertificateId, CertificateStore, TlsShared};
use crate::upstream::backend_tls::UpstreamTls;
use crate::upstream::Upstream;

/// A listener of the runtime: its place in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(usize);

/// One listener's runtime part.
pub struct ListenerState {
    pub settings: ListenerSettings,
    pub fallback: Option<CertificateId>,
    /// rustls configuration per certificate id (https listeners only).
    pub server_configs: Vec<Arc<ServerConfig>>,
    /// OpenSSL context per certificate id (https listeners with
    /// `legacy_tls` only; empty otherwise).
    #[cfg(feature = "legacy-tls")]
    pub legacy_tls: Vec<openssl::ssl::SslContext>,
    pub routes: RouteTable,
    /// Admission: a permit per open connection, taken before the accept
    /// (at `max_connections` the loop stops accepting).
    pub connections: Arc<Semaphore>,
    /// Open connections per client address (`max_connections_per_ip`).
    pub sources: Arc<SourceCounts>,
    pub default_upstream: Option<UpstreamId>,
    /// This listener's counters.
    pub metrics: ListenerMetrics,
}

impl ListenerState {
    /// What the TLS decision ([`crate::tls::decide::decide`]) needs of this
    /// listener.
    pub fn tls(&self) -> crate::tls::decide::ListenerTls<'_> {
        crate::tls::decide::ListenerTls {
            fallback: self.fallback,
            strict_sni: self.settings.strict_sni,
            legacy_upstream: self.settings.legacy_upstream.as_deref(),
            // Without the feature a configuration with legacy_tls does not load.
            legacy_tls: cfg!(feature = "legacy-tls") && self.settings.legacy_tls.is_some(),
            server_configs: &self.server_configs,
        }
    }

    /// The rustls configuration serving `certificate` on this https
    /// listener (the state holds one per certificate).
    pub fn server_config(&self, certificate: CertificateId) -> &Arc<ServerConfig> {
        &self.server_configs[certificate.index()]
    }

    /// The OpenSSL context serving `certificate` (`legacy_tls` listeners).
    #[cfg(feature = "legacy-tls")]
    pub fn legacy_tls_context(
        &self,
        certificate: CertificateId,
    ) -> Option<&openssl::ssl::SslContext> {
        self.legacy_tls.get(certificate.index())
    }

    /// Admits a connection from `client` on this listener: `Ok(None)` when no
    /// per-address limit applies (0, or a trusted proxy), `Ok(Some(slot))` to
    /// hold while the connection is open. On refusal, the metric and the
    /// summary log have counted it; the caller closes the connection.
    pub fn admit(&self, client: IpAddr) -> Result<Option<SourceSlot>, OverLimit> {
        let listener = self;
        let limit = listener.settings.max_connections_per_ip;
        if limit == 0 {
            return Ok(None);
        }
        let client = client.to_canonical();
        if listener.settings.trusted_proxies.contains(client) {
            return Ok(None);
        }
        let source = source_key(client);
        match listener.sources.take(source, limit) {
            Some(slot) => Ok(Some(slot)),
            None => {
                listener.metrics.refused_per_ip();
                listener
                    .sources
                    .refusals
                    .refused(&listener.settings.name, source, limit);
                Err(OverLimit { source })
            }
        }
    }
}

/// What outlives a configuration: counters, the compatibility report and
/// the TLS resumption state (session cache, rotating ticket keys) stay the
/// same across reloads, so a reload resets none of them.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub report: Arc<Report>,
    /// `None` only when the crypto provider cannot make a ticketer; every
    /// build then fails with that reason.
    pub tls: Result<Arc<TlsShared>, String>,
    /// Worker threads serving connections (1: the one runtime); upstream
    /// connections are pooled per worker.
    pub workers: usize,
}

impl Shared {
    /// For connections served on one runtime.
    pub fn new() -> Shared {
        Shared::for_workers(1)
    }

    /// For connections spread over `workers` worker threads.
    pub fn for_workers(workers: usize) -> Shared {
        Shared {
            workers: workers.max(1),
            metrics: Arc::new(Metrics::new()),
            report: Arc::new(Report::new(ReportLimits::default())),
            tls: TlsShared::new(crate::tls::crypto_provider())
                .map(Arc::new)
                .map_err(|e| format!("cannot set up TLS: {e}")),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// The state new connections and requests are served with: swapped by a
/// reload.
pub type Current = Arc<arc_swap::ArcSwap<State>>;

/// Everything a connection needs, shared read-only. A reload builds a new
/// one aside and swaps it in; connections keep the one they started with.
pub struct State {
    pub settings: Settings,
    pub certificates: CertificateStore,
    pub upstreams: Vec<Upstream>,
    pub listeners: Vec<ListenerState>,
    pub handshake_log: Option<HandshakeLog>,
    pub access_log: Option<JsonLines>,
    pub metrics: Arc<Metrics>,
    /// The compatibility report fed by every handshake.
    pub report: Arc<Report>,
    /// Which configuration this is: 1 at start, +1 per successful reload.
    pub generation: u64,
    /// How long reading the configuration and building this state took.
    pub loaded_in: std::time::Duration,
    /// Cancelled when a reload replaces this state (or at stop): its
    /// connections finish their current request and close (h2: GOAWAY),
    /// its health checks stop.
    pub retire: tokio_util::sync::CancellationToken,
    /// Cancelled when the whole proxy stops (SIGTERM): a connection still
    /// waiting for its first request closes then, but not at a reload, when
    /// it serves that request on this state first.
    pub stop: tokio_util::sync::CancellationToken,
}

impl State {
    /// The listener behind an id.
    pub fn listener(&self, id: ListenerId) -> &ListenerState {
        &self.listeners[id.0]
    }

    /// Every listener with its id, in declaration order.
    pub fn listeners_with_ids(&self) -> impl Iterator<Item = (ListenerId, &ListenerState)> {
        self.listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (ListenerId(i), l))
    }

    /// The first listener that `is` one sought.
    pub fn find_listener(&self, is: impl Fn(&ListenerState) -> bool) -> Option<ListenerId> {
        self.listeners.iter().position(is).map(ListenerId)
    }

    /// The line logged when this state was built: "configuration loaded in
    /// 812 ms: 10000 certificates, 10000 routes".
    pub fn loaded(&self) -> String {
        format!(
            "configuration loaded in {} ms: {} certificates, {} routes",
            self.loaded_in.as_millis(),
            self.certificates.all().len(),
            self.settings.routes.len()
        )
    }

    /// The upstream behind an id.
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.index()]
    }

    /// The timeouts of a request routed so: `[timeouts]` with the route's
    /// `[route.timeouts]`.
    pub fn request_timeouts(&self, route: RouteMatch) -> RequestTimeouts {
        let overrides = route
            .route()
            .and_then(|r| self.settings.routes.get(r.index()))
            .map(|r| r.timeouts)
            .unwrap_or_default();
        self.settings.timeouts.for_request(&overrides)
    }

    /// Loads certificates and log files and builds every table. On failure,
    /// every problem found, in plain words.
    pub fn build(settings: Settings) -> Result<State, Vec<String>> {
        Self::build_with(settings, &Shared::new())
    }

    /// As [`State::build`], keeping the counters, report and TLS
    /// resumption state of `shared` (a reload).
    pub fn build_with(settings: Settings, shared: &Shared) -> Result<State, Vec<String>> {
        let began = std::time::Instant::now();
        let metrics = shared.metrics.clone();
        let mut errors = Vec::new();
        let tls = match &shared.tls {
            Ok(t) => Some(t.clone()),
            Err(e) => {
                errors.push(e.clone());
                None
            }
        };
        let mut loaded = Vec::new();
        if let Some(tls) = &tls {
            for c in &settings.certificates {
                match load(c, tls.provider()) {
                    Ok(cert) => loaded.push(cert),
                    Err(e) => errors.push(certificate_error(&settings, c, &e).to_string()),
                }
            }
        }
        let certificates = CertificateStore::new(loaded);
        for c in certificates.all() {
            metrics.certificate_expiry(&c.name, c.not_after);
        }
        let preserve_header_case = settings.listeners.iter().any(|l| l.preserve_header_case);
        let upstreams: Vec<Upstream> = settings
            .upstreams
            .iter()
            .map(|u| {
                let tls = upstream_tls(u, &mut errors);
                for note in u.tls.iter().flat_map(|t| UpstreamTls::notes(&u.name, t)) {
                    tracing::warn!("{note}");
                }
                Upstream::new(
                    u,
                    settings.timeouts,
                    preserve_header_case,
                    &metrics,
                    tls,
                    shared.workers,
                )
            })
            .collect();
        let upstream_id = |name: &str| {
            upstreams
                .iter()
                .position(|u| u.name == name)
                .map(UpstreamId::new)
        };
        let upstream_names: Vec<String> = upstreams.iter().map(|u| u.name.clone()).collect();
        let route_names: Vec<String> = settings.routes.iter().map(|r| r.name.clone()).collect();

        let mut listeners = Vec::new();
        for l in &settings.listeners {
            let mut server_configs = Vec::new();
            if l.mode == ListenerMode::Https {
                if let Some(tls) = &tls {
                    // `session_ticket_keys`: read again at every build, so a
                    // reload picks up rotated keys.
                    let tickets = crate::tls::tickets::listener_ticketer(l).unwrap_or_else(|e| {
                        errors.push(e);
                        None
                    });
                    for note in tickets.iter().flat_map(|t| t.notes()) {
                        tracing::warn!("{note}");
                    }
                    for c in certificates.all() {
                        let tickets = tickets.clone().map(|t| t as _);
                        match tls.server_config(c.certified_key.clone(), &l.alpn, tickets) {
                            Ok(cfg) => server_configs.push(cfg),
                            Err(e) => errors.push(format!(
                                "listener \"{}\", certificate \"{}\": {e}",
                                l.name, c.name
                            )),
                        }
                    }
                }
            }
            #[cfg(feature = "legacy-tls")]
            let legacy_tls = legacy_tls_contexts(l, &settings, certificates.all(), &mut errors);
            listeners.push(ListenerState {
                settings: l.clone(),
                #[cfg(feature = "legacy-tls")]
                legacy_tls,
                fallback: l
                    .fallback_certificate
                    .as_deref()
                    .and_then(|n| certificates.by_name(n)),
                server_configs,
                routes: RouteTable::for_listener(l, &settings.routes, upstream_id),
                connections: Arc::new(Semaphore::new(l.max_connections)),
                sources: Default::default(),
                default_upstream: l.default_upstream.as_deref().and_then(upstream_id),
                metrics: metrics.listener(
                    &l.name,
                    &upstream_names,
                    &route_names,
                    l.fallback_certificate.as_deref(),
                ),
            });
        }

        let mut failed = |what: &str, path: &std::path::Path, e: std::io::Error| {
            errors.push(format!("cannot open {what} {}: {e}", path.display()));
        };
        let handshake_log = settings.log.handshake_log.as_deref().and_then(|p| {
            HandshakeLog::open(p, metrics.log_dropped())
                .map_err(|e| failed("handshake_log", p, e))
                .ok()
        });
        let access_log = settings.log.access_log.as_deref().and_then(|p| {
            JsonLines::open(p, metrics.log_dropped())
                .map_err(|e| failed("access_log", p, e))
                .ok()
        });

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(State {
            loaded_in: settings.read_in + began.elapsed(),
            settings,
            certificates,
            upstreams,
            listeners,
            handshake_log,
            access_log,
            metrics,
            report: shared.report.clone(),
            generation: 1,
            retire: tokio_util::sync::CancellationToken::new(),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// What `snigate check` has to say about a configuration that loads.
#[derive(Debug, Default)]
pub struct Checked {
    /// Notes worth reading: settings not active yet, upstream TLS that
    /// verifies nothing, session ticket notes.
    pub notes: Vec<String>,
    /// Certificate hygiene (expiry, key file mode, chain order, fallbacks
    /// that cannot cover a routed host): see [`crate::tls::hygiene`].
    pub warnings: Vec<crate::tls::hygiene::Finding>,
}

/// [`check_report`] with the hygiene warnings' messages after the notes, as
/// one list; each error as `snigate check` prints it.
pub fn check(settings: &Settings) -> Result<Vec<String>, Vec<String>> {
    let checked = check_report(settings)
        .map_err(|e| e.iter().map(ConfigError::to_string).collect::<Vec<_>>())?;
    let mut notes = checked.notes;
    notes.extend(checked.warnings.into_iter().map(|w| w.message));
    Ok(notes)
}

/// Loads the certificate `c` from its PEM files or its pfx.
fn load(
    c: &CertificateSettings,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<crate::tls::certs::LoadedCertificate, CertError> {
    match &c.source {
        CertificateSource::Pem { chain, key, .. } => {
            load_certificate(&c.name, chain, key, c.names.as_deref(), provider)
        }
        CertificateSource::Pfx {
            file,
            password_file,
            ..
        } => load_pfx(
            &c.name,
            file,
            password_file.as_deref(),
            c.names.as_deref(),
            provider,
        ),
    }
}

/// A certificate that did not load, as an error of the configuration file:
/// at the `chain` or `key` value of its `[[certificate]]` (whichever file
/// the error is about), naming the entry; the error itself names the file.
pub fn certificate_error(
    settings: &Settings,
    c: &CertificateSettings,
    e: &CertError,
) -> ConfigError {
    let position = match &c.source {
        CertificateSource::Pem {
            chain,
            key,
            chain_at,
            key_at,
        } => match e.file(chain, key) {
            CertFile::Chain => *chain_at,
            CertFile::Key => *key_at,
        },
        CertificateSource::Pfx {
            password_file,
            at,
            password_at,
            ..
        } => match e {
            CertError::Read { path, .. }
            | CertError::TooLarge { path, .. }
            | CertError::PasswordFile { path, .. }
                if Some(path) == password_file.as_ref() =>
            {
                *password_at
            }
            _ => *at,
        },
    };
    ConfigError {
        file: settings.source.clone(),
        position,
        message: format!("certificate \"{}\": {e}", c.name),
    }
}

/// `snigate check`: loads every certificate without opening logs or
/// sockets. Ok carries notes and hygiene warnings; Err every problem, as
/// configuration errors: a certificate's at its `chain` or `key` value
/// (`FILE:LINE:COL: certificate "NAME": ...`), the others (upstream CA
/// files, `legacy_tls`, session ticket keys) without a position.
pub fn check_report(settings: &Settings) -> Result<Checked, Vec<ConfigError>> {
    let provider = crate::tls::crypto_provider();
    let mut located = Vec::new();
    let mut errors = Vec::new();
    let mut loaded = Vec::new();
    for c in &settings.certificates {
        match load(c, &provider) {
            Ok(cert) => loaded.push(cert),
            Err(e) => located.push(certificate_error(settings, c, &e)),
        }
    }
    for u in &settings.upstreams {
        upstream_tls(u, &mut errors);
    }
    #[cfg(feature = "legacy-tls")]
    for l in &settings.listeners {
        legacy_tls_contexts(l, settings, &loaded, &mut errors);
    }
    let mut ticket_notes = Vec::new();
    for l in &settings.listeners {
        match crate::tls::tickets::listener_ticketer(l) {
            Ok(t) => ticket_notes.extend(t.iter().flat_map(|t| t.notes().to_vec())),
            Err(e) => errors.push(e),
        }
    }
    if !located.is_empty() || !errors.is_empty() {
        located.extend(errors.into_iter().map(|message| ConfigError {
            file: settings.source.clone(),
            position: None,
            message,
        }));
        return Err(located);
    }
    let mut notes: Vec<String> = settings
        .inactive
        .iter()
        .map(|s| format!("not active in this version: {s}"))
        .collect();
    notes.extend(ticket_notes);
    for u in &settings.upstreams {
        notes.extend(u.tls.iter().flat_map(|t| UpstreamTls::notes(&u.name, t)));
    }
    let warnings = crate::tls::hygiene::inspect(settings, &loaded, std::time::SystemTime::now());
    Ok(Checked { notes, warnings })
}

/// The TLS client side of an upstream with `tls` (its CA file read); an
/// error, naming the upstream and the file, goes to `errors`.
fn upstream_tls(u: &UpstreamSettings, errors: &mut Vec<String>) -> Option<UpstreamTls> {
    let settings = u.tls.as_ref()?;
    match UpstreamTls::new(&u.name, settings, crate::tls::crypto_provider()) {
        Ok(tls) => Some(tls),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The OpenSSL contexts of an https listener with `legacy_tls`, one per
/// loaded certificate in `certificates` order (empty without
/// `legacy_tls`); an error, naming the listener and certificate, goes to
/// `errors`.
#[cfg(feature = "legacy-tls")]
fn legacy_tls_contexts(
    l: &ListenerSettings,
    settings: &Settings,
    certificates: &[crate::tls::certs::LoadedCertificate],
    errors: &mut Vec<String>,
) -> Vec<openssl::ssl::SslContext> {
    let Some(legacy) = l
        .legacy_tls
        .as_ref()
        .filter(|_| l.mode == ListenerMode::Https)
    else {
        return Vec::new();
    };
    let by_name: std::collections::HashMap<&str, &CertificateSettings> = settings
        .certificates
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let mut contexts = Vec::new();
    for c in certificates {
        let Some(files) = by_name.get(c.name.as_str()) else {
            continue;
        };
        match crate::tls::openssl::context(legacy, &files.source) {
            Ok(ctx) => contexts.push(ctx),
            Err(e) => errors.push(format!(
                "listener \"{}\", certificate \"{}\": {e}",
                l.name, c.name
            )),
        }
    }
    contexts
}
