//! Routing a request to an upstream by its Host: a pure function over a
//! table built once per configuration.
//!
//! Exact host names win over wildcards; among wildcards the longest suffix
//! (the most specific) wins; a route wildcard `*.apps.test` matches any
//! depth below `apps.test`, as nginx's `server_name *.apps.test` does. A
//! request that matches nothing goes to the listener's `default_upstream`.

use std::collections::HashMap;

use crate::config::{ListenerSettings, RouteSettings};

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

/// The routes that apply to one listener.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, UpstreamId>,
    /// `(".apps.test", id)`, longest suffix first.
    wildcard: Vec<(String, UpstreamId)>,
    default: Option<UpstreamId>,
}

/// How a request was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    /// A `[[route]]` host matched.
    Host(UpstreamId),
    /// Nothing matched; the listener's `default_upstream`.
    Default(UpstreamId),
}

impl RouteMatch {
    /// The chosen upstream.
    pub fn upstream(self) -> UpstreamId {
        match self {
            RouteMatch::Host(id) | RouteMatch::Default(id) => id,
        }
    }
}

impl RouteTable {
    /// Builds the table for `listener` from every route that applies to it.
    /// The first route to name a host keeps it (declaration order).
    pub fn for_listener(
        listener: &ListenerSettings,
        routes: &[RouteSettings],
        upstream_id: impl Fn(&str) -> Option<UpstreamId>,
    ) -> Self {
        let mut table = RouteTable {
            default: listener.default_upstream.as_deref().and_then(&upstream_id),
            ..Default::default()
        };
        let applies =
            |r: &&RouteSettings| r.listeners.is_empty() || r.listeners.contains(&listener.name);
        for route in routes.iter().filter(applies) {
            let Some(id) = upstream_id(&route.upstream) else {
                continue;
            };
            for host in &route.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix('*') {
                    Some(suffix) => {
                        if !table.wildcard.iter().any(|(s, _)| s == suffix) {
                            table.wildcard.push((suffix.to_string(), id));
                        }
                    }
                    None => {
                        table.exact.entry(host).or_insert(id);
                    }
                }
            }
        }
        // Stable sort keeps declaration order among equally long suffixes.
        table.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        table
    }

    /// Passthrough: the route for a ClientHello's SNI (lower case, no
    /// trailing dot); `strict` refuses what only `default_upstream` would
    /// take. Err is the refusal's reason, in plain words.
    pub fn route_sni(&self, sni: Option<&str>, strict: bool) -> Result<RouteMatch, String> {
        match self.route(sni) {
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

    /// Routes a normalized host (see [`normalize_host`]); `None` host (no Host
    /// header) goes to the default.
    pub fn route(&self, host: Option<&str>) -> Option<RouteMatch> {
        if let Some(host) = host {
            if let Some(id) = self.exact.get(host) {
                return Some(RouteMatch::Host(*id));
            }
            for (suffix, id) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    return Some(RouteMatch::Host(*id));
                }
            }
        }
        self.default.map(RouteMatch::Default)
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
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            listeners: listeners.iter().map(|h| h.to_string()).collect(),
            upstream: upstream.into(),
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
        let by_host = |i| Some(RouteMatch::Host(UpstreamId(i)));
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
            assert_eq!(t.route(host), want, "{host:?}");
        }
        let other = RouteTable::for_listener(&listener("other", None), &routes, ids);
        assert_eq!(other.route(Some("my.contoso.test")), by_host(3));
        assert_eq!(other.route(Some("nothing.test")), None);
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
