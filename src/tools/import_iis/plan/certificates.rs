//! One `[[certificate]]` per certificate hash (per binding when the hash is
//! not known), named after its host, site or address.

use std::collections::HashSet;

use super::super::file_slug;
use super::super::netsh::{SslBinding, SslKey};
use super::*;

impl Builder<'_> {
    pub(super) fn use_text(&self, u: &Use) -> String {
        let file = self.sites.map(|(f, _)| f).unwrap_or("");
        format!(
            "{} https {} sslFlags={} ({})",
            self.site_label(u.site),
            u.endpoint,
            u.flags,
            origin(file, u.line)
        )
    }

    pub(super) fn site_name(&self, si: usize) -> Option<String> {
        self.sites
            .map(|(_, c)| c.sites[si].name.clone())
            .filter(|n| !n.trim().is_empty())
    }

    pub(super) fn register_certificates(&mut self) {
        let keys = self.keys.clone();
        for key in &keys {
            let binding = self.netsh_by_key.get(key).copied();
            let use_indices: Vec<usize> = (0..self.uses.len())
                .filter(|&i| self.uses[i].key == *key)
                .collect();
            match key {
                SslKey::Ccs(_) | SslKey::ScopedCcs(..) => {
                    let mut hosts: Vec<(String, Option<usize>)> = use_indices
                        .iter()
                        .map(|&i| (self.uses[i].endpoint.host.clone(), Some(i)))
                        .collect();
                    if let SslKey::ScopedCcs(h, _) = key {
                        if hosts.is_empty() {
                            hosts.push((h.clone(), None));
                        }
                    }
                    if hosts.is_empty() {
                        let at = binding.and_then(|b| self.netsh_origin(b.line));
                        let message = if self.sites.is_some() {
                            format!("{key}: IIS takes the certificates of port {} from the Centralized Certificate Store, but no site has such a binding", key_port(key))
                        } else {
                            format!("{key}: IIS takes the certificates of port {} from the Centralized Certificate Store by host name; the host names are in applicationHost.config (--config)", key_port(key))
                        };
                        self.note(at, Severity::NotImported, message);
                        continue;
                    }
                    for (host, ui) in hosts {
                        let port = key_port(key);
                        let mut comments = Vec::new();
                        if let Some(i) = ui {
                            comments.push(format!("IIS: {}", self.use_text(&self.uses[i])));
                        }
                        if let Some(b) = binding {
                            comments.push(format!(
                                "IIS: {key} ({})",
                                self.netsh_origin(b.line).unwrap_or_default()
                            ));
                        }
                        let at = ui
                            .and_then(|i| self.site_origin(self.uses[i].line))
                            .or_else(|| binding.and_then(|b| self.netsh_origin(b.line)));
                        self.note(
                            at,
                            Severity::NotImported,
                            format!(
                                "certificate for {host}:{port} comes from the IIS Centralized Certificate Store: \
                                 copy its {host}.pfx and the store's password to the files the [[certificate]] written for it names, and uncomment it"
                            ),
                        );
                        let index = self.certs.len();
                        self.certs.push(CertDraft {
                            hash: None,
                            store: None,
                            ccs: true,
                            host_hint: Some(host.clone()),
                            site_hint: None,
                            key_hint: String::new(),
                            comments,
                        });
                        self.cert_of_ccs_host.insert((host, port), index);
                    }
                    continue;
                }
                SslKey::IpPort(_) | SslKey::HostnamePort(..) => {}
            }
            let id = match binding.and_then(|b| b.hash.clone()) {
                Some(h) => CertId::Hash(h),
                None => CertId::Key(key.clone()),
            };
            let index = match self.cert_by_id.get(&id) {
                Some(&i) => i,
                None => {
                    let i = self.certs.len();
                    self.certs.push(CertDraft {
                        hash: binding.and_then(|b| b.hash.clone()),
                        store: binding.and_then(|b| b.store.clone()),
                        ccs: false,
                        host_hint: None,
                        site_hint: None,
                        key_hint: key_slug(key),
                        comments: Vec::new(),
                    });
                    self.cert_by_id.insert(id, i);
                    i
                }
            };
            self.cert_of_key.insert(key.clone(), index);
            // Hints: the SNI host first, then a host name bound to the
            // address, then the site's name.
            let host = match key {
                SslKey::HostnamePort(h, _) => Some(h.clone()),
                _ => use_indices
                    .iter()
                    .map(|&i| self.uses[i].endpoint.host.clone())
                    .find(|h| !h.is_empty()),
            };
            let site = use_indices
                .first()
                .and_then(|&i| self.site_name(self.uses[i].site));
            let mut comments = Vec::new();
            match binding {
                Some(b) => comments.push(format!(
                    "IIS: {key} ({})",
                    self.netsh_origin(b.line).unwrap_or_default()
                )),
                None => {
                    let message = if self.netsh.is_some() {
                        format!("{key}: the netsh listing has no certificate for this binding, so IIS cannot serve it either; bind one in IIS and export it to the paths below")
                    } else {
                        format!("{key}: the certificate is not in applicationHost.config (HTTP.sys holds it): find its hash with `netsh http show sslcert {key}` and export it to the paths below")
                    };
                    let at = use_indices
                        .first()
                        .and_then(|&i| self.site_origin(self.uses[i].line));
                    comments.push(format!("TODO: {message}"));
                    self.note(at, Severity::Todo, message);
                }
            }
            for &i in &use_indices {
                comments.push(format!("IIS: {}", self.use_text(&self.uses[i])));
            }
            if let Some(b) = binding {
                self.binding_extras(key, b, &mut comments);
            }
            let draft = &mut self.certs[index];
            if draft.host_hint.is_none() {
                draft.host_hint = host;
            }
            if draft.site_hint.is_none() {
                draft.site_hint = site;
            }
            draft.comments.extend(comments);
        }
    }

    /// Client certificates, another program's binding, TLS switches.
    pub(super) fn binding_extras(
        &mut self,
        key: &SslKey,
        b: &SslBinding,
        comments: &mut Vec<String>,
    ) {
        let at = self.netsh_origin(b.line);
        if b.negotiate_client_cert || b.ds_mapper || b.ctl.is_some() {
            let mut what = Vec::new();
            if b.negotiate_client_cert {
                what.push("Negotiate Client Certificate".to_string());
            }
            if b.ds_mapper {
                what.push("DS Mapper Usage".to_string());
            }
            if let Some(ctl) = &b.ctl {
                what.push(format!("CTL \"{}\"", crate::tools::import_iis::clip(ctl)));
            }
            let message = format!(
                "{key}: client certificates ({}): snigate does not ask clients for certificates, \
                 so IIS never sees one (pages that require one answer 403.7)",
                what.join(", ")
            );
            comments.push(format!("not imported: {message}"));
            self.note(at.clone(), Severity::NotImported, message);
        }
        if let Some(app) = &b.app_id {
            if !app.eq_ignore_ascii_case(IIS_APP_ID) {
                let message = format!(
                    "{key} belongs to another HTTP.sys program (Application ID {}), not IIS: imported; \
                     remove it if snigate should not front that program",
                    crate::tools::import_iis::clip(app)
                );
                comments.push(format!("TODO: {message}"));
                self.note(at.clone(), Severity::Todo, message);
            }
        }
        let switches: Vec<&str> = b
            .switches
            .iter()
            .map(String::as_str)
            .filter(|s| !(*s == "disable http2" && matches!(key, SslKey::IpPort(_))))
            .filter(|s| *s != "disable legacy tls versions")
            .collect();
        if !switches.is_empty() {
            let message = format!(
                "{key}: HTTP.sys switches {} are set for this binding; snigate has no per-certificate equivalent",
                switches.join(", ")
            );
            comments.push(format!("not imported: {message}"));
            self.note(at, Severity::NotImported, message);
        }
    }

    pub(super) fn name_certificates(&mut self) -> Vec<Certificate> {
        let mut used = HashSet::new();
        let mut out = Vec::new();
        for draft in std::mem::take(&mut self.certs) {
            let wanted = draft
                .host_hint
                .as_deref()
                .and_then(file_slug)
                .or_else(|| draft.site_hint.as_deref().and_then(file_slug))
                .or_else(|| file_slug(&draft.key_hint))
                .unwrap_or_else(|| "certificate".to_string());
            let mut name = wanted.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{wanted}-{n}");
                n += 1;
            }
            out.push(Certificate {
                name,
                hash: draft.hash,
                store: draft.store,
                ccs: draft.ccs,
                comments: draft.comments,
            });
        }
        out
    }
}
