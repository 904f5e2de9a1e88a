//! Raw TOML to typed [`Settings`], collecting every error with its position.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::raw::*;
use super::*;

/// Collects errors against one file.
struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let position = span.map(|s| line_col(self.text, s.start));
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            position,
            message: message.into(),
        });
    }

    fn toml(&mut self, e: toml::de::Error) {
        let message = e.message().trim().to_string();
        self.at(e.span(), message);
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn de<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, errors: &mut Errors<'_>) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.toml(e);
            None
        }
    }
}

/// Deserializes each element of an array of tables on its own, so that one
/// bad `[[listener]]` does not hide the errors of the next.
fn de_array<T: DeserializeOwned>(
    key: &str,
    value: Spanned<DeValue<'_>>,
    errors: &mut Errors<'_>,
) -> Vec<Spanned<T>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let span = item.span();
                de::<T>(item, errors).map(|v| Spanned::new(span, v))
            })
            .collect(),
        _ => {
            errors.at(
                Some(span),
                format!("`{key}` must be an array of tables: write [[{key}]]"),
            );
            Vec::new()
        }
    }
}

#[derive(Default)]
struct RawConfig {
    runtime: RawRuntime,
    admin: Option<RawAdmin>,
    log: RawLog,
    timeouts: RawTimeouts,
    certificates: Vec<Spanned<RawCertificate>>,
    listeners: Vec<Spanned<RawListener>>,
    routes: Vec<Spanned<RawRoute>>,
    upstreams: Vec<Spanned<RawUpstream>>,
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Settings, ConfigErrors> {
    let mut errors = Errors {
        file: path,
        text,
        list: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            errors.toml(e);
        }
        return Err(ConfigErrors(errors.list));
    }
    let mut raw = RawConfig::default();
    for (key, value) in root.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "runtime" => raw.runtime = de(value, &mut errors).unwrap_or_default(),
            "admin" => raw.admin = de(value, &mut errors),
            "log" => raw.log = de(value, &mut errors).unwrap_or_default(),
            "timeouts" => raw.timeouts = de(value, &mut errors).unwrap_or_default(),
            "certificate" => raw.certificates = de_array("certificate", value, &mut errors),
            "listener" => raw.listeners = de_array("listener", value, &mut errors),
            "route" => raw.routes = de_array("route", value, &mut errors),
            "upstream" => raw.upstreams = de_array("upstream", value, &mut errors),
            other => errors.at(
                Some(key_span),
                format!(
                    "unknown section `{other}`, expected one of `runtime`, `admin`, `log`, \
                     `timeouts`, `certificate`, `listener`, `route`, `upstream`"
                ),
            ),
        }
    }
    let settings = build(path, raw, &mut errors);
    if errors.list.is_empty() {
        Ok(settings)
    } else {
        errors.list.sort_by_key(|e| e.position);
        Err(ConfigErrors(errors.list))
    }
}

