//! Routing a request to an upstream by its Host, then its path: a pure
//! function over a table built once per configuration.
//!
//! Host first: exact host names win over wildcards; among wildcards the
//! longest suffix (the most specific) wins; a route wildcard `*.apps.test`
//! matches any depth below `apps.test`, as nginx's `server_name
//! *.apps.test` does. Then, among that host's routes, the longest `paths`
//! prefix that holds the request's path (`config::path_segments`: on
//! segment boundaries, ASCII case ignored); a route without `paths` holds
//! every path. A request that matches nothing goes to the listener's
//! `default_upstream`.

use std::collections::HashMap;

use crate::config::{path_segments, under, ListenerSettings, RouteSettings};

/// An upstream of the runtime: its place in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(usize);

impl UpstreamId {
    /// The upstream declared at `index` (counting from 0).
    pub fn new(index: usize) -> Self {
        UpstreamId(index)
    }

    /// The place in declaration order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A `[[route]]`: its place in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(usize);

impl RouteId {
    /// The place in declaration order (`Settings::routes`).
    pub fn index(self) -> usize {
        self.0
    }
}

/// One route's claim on a host: a path prefix (its segments; empty for
/// every path).
#[derive(Debug, Clone)]
struct PathRoute {
    prefix: Vec<String>,
    route: RouteId,
    upstream: UpstreamId,
}

/// The routes of one host name, longest prefix first.
#[derive(Debug, Clone, Default)]
struct HostRoutes(Vec<PathRoute>);

impl HostRoutes {
    /// Adds a claim unless an earlier route made the same one.
    fn add(&mut self, claim: PathRoute) {
        if !self.0.iter().any(|c| c.prefix == claim.prefix) {
            self.0.push(claim);
        }
    }

    /// The route for a path (`None`: only a route for every path will do).
    fn pick(&self, path: &mut Path<'_>) -> Option<RouteMatch> {
        self.0
            .iter()
            .find(|c| c.prefix.is_empty() || path.segments().is_some_and(|s| under(s, &c.prefix)))
            .map(|c| RouteMatch::Route(c.upstream, c.route))
    }
}

/// A request's path, split into segments only when a route asks.
struct Path<'a> {
    raw: Option<&'a str>,
    segments: Option<Vec<String>>,
}

impl Path<'_> {
    fn segments(&mut self) -> Option<&[String]> {
        let raw = self.raw?;
        Some(self.segments.get_or_insert_with(|| path_segments(raw)))
    }
}

/// The routes that apply to one listener.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, HostRoutes>,
    /// `(".apps.test", routes)`, longest suffix first.
    wildcard: Vec<(String, HostRoutes)>,
    default: Option<UpstreamId>,
}

/// How a request was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    /// A `[[route]]` matched: its upstream and the route.
    Route(UpstreamId, RouteId),
    /// Nothing matched; the listener's `default_upstream`.
    Default(UpstreamId),
}

impl RouteMatch {
    /// The chosen upstream.
    pub fn upstream(self) -> UpstreamId {
        match self {
            RouteMatch::Route(id, _) | RouteMatch::Default(id) => id,
        }
    }

    /// The route that matched; `None` for the default upstream.
    pub fn route(self) -> Option<RouteId> {
        match self {
            RouteMatch::Route(_, route) => Some(route),
            RouteMatch::Default(_) => None,
        }
    }
}

