//! Configuration: the TOML file read once into typed [`Settings`].
//!
//! `raw.rs` mirrors the file, `validate.rs` checks it and builds the typed
//! values; the rest of snigate never sees TOML. Every error found is kept
//! (not only the first), each with its file position where there is one.

mod host;
mod path;
mod raw;
mod trust;
mod validate;

pub use host::host_name;
pub use path::{path_segments, under};
pub use trust::TrustedProxies;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::{Balance, ListenerMode, LogFormat, ProxyProtocolVersion};
pub(crate) use validate::host_pattern;

/// The log path that means standard output (`handshake_log = "-"`), for
/// containers: the process's own stdout, never reopened (an unprivileged
/// process cannot open a container's `/dev/stdout`).
pub const STDOUT: &str = "-";

/// The most `[runtime] workers` may ask for (HAProxy's 64-bit builds stop
/// `nbthread` at 64, or 256 with thread groups): each worker is a thread
/// with a listening socket per address, so a typo such as `workers =
/// 80000` would otherwise fail at start on whichever thread or socket the
/// system refused.
pub const MAX_WORKERS: usize = 1024;

/// Default for `[timeouts] client_hello`: first byte to complete ClientHello.
pub const DEFAULT_CLIENT_HELLO: Duration = Duration::from_secs(10);
/// Default for `[timeouts] handshake`.
pub const DEFAULT_HANDSHAKE: Duration = Duration::from_secs(10);
/// Default for `[timeouts] client_idle`: a keep-alive client connection with no request.
pub const DEFAULT_CLIENT_IDLE: Duration = Duration::from_secs(120);
/// Default for `[timeouts] upstream_connect`.
pub const DEFAULT_UPSTREAM_CONNECT: Duration = Duration::from_secs(5);
/// Default for `[timeouts] upstream_response`: time to the response head.
/// Long because SharePoint and Exchange legitimately think for minutes.
pub const DEFAULT_UPSTREAM_RESPONSE: Duration = Duration::from_secs(300);
/// Default for `[timeouts] upstream_idle`: below IIS's 120 s keep-alive so
/// the backend never closes a connection we are about to reuse.
pub const DEFAULT_UPSTREAM_IDLE: Duration = Duration::from_secs(60);
/// Default for `[timeouts] shutdown_grace`: how long SIGTERM waits for open
/// connections to finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default for `[timeouts] client_header`: from the first byte of a request
/// to the end of its head (slowloris).
pub const DEFAULT_CLIENT_HEADER: Duration = Duration::from_secs(30);
/// Default for `[timeouts] proxy_header`: to read a PROXY protocol header.
pub const DEFAULT_PROXY_HEADER: Duration = Duration::from_secs(5);
/// Default for `[timeouts] client_send`: a response that the client takes
/// no byte of for this long closes the connection and its backend's
/// (nginx's `send_timeout`), so a client that never reads holds nothing.
pub const DEFAULT_CLIENT_SEND: Duration = Duration::from_secs(60);
/// Default for `[timeouts] upstream_read`: after the response head, a
/// backend that sends nothing for this long is cut off (nginx's
/// `proxy_read_timeout` between two reads; HAProxy's `timeout server`).
pub const DEFAULT_UPSTREAM_READ: Duration = Duration::from_secs(300);
/// Default for `[timeouts] client_park`: an HTTP/1.1 keep-alive connection
/// waiting this long for its next request gives hyper's buffers back
/// (`http::h1`). A client that sends its next request sooner (a load
/// test, a browser fetching a page's parts) keeps them and pays nothing;
/// one that idles (Outlook, ActiveSync between polls) costs a third of the
/// memory. Short, so that a burst of requests over thousands of
/// connections does not hold thousands of buffers at once.
pub const DEFAULT_CLIENT_PARK: Duration = Duration::from_millis(100);
/// Default `max_header_bytes` per listener: a request head (HTTP/1.1: the
/// read buffer's limit; h2: the decoded header list). Big enough for
/// Kerberos tickets in `Authorization` (Windows allows 48 KiB tokens).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default `max_headers` per listener (HTTP/1.1 request header count).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default `max_concurrent_streams` per h2 connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default `max_fails` per upstream: connection failures in a row that take
/// a server out.
pub const DEFAULT_MAX_FAILS: u32 = 3;
/// Default `fail_timeout` per upstream: how long a failed server stays out.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `max_connections` per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `max_connections_per_ip` per listener: a tenth of
/// [`DEFAULT_MAX_CONNECTIONS`], so that one address (a scanner, a client
/// that leaks idle connections) cannot fill the listener, while an office
/// NAT of a few hundred users with several connections each still fits.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it was read from (relative paths are resolved against its folder).
    pub source: PathBuf,
    /// Worker threads; 0 = one per CPU; at most [`MAX_WORKERS`].
    pub workers: usize,
    /// Where `run` writes its PID and `reload` finds it (`[runtime] pid_file`).
    pub pid_file: Option<PathBuf>,
    /// Admin endpoint address, when configured.
    pub admin: Option<SocketAddr>,
    pub log: LogSettings,
    pub timeouts: Timeouts,
    pub certificates: Vec<CertificateSettings>,
    pub listeners: Vec<ListenerSettings>,
    pub routes: Vec<RouteSettings>,
    pub upstreams: Vec<UpstreamSettings>,
    /// Settings that parse and validate but that this version does not act on
    /// yet, in words for the start-up message.
    pub inactive: Vec<String>,
    /// How long reading and validating the file took (part of the load
    /// time logged at start and reload).
    pub read_in: Duration,
}

