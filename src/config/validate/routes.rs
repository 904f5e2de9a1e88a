//! `[[route]]` sections, and what routes tell about the upstreams they reach.

use super::*;

/// Every `[[route]]`, checked against the upstreams and listeners it names;
/// names and (per listener) host + path pairs are unique.
pub(super) fn routes(
    raw: &[Spanned<RawRoute>],
    upstreams: &[UpstreamSettings],
    listeners: &[ListenerSettings],
    errors: &mut Errors<'_>,
) -> Vec<RouteSettings> {
    let upstream_names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let listener_names: HashSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    let routes: Vec<RouteSettings> = raw
        .iter()
        .enumerate()
        .map(|(i, r)| route(i, r.get_ref(), &upstream_names, &listener_names, errors))
        .collect();
    names_unique(raw, errors);
    pairs_unique(raw, &routes, listeners, errors);
    routes
}

/// One `[[route]]` (the `index`-th): an existing upstream, host names,
/// paths, existing listeners.
fn route(
    index: usize,
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
    let paths = paths(r, errors);
    let listeners_of_route = listeners_of_route(r, listener_names, errors);
    RouteSettings {
        name: route_name(index, r, &hosts, &paths, errors),
        hosts,
        paths,
        listeners: listeners_of_route,
        upstream: r.upstream.get_ref().clone(),
        timeouts: route_timeouts(r, errors),
    }
}

/// `[route.timeouts]`, and `buffer_request`, which may only say what
/// snigate does anyway.
fn route_timeouts(r: &RawRoute, errors: &mut Errors<'_>) -> RouteTimeouts {
    if let Some(b) = r.buffer_request.as_ref().filter(|b| *b.get_ref()) {
        errors.at(
            Some(b.span()),
            "route: buffer_request = true is not supported: snigate streams request bodies to the backend as they arrive (buffer_request = false, the default)",
        );
    }
    let Some(t) = &r.timeouts else {
        return RouteTimeouts::default();
    };
    RouteTimeouts {
        upstream_response: optional_duration(&t.upstream_response, errors),
        upstream_read: optional_duration(&t.upstream_read, errors),
        client_idle: optional_duration(&t.client_idle, errors),
    }
}

/// The route's `name`, else its first host and first path.
fn route_name(
    index: usize,
    r: &RawRoute,
    hosts: &[String],
    paths: &[String],
    errors: &mut Errors<'_>,
) -> String {
    if let Some(name) = &r.name {
        let text = name.get_ref();
        let printable = text.chars().all(|c| c.is_ascii_graphic());
        if text.is_empty() || text.len() > 100 || !printable {
            errors.at(
                Some(name.span()),
                "route name must be 1 to 100 printable ASCII characters without spaces",
            );
        }
        return text.clone();
    }
    match hosts.first() {
        Some(host) => format!("{host}{}", paths.first().map_or("", String::as_str)),
        None => format!("route {}", index + 1),
    }
}

/// `paths` of a route: absolute paths without query or fragment. Absent:
/// every path.
fn paths(r: &RawRoute, errors: &mut Errors<'_>) -> Vec<String> {
    let Some(paths) = &r.paths else {
        return Vec::new();
    };
    if paths.get_ref().is_empty() {
        errors.at(
            Some(paths.span()),
            "route: paths = [] matches no request; leave paths out to route every path",
        );
    }
    paths
        .get_ref()
        .iter()
        .filter_map(|p| {
            path_pattern(p)
                .map_err(|e| errors.at(Some(paths.span()), format!("route: {e}")))
                .ok()
        })
        .collect()
}

/// A path as written in `paths`.
fn path_pattern(path: &str) -> Result<String, String> {
    let shown: String = path.chars().take(80).collect();
    if !path.starts_with('/') {
        return Err(format!("path \"{shown}\" must start with /"));
    }
    let bad = |b: u8| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#');
    if path.len() > 1024 || path.bytes().any(bad) {
        return Err(format!(
            "path \"{shown}\" must be a path alone, at most 1024 bytes: no spaces, query (?) or fragment (#)"
        ));
    }
    Ok(path.to_string())
}

/// Two routes may not share a `name` given to them. (Names made from the
/// first host and path can repeat only on routes of different listeners,
/// which the log's and the metrics' `listener` tell apart.)
fn names_unique(raw: &[Spanned<RawRoute>], errors: &mut Errors<'_>) {
    let mut seen: HashSet<&str> = HashSet::new();
    for name in raw.iter().filter_map(|r| r.get_ref().name.as_ref()) {
        if !seen.insert(name.get_ref().as_str()) {
            errors.at(
                Some(name.span()),
                format!(
                    "route name \"{}\" is used by another route: give each route its own name",
                    name.get_ref()
                ),
            );
        }
    }
}

/// On each listener, one route per host + path pair (a route without
/// `paths` stands for every path).
fn pairs_unique(
    raw: &[Spanned<RawRoute>],
    routes: &[RouteSettings],
    listeners: &[ListenerSettings],
    errors: &mut Errors<'_>,
) {
    let mut reported: HashSet<(usize, String, String)> = HashSet::new();
    for l in listeners {
        let mut owner: HashMap<(String, Vec<String>), usize> = HashMap::new();
        for (i, route) in routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies_to(&l.name))
        {
            let paths: Vec<&str> = match route.paths.is_empty() {
                true => vec!["/"],
                false => route.paths.iter().map(String::as_str).collect(),
            };
            for host in &route.hosts {
                for path in &paths {
                    let key = (host.clone(), path_segments(path));
                    let first = *owner.entry(key).or_insert(i);
                    if first == i || !reported.insert((i, host.clone(), path.to_string())) {
                        continue;
                    }
                    errors.at(
                        Some(raw[i].get_ref().hosts.span()),
                        format!(
                            "route \"{}\": host \"{host}\" with path \"{path}\" is already routed by route \"{}\" on listener \"{}\"",
                            route.name, routes[first].name, l.name
                        ),
                    );
                }
            }
        }
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

/// Notes in `inactive` each route with `paths` on a passthrough listener,
/// which routes by SNI alone: the route is not used there.
pub(super) fn paths_on_passthrough(
    listeners: &[ListenerSettings],
    routes: &[RouteSettings],
    inactive: &mut Vec<String>,
) {
    for l in listeners
        .iter()
        .filter(|l| l.mode == ListenerMode::Passthrough)
    {
        let applies = |r: &&RouteSettings| r.applies_to(&l.name);
        for r in routes
            .iter()
            .filter(applies)
            .filter(|r| !r.paths.is_empty())
        {
            inactive.push(format!(
                "route \"{}\": paths on passthrough listener \"{}\", which routes by SNI alone (the route is not used there)",
                r.name, l.name
            ));
        }
    }
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
                    || routes
                        .iter()
                        .any(|r| r.upstream == u.name && r.applies_to(&l.name)))
        });
        if let Some(l) = http_listener {
            inactive.push(format!(
                "upstream \"{}\": send_proxy_protocol on HTTP requests from listener \"{}\" (it is written on passthrough and legacy_upstream connections only)",
                u.name, l.name
            ));
        }
    }
}
