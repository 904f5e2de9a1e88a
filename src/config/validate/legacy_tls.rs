//! `legacy_tls = { ... }` of a listener: OpenSSL for the clients rustls cannot serve.

use super::*;

/// `legacy_tls = { ... }` of listener `name`, checked: an https listener,
/// no `legacy_upstream` beside it, a known `min_version`, a non-empty
/// cipher string, and a snigate built with the `legacy-tls` feature.
pub(super) fn legacy_tls(
    name: &str,
    l: &RawListener,
    t: &Spanned<RawLegacyTls>,
    errors: &mut Errors<'_>,
) -> LegacyTlsSettings {
    let span = t.span();
    let raw = t.get_ref();
    placement(name, l, span, errors);
    LegacyTlsSettings {
        min_version: min_version(name, raw, errors),
        ciphers: ciphers(name, raw, errors),
    }
}

/// Where `legacy_tls` may be: in a snigate built for it, on an https
/// listener, without a `legacy_upstream`.
fn placement(name: &str, l: &RawListener, span: Range<usize>, errors: &mut Errors<'_>) {
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
}

/// `min_version`: "1.0", "1.1" or "1.2"; 1.0 by default.
fn min_version(name: &str, raw: &RawLegacyTls, errors: &mut Errors<'_>) -> LegacyTlsVersion {
    match &raw.min_version {
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
    }
}

/// `ciphers`: a non-empty OpenSSL cipher string, [`DEFAULT_LEGACY_CIPHERS`] by default.
fn ciphers(name: &str, raw: &RawLegacyTls, errors: &mut Errors<'_>) -> String {
    match &raw.ciphers {
        None => DEFAULT_LEGACY_CIPHERS.to_string(),
        Some(c) if c.get_ref().trim().is_empty() => {
            errors.at(
                Some(c.span()),
                format!("listener \"{name}\": legacy_tls ciphers must not be empty"),
            );
            DEFAULT_LEGACY_CIPHERS.to_string()
        }
        Some(c) => c.get_ref().trim().to_string(),
    }
}
