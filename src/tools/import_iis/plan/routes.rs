//! Routes: the host names of site bindings and SNI bindings, on the
//! listeners of their port (of their address, for an IP-specific binding),
//! the binding on the connection's own address first, as HTTP.sys does.

use std::collections::HashMap;
use std::net::IpAddr;

use super::super::netsh::SslKey;
use super::*;

impl Builder<'_> {
    pub(super) fn build_routes(&mut self) -> Vec<Route> {
        struct Candidate {
            host: String,
            ip: Option<IpAddr>,
            port: u16,
            owner: Owner,
            source: String,
            at: Option<String>,
        }
        let mut candidates = Vec::new();
        for ui in 0..self.uses.len() {
            let u = &self.uses[ui];
            if u.endpoint.host.is_empty() {
                continue;
            }
            candidates.push(Candidate {
                host: u.endpoint.host.clone(),
                ip: u.endpoint.ip,
                port: u.endpoint.port,
                owner: Owner::Site(u.site),
                source: self.use_text(u),
                at: self.site_origin(u.line),
            });
        }
        for key in self.keys.clone() {
            if self.uses.iter().any(|u| u.key == key) {
                continue;
            }
            if let SslKey::HostnamePort(host, port) | SslKey::ScopedCcs(host, port) = &key {
                let line = self.netsh_by_key.get(&key).map(|b| b.line).unwrap_or(0);
                if self.sites.is_some() {
                    self.note(
                        self.netsh_origin(line),
                        Severity::Todo,
                        format!("{key}: no site in applicationHost.config has this binding: routed to the IIS servers' https port"),
                    );
                }
                candidates.push(Candidate {
                    host: host.clone(),
                    ip: None,
                    port: *port,
                    owner: Owner::Generic(None, *port),
                    source: format!("{key} ({})", self.netsh_origin(line).unwrap_or_default()),
                    at: self.netsh_origin(line),
                });
            }
        }
        // IIS prefers the binding on the connection's own address.
        candidates.sort_by_key(|c| c.ip.is_none());

        // (listener, host) -> (owner, specific, source)
        let mut claims: HashMap<(usize, String), (Owner, bool, String)> = HashMap::new();
        let mut grouped: Vec<RouteDraft> = Vec::new();
        for c in candidates {
            let on_port: Vec<usize> = (0..self.listeners.len())
                .filter(|&i| self.listeners[i].port == c.port)
                .collect();
            let mut extra = Vec::new();
            let targets: Vec<usize> = match c.ip {
                Some(ip) => {
                    let own: Vec<usize> = on_port
                        .iter()
                        .copied()
                        .filter(|&i| self.listeners[i].bind.iter().any(|a| a.ip() == ip))
                        .collect();
                    if own.is_empty() {
                        extra.push(format!("{}: IIS matches it on {ip} only; no listener has that address, so it applies to every listener of port {}", c.host, c.port));
                        on_port
                    } else {
                        own
                    }
                }
                None => on_port,
            };
            let specific = c.ip.is_some();
            let mut kept = Vec::new();
            for l in targets {
                match claims.get(&(l, c.host.clone())) {
                    None => {
                        claims.insert((l, c.host.clone()), (c.owner, specific, c.source.clone()));
                        kept.push(l);
                    }
                    Some((owner, _, _)) if *owner == c.owner => kept.push(l),
                    Some((_, true, _)) if !specific => {
                        extra.push(format!(
                            "{}: on listener \"{}\" the binding on its own address takes precedence, as in IIS",
                            c.host, self.listeners[l].name
                        ));
                    }
                    Some((_, _, first)) => {
                        let message = format!(
                            "{} for {} conflicts with {} on listener \"{}\"; the first is kept",
                            c.source, c.host, first, self.listeners[l].name
                        );
                        self.note(c.at.clone(), Severity::NotImported, message);
                    }
                }
            }
            if kept.is_empty() {
                continue;
            }
            kept.sort_unstable();
            kept.dedup();
            let group = grouped
                .iter()
                .position(|(o, ls, _, _)| *o == c.owner && *ls == kept);
            let source = format!("{}: {}", c.host, c.source);
            match group {
                Some(g) => {
                    let entry = &mut grouped[g];
                    if !entry.2.contains(&c.host) {
                        entry.2.push(c.host.clone());
                    }
                    entry.3.push(source);
                    entry.3.extend(extra);
                }
                None => {
                    let mut comments = vec![source];
                    comments.extend(extra);
                    grouped.push((c.owner, kept, vec![c.host.clone()], comments));
                }
            }
        }
        let all = self.listeners.len();
        let mut routes = Vec::new();
        for (owner, listeners, hosts, comments) in grouped {
            let upstream = match owner {
                Owner::Site(si) => self.site_upstream(si),
                Owner::Generic(ip, port) => self.generic_upstream(ip, port),
            };
            let listeners = if listeners.len() == all {
                Vec::new()
            } else {
                listeners
                    .iter()
                    .map(|&i| self.listeners[i].name.clone())
                    .collect()
            };
            routes.push(Route {
                hosts,
                listeners,
                upstream,
                comments: comments.into_iter().map(|c| format!("IIS: {c}")).collect(),
            });
        }
        routes
    }
}