/// `[log]`
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    pub handshake_log: Option<PathBuf>,
    pub access_log: Option<PathBuf>,
}

/// `[timeouts]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub client_hello: Duration,
    pub handshake: Duration,
    pub client_idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub upstream_idle: Duration,
    pub shutdown_grace: Duration,
    pub client_header: Duration,
    pub proxy_header: Duration,
    pub client_send: Duration,
    pub upstream_read: Duration,
    pub client_park: Duration,
}

impl Timeouts {
    /// The timeouts of a request routed by a route with `overrides`.
    pub fn for_request(&self, overrides: &RouteTimeouts) -> RequestTimeouts {
        RequestTimeouts {
            upstream_response: overrides
                .upstream_response
                .unwrap_or(self.upstream_response),
            upstream_read: overrides.upstream_read.unwrap_or(self.upstream_read),
            client_idle: overrides.client_idle.unwrap_or(self.client_idle),
        }
    }
}

/// `[route.timeouts]`: what a route overrides of `[timeouts]` for the
/// requests it routes (`None`: the global value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub upstream_response: Option<Duration>,
    pub upstream_read: Option<Duration>,
    pub client_idle: Option<Duration>,
}

/// The timeouts that govern one request: `[timeouts]` with its route's
/// overrides (see [`Timeouts::for_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// To the backend's response head, once the request is sent.
    pub upstream_response: Duration,
    /// Between two reads of the backend's response body.
    pub upstream_read: Duration,
    /// A request body that stalls, an upgraded connection with no traffic,
    /// and the keep-alive wait after the response.
    pub client_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_hello: DEFAULT_CLIENT_HELLO,
            handshake: DEFAULT_HANDSHAKE,
            client_idle: DEFAULT_CLIENT_IDLE,
            upstream_connect: DEFAULT_UPSTREAM_CONNECT,
            upstream_response: DEFAULT_UPSTREAM_RESPONSE,
            upstream_idle: DEFAULT_UPSTREAM_IDLE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            client_header: DEFAULT_CLIENT_HEADER,
            proxy_header: DEFAULT_PROXY_HEADER,
            client_send: DEFAULT_CLIENT_SEND,
            upstream_read: DEFAULT_UPSTREAM_READ,
            client_park: DEFAULT_CLIENT_PARK,
        }
    }
}

/// One `[[certificate]]`, paths resolved.
#[derive(Debug, Clone)]
pub struct CertificateSettings {
    pub name: String,
    /// The files the chain and key are read from.
    pub source: CertificateSource,
    /// Explicit names; `None` means the leaf's DNS subjectAltNames.
    pub names: Option<Vec<String>>,
}

