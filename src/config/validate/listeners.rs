//! `[[listener]]` sections.

use super::legacy_tls::legacy_tls;
use super::*;

/// The `Upgrade` protocol a listener passes on unless told otherwise.
const DEFAULT_UPGRADE_PROTOCOL: &str = "websocket";

/// What a listener may name, from the sections built before it.
pub(super) struct Known<'a> {
    certificates: &'a [CertificateSettings],
    certificate_names: HashSet<&'a str>,
    upstream_names: HashSet<&'a str>,
}

impl<'a> Known<'a> {
    /// The certificates and upstreams already built.
    pub(super) fn new(
        certificates: &'a [CertificateSettings],
        upstreams: &'a [UpstreamSettings],
    ) -> Self {
        Known {
            certificates,
            certificate_names: certificates.iter().map(|c| c.name.as_str()).collect(),
            upstream_names: upstreams.iter().map(|u| u.name.as_str()).collect(),
        }
    }
}

/// What each listener is checked against, and where its findings go.
struct Context<'a, 'e> {
    known: Known<'a>,
    /// Addresses bound by the listeners before this one.
    seen_binds: HashSet<SocketAddr>,
    base: &'a Path,
    errors: &'a mut Errors<'e>,
    inactive: &'a mut Vec<String>,
}

/// Every `[[listener]]`: names unique, no address bound twice.
pub(super) fn listeners(
    raw: &[Spanned<RawListener>],
    known: Known<'_>,
    base: &Path,
    errors: &mut Errors<'_>,
    inactive: &mut Vec<String>,
) -> Vec<ListenerSettings> {
    let mut seen = HashSet::new();
    let mut cx = Context {
        known,
        seen_binds: HashSet::new(),
        base,
        errors,
        inactive,
    };
    let mut listeners = Vec::new();
    for l in raw {
        let l = l.get_ref();
        unique_name(&l.name, "listener", &mut seen, cx.errors);
        listeners.push(listener(l, &mut cx));
    }
    listeners
}

/// One `[[listener]]`, each of its settings checked in turn.
fn listener(l: &RawListener, cx: &mut Context<'_, '_>) -> ListenerSettings {
    let name = l.name.get_ref();
    let bind = bind(name, &l.bind, &mut cx.seen_binds, cx.errors);
    certificates_named(name, l, &cx.known, cx.errors);
    upstreams_named(name, l, &cx.known, cx.errors);
    let alpn = alpn(name, l, cx.errors);
    let trusted_proxies = trusted_proxies(name, &l.trusted_proxies, cx.errors);
    let upgrade_protocols = upgrade_protocols(name, &l.upgrade_protocols, cx.errors);
    let max_connections = max_connections(name, l, cx.errors);
    let max_connections_per_ip = max_connections_per_ip(name, l, max_connections, cx.errors);
    let max_header_bytes = at_least(
        name,
        &l.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
        8192,
        "max_header_bytes",
        cx.errors,
    );
    let max_headers = at_least(
        name,
        &l.max_headers,
        DEFAULT_MAX_HEADERS,
        16,
        "max_headers",
        cx.errors,
    );
    let max_concurrent_streams = max_concurrent_streams(name, &l.max_concurrent_streams, cx.errors);
    legacy_upstream_unused(name, l, cx.inactive);
    let legacy_tls = l
        .legacy_tls
        .as_ref()
        .map(|t| legacy_tls(name, l, t, cx.errors));
    let session_ticket_keys = session_ticket_keys(name, l, cx);
    ListenerSettings {
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
    }
}

/// `bind` of listener `name`: at least one IP:port, none bound before.
fn bind(
    name: &str,
    bind: &Spanned<Vec<String>>,
    seen_binds: &mut HashSet<SocketAddr>,
    errors: &mut Errors<'_>,
) -> Vec<SocketAddr> {
    let mut addresses = Vec::new();
    if bind.get_ref().is_empty() {
        errors.at(
            Some(bind.span()),
            format!("listener \"{name}\" has no bind address"),
        );
    }
    for b in bind.get_ref() {
        match b.parse::<SocketAddr>() {
            Ok(addr) => {
                if addr.port() != 0 && !seen_binds.insert(addr) {
                    errors.at(Some(bind.span()), format!("listener \"{name}\": {addr} is bound twice"));
                }
                addresses.push(addr)
            }
            Err(_) => errors.at(Some(bind.span()), format!("listener \"{name}\": bind \"{b}\" is not an IP:port address (e.g. \"0.0.0.0:443\" or \"[::]:443\")")),
        }
    }
    addresses
}

