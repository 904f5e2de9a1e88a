//! `[[route]]` sections, and what routes tell about the upstreams they reach.

use super::*;

/// Every `[[route]]`, checked against the upstreams and listeners it names.
pub(super) fn routes(
    raw: &[Spanned<RawRoute>],
    upstreams: &[UpstreamSettings],
    listeners: &[ListenerSettings],
    errors: &mut Errors<'_>,
) -> Vec<RouteSettings> {
    let upstream_names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let listener_names: HashSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    raw.iter()
        .map(|r| route(r.get_ref(), &upstream_names, &listener_names, errors))
        .collect()
}

/// One `[[route]]`: an existing upstream, host names, existing listeners.
fn route(
    r: &RawRoute,
    upstream_names: &HashSet<&str>,
    listener_names: &HashSet<&str>,
    errors: &mut Errors<'_>,
) -> RouteSettings {
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
    let hosts = hosts(r, errors);
    let listeners_of_route = listeners_of_route(r, listener_names, errors);
    RouteSettings {
        hosts,
        listeners: listeners_of_route,
        upstream: r.upstream.get_ref().clone(),
    }
}

/// `hosts` of a route, as host names.
fn hosts(r: &RawRoute, errors: &mut Errors<'_>) -> Vec<String> {
    r.hosts
        .get_ref()
        .iter()
        .filter_map(|h| {
            host_pattern(h)
                .map_err(|e| errors.at(Some(r.hosts.span()), format!("route: {e}")))
                .ok()
        })
        .collect()
}

/// `listeners` of a route: each an existing listener.
fn listeners_of_route(
    r: &RawRoute,
    listener_names: &HashSet<&str>,
    errors: &mut Errors<'_>,
) -> Vec<String> {
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
    listeners_of_route
}

/// Notes in `inactive` each `send_proxy_protocol` upstream that HTTP
/// requests also reach.
pub(super) fn proxy_protocol_on_http(
    upstreams: &[UpstreamSettings],
    listeners: &[ListenerSettings],
    routes: &[RouteSettings],
    inactive: &mut Vec<String>,
) {
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
}