impl RouteTable {
    /// Builds the table for `listener` from every route that applies to it.
    /// The first route to claim a host and path keeps it (declaration
    /// order; `check` reports the others).
    pub fn for_listener(
        listener: &ListenerSettings,
        routes: &[RouteSettings],
        upstream_id: impl Fn(&str) -> Option<UpstreamId>,
    ) -> Self {
        let mut table = RouteTable {
            default: listener.default_upstream.as_deref().and_then(&upstream_id),
            ..Default::default()
        };
        let applies = |(_, r): &(usize, &RouteSettings)| r.applies_to(&listener.name);
        for (index, route) in routes.iter().enumerate().filter(applies) {
            let Some(upstream) = upstream_id(&route.upstream) else {
                continue;
            };
            let prefixes: Vec<Vec<String>> = match route.paths.is_empty() {
                true => vec![Vec::new()],
                false => route.paths.iter().map(|p| path_segments(p)).collect(),
            };
            for host in &route.hosts {
                let routes = table.host_routes(&host.to_ascii_lowercase());
                for prefix in &prefixes {
                    routes.add(PathRoute {
                        prefix: prefix.clone(),
                        route: RouteId(index),
                        upstream,
                    });
                }
            }
        }
        // Stable sorts keep declaration order among equals.
        table.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        let all = table
            .exact
            .values_mut()
            .chain(table.wildcard.iter_mut().map(|w| &mut w.1));
        for routes in all {
            routes.0.sort_by_key(|c| std::cmp::Reverse(c.prefix.len()));
        }
        table
    }

    /// The claims on `host` (a name or a `*.` wildcard), made on first use.
    fn host_routes(&mut self, host: &str) -> &mut HostRoutes {
        match host.strip_prefix('*') {
            Some(suffix) => {
                let at = match self.wildcard.iter().position(|(s, _)| s == suffix) {
                    Some(at) => at,
                    None => {
                        self.wildcard
                            .push((suffix.to_string(), HostRoutes::default()));
                        self.wildcard.len() - 1
                    }
                };
                &mut self.wildcard[at].1
            }
            None => self.exact.entry(host.to_string()).or_default(),
        }
    }

    /// Passthrough: the route for a ClientHello's SNI (lower case, no
    /// trailing dot), among the routes for every path; `strict` refuses
    /// what only `default_upstream` would take. Err is the refusal's
    /// reason, in plain words.
    pub fn route_sni(&self, sni: Option<&str>, strict: bool) -> Result<RouteMatch, String> {
        match self.route(sni, None) {
            Some(RouteMatch::Default(_)) | None if strict => Err(match sni {
                None => "no SNI, and the listener has strict_sni = true".into(),
                Some(s) => {
                    format!("no route for SNI \"{s}\", and the listener has strict_sni = true")
                }
            }),
            Some(m) => Ok(m),
            None => Err(match sni {
                None => "no SNI, and the listener has no default_upstream".into(),
                Some(s) => {
                    format!("no route for SNI \"{s}\", and the listener has no default_upstream")
                }
            }),
        }
    }

    /// Routes a normalized host (see [`normalize_host`]) and a request
    /// path (`None`: only routes for every path match); `None` host (no
    /// Host header) goes to the default. The most specific host decides:
    /// when none of its routes holds the path, the default upstream.
    pub fn route(&self, host: Option<&str>, path: Option<&str>) -> Option<RouteMatch> {
        let mut path = Path {
            raw: path,
            segments: None,
        };
        let claims = host.and_then(|host| {
            self.exact.get(host).or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, routes)| routes)
            })
        });
        claims
            .and_then(|c| c.pick(&mut path))
            .or(self.default.map(RouteMatch::Default))
    }
}

