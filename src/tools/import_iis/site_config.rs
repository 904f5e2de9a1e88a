//! IIS's `applicationHost.config`: the sites and their bindings.
//!
//! Read with `roxmltree` (no DTD, no external entities). What is used:
//!
//! - `<sites><site name id><bindings><binding protocol bindingInformation
//!   sslFlags/>`: `bindingInformation` is `IP:port:host` (`*` or empty for
//!   all unassigned addresses, `[v6]` in brackets, the host empty for none);
//!   `sslFlags` bit 1 is SNI, bit 2 the Centralized Certificate Store
//!   (written as a number, or by name: `Sni, CentralCertStore`).
//! - `<system.webServer><security><access sslFlags/>`, globally or in a
//!   `<location path="Site[/app]">`: `Ssl` (Require SSL) and the client
//!   certificate flags `SslNegotiateCert`, `SslRequireCert`, `SslMapCert`.
//!
//! The certificate hashes are not in this file: IIS keeps them in HTTP.sys
//! (`netsh http show sslcert`).

use std::net::IpAddr;

/// One `<site>`.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub id: Option<String>,
    /// 1-based line of the `<site>` element.
    pub line: usize,
    pub bindings: Vec<SiteBinding>,
    /// `Ssl` in the `access` flags that apply to the site's root.
    pub require_ssl: bool,
    /// The client-certificate `access` flags in force for the site or any
    /// of its applications, with where they are set, e.g.
    /// `"SslNegotiateCert, SslRequireCert" (line 120, <location path="Secure">)`.
    pub client_certificates: Vec<String>,
}

/// One `<binding>` of a site.
#[derive(Debug, Clone)]
pub struct SiteBinding {
    pub line: usize,
    /// Lower-cased: `http`, `https`, `net.tcp`, `ftp`, ...
    pub protocol: String,
    /// `bindingInformation` as written.
    pub information: String,
    /// The address, port and host, for http and https bindings that read.
    pub endpoint: Result<Endpoint, String>,
    /// `sslFlags` (0 when absent).
    pub ssl_flags: Result<u32, String>,
}

/// `sslFlags` bit: the host name comes from SNI.
pub const SSL_FLAG_SNI: u32 = 1;
/// `sslFlags` bit: the certificate comes from the Centralized Certificate Store.
pub const SSL_FLAG_CCS: u32 = 2;

/// `IP:port:host` of an http or https binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `None`: `*`, all unassigned addresses.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// Lower-cased, no trailing dot; empty: any host.
    pub host: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            None => write!(f, "*:{}:{}", self.port, self.host),
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}:{}", self.port, self.host),
            Some(ip) => write!(f, "{ip}:{}:{}", self.port, self.host),
        }
    }
}

/// The sites of a file.
#[derive(Debug, Clone, Default)]
pub struct SiteConfig {
    pub sites: Vec<Site>,
}

/// Most sites read from one file.
pub const MAX_SITES: usize = 100_000;

/// Parses the file. An error when it is not XML or has no `<sites>`.
pub fn parse(text: &str) -> Result<SiteConfig, String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| format!("not an applicationHost.config: the XML does not parse ({e})"))?;
    let line = |node: roxmltree::Node<'_, '_>| doc.text_pos_at(node.range().start).row as usize;

    // `<sites>` anywhere: the whole file, or the section alone as
    // `appcmd list config -section:system.applicationHost/sites` prints it.
    let sites_elements: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("sites"))
        .collect();
    if sites_elements.is_empty() {
        return Err(
            "not an applicationHost.config: no <sites> section (the file is \
             %windir%\\System32\\inetsrv\\config\\applicationHost.config)"
                .to_string(),
        );
    }
    let access = access_rules(&doc);
    let mut config = SiteConfig::default();
    for site in sites_elements
        .iter()
        .flat_map(|s| s.children())
        .filter(|n| n.has_tag_name("site"))
    {
        if config.sites.len() >= MAX_SITES {
            return Err(format!("more than {MAX_SITES} sites: not imported"));
        }
        let name = site.attribute("name").unwrap_or("").to_string();
        let mut bindings = Vec::new();
        for binding in site
            .children()
            .filter(|n| n.has_tag_name("bindings"))
            .flat_map(|b| b.children())
            .filter(|n| n.has_tag_name("binding"))
        {
            let protocol = binding
                .attribute("protocol")
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let information = binding
                .attribute("bindingInformation")
                .unwrap_or("")
                .to_string();
            let endpoint = if protocol == "http" || protocol == "https" {
                parse_endpoint(&information)
            } else {
                Err(format!("protocol \"{protocol}\" is not HTTP"))
            };
            bindings.push(SiteBinding {
                line: line(binding),
                ssl_flags: binding
                    .attribute("sslFlags")
                    .map(parse_ssl_flags)
                    .unwrap_or(Ok(0)),
                protocol,
                information,
                endpoint,
            });
        }
        let mut require_ssl = false;
        let mut client_certificates = Vec::new();
        for rule in &access {
            let applies = match &rule.path {
                None => true,
                Some(p) => {
                    let site_part = p.split_once('/').map(|(s, _)| s).unwrap_or(p);
                    site_part.eq_ignore_ascii_case(&name)
                }
            };
            if !applies {
                continue;
            }
            let at_root = rule
                .path
                .as_deref()
                .map(|p| !p.trim_end_matches('/').contains('/'))
                .unwrap_or(true);
            if at_root {
                // The innermost setting wins; rules come outermost first.
                require_ssl = rule.flags.iter().any(|f| f == "ssl");
            }
            let certs: Vec<&str> = rule
                .written
                .iter()
                .map(String::as_str)
                .filter(|f| {
                    matches!(
                        f.to_ascii_lowercase().as_str(),
                        "sslnegotiatecert" | "sslrequirecert" | "sslmapcert"
                    )
                })
                .collect();
            if !certs.is_empty() {
                client_certificates.push(format!(
                    "access sslFlags \"{}\" (line {}{})",
                    certs.join(", "),
                    rule.line,
                    rule.path
                        .as_deref()
                        .map(|p| format!(", <location path=\"{p}\">"))
                        .unwrap_or_default()
                ));
            }
        }
        config.sites.push(Site {
            name,
            id: site.attribute("id").map(str::to_string),
            line: line(site),
            bindings,
            require_ssl,
            client_certificates,
        });
    }
    Ok(config)
}