/// Where a `[[certificate]]`'s chain and private key come from. The
/// positions are 1-based line and column of the value in the configuration
/// file, so that an error about a file points at the line that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// `chain` and `key`: PEM files.
    Pem {
        chain: PathBuf,
        key: PathBuf,
        chain_at: Option<(usize, usize)>,
        key_at: Option<(usize, usize)>,
    },
    /// `pfx` (PKCS#12, as Windows exports it) and its `pfx_password_file`
    /// (none: the empty password).
    Pfx {
        file: PathBuf,
        password_file: Option<PathBuf>,
        at: Option<(usize, usize)>,
        password_at: Option<(usize, usize)>,
    },
}

impl CertificateSource {
    /// The file that holds the certificates: `chain`, or the `pfx`.
    pub fn chain_file(&self) -> &Path {
        match self {
            CertificateSource::Pem { chain, .. } => chain,
            CertificateSource::Pfx { file, .. } => file,
        }
    }

    /// The files that hold the private key or open it, with what each is
    /// in words ("key file", "pfx file", "pfx password file"): the files
    /// that must not be readable by everyone.
    pub fn secret_files(&self) -> Vec<(&'static str, &Path)> {
        match self {
            CertificateSource::Pem { key, .. } => vec![("key file", key.as_path())],
            CertificateSource::Pfx {
                file,
                password_file,
                ..
            } => std::iter::once(("pfx file", file.as_path()))
                .chain(password_file.as_deref().map(|p| ("pfx password file", p)))
                .collect(),
        }
    }

    /// Every file this certificate is read from.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            CertificateSource::Pem { chain, key, .. } => vec![chain, key],
            CertificateSource::Pfx {
                file,
                password_file,
                ..
            } => std::iter::once(file.as_path())
                .chain(password_file.as_deref())
                .collect(),
        }
    }
}

/// One `[[listener]]`.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub name: String,
    pub bind: Vec<SocketAddr>,
    pub mode: ListenerMode,
    pub fallback_certificate: Option<String>,
    pub strict_sni: bool,
    pub default_upstream: Option<String>,
    pub alpn: Vec<String>,
    pub proxy_protocol: bool,
    pub max_connections: usize,
    /// Open connections one client address (IPv6: one /64) may hold on this
    /// listener; 0 = no such limit. See [`crate::state::source_limit`].
    pub max_connections_per_ip: usize,
    /// Balancers: whose `X-Forwarded-For` is extended rather than replaced,
    /// who are not limited per address, and (with `proxy_protocol`) who may
    /// send the PROXY header.
    pub trusted_proxies: TrustedProxies,
    /// https: where a client that rustls cannot serve (TLS 1.1 or older,
    /// SSLv2-format hello, no suite or signature scheme in common, ...) is
    /// sent as a raw TLS stream instead of failing its handshake.
    pub legacy_upstream: Option<String>,
    /// https: clients rustls cannot serve get their handshake from OpenSSL
    /// instead (cargo feature `legacy-tls`; the configuration is refused
    /// without it).
    pub legacy_tls: Option<LegacyTlsSettings>,
    /// HTTP/1.1: keep header names exactly as the client and backend wrote
    /// them, instead of writing them in Title-Case.
    pub preserve_header_case: bool,
    /// HTTP/1.1: the `Upgrade` protocols passed to the backend (lower-case
    /// names, never `h2c`); any other is removed from the request.
    pub upgrade_protocols: Vec<String>,
    /// Largest request head accepted (431 beyond it).
    pub max_header_bytes: usize,
    /// Most request header fields accepted, HTTP/1.1 (431 beyond it).
    pub max_headers: usize,
    /// h2: streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// https: session ticket keys from this file (nginx format, see
    /// `tickets.rs`) instead of per-process rotating keys, so that
    /// instances sharing it resume each other's sessions.
    pub session_ticket_keys: Option<PathBuf>,
}

/// Default `legacy_tls` cipher string: OpenSSL's defaults, at security
/// level 0 so that TLS 1.0/1.1 (SHA-1 and MD5 handshake signatures) and
/// small-keyed clients can still complete a handshake on OpenSSL 3.
pub const DEFAULT_LEGACY_CIPHERS: &str = "DEFAULT:@SECLEVEL=0";