/// The host part of a Host header or `:authority`: port removed, IPv6
/// brackets removed, trailing dot removed, lower-cased. `None` when empty or
/// not a plausible host.
pub fn normalize_host(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split_once(']').map(|(h, _)| h)?
    } else {
        match a.rsplit_once(':') {
            // A single colon separates the port; several mean a bare IPv6 address.
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    let host = crate::config::host_name(host);
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@')
    {
        return None;
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerMode;

    fn listener(name: &str, default: Option<&str>) -> ListenerSettings {
        ListenerSettings {
            name: name.into(),
            bind: vec![],
            mode: ListenerMode::Https,
            fallback_certificate: None,
            strict_sni: false,
            default_upstream: default.map(Into::into),
            alpn: vec![],
            proxy_protocol: false,
            max_connections: 1,
            max_connections_per_ip: 0,
            trusted_proxies: Default::default(),
            legacy_upstream: None,
            legacy_tls: None,
            preserve_header_case: false,
            upgrade_protocols: vec!["websocket".into()],
            max_header_bytes: 65536,
            max_headers: 100,
            max_concurrent_streams: 100,
            session_ticket_keys: None,
        }
    }

    fn route(hosts: &[&str], listeners: &[&str], upstream: &str) -> RouteSettings {
        RouteSettings {
            name: hosts[0].to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: vec![],
            listeners: listeners.iter().map(|h| h.to_string()).collect(),
            upstream: upstream.into(),
            timeouts: Default::default(),
        }
    }

    fn ids(name: &str) -> Option<UpstreamId> {
        ["portal", "apps", "deep", "mysites", "fallback"]
            .iter()
            .position(|n| *n == name)
            .map(UpstreamId)
    }

    #[test]
    fn table() {
        let routes = vec![
            route(
                &["portal.contoso.test", "*.apps.contoso.test"],
                &[],
                "portal",
            ),
            route(&["special.apps.contoso.test"], &[], "apps"),
            route(&["*.x.apps.contoso.test"], &[], "deep"),
            route(&["my.contoso.test"], &["other"], "mysites"),
        ];
        let t = RouteTable::for_listener(&listener("main", Some("fallback")), &routes, ids);
        let by_host = |i| Some(RouteMatch::Route(UpstreamId(i), RouteId(i)));
        let default = Some(RouteMatch::Default(UpstreamId(4)));
        let cases = [
            (Some("portal.contoso.test"), by_host(0)),
            (Some("special.apps.contoso.test"), by_host(1)),
            (Some("a.apps.contoso.test"), by_host(0)),
            (Some("b.a.apps.contoso.test"), by_host(0)),
            (Some("y.x.apps.contoso.test"), by_host(2)),
            (Some("apps.contoso.test"), default),
            (Some("my.contoso.test"), default),
            (None, default),
        ];
        for (host, want) in cases {
            assert_eq!(t.route(host, Some("/x")), want, "{host:?}");
        }
        let other = RouteTable::for_listener(&listener("other", None), &routes, ids);
        assert_eq!(other.route(Some("my.contoso.test"), None), by_host(3));
        assert_eq!(other.route(Some("nothing.test"), None), None);
    }

    #[test]
    fn host_first_then_the_longest_path() {
        let with_paths = |hosts: &[&str], paths: &[&str], upstream: &str| RouteSettings {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ..route(hosts, &[], upstream)
        };
        let routes = vec![
            with_paths(&["mail.contoso.test"], &["/owa", "/ecp"], "portal"),
            with_paths(&["mail.contoso.test"], &["/owa/deep"], "deep"),
            with_paths(&["mail.contoso.test"], &[], "apps"),
            with_paths(&["*.contoso.test"], &["/rpc"], "mysites"),
        ];
        let t = RouteTable::for_listener(&listener("main", Some("fallback")), &routes, ids);
        let to = |u, r| Some(RouteMatch::Route(UpstreamId(u), RouteId(r)));
        let default = Some(RouteMatch::Default(UpstreamId(4)));
        let cases = [
            ("mail.contoso.test", Some("/owa"), to(0, 0)),
            ("mail.contoso.test", Some("/OWA/x?y"), to(0, 0)),
            ("mail.contoso.test", Some("/ecp/"), to(0, 0)),
            ("mail.contoso.test", Some("/owa/Deep/1"), to(2, 1)),
            ("mail.contoso.test", Some("/owax"), to(1, 2)),
            ("mail.contoso.test", Some("/%6fwa"), to(0, 0)),
            ("mail.contoso.test", Some("/x/../owa"), to(0, 0)),
            ("mail.contoso.test", None, to(1, 2)),
            // The host decides: its routes, not the wildcard's.
            ("mail.contoso.test", Some("/rpc"), to(1, 2)),
            ("x.contoso.test", Some("/rpc/a"), to(3, 3)),
            ("x.contoso.test", Some("/owa"), default),
            ("x.contoso.test", None, default),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.route(Some(host), path), want, "{host} {path:?}");
        }
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("Portal.Contoso.Test:8443").as_deref(),
            Some("portal.contoso.test")
        );
        assert_eq!(
            normalize_host("portal.contoso.test.").as_deref(),
            Some("portal.contoso.test")
        );
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(normalize_host("::1").as_deref(), Some("::1"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a b"), None);
    }
}