fn duration(
    value: &Option<Spanned<String>>,
    default: Duration,
    errors: &mut Errors<'_>,
) -> Duration {
    let Some(v) = value else { return default };
    match parse_duration(v.get_ref()) {
        Ok(d) if d.is_zero() => {
            errors.at(
                Some(v.span()),
                format!("\"{}\" is zero; a timeout must be positive", v.get_ref()),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            errors.at(Some(v.span()), e);
            default
        }
    }
}

/// A JSON-lines log path: `"-"` stays `-` (standard output), anything else
/// is resolved like every path.
fn log_path(base: &Path, p: &str) -> PathBuf {
    if p.trim() == STDOUT {
        PathBuf::from(STDOUT)
    } else {
        resolve(base, p)
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A host name as written in `hosts`/`names`: lower-cased, `*.` only as the
/// first label.
pub(crate) fn host_pattern(host: &str) -> Result<String, String> {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let body = h.strip_prefix("*.").unwrap_or(&h);
    let valid = !body.is_empty()
        && h.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(h)
    } else {
        Err(format!(
            "\"{host}\" is not a host name (a wildcard may only be a leading \"*.\")"
        ))
    }
}

fn unique_name(
    name: &Spanned<String>,
    kind: &str,
    seen: &mut HashSet<String>,
    errors: &mut Errors<'_>,
) {
    if name.get_ref().trim().is_empty() {
        errors.at(Some(name.span()), format!("{kind} name must not be empty"));
    } else if !seen.insert(name.get_ref().clone()) {
        errors.at(
            Some(name.span()),
            format!("duplicate {kind} name \"{}\"", name.get_ref()),
        );
    }
}

/// `legacy_tls = { ... }` of listener `name`, checked: an https listener,
/// no `legacy_upstream` beside it, a known `min_version`, a non-empty
/// cipher string, and a snigate built with the `legacy-tls` feature.
fn legacy_tls(
    name: &str,
    l: &RawListener,
    t: &Spanned<RawLegacyTls>,
    errors: &mut Errors<'_>,
) -> LegacyTlsSettings {
    let span = t.span();
    let raw = t.get_ref();
    if !cfg!(feature = "legacy-tls") {
        errors.at(
            Some(span.clone()),
            format!(
                "listener \"{name}\": snigate was built without the legacy-tls feature; \
                 rebuild with --features legacy-tls or remove legacy_tls"
            ),
        );
    }
    if l.mode != ListenerMode::Https {
        errors.at(
            Some(span.clone()),
            format!(
                "listener \"{name}\": legacy_tls only applies to https listeners \
                 (it terminates TLS)"
            ),
        );
    }
    // Both would take the same clients, and a hello OpenSSL has answered
    // cannot be handed to an upstream any more: one or the other.
    if let Some(u) = &l.legacy_upstream {
        errors.at(
            Some(u.span()),
            format!(
                "listener \"{name}\": legacy_tls and legacy_upstream both take the clients \
                 rustls cannot serve; keep one of them"
            ),
        );
    }
    let min_version = match &raw.min_version {
        None => LegacyTlsVersion::Tls10,
        Some(v) => match v.get_ref().trim() {
            "1.0" => LegacyTlsVersion::Tls10,
            "1.1" => LegacyTlsVersion::Tls11,
            "1.2" => LegacyTlsVersion::Tls12,
            other => {
                errors.at(
                    Some(v.span()),
                    format!(
                        "listener \"{name}\": legacy_tls min_version \"{other}\" is not \
                         \"1.0\", \"1.1\" or \"1.2\""
                    ),
                );
                LegacyTlsVersion::Tls10
            }
        },
    };
    let ciphers = match &raw.ciphers {
        None => DEFAULT_LEGACY_CIPHERS.to_string(),
        Some(c) if c.get_ref().trim().is_empty() => {
            errors.at(
                Some(c.span()),
                format!("listener \"{name}\": legacy_tls ciphers must not be empty"),
            );
            DEFAULT_LEGACY_CIPHERS.to_string()
        }
        Some(c) => c.get_ref().trim().to_string(),
    };
    LegacyTlsSettings {
        min_version,
        ciphers,
    }
}

/// The `Upgrade` protocol a listener passes on unless told otherwise.
const DEFAULT_UPGRADE_PROTOCOL: &str = "websocket";

/// An entry of `upgrade_protocols`: a protocol name (an HTTP token, without
/// a `/version`), lower-cased. `h2c` (and HTTP/2 by any other name) is
/// refused: an h2c upgrade turns the connection into one the backend reads
/// as HTTP/2 with requests snigate never sees (request smuggling past every
/// check, route and log).
pub(crate) fn upgrade_protocol(name: &str) -> Result<String, String> {
    let p = name.trim().to_ascii_lowercase();
    let token = !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!(
            "\"{name}\" is not a protocol name (a token such as \"websocket\", without a version)"
        ));
    }
    if matches!(p.as_str(), "h2c" | "h2" | "http") {
        return Err(format!(
            "\"{name}\" is never passed: an HTTP/2 (h2c) upgrade would let a client send the \
             backend requests that snigate never sees"
        ));
    }
    Ok(p)
}

/// The admin port when `[admin]` names no `bind`.
const DEFAULT_ADMIN_PORT: u16 = 9900;

