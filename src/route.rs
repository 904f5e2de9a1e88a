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
///
/// Both maps are keyed by lower-case names, so a lookup costs a hash per
/// label of the host, whatever the number of routes: the exact name first,
/// then each parent domain from the longest to the shortest
/// (`b.a.apps.test`: `a.apps.test`, `apps.test`, `test`).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, HostRoutes>,
    /// `"apps.test"` for the route host `*.apps.test`.
    wildcard: HashMap<String, HostRoutes>,
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
        // A stable sort keeps declaration order among equals.
        for routes in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            routes.0.sort_by_key(|c| std::cmp::Reverse(c.prefix.len()));
        }
        table
    }

    /// The claims on `host` (a name or a `*.` wildcard), made on first use.
    fn host_routes(&mut self, host: &str) -> &mut HostRoutes {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_string()).or_default(),
            None => self.exact.entry(host.to_string()).or_default(),
        }
    }

    /// The claims that decide for `host`: its own, else the wildcard with
    /// the longest parent domain below which it lies (any depth; never the
    /// parent itself).
    fn claims(&self, host: &str) -> Option<&HostRoutes> {
        if let Some(own) = self.exact.get(host) {
            return Some(own);
        }
        // Each dot after the first label starts a parent domain; the first
        // such dot gives the longest.
        host.match_indices('.')
            .filter(|&(at, _)| at > 0)
            .find_map(|(at, _)| self.wildcard.get(&host[at + 1..]))
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
        host.and_then(|host| self.claims(host))
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

    /// Routes with no `listeners`, one host each, upstream `i` for the
    /// `i`-th (upstream ids are not checked against names here).
    fn table_of(hosts: &[&str]) -> RouteTable {
        let routes: Vec<RouteSettings> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| route(&[h], &[], &i.to_string()))
            .collect();
        let by_index = |name: &str| name.parse().ok().map(UpstreamId);
        RouteTable::for_listener(&listener("main", None), &routes, by_index)
    }

    /// The index of the route a host goes to.
    fn routed(t: &RouteTable, host: &str) -> Option<usize> {
        t.route(Some(host), None)
            .and_then(|m| m.route())
            .map(|r| r.0)
    }

    #[test]
    fn wildcards_match_any_depth_below_but_not_the_parent() {
        let t = table_of(&["*.apps.test"]);
        for host in [
            "a.apps.test",
            "b.a.apps.test",
            "d.c.b.a.apps.test",
            "a..apps.test",
        ] {
            assert_eq!(routed(&t, host), Some(0), "{host}");
        }
        for host in [
            "apps.test",
            ".apps.test",
            "xapps.test",
            "a.xapps.test",
            "test",
            "a.apps.test2",
        ] {
            assert_eq!(routed(&t, host), None, "{host}");
        }
    }

    #[test]
    fn the_longest_wildcard_wins_whatever_the_order() {
        let shallow_first = table_of(&["*.test", "*.apps.test", "*.x.apps.test"]);
        let deep_first = table_of(&["*.x.apps.test", "*.apps.test", "*.test"]);
        let cases = [
            ("a.test", "*.test"),
            ("a.apps.test", "*.apps.test"),
            ("x.apps.test", "*.apps.test"),
            ("a.x.apps.test", "*.x.apps.test"),
            ("b.a.x.apps.test", "*.x.apps.test"),
            ("a.y.apps.test", "*.apps.test"),
            ("apps.test", "*.test"),
        ];
        for (t, order) in [
            (shallow_first, ["*.test", "*.apps.test", "*.x.apps.test"]),
            (deep_first, ["*.x.apps.test", "*.apps.test", "*.test"]),
        ] {
            for (host, want) in cases {
                let got = routed(&t, host).map(|i| order[i]);
                assert_eq!(got, Some(want), "{host} with {order:?}");
            }
        }
    }

    #[test]
    fn an_exact_host_beats_every_wildcard() {
        let t = table_of(&[
            "*.apps.test",
            "*.a.apps.test",
            "a.apps.test",
            "b.a.apps.test",
        ]);
        assert_eq!(routed(&t, "a.apps.test"), Some(2));
        assert_eq!(routed(&t, "b.a.apps.test"), Some(3));
        assert_eq!(routed(&t, "c.a.apps.test"), Some(1));
        assert_eq!(routed(&t, "c.b.a.apps.test"), Some(1));
        // The exact name is not a parent domain: its wildcard still decides below it.
        let t = table_of(&["*.test", "apps.test"]);
        assert_eq!(routed(&t, "a.apps.test"), Some(0));
    }

    #[test]
    fn the_first_route_keeps_a_wildcard() {
        let t = table_of(&["*.apps.test", "*.Apps.Test"]);
        assert_eq!(routed(&t, "a.apps.test"), Some(0));
    }

    #[test]
    fn hosts_are_matched_after_normalisation() {
        let routes = vec![route(
            &["Portal.Contoso.Test", "*.Apps.Contoso.Test"],
            &[],
            "portal",
        )];
        let t = RouteTable::for_listener(&listener("main", None), &routes, ids);
        let want = Some(RouteMatch::Route(UpstreamId(0), RouteId(0)));
        for authority in [
            "portal.contoso.test",
            "PORTAL.Contoso.TEST:443",
            "portal.contoso.test.",
            "Portal.Contoso.Test.:8443",
            "X.Y.apps.contoso.test.",
            "a.APPS.contoso.test:443",
        ] {
            let host = normalize_host(authority);
            assert_eq!(t.route(host.as_deref(), None), want, "{authority}");
        }
        let host = normalize_host("apps.contoso.test.");
        assert_eq!(t.route(host.as_deref(), None), None);
    }

    /// What the table answered before it had a suffix map: exact, else
    /// the first of the wildcards sorted by length (longest first, stable)
    /// that is a suffix after at least one more character.
    fn linear(hosts: &[String], host: &str) -> Option<usize> {
        if let Some(i) = hosts.iter().position(|h| h == host) {
            return Some(i);
        }
        let mut wildcards: Vec<(usize, &str)> = hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.strip_prefix('*').map(|s| (i, s)))
            .collect();
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.1.len()));
        wildcards
            .iter()
            .find(|(_, s)| host.len() > s.len() && host.ends_with(s))
            .map(|w| w.0)
    }

    /// 10,000 routes, 1,000 of them wildcards (some nested in others):
    /// sampled hosts (fixed seed) go where the linear scan sent them.
    #[test]
    fn ten_thousand_routes_answer_as_the_linear_scan_did() {
        let mut hosts: Vec<String> = Vec::new();
        for j in 0..1000 {
            hosts.push(match j % 10 {
                // Nested below another wildcard of the table.
                9 => format!("*.n{j}.t{}.apps.test", j - 1),
                _ => format!("*.t{j}.apps.test"),
            });
        }
        for i in 0..9000 {
            hosts.push(match i % 3 {
                0 => format!("site{i}.sp.contoso.test"),
                // Exact names below wildcards.
                _ => format!("site{i}.t{}.apps.test", i % 1000),
            });
        }
        let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let t = table_of(&refs);
        let mut seed: u64 = 0x5eed_0015;
        let mut next = |n: usize| {
            // xorshift64: fixed seed, same samples every run.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut matched = [0usize; 3];
        for _ in 0..20_000 {
            let host = match next(6) {
                0 => format!("site{}.sp.contoso.test", next(9100)),
                1 => format!("site{}.t{}.apps.test", next(9100), next(1100)),
                2 => format!("x{}.t{}.apps.test", next(9), next(1100)),
                3 => format!("a.b.n{}.t{}.apps.test", next(1000), next(1000)),
                4 => format!("t{}.apps.test", next(1000)),
                _ => format!("y.x{}.apps.test", next(1000)),
            };
            let want = linear(&hosts, &host);
            assert_eq!(routed(&t, &host), want, "{host}");
            matched[match want {
                None => 0,
                Some(i) if hosts[i].starts_with('*') => 1,
                Some(_) => 2,
            }] += 1;
        }
        // The samples reach every kind of answer.
        assert!(matched.iter().all(|&n| n > 1000), "{matched:?}");
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
