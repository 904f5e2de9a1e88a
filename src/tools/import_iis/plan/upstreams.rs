//! One upstream per IIS site (its http port on the IIS servers, else its
//! https port over TLS), and one per port for bindings no site claims.

use std::net::IpAddr;

use super::super::file_slug;
use super::super::netsh::SslKey;
use super::super::site_config::Endpoint;
use super::*;

impl Builder<'_> {
    pub(super) fn add_upstream(&mut self, owner: Owner, upstream: Upstream) -> String {
        let name = upstream.name.clone();
        self.upstream_by_owner.insert(owner, self.upstreams.len());
        self.upstreams.push(upstream);
        self.upstream_owner.push(owner);
        self.pins.push(Vec::new());
        name
    }

    pub(super) fn backend_servers(&self, ip: Option<IpAddr>, port: u16) -> Vec<String> {
        match ip {
            Some(ip) => vec![ip_server(ip, port)],
            None => self.backends.iter().map(|b| server(b, port)).collect(),
        }
    }

    pub(super) fn generic_upstream(&mut self, ip: Option<IpAddr>, port: u16) -> String {
        let owner = Owner::Generic(ip, port);
        if let Some(&i) = self.upstream_by_owner.get(&owner) {
            return self.upstreams[i].name.clone();
        }
        let wanted = match ip {
            None => format!("iis-{port}"),
            Some(ip) => format!(
                "iis-{}-{port}",
                file_slug(&ip.to_string().replace(':', "-")).unwrap_or_default()
            ),
        };
        let name = self.upstream_name(&wanted);
        let mut comments = Vec::new();
        if self.sites.is_none() {
            comments.push(format!(
                "IIS bindings on port {port}: without applicationHost.config (--config) the sites' \
                 plain-HTTP ports are unknown, so requests go to the https port, over TLS"
            ));
        } else {
            comments.push(format!(
                "HTTP.sys bindings on port {port} that no IIS site has: requests go to the https port, over TLS"
            ));
        }
        if ip.is_some() {
            comments.push(
                "IIS binds this address only: the server is the binding's own address".to_string(),
            );
        }
        self.add_upstream(
            owner,
            Upstream {
                name,
                servers: self.backend_servers(ip, port),
                tls: true,
                pin_certificates: Vec::new(),
                comments,
            },
        )
    }

    pub(super) fn site_upstream(&mut self, si: usize) -> String {
        let owner = Owner::Site(si);
        if let Some(&i) = self.upstream_by_owner.get(&owner) {
            return self.upstreams[i].name.clone();
        }
        let (file, config) = self
            .sites
            .expect("site upstreams come from a site configuration");
        let site = &config.sites[si];
        let label = self.site_label(si);
        let wanted = file_slug(&site.name)
            .or_else(|| {
                site.id
                    .as_deref()
                    .and_then(|id| file_slug(&format!("site-{id}")))
            })
            .unwrap_or_else(|| "site".to_string());
        let name = self.upstream_name(&wanted);
        let http = best_binding(site.bindings.iter().filter(|b| b.protocol == "http"));
        let https_endpoint = {
            let mut uses: Vec<&Use> = self.uses.iter().filter(|u| u.site == si).collect();
            uses.sort_by_key(|u| u.endpoint.ip.is_some());
            uses.first().map(|u| u.endpoint.clone())
        };
        let mut comments = vec![format!("IIS {label} ({})", origin(file, site.line))];
        let (endpoint, tls) = match (http, https_endpoint) {
            (Some((b, _)), Some(https)) if site.require_ssl => {
                comments.push(format!(
                    "the site requires SSL (access sslFlags \"Ssl\"): IIS would refuse its http binding {} with 403.4, so snigate uses https {https}",
                    b_endpoint(b)
                ));
                (https, true)
            }
            (Some((b, e)), _) => {
                comments.push(format!(
                    "reached over its plain-HTTP binding {} (line {}): TLS ends at snigate",
                    e, b.line
                ));
                (e, false)
            }
            (None, Some(https)) => {
                comments.push(format!(
                    "the site has no http binding: reached over https {https}"
                ));
                (https, true)
            }
            (None, None) => {
                // Only asked for sites with an https binding.
                (
                    Endpoint {
                        ip: None,
                        port: 443,
                        host: String::new(),
                    },
                    true,
                )
            }
        };
        if endpoint.ip.is_some() {
            comments.push(
                "IIS binds the site to this address only: the server is the binding's own address"
                    .to_string(),
            );
        }
        self.add_upstream(
            owner,
            Upstream {
                name,
                servers: self.backend_servers(endpoint.ip, endpoint.port),
                tls,
                pin_certificates: Vec::new(),
                comments,
            },
        )
    }

    /// TLS upstreams: a TODO to pin. Plain ones: whether the site's http
    /// bindings answer the hosts routed to it.
    pub(super) fn finish_upstreams(&mut self, routes: &[Route]) {
        for i in 0..self.upstreams.len() {
            let owner = self.upstream_owner[i];
            let name = self.upstreams[i].name.clone();
            let hosts: Vec<String> = routes
                .iter()
                .filter(|r| r.upstream == name)
                .flat_map(|r| r.hosts.iter().cloned())
                .collect();
            if self.upstreams[i].tls {
                let certs: Vec<usize> = match owner {
                    Owner::Site(si) => self
                        .uses
                        .iter()
                        .filter(|u| u.site == si)
                        .filter_map(|u| self.cert_of_key.get(&u.key))
                        .copied()
                        .collect(),
                    Owner::Generic(ip, port) => self
                        .keys
                        .iter()
                        .filter(|k| key_port(k) == port)
                        .filter(|k| match (ip, k) {
                            (Some(ip), SslKey::IpPort(a)) => a.ip() == ip,
                            (Some(_), _) => false,
                            (None, SslKey::IpPort(a)) => a.ip().is_unspecified(),
                            (None, _) => true,
                        })
                        .filter_map(|k| self.cert_of_key.get(k))
                        .copied()
                        .collect(),
                };
                let mut unique = Vec::new();
                for c in certs {
                    if !unique.contains(&c) {
                        unique.push(c);
                    }
                }
                let message = format!(
                    "upstream \"{name}\" trusts any backend certificate (insecure_skip_verify): pin the certificate IIS presents instead"
                );
                self.pins[i] = unique;
                self.note(None, Severity::Todo, message);
                continue;
            }
            let Owner::Site(si) = owner else { continue };
            let Some((file, config)) = self.sites else {
                continue;
            };
            let site = &config.sites[si];
            let Some((_, chosen)) =
                best_binding(site.bindings.iter().filter(|b| b.protocol == "http"))
            else {
                continue;
            };
            let answers = |host: &str| {
                site.bindings
                    .iter()
                    .filter(|b| b.protocol == "http")
                    .any(|b| match &b.endpoint {
                        Ok(e) => {
                            e.port == chosen.port
                                && e.ip == chosen.ip
                                && (e.host.is_empty()
                                    || e.host == host
                                    || wildcard_covers(&e.host, host))
                        }
                        Err(_) => false,
                    })
            };
            let missing: Vec<String> = hosts.into_iter().filter(|h| !answers(h)).collect();
            for host in missing {
                let message = format!(
                    "{}: IIS answers Host \"{host}\" on port {} only with an http binding for it: \
                     add http binding {}:{}:{host} to the site, or requests for it reach another site \
                     (or get 400 Bad Request - Invalid Hostname)",
                    self.site_label(si),
                    chosen.port,
                    chosen.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "*".into()),
                    chosen.port
                );
                self.upstreams[i].comments.push(format!("TODO: {message}"));
                self.note(Some(origin(file, site.line)), Severity::Todo, message);
            }
        }
    }

    pub(super) fn note_unused_sites(&mut self) {
        let Some((file, config)) = self.sites else {
            return;
        };
        for (si, site) in config.sites.iter().enumerate() {
            if self.upstream_by_owner.contains_key(&Owner::Site(si)) {
                continue;
            }
            let label = self.site_label(si);
            for b in site.bindings.iter().filter(|b| b.protocol == "http") {
                if let Ok(e) = &b.endpoint {
                    self.note(
                        Some(origin(file, b.line)),
                        Severity::NotImported,
                        format!("{label}: http binding {e}: the site has no https binding, and plain-HTTP sites are not imported (snigate can serve them: a listener with mode = \"http\")"),
                    );
                }
            }
        }
    }
}
