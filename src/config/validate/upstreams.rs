//! `[[upstream]]` sections, with their `tls` and `health` tables.

use super::*;

/// Every `[[upstream]]`: names unique, servers `host:port`.
pub(super) fn upstreams(
    raw: &[Spanned<RawUpstream>],
    base: &Path,
    errors: &mut Errors<'_>,
) -> Vec<UpstreamSettings> {
    let mut seen = HashSet::new();
    let mut upstreams = Vec::new();
    for u in raw {
        let u = u.get_ref();
        unique_name(&u.name, "upstream", &mut seen, errors);
        upstreams.push(upstream(u, base, errors));
    }
    upstreams
}

/// One `[[upstream]]`, its passive health defaults filled in.
fn upstream(u: &RawUpstream, base: &Path, errors: &mut Errors<'_>) -> UpstreamSettings {
    servers(u, errors);
    let tls = u.tls.as_ref().map(|tls| upstream_tls(u, tls, base, errors));
    let health = u.health.as_ref().map(|h| health(u, h, errors));
    UpstreamSettings {
        name: u.name.get_ref().clone(),
        servers: u.servers.get_ref().clone(),
        balance: u.balance,
        tls,
        health,
        max_fails: u.max_fails.unwrap_or(DEFAULT_MAX_FAILS),
        fail_timeout: duration(&u.fail_timeout, DEFAULT_FAIL_TIMEOUT, errors),
        send_proxy_protocol: u.send_proxy_protocol,
        health_score_header: health_score_header(u, errors),
    }
}

/// `health_score_header`: an HTTP header name, kept lower-case.
fn health_score_header(u: &RawUpstream, errors: &mut Errors<'_>) -> Option<String> {
    let h = u.health_score_header.as_ref()?;
    let name = h.get_ref();
    // RFC 9110 token characters.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 100 || !name.bytes().all(token) {
        errors.at(
            Some(h.span()),
            format!(
                "upstream \"{}\": health_score_header \"{}\" is not an HTTP header name (e.g. \"X-SharePointHealthScore\")",
                u.name.get_ref(),
                name.chars().take(100).collect::<String>()
            ),
        );
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// `servers`: at least one, each `host:port`.
fn servers(u: &RawUpstream, errors: &mut Errors<'_>) {
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
}

/// `tls = { ... }` of upstream `u`: pins checked, `ca` resolved against `base`.
fn upstream_tls(
    u: &RawUpstream,
    tls: &Spanned<RawUpstreamTls>,
    base: &Path,
    errors: &mut Errors<'_>,
) -> UpstreamTlsSettings {
    let span = tls.span();
    let tls = tls.get_ref();
    for pin in &tls.pin_sha256 {
        if !is_sha256_base64(pin) {
            errors.at(Some(span.clone()), format!("upstream \"{}\": pin_sha256 \"{pin}\" is not a base64 SHA-256 digest (44 characters)", u.name.get_ref()));
        }
    }
    UpstreamTlsSettings {
        server_name: tls.server_name.clone(),
        ca: tls.ca.as_deref().map(|p| resolve(base, p)),
        pin_sha256: tls.pin_sha256.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
    }
}

/// `health = { ... }` of upstream `u`: a path from `/`, an HTTP status.
fn health(u: &RawUpstream, h: &Spanned<RawHealth>, errors: &mut Errors<'_>) -> HealthSettings {
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
}

/// A server as written in `servers`: an IP:port, or a host name and a
/// non-zero port.
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

/// A `pin_sha256` entry: a SHA-256 digest in padded base64.
fn is_sha256_base64(s: &str) -> bool {
    s.len() == 44
        && s.ends_with('=')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}