/// Lowest protocol version the OpenSSL engine negotiates (it never goes
/// above TLS 1.2: TLS 1.3 clients are rustls's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LegacyTlsVersion {
    Tls10,
    Tls11,
    Tls12,
}

impl LegacyTlsVersion {
    /// As written in the configuration and the handshake log.
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyTlsVersion::Tls10 => "1.0",
            LegacyTlsVersion::Tls11 => "1.1",
            LegacyTlsVersion::Tls12 => "1.2",
        }
    }
}

/// `legacy_tls = { min_version, ciphers }` of an https listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTlsSettings {
    pub min_version: LegacyTlsVersion,
    /// An OpenSSL cipher string (TLS 1.2 and older suites).
    pub ciphers: String,
}

/// One `[[route]]`, host names lower-cased.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// The route's name in the access log and metrics: `name`, else its
    /// first host and first path (`mail.contoso.test/owa`).
    pub name: String,
    pub hosts: Vec<String>,
    /// Path prefixes as written (`/owa`); empty: every path.
    pub paths: Vec<String>,
    /// Empty: every listener.
    pub listeners: Vec<String>,
    pub upstream: String,
    /// `[route.timeouts]`.
    pub timeouts: RouteTimeouts,
}

impl RouteSettings {
    /// Whether this route applies to the listener named `listener` (a
    /// route without `listeners` applies to every listener).
    pub fn applies_to(&self, listener: &str) -> bool {
        self.listeners.is_empty() || self.listeners.iter().any(|l| l == listener)
    }
}

/// One `[[upstream]]`.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    /// `host:port` as written; resolved when connecting.
    pub servers: Vec<String>,
    pub balance: Balance,
    pub tls: Option<UpstreamTlsSettings>,
    pub health: Option<HealthSettings>,
    /// Passive health: connection failures in a row that take a server out
    /// of rotation for `fail_timeout`; 0 never takes it out.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// Write a PROXY protocol header (v1 or v2) naming the client before the
    /// raw TLS stream of a passthrough or legacy_upstream connection. Not
    /// used for HTTP requests (pooled connections serve many clients).
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    /// A response header (lower-case name) in which each server reports
    /// its load, 0 (idle) to 10 (throttling): SharePoint's
    /// `X-SharePointHealthScore`. The balancer prefers servers with low
    /// scores and sends no new request to one at 10.
    pub health_score_header: Option<String>,
}

/// `[upstream.tls]` (validated; not active in this version).
#[derive(Debug, Clone)]
pub struct UpstreamTlsSettings {
    pub server_name: Option<String>,
    pub ca: Option<PathBuf>,
    pub pin_sha256: Vec<String>,
    pub insecure_skip_verify: bool,
}

/// `health = { ... }` (validated; not active in this version).
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect_status: u16,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let began = std::time::Instant::now();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                position: None,
                message: format!("cannot read configuration: {e}"),
            }])
        })?;
        let mut settings = Self::parse(path, &text)?;
        settings.read_in = began.elapsed();
        Ok(settings)
    }

    /// Validates configuration text; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigErrors> {
        let began = std::time::Instant::now();
        let mut settings = validate::parse(path, text)?;
        settings.read_in = began.elapsed();
        Ok(settings)
    }

    /// The folder relative paths in this configuration are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        base_dir_of(&self.source)
    }

    /// A one-line summary for `snigate check`.
    pub fn summary(&self) -> String {
        let binds: usize = self.listeners.iter().map(|l| l.bind.len()).sum();
        format!(
            "{} listener(s) on {} address(es), {} certificate(s), {} route(s), {} upstream(s)",
            self.listeners.len(),
            binds,
            self.certificates.len(),
            self.routes.len(),
            self.upstreams.len()
        )
    }

    /// Looks up a listener by name.
    pub fn listener(&self, name: &str) -> Option<&ListenerSettings> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

pub(crate) fn base_dir_of(source: &Path) -> PathBuf {
    match source.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Parses a duration such as `"10s"`, `"250ms"` or `"2m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("\"{text}\" is not a duration ({e}); write e.g. \"10s\" or \"250ms\""))
}