fn build(path: &Path, raw: RawConfig, errors: &mut Errors<'_>) -> Settings {
    let base = base_dir_of(path);
    let mut inactive = Vec::new();

    // `[admin]` without `bind` listens on loopback only.
    let admin = raw.admin.and_then(|a| match &a.bind {
        None => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
        Some(bind) => match bind.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errors.at(
                    Some(bind.span()),
                    format!(
                        "admin bind \"{}\" is not an IP:port address",
                        bind.get_ref()
                    ),
                );
                None
            }
        },
    });

    let level = raw
        .log
        .level
        .as_ref()
        .map(|l| l.get_ref().clone())
        .unwrap_or_else(|| "info".into());
    if let Some(l) = &raw.log.level {
        if tracing_subscriber::EnvFilter::try_new(l.get_ref()).is_err() {
            errors.at(
                Some(l.span()),
                format!(
                    "log level \"{}\" is not valid (trace, debug, info, warn, error)",
                    l.get_ref()
                ),
            );
        }
    }
    let log = LogSettings {
        level,
        format: raw.log.format.unwrap_or_default(),
        handshake_log: raw.log.handshake_log.as_deref().map(|p| log_path(&base, p)),
        access_log: raw.log.access_log.as_deref().map(|p| log_path(&base, p)),
    };

    let t = &raw.timeouts;
    let timeouts = Timeouts {
        client_hello: duration(&t.client_hello, DEFAULT_CLIENT_HELLO, errors),
        handshake: duration(&t.handshake, DEFAULT_HANDSHAKE, errors),
        client_idle: duration(&t.client_idle, DEFAULT_CLIENT_IDLE, errors),
        upstream_connect: duration(&t.upstream_connect, DEFAULT_UPSTREAM_CONNECT, errors),
        upstream_response: duration(&t.upstream_response, DEFAULT_UPSTREAM_RESPONSE, errors),
        upstream_idle: duration(&t.upstream_idle, DEFAULT_UPSTREAM_IDLE, errors),
        shutdown_grace: duration(&t.shutdown_grace, DEFAULT_SHUTDOWN_GRACE, errors),
        client_header: duration(&t.client_header, DEFAULT_CLIENT_HEADER, errors),
        proxy_header: duration(&t.proxy_header, DEFAULT_PROXY_HEADER, errors),
        client_send: duration(&t.client_send, DEFAULT_CLIENT_SEND, errors),
        upstream_read: duration(&t.upstream_read, DEFAULT_UPSTREAM_READ, errors),
    };

    let mut seen = HashSet::new();
    let mut certificates = Vec::new();
    for c in &raw.certificates {
        let c = c.get_ref();
        unique_name(&c.name, "certificate", &mut seen, errors);
        let names = c.names.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|n| {
                    host_pattern(n)
                        .map_err(|e| {
                            errors.at(
                                Some(c.name.span()),
                                format!("certificate \"{}\": {e}", c.name.get_ref()),
                            )
                        })
                        .ok()
                })
                .collect::<Vec<_>>()
        });
        certificates.push(CertificateSettings {
            name: c.name.get_ref().clone(),
            chain: resolve(&base, c.chain.get_ref()),
            key: resolve(&base, c.key.get_ref()),
            names,
            chain_at: Some(line_col(errors.text, c.chain.span().start)),
            key_at: Some(line_col(errors.text, c.key.span().start)),
        });
    }
    let cert_names: HashSet<&str> = certificates.iter().map(|c| c.name.as_str()).collect();

    let mut seen = HashSet::new();
    let mut upstreams = Vec::new();
    for u in &raw.upstreams {
        let u = u.get_ref();
        unique_name(&u.name, "upstream", &mut seen, errors);
        if u.servers.get_ref().is_empty() {
            errors.at(
                Some(u.servers.span()),
                format!("upstream \"{}\" has no servers", u.name.get_ref()),
            );
        }
        for s in u.servers.get_ref() {
            if !is_host_port(s) {
                errors.at(
                    Some(u.servers.span()),
                    format!(
                        "upstream \"{}\": server \"{s}\" is not host:port (e.g. \"10.0.0.5:80\")",
                        u.name.get_ref()
                    ),
                );
            }
        }
        let tls = u.tls.as_ref().map(|tls| {
            let span = tls.span();
            let tls = tls.get_ref();
            for pin in &tls.pin_sha256 {
                if !is_sha256_base64(pin) {
                    errors.at(Some(span.clone()), format!("upstream \"{}\": pin_sha256 \"{pin}\" is not a base64 SHA-256 digest (44 characters)", u.name.get_ref()));
                }
            }
            UpstreamTlsSettings {
                server_name: tls.server_name.clone(),
                ca: tls.ca.as_deref().map(|p| resolve(&base, p)),
                pin_sha256: tls.pin_sha256.clone(),
                insecure_skip_verify: tls.insecure_skip_verify,
            }
        });
        let health = u.health.as_ref().map(|h| {
            let span = h.span();
            let h = h.get_ref();
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                errors.at(
                    Some(span.clone()),
                    format!(
                        "upstream \"{}\": health path \"{path}\" must start with /",
                        u.name.get_ref()
                    ),
                );
            }
            if let Some(status) = h.expect_status.filter(|s| !(100..=599).contains(s)) {
                errors.at(
                    Some(span),
                    format!(
                        "upstream \"{}\": health expect_status {status} is not an HTTP status (100-599)",
                        u.name.get_ref()
                    ),
                );
            }
            HealthSettings {
                path,
                interval: duration(&h.interval, Duration::from_secs(5), errors),
                timeout: duration(&h.timeout, Duration::from_secs(2), errors),
                expect_status: h.expect_status.unwrap_or(200),
            }
        });
        upstreams.push(UpstreamSettings {
            name: u.name.get_ref().clone(),
            servers: u.servers.get_ref().clone(),
            balance: u.balance,
            tls,
            health,
            max_fails: u.max_fails.unwrap_or(DEFAULT_MAX_FAILS),
            fail_timeout: duration(&u.fail_timeout, DEFAULT_FAIL_TIMEOUT, errors),
            send_proxy_protocol: u.send_proxy_protocol,
        });
    }
    let upstream_names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();

    let mut seen = HashSet::new();
    let mut seen_binds: HashSet<SocketAddr> = HashSet::new();
    let mut listeners = Vec::new();
    for l in &raw.listeners {
        let l = l.get_ref();
        let name = l.name.get_ref();
        unique_name(&l.name, "listener", &mut seen, errors);
        let mut bind = Vec::new();
        if l.bind.get_ref().is_empty() {
            errors.at(
                Some(l.bind.span()),
                format!("listener \"{name}\" has no bind address"),
            );
        }
        for b in l.bind.get_ref() {
            match b.parse::<SocketAddr>() {
                Ok(addr) => {
                    if addr.port() != 0 && !seen_binds.insert(addr) {
                        errors.at(Some(l.bind.span()), format!("listener \"{name}\": {addr} is bound twice"));
                    }
                    bind.push(addr)
                }
                Err(_) => errors.at(Some(l.bind.span()), format!("listener \"{name}\": bind \"{b}\" is not an IP:port address (e.g. \"0.0.0.0:443\" or \"[::]:443\")")),
            }
        }
        let needs_cert = l.mode == ListenerMode::Https;
        match &l.fallback_certificate {
            Some(c) if !cert_names.contains(c.get_ref().as_str()) => errors.at(
                Some(c.span()),
                format!("listener \"{name}\": fallback_certificate \"{}\" names no [[certificate]]", c.get_ref()),
            ),
            None if needs_cert && !l.strict_sni => errors.at(
                Some(l.name.span()),
                format!("listener \"{name}\": an https listener needs fallback_certificate (served to clients without SNI), or strict_sni = true"),
            ),
            _ => {}
        }
        if needs_cert && certificates.is_empty() {
            errors.at(
                Some(l.name.span()),
                format!(
                    "listener \"{name}\": an https listener needs at least one [[certificate]]"
                ),
            );
        }
        for (field, up) in [
            ("default_upstream", &l.default_upstream),
            ("legacy_upstream", &l.legacy_upstream),
        ] {
            if let Some(u) = up {
                if !upstream_names.contains(u.get_ref().as_str()) {
                    errors.at(
                        Some(u.span()),
                        format!(
                            "listener \"{name}\": {field} \"{}\" names no [[upstream]]",
                            u.get_ref()
                        ),
                    );
                }
            }
        }
        let alpn = l
            .alpn
            .clone()
            .unwrap_or_else(|| vec!["h2".into(), "http/1.1".into()]);
        for a in &alpn {
            if a != "h2" && a != "http/1.1" {
                errors.at(
                    Some(l.name.span()),
                    format!(
                        "listener \"{name}\": alpn \"{a}\" is not supported (\"h2\", \"http/1.1\")"
                    ),
                );
            }
        }
        let mut trusted_proxies = Vec::new();
        for t in &l.trusted_proxies {
            let text = t.get_ref();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => trusted_proxies.push(n),
                Err(_) => errors.at(
                    Some(t.span()),
                    format!(
                        "listener \"{name}\": trusted_proxies \"{text}\" is not an address or CIDR"
                    ),
                ),
            }
        }
        let upgrade_protocols = match &l.upgrade_protocols {
            None => vec![DEFAULT_UPGRADE_PROTOCOL.to_string()],
            Some(list) => list
                .iter()
                .filter_map(|p| match upgrade_protocol(p.get_ref()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        errors.at(
                            Some(p.span()),
                            format!("listener \"{name}\": upgrade_protocols: {e}"),
                        );
                        None
                    }
                })
                .collect(),
        };
        let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            errors.at(
                Some(l.name.span()),
                format!("listener \"{name}\": max_connections must be at least 1"),
            );
        }
        // A per-address limit above the listener's own could never act:
        // refused, since whoever wrote it expected it to.
        let max_connections_per_ip = match &l.max_connections_per_ip {
            None => DEFAULT_MAX_CONNECTIONS_PER_IP,
            Some(v) if *v.get_ref() <= max_connections => *v.get_ref(),
            Some(v) => {
                errors.at(
                    Some(v.span()),
                    format!(
                        "listener \"{name}\": max_connections_per_ip {} is above max_connections ({max_connections}); \
                         use a smaller value, or 0 for no per-address limit",
                        v.get_ref()
                    ),
                );
                0
            }
        };
        let at_least = |v: &Option<Spanned<usize>>,
                        default: usize,
                        min: usize,
                        key: &str,
                        errors: &mut Errors<'_>| {
            match v {
                None => default,
                Some(v) if *v.get_ref() >= min => *v.get_ref(),
                Some(v) => {
                    errors.at(
                        Some(v.span()),
                        format!("listener \"{name}\": {key} must be at least {min}"),
                    );
                    default
                }
            }
        };
        let max_header_bytes = at_least(
            &l.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
            8192,
            "max_header_bytes",
            errors,
        );
        let max_headers = at_least(
            &l.max_headers,
            DEFAULT_MAX_HEADERS,
            16,
            "max_headers",
            errors,
        );
        let max_concurrent_streams = match &l.max_concurrent_streams {
            None => DEFAULT_MAX_CONCURRENT_STREAMS,
            Some(v) if *v.get_ref() >= 1 => *v.get_ref(),
            Some(v) => {
                errors.at(
                    Some(v.span()),
                    format!("listener \"{name}\": max_concurrent_streams must be at least 1"),
                );
                DEFAULT_MAX_CONCURRENT_STREAMS
            }
        };
        // Only an https listener decides per hello whether rustls can serve
        // the client; the others have no use for a legacy upstream.
        if l.legacy_upstream.is_some() && l.mode != ListenerMode::Https {
            inactive.push(format!(
                "listener \"{name}\": legacy_upstream (only https listeners use it)"
            ));
        }
        let legacy_tls = l
            .legacy_tls
            .as_ref()
            .map(|t| legacy_tls(name, l, t, errors));
        // Read (and checked) by `check` and at start: the file is secret
        // and may change between a parse and a reload.
        let session_ticket_keys = match &l.session_ticket_keys {
            Some(p) if p.get_ref().trim().is_empty() => {
                errors.at(
                    Some(p.span()),
                    format!("listener \"{name}\": session_ticket_keys must name a file"),
                );
                None
            }
            Some(_) if l.mode != ListenerMode::Https => {
                inactive.push(format!(
                    "listener \"{name}\": session_ticket_keys (only https listeners terminate TLS; \
                     a passthrough backend resumes its own sessions)"
                ));
                None
            }
            Some(p) => Some(resolve(&base, p.get_ref())),
            None => None,
        };
        listeners.push(ListenerSettings {
            name: name.clone(),
            bind,
            mode: l.mode,
            fallback_certificate: l.fallback_certificate.as_ref().map(|c| c.get_ref().clone()),
            strict_sni: l.strict_sni,
            default_upstream: l.default_upstream.as_ref().map(|u| u.get_ref().clone()),
            alpn,
            proxy_protocol: l.proxy_protocol,
            max_connections,
            max_connections_per_ip,
            trusted_proxies,
            legacy_upstream: l.legacy_upstream.as_ref().map(|u| u.get_ref().clone()),
            legacy_tls,
            preserve_header_case: l.preserve_header_case,
            upgrade_protocols,
            max_header_bytes,
            max_headers,
            max_concurrent_streams,
            session_ticket_keys,
        });
    }
    let listener_names: HashSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();

    let mut routes = Vec::new();
    for r in &raw.routes {
        let r = r.get_ref();
        if !upstream_names.contains(r.upstream.get_ref().as_str()) {
            errors.at(
                Some(r.upstream.span()),
                format!(
                    "route upstream \"{}\" names no [[upstream]]",
                    r.upstream.get_ref()
                ),
            );
        }
        if r.hosts.get_ref().is_empty() {
            errors.at(Some(r.hosts.span()), "route has no hosts");
        }
        let hosts = r
            .hosts
            .get_ref()
            .iter()
            .filter_map(|h| {
                host_pattern(h)
                    .map_err(|e| errors.at(Some(r.hosts.span()), format!("route: {e}")))
                    .ok()
            })
            .collect();
        let mut listeners_of_route = Vec::new();
        for l in r.listeners.iter().flatten() {
            if !listener_names.contains(l.get_ref().as_str()) {
                errors.at(
                    Some(l.span()),
                    format!(
                        "route names listener \"{}\", which does not exist",
                        l.get_ref()
                    ),
                );
            }
            listeners_of_route.push(l.get_ref().clone());
        }
        routes.push(RouteSettings {
            hosts,
            listeners: listeners_of_route,
            upstream: r.upstream.get_ref().clone(),
        });
    }

    // The PROXY header goes on raw TLS streams only: an upstream that also
    // receives HTTP requests (pooled connections shared by many clients)
    // gets those without it.
    for u in upstreams.iter().filter(|u| u.send_proxy_protocol.is_some()) {
        let http_listener = listeners.iter().find(|l| {
            l.mode != ListenerMode::Passthrough
                && (l.default_upstream.as_deref() == Some(u.name.as_str())
                    || routes.iter().any(|r| {
                        r.upstream == u.name
                            && (r.listeners.is_empty() || r.listeners.contains(&l.name))
                    }))
        });
        if let Some(l) = http_listener {
            inactive.push(format!(
                "upstream \"{}\": send_proxy_protocol on HTTP requests from listener \"{}\" (it is written on passthrough and legacy_upstream connections only)",
                u.name, l.name
            ));
        }
    }

    if listeners.is_empty() && errors.list.is_empty() {
        errors.at(None, "no [[listener]]: nothing to serve");
    }

    Settings {
        source: path.to_path_buf(),
        workers: raw.runtime.workers,
        pid_file: raw.runtime.pid_file.as_deref().map(|p| resolve(&base, p)),
        admin,
        log,
        timeouts,
        certificates,
        listeners,
        routes,
        upstreams,
        inactive,
    }
}

fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().map(|p| p != 0).unwrap_or(false)
                && !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        }
        None => false,
    }
}

fn is_sha256_base64(s: &str) -> bool {
    s.len() == 44
        && s.ends_with('=')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a\nbc\nd";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 5), (3, 1));
    }

    #[test]
    fn health_expect_status_must_be_an_http_status() {
        let text = "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:1\"]\nmode = \"http\"\n\
                    default_upstream = \"u\"\n[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:2\"]\n\
                    health = { expect_status = 20 }\n";
        let errors = parse(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("expect_status 20 is not an HTTP status"),
            "{errors}"
        );
        let ok = text.replace("expect_status = 20", "expect_status = 204");
        assert!(parse(Path::new("x.toml"), &ok).is_ok());
    }

    #[test]
    fn upgrade_protocols_are_tokens_and_never_h2c() {
        let text = "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:1\"]\nmode = \"http\"\n\
                    default_upstream = \"u\"\nupgrade_protocols = [\"websocket\", \"H2C\"]\n\
                    [[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:2\"]\n";
        let errors = parse(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(
            errors.contains("upgrade_protocols: \"H2C\" is never passed"),
            "{errors}"
        );
        let listed = |list: &str| {
            let t = text.replace("\"websocket\", \"H2C\"", list);
            parse(Path::new("x.toml"), &t).map(|s| s.listeners[0].upgrade_protocols.clone())
        };
        assert_eq!(
            listed("\"WebSocket\", \"x-custom\"").unwrap(),
            ["websocket", "x-custom"]
        );
        assert_eq!(listed("").unwrap(), Vec::<String>::new());
        let default = text.replace("upgrade_protocols = [\"websocket\", \"H2C\"]\n", "");
        let settings = parse(Path::new("x.toml"), &default).unwrap();
        assert_eq!(settings.listeners[0].upgrade_protocols, ["websocket"]);
        for bad in ["\"h2\"", "\"HTTP\"", "\"websocket/13\"", "\"\"", "\"a b\""] {
            assert!(listed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            host_pattern("Portal.Contoso.TEST.").unwrap(),
            "portal.contoso.test"
        );
        assert_eq!(host_pattern("*.apps.test").unwrap(), "*.apps.test");
        assert!(host_pattern("a.*.test").is_err());
        assert!(host_pattern("").is_err());
        assert!(host_pattern("a b").is_err());
    }
}