/// An https listener's certificates: a `fallback_certificate` that exists
/// (or `strict_sni`), and at least one `[[certificate]]`.
fn certificates_named(name: &str, l: &RawListener, known: &Known<'_>, errors: &mut Errors<'_>) {
    let needs_cert = l.mode == ListenerMode::Https;
    match &l.fallback_certificate {
        Some(c) if !known.certificate_names.contains(c.get_ref().as_str()) => errors.at(
            Some(c.span()),
            format!("listener \"{name}\": fallback_certificate \"{}\" names no [[certificate]]", c.get_ref()),
        ),
        None if needs_cert && !l.strict_sni => errors.at(
            Some(l.name.span()),
            format!("listener \"{name}\": an https listener needs fallback_certificate (served to clients without SNI), or strict_sni = true"),
        ),
        _ => {}
    }
    if needs_cert && known.certificates.is_empty() {
        errors.at(
            Some(l.name.span()),
            format!("listener \"{name}\": an https listener needs at least one [[certificate]]"),
        );
    }
}

/// `default_upstream` and `legacy_upstream`: each names an `[[upstream]]`.
fn upstreams_named(name: &str, l: &RawListener, known: &Known<'_>, errors: &mut Errors<'_>) {
    for (field, up) in [
        ("default_upstream", &l.default_upstream),
        ("legacy_upstream", &l.legacy_upstream),
    ] {
        if let Some(u) = up {
            if !known.upstream_names.contains(u.get_ref().as_str()) {
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
}

/// `alpn`: `h2` and `http/1.1` only, both by default.
fn alpn(name: &str, l: &RawListener, errors: &mut Errors<'_>) -> Vec<String> {
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
    alpn
}

/// `trusted_proxies`: addresses and CIDR networks.
fn trusted_proxies(
    name: &str,
    raw: &[Spanned<String>],
    errors: &mut Errors<'_>,
) -> crate::config::TrustedProxies {
    let mut trusted_proxies = Vec::new();
    for t in raw {
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
    crate::config::TrustedProxies::new(trusted_proxies)
}

/// `upgrade_protocols`: each an [`upgrade_protocol`], websocket by default.
fn upgrade_protocols(
    name: &str,
    raw: &Option<Vec<Spanned<String>>>,
    errors: &mut Errors<'_>,
) -> Vec<String> {
    match raw {
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
    }
}

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

/// `max_connections`: at least 1.
fn max_connections(name: &str, l: &RawListener, errors: &mut Errors<'_>) -> usize {
    let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        errors.at(
            Some(l.name.span()),
            format!("listener \"{name}\": max_connections must be at least 1"),
        );
    }
    max_connections
}

/// `max_connections_per_ip`: at most `max_connections`.
fn max_connections_per_ip(
    name: &str,
    l: &RawListener,
    max_connections: usize,
    errors: &mut Errors<'_>,
) -> usize {
    // A per-address limit above the listener's own could never act:
    // refused, since whoever wrote it expected it to.
    match &l.max_connections_per_ip {
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
    }
}

/// A size limit `key` of listener `name`: `default` when missing, and when
/// below `min`.
fn at_least(
    name: &str,
    v: &Option<Spanned<usize>>,
    default: usize,
    min: usize,
    key: &str,
    errors: &mut Errors<'_>,
) -> usize {
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
}

/// `max_concurrent_streams`: at least 1.
fn max_concurrent_streams(name: &str, v: &Option<Spanned<u32>>, errors: &mut Errors<'_>) -> u32 {
    match v {
        None => DEFAULT_MAX_CONCURRENT_STREAMS,
        Some(v) if *v.get_ref() >= 1 => *v.get_ref(),
        Some(v) => {
            errors.at(
                Some(v.span()),
                format!("listener \"{name}\": max_concurrent_streams must be at least 1"),
            );
            DEFAULT_MAX_CONCURRENT_STREAMS
        }
    }
}

/// Notes in `inactive` a `legacy_upstream` that its listener never uses.
fn legacy_upstream_unused(name: &str, l: &RawListener, inactive: &mut Vec<String>) {
    // Only an https listener decides per hello whether rustls can serve
    // the client; the others have no use for a legacy upstream.
    if l.legacy_upstream.is_some() && l.mode != ListenerMode::Https {
        inactive.push(format!(
            "listener \"{name}\": legacy_upstream (only https listeners use it)"
        ));
    }
}

/// `session_ticket_keys`: a file, for https listeners only.
fn session_ticket_keys(name: &str, l: &RawListener, cx: &mut Context<'_, '_>) -> Option<PathBuf> {
    // Read (and checked) by `check` and at start: the file is secret
    // and may change between a parse and a reload.
    match &l.session_ticket_keys {
        Some(p) if p.get_ref().trim().is_empty() => {
            cx.errors.at(
                Some(p.span()),
                format!("listener \"{name}\": session_ticket_keys must name a file"),
            );
            None
        }
        Some(_) if l.mode != ListenerMode::Https => {
            cx.inactive.push(format!(
                "listener \"{name}\": session_ticket_keys (only https listeners terminate TLS; \
                 a passthrough backend resumes its own sessions)"
            ));
            None
        }
        Some(p) => Some(resolve(cx.base, p.get_ref())),
        None => None,
    }
}
