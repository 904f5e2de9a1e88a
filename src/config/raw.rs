//! The configuration file as written: serde structs that mirror the TOML.
//!
//! Nothing here is interpreted; `validate.rs` turns these into typed
//! [`Settings`](super::Settings). Values that later need a precise error
//! position are kept as [`Spanned`].

use serde::Deserialize;
use toml::Spanned;

/// `[runtime]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub workers: Option<Spanned<usize>>,
    /// File the running process writes its PID to (for `snigate reload`).
    pub pid_file: Option<String>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: Option<Spanned<String>>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<Spanned<String>>,
    pub format: Option<LogFormat>,
    pub handshake_log: Option<String>,
    pub access_log: Option<String>,
}

/// Human log format on stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[timeouts]`: durations as strings such as `"10s"` or `"250ms"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub client_hello: Option<Spanned<String>>,
    pub handshake: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub upstream_connect: Option<Spanned<String>>,
    pub upstream_response: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub client_header: Option<Spanned<String>>,
    pub proxy_header: Option<Spanned<String>>,
    pub client_send: Option<Spanned<String>>,
    pub upstream_read: Option<Spanned<String>>,
    pub client_park: Option<Spanned<String>>,
}

/// One `[[certificate]]`: `chain` and `key` (PEM), or `pfx` with an optional
/// `pfx_password_file` (PKCS#12); which combinations are allowed is checked
/// in `validate/certificates.rs`, so that the error can say what to write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub name: Spanned<String>,
    pub chain: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub pfx: Option<Spanned<String>>,
    pub pfx_password_file: Option<Spanned<String>>,
    pub names: Option<Vec<String>>,
}

/// What a listener does with a connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Terminate TLS, then proxy HTTP.
    #[default]
    Https,
    /// Route the raw TLS stream by SNI without terminating it.
    Passthrough,
    /// Plain HTTP.
    Http,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Spanned<String>,
    pub bind: Spanned<Vec<String>>,
    #[serde(default)]
    pub mode: ListenerMode,
    pub fallback_certificate: Option<Spanned<String>>,
    #[serde(default)]
    pub strict_sni: bool,
    pub default_upstream: Option<Spanned<String>>,
    pub alpn: Option<Vec<String>>,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<Spanned<usize>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    pub legacy_upstream: Option<Spanned<String>>,
    pub legacy_tls: Option<Spanned<RawLegacyTls>>,
    #[serde(default)]
    pub preserve_header_case: bool,
    /// HTTP/1.1 `Upgrade` protocols passed to the backend (default
    /// `["websocket"]`).
    pub upgrade_protocols: Option<Vec<Spanned<String>>>,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub max_headers: Option<Spanned<usize>>,
    pub max_concurrent_streams: Option<Spanned<u32>>,
    /// https: a file of session ticket keys shared with other instances.
    pub session_ticket_keys: Option<Spanned<String>>,
}

/// `legacy_tls = { ... }` of an https listener: OpenSSL for the clients
/// rustls cannot serve (cargo feature `legacy-tls`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLegacyTls {
    pub min_version: Option<Spanned<String>>,
    pub ciphers: Option<Spanned<String>>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Spanned<String>>,
    pub hosts: Spanned<Vec<String>>,
    pub paths: Option<Spanned<Vec<String>>>,
    pub listeners: Option<Vec<Spanned<String>>>,
    pub upstream: Spanned<String>,
    pub timeouts: Option<RawRouteTimeouts>,
    /// Only `false` (the default: bodies are streamed) is accepted.
    pub buffer_request: Option<Spanned<bool>>,
}

/// `[route.timeouts]`: the `[timeouts]` a route may override for its
/// requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTimeouts {
    pub upstream_response: Option<Spanned<String>>,
    pub upstream_read: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
}

/// How an upstream spreads requests over its servers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConn,
    IpHash,
}

impl Balance {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
            Balance::IpHash => "ip-hash",
        }
    }
}

/// `tls = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub server_name: Option<String>,
    pub ca: Option<String>,
    #[serde(default)]
    pub pin_sha256: Vec<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `health = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub expect_status: Option<u16>,
}

/// `send_proxy_protocol` of an upstream: the PROXY protocol header snigate
/// writes before the raw TLS stream (passthrough, legacy_upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// One `[[upstream]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: Spanned<String>,
    pub servers: Spanned<Vec<String>>,
    #[serde(default)]
    pub balance: Balance,
    pub tls: Option<Spanned<RawUpstreamTls>>,
    pub health: Option<Spanned<RawHealth>>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<Spanned<String>>,
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    /// A response header carrying the server's load score, 0 to 10
    /// (SharePoint's `X-SharePointHealthScore`).
    pub health_score_header: Option<Spanned<String>>,
}
