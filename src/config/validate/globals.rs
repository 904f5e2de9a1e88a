//! The sections written once: `[runtime]`, `[admin]`, `[log]` and
//! `[timeouts]`.

use super::*;

/// The admin port when `[admin]` names no `bind`.
const DEFAULT_ADMIN_PORT: u16 = 9900;

/// `[runtime] workers`: 0 (one per CPU) when missing; more than
/// [`MAX_WORKERS`] is refused here, with its line, rather than failing at
/// start on the thread or the socket the system would not give.
pub(super) fn workers(workers: &Option<Spanned<usize>>, errors: &mut Errors<'_>) -> usize {
    let Some(w) = workers else { return 0 };
    if *w.get_ref() > MAX_WORKERS {
        errors.at(
            Some(w.span()),
            format!(
                "workers = {} is more than {MAX_WORKERS}; use 0 for one per CPU",
                w.get_ref()
            ),
        );
        return 0;
    }
    *w.get_ref()
}

/// `[admin]`: the address of the admin endpoint, if there is one.
pub(super) fn admin(admin: Option<RawAdmin>, errors: &mut Errors<'_>) -> Option<SocketAddr> {
    // `[admin]` without `bind` listens on loopback only.
    admin.and_then(|a| match &a.bind {
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
    })
}

/// `[log]`: the level checked, log paths resolved against `base`.
pub(super) fn log(log: &RawLog, base: &Path, errors: &mut Errors<'_>) -> LogSettings {
    let level = log
        .level
        .as_ref()
        .map(|l| l.get_ref().clone())
        .unwrap_or_else(|| "info".into());
    if let Some(l) = &log.level {
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
    LogSettings {
        level,
        format: log.format.unwrap_or_default(),
        handshake_log: log.handshake_log.as_deref().map(|p| log_path(base, p)),
        access_log: log.access_log.as_deref().map(|p| log_path(base, p)),
    }
}

/// `[timeouts]`: each duration parsed, its default where it is missing or wrong.
pub(super) fn timeouts(t: &RawTimeouts, errors: &mut Errors<'_>) -> Timeouts {
    Timeouts {
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
        client_park: duration(&t.client_park, DEFAULT_CLIENT_PARK, errors),
    }
}