/// One `<access sslFlags>` element.
struct AccessRule {
    /// The enclosing `<location path>`, `None` for global (or `path="."`/`""`).
    path: Option<String>,
    line: usize,
    /// Lower-cased flag names.
    flags: Vec<String>,
    /// The flag names as written.
    written: Vec<String>,
}

/// Every `system.webServer/security/access` element, outermost (global)
/// first.
fn access_rules(doc: &roxmltree::Document<'_>) -> Vec<AccessRule> {
    let mut rules: Vec<AccessRule> = doc
        .descendants()
        .filter(|n| n.has_tag_name("access"))
        .filter(|n| {
            n.parent().is_some_and(|p| p.has_tag_name("security"))
                && n.parent()
                    .and_then(|p| p.parent())
                    .is_some_and(|p| p.has_tag_name("system.webServer"))
        })
        .filter_map(|n| {
            let flags = n.attribute("sslFlags")?;
            let path = n
                .ancestors()
                .find(|a| a.has_tag_name("location"))
                .and_then(|l| l.attribute("path"))
                .map(|p| p.trim().trim_matches('/').to_string())
                .filter(|p| !p.is_empty() && p != ".");
            let written: Vec<String> = flags
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect();
            Some(AccessRule {
                path,
                line: doc.text_pos_at(n.range().start).row as usize,
                flags: written.iter().map(|f| f.to_ascii_lowercase()).collect(),
                written,
            })
        })
        .collect();
    // Global first, then site level, then applications.
    rules.sort_by_key(|r| {
        r.path
            .as_ref()
            .map(|p| 1 + p.matches('/').count())
            .unwrap_or(0)
    });
    rules
}

/// `IP:port:host`.
pub fn parse_endpoint(information: &str) -> Result<Endpoint, String> {
    let bad = || {
        format!(
            "bindingInformation \"{}\" is not IP:port:host",
            super::clip(information)
        )
    };
    let (ip_text, rest) = if let Some(v6) = information.strip_prefix('[') {
        let (ip, rest) = v6.split_once(']').ok_or_else(bad)?;
        (ip, rest.strip_prefix(':').ok_or_else(bad)?)
    } else {
        information.split_once(':').ok_or_else(bad)?
    };
    let (port, host) = rest.split_once(':').ok_or_else(bad)?;
    let ip = match ip_text.trim() {
        "" | "*" => None,
        text => Some(text.parse::<IpAddr>().map_err(|_| bad())?),
    };
    // IIS writes "0.0.0.0" for all addresses in a few places too.
    let ip = ip.filter(|ip| !ip.is_unspecified());
    let port = port
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host = crate::config::host_name(host.trim());
    Ok(Endpoint { ip, port, host })
}

