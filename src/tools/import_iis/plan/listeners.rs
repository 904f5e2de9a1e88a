//! One listener per `ipport=` binding (0.0.0.0 and [::] together when they
//! share a certificate), a strict one for ports with SNI bindings only.

use std::net::{IpAddr, SocketAddr};

use super::super::file_slug;
use super::super::netsh::SslKey;
use super::*;

impl Builder<'_> {
    pub(super) fn ports(&self) -> Vec<u16> {
        let mut ports = Vec::new();
        for k in &self.keys {
            let p = key_port(k);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports
    }

    pub(super) fn has_key(&self, key: &SslKey) -> bool {
        self.keys.contains(key)
    }

    pub(super) fn build_listeners(&mut self) {
        for port in self.ports() {
            let v4 = SslKey::IpPort(unspecified(false, port));
            let v6 = SslKey::IpPort(unspecified(true, port));
            let (has4, has6) = (self.has_key(&v4), self.has_key(&v6));
            let same_cert = has4 && has6 && self.cert_of_key.get(&v4) == self.cert_of_key.get(&v6);
            let mut wildcard = Vec::new();
            if same_cert {
                wildcard.push(vec![v4.clone(), v6.clone()]);
            } else {
                if has4 {
                    wildcard.push(vec![v4.clone()]);
                }
                if has6 {
                    wildcard.push(vec![v6.clone()]);
                }
            }
            let specific: Vec<SslKey> = self
                .keys
                .iter()
                .filter(|k| matches!(k, SslKey::IpPort(a) if a.port() == port && !a.ip().is_unspecified()))
                .cloned()
                .collect();
            let by_name = self.keys.iter().any(|k| {
                key_port(k) == port
                    && match k {
                        SslKey::HostnamePort(..) | SslKey::ScopedCcs(..) => true,
                        SslKey::Ccs(_) => self.uses.iter().any(|u| u.key == *k),
                        SslKey::IpPort(_) => false,
                    }
            });
            for keys in &wildcard {
                let v6_only = keys.len() == 1 && keys[0] == v6;
                let name = if v6_only {
                    self.listener_name(&format!("https-{port}-ipv6"))
                } else {
                    self.listener_name(&format!("https-{port}"))
                };
                self.add_listener(name, keys, None, port);
            }
            if wildcard.is_empty() && by_name {
                let name = self.listener_name(&format!("https-{port}"));
                self.add_strict_listener(name, port);
            }
            for key in &specific {
                let SslKey::IpPort(addr) = key else { continue };
                let site_slug = self
                    .uses
                    .iter()
                    .find(|u| u.key == *key && u.endpoint.host.is_empty())
                    .or_else(|| self.uses.iter().find(|u| u.key == *key))
                    .and_then(|u| self.site_name(u.site))
                    .and_then(|n| file_slug(&n));
                let wanted = site_slug.unwrap_or_else(|| {
                    format!(
                        "https-{}",
                        file_slug(&addr.ip().to_string().replace(':', "-")).unwrap_or_default()
                    ) + &format!("-{port}")
                });
                let name = self.listener_name(&wanted);
                self.add_listener(name, std::slice::from_ref(key), Some(addr.ip()), port);
            }
        }
    }

    pub(super) fn add_listener(
        &mut self,
        name: String,
        keys: &[SslKey],
        ip: Option<IpAddr>,
        port: u16,
    ) {
        let mut comments = Vec::new();
        let bind: Vec<SocketAddr> = keys
            .iter()
            .filter_map(|k| match k {
                SslKey::IpPort(a) => Some(*a),
                _ => None,
            })
            .collect();
        // The certificate's name is chosen last: its index until then.
        let fallback = self.cert_of_key.get(&keys[0]).map(|i| i.to_string());
        let mut http1_only = false;
        for key in keys {
            if let Some(b) = self.netsh_by_key.get(key) {
                comments.push(format!(
                    "IIS: {key} ({}): clients without SNI get its certificate here",
                    self.netsh_origin(b.line).unwrap_or_default()
                ));
                if b.switches.iter().any(|s| s == "disable http2") {
                    http1_only = true;
                    comments.push(
                        "HTTP.sys had HTTP/2 disabled on this binding: alpn = [\"http/1.1\"]"
                            .to_string(),
                    );
                }
            } else {
                comments.push(format!("IIS: {key} (from applicationHost.config): clients without SNI get its certificate here"));
            }
        }
        let default_upstream = self.default_upstream(ip, port, keys, &mut comments);
        self.listeners.push(Listener {
            name,
            bind,
            fallback,
            strict_sni: false,
            default_upstream,
            http1_only,
            port,
            comments,
        });
    }

    pub(super) fn add_strict_listener(&mut self, name: String, port: u16) {
        let message = format!(
            "IIS has SNI bindings on port {port} but no IP:port binding: HTTP.sys refuses clients \
             without SNI there, and so does this listener (strict_sni). To serve them, set \
             fallback_certificate to one of the certificates and remove strict_sni"
        );
        let mut comments = vec![format!("TODO: {message}")];
        self.note(
            None,
            Severity::Todo,
            format!("listener \"{name}\": {message}"),
        );
        let default_upstream = self.default_upstream(None, port, &[], &mut comments);
        self.listeners.push(Listener {
            name,
            bind: vec![unspecified(false, port)],
            fallback: None,
            strict_sni: true,
            default_upstream,
            http1_only: false,
            port,
            comments,
        });
    }

    /// The site bound to the address (else to all addresses) without host
    /// name; without one, the generic upstream when no site claims the
    /// binding.
    pub(super) fn default_upstream(
        &mut self,
        ip: Option<IpAddr>,
        port: u16,
        keys: &[SslKey],
        comments: &mut Vec<String>,
    ) -> Option<String> {
        let catch_all = |want: Option<IpAddr>| {
            self.uses.iter().position(|u| {
                u.endpoint.port == port && u.endpoint.host.is_empty() && u.endpoint.ip == want
            })
        };
        let found = ip
            .and_then(|ip| catch_all(Some(ip)))
            .or_else(|| catch_all(None));
        if let Some(ui) = found {
            let site = self.uses[ui].site;
            comments.push(format!(
                "requests for hosts that no route names go to {} (https {})",
                self.site_label(site),
                self.uses[ui].endpoint
            ));
            return Some(self.site_upstream(site));
        }
        let claimed = keys.iter().any(|k| self.uses.iter().any(|u| u.key == *k));
        if self.sites.is_none() || (!keys.is_empty() && !claimed) {
            if self.sites.is_some() {
                comments.push("no site in applicationHost.config has this binding: its requests go to the IIS servers' https port".to_string());
            }
            return Some(self.generic_upstream(ip, port));
        }
        comments.push(format!(
            "no IIS site takes port {port} without a host name: requests for hosts that no route names get 404"
        ));
        None
    }
}