/// `sslFlags`: a number, or flag names joined by commas.
pub fn parse_ssl_flags(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n);
    }
    let mut flags = 0;
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        flags |= match name.to_ascii_lowercase().as_str() {
            "none" => 0,
            "sni" => SSL_FLAG_SNI,
            "centralcertstore" => SSL_FLAG_CCS,
            "disablehttp2" => 4,
            "disableocspstp" => 8,
            "disablequic" => 16,
            "disabletls13" => 32,
            "disablelegacytls" => 64,
            _ => {
                return Err(format!(
                "sslFlags \"{}\" is not a number or a list of flags (Sni, CentralCertStore, ...)",
                super::clip(text)
            ))
            }
        };
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_information_forms() {
        let e = parse_endpoint("*:443:").unwrap();
        assert_eq!((e.ip, e.port, e.host.as_str()), (None, 443, ""));
        let e = parse_endpoint("192.168.0.1:80:www.Contoso.com.").unwrap();
        assert_eq!(e.ip, Some("192.168.0.1".parse().unwrap()));
        assert_eq!(e.host, "www.contoso.com");
        assert_eq!(e.to_string(), "192.168.0.1:80:www.contoso.com");
        let e = parse_endpoint("[2001:db8::1]:443:portal.test").unwrap();
        assert_eq!(e.ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(e.to_string(), "[2001:db8::1]:443:portal.test");
        assert_eq!(parse_endpoint(":8080:").unwrap().ip, None);
        assert_eq!(parse_endpoint("0.0.0.0:443:").unwrap().ip, None);
        for bad in [
            "",
            "*",
            "*:443",
            "*:0:",
            "*:x:",
            "300.1.1.1:443:",
            "[::1:443:",
            "808:*",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssl_flags_by_number_or_name() {
        assert_eq!(parse_ssl_flags("0"), Ok(0));
        assert_eq!(parse_ssl_flags("3"), Ok(3));
        assert_eq!(parse_ssl_flags("Sni"), Ok(1));
        assert_eq!(parse_ssl_flags("Sni, CentralCertStore"), Ok(3));
        assert_eq!(parse_ssl_flags("None"), Ok(0));
        assert!(parse_ssl_flags("Bogus").is_err());
    }

    const CONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <bindings>
          <binding protocol="http" bindingInformation="*:80:" />
          <binding protocol="HTTPS" bindingInformation="*:443:" sslFlags="0" />
          <binding protocol="net.tcp" bindingInformation="808:*" />
        </bindings>
      </site>
      <site name="Secure" id="5">
        <bindings>
          <binding protocol="https" bindingInformation="*:443:secure.test" sslFlags="Sni" />
          <binding protocol="https" bindingInformation="nonsense" />
        </bindings>
      </site>
      <siteDefaults />
    </sites>
  </system.applicationHost>
  <system.webServer><security><access sslFlags="None" /></security></system.webServer>
  <location path="Secure">
    <system.webServer><security><access sslFlags="Ssl, SslNegotiateCert" /></security></system.webServer>
  </location>
  <location path="Default Web Site/app">
    <system.webServer><security><access sslFlags="SslRequireCert" /></security></system.webServer>
  </location>
</configuration>"#;

    #[test]
    fn sites_bindings_and_access_flags() {
        let c = parse(CONFIG).unwrap();
        assert_eq!(c.sites.len(), 2);
        let d = &c.sites[0];
        assert_eq!(
            (d.name.as_str(), d.id.as_deref(), d.line),
            ("Default Web Site", Some("1"), 5)
        );
        assert_eq!(d.bindings.len(), 3);
        assert_eq!(d.bindings[1].protocol, "https");
        assert_eq!(d.bindings[1].line, 8);
        assert!(d.bindings[2].endpoint.is_err());
        assert!(!d.require_ssl);
        assert_eq!(d.client_certificates.len(), 1);
        assert!(
            d.client_certificates[0].contains("SslRequireCert"),
            "{:?}",
            d.client_certificates
        );
        assert!(d.client_certificates[0].contains("Default Web Site/app"));
        let s = &c.sites[1];
        assert_eq!(s.bindings[0].ssl_flags, Ok(SSL_FLAG_SNI));
        assert_eq!(s.bindings[0].endpoint.as_ref().unwrap().host, "secure.test");
        assert!(s.bindings[1].endpoint.is_err());
        assert!(s.require_ssl);
        assert_eq!(s.client_certificates.len(), 1);
    }

    #[test]
    fn not_a_site_configuration() {
        assert!(parse("SSL Certificate bindings:")
            .unwrap_err()
            .contains("does not parse"));
        assert!(parse("<configuration/>")
            .unwrap_err()
            .contains("no <sites>"));
        // A DTD (and with it entity expansion) is refused.
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><sites>&a;</sites>"#;
        assert!(parse(bomb).is_err());
        // The section alone, as appcmd prints it, is enough.
        let c = parse(r#"<sites><site name="A" id="1"><bindings><binding protocol="https" bindingInformation="*:443:" /></bindings></site></sites>"#).unwrap();
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.sites[0].bindings[0].ssl_flags, Ok(0));
    }
}
