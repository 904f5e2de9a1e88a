//! From IIS's bindings to snigate's certificates, listeners, routes and
//! upstreams.
//!
//! HTTP.sys picks the certificate: by SNI host (`hostnameport=`), else by
//! the address the client connected to (`ipport=IP:port`), else by the port
//! on all addresses (`ipport=0.0.0.0:port`). IIS then picks the site by
//! address, port and Host: an explicit host name before an address bound
//! to one IP, before all addresses (HTTP Server API, "UrlPrefix Strings":
//! explicit > IP-bound weak wildcard > weak wildcard). In snigate:
//!
//! - every certificate hash becomes one `[[certificate]]` (chosen by SNI on
//!   every listener, as HTTP.sys does);
//! - `ipport=0.0.0.0:P` becomes the listener on `0.0.0.0:P` with that
//!   certificate as its fallback; `ipport=IP:P` a listener of its own on
//!   `IP:P`; a port with SNI bindings but no `0.0.0.0` binding a listener
//!   with `strict_sni` (HTTP.sys refuses clients without SNI there too);
//! - site bindings with a host name, and SNI bindings, become routes to the
//!   site's upstream on the listeners of that port (of that address, for an
//!   IP-specific binding); the site bound without host name becomes the
//!   listener's `default_upstream`;
//! - each site becomes an upstream on the IIS servers given with
//!   `--backend`: its http port when it has an http binding (TLS ends at
//!   snigate), else its https port with TLS to the backend.
//!
//! What snigate cannot express (client certificates, certificates from the
//! Centralized Certificate Store, conflicting bindings, non-HTTP bindings,
//! per-binding TLS switches) becomes a [`Note`]: a comment in the file and a
//! line on stderr.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod certificates;
mod listeners;
mod routes;
mod upstreams;

use super::netsh::{Listing, SslBinding, SslKey};
use super::site_config::{Endpoint, SiteBinding, SiteConfig, SSL_FLAG_CCS, SSL_FLAG_SNI};
use super::valid_host;

/// The Application ID IIS registers its HTTP.sys bindings under.
pub const IIS_APP_ID: &str = "{4dc3e181-e14b-4a21-b022-59fc669b0914}";

/// The parsed inputs and the backend servers.
pub struct Inputs<'a> {
    /// The listing and how to name it in messages.
    pub netsh: Option<(&'a str, &'a Listing)>,
    pub sites: Option<(&'a str, &'a SiteConfig)>,
    /// Host names or addresses (IPv6 in brackets), at least one.
    pub backends: &'a [String],
}

/// How serious a note is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Left out of the configuration (it is in a comment).
    NotImported,
    /// In the configuration, but needs the operator's attention.
    Todo,
}

/// Something the operator must read: a comment in the file, a line on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `FILE:LINE` where it comes from, when it comes from one place.
    pub origin: Option<String>,
    pub severity: Severity,
    pub message: String,
}

/// What the configuration will hold.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub certificates: Vec<Certificate>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub notes: Vec<Note>,
}

/// A `[[certificate]]`.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Its name, also the stem of its files (`certs/NAME.pfx`, `.pass`).
    pub name: String,
    /// The thumbprint, when HTTP.sys told it.
    pub hash: Option<String>,
    /// `Certificate Store Name` (`None`: MY).
    pub store: Option<String>,
    /// From the Centralized Certificate Store: written commented out.
    pub ccs: bool,
    /// Which IIS bindings use it, and anything to know about them.
    pub comments: Vec<String>,
}

/// A `[[listener]]` (https).
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: Vec<SocketAddr>,
    pub fallback: Option<String>,
    pub strict_sni: bool,
    pub default_upstream: Option<String>,
    /// `alpn = ["http/1.1"]` (HTTP.sys `Disable HTTP2 : Set`).
    pub http1_only: bool,
    pub port: u16,
    pub comments: Vec<String>,
}

/// A `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    pub hosts: Vec<String>,
    /// Empty: every listener.
    pub listeners: Vec<String>,
    pub upstream: String,
    pub comments: Vec<String>,
}

/// An `[[upstream]]`.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<String>,
    /// `tls = { insecure_skip_verify = true }`, with a TODO to pin.
    pub tls: bool,
    /// With `tls`: the certificates the backends present (by name), whose
    /// pins should replace `insecure_skip_verify`.
    pub pin_certificates: Vec<String>,
    pub comments: Vec<String>,
}

/// An https site binding that is imported.
struct Use {
    site: usize,
    line: usize,
    endpoint: Endpoint,
    flags: u32,
    /// The HTTP.sys binding that holds its certificate.
    key: SslKey,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum CertId {
    Hash(String),
    Key(SslKey),
}

struct CertDraft {
    hash: Option<String>,
    store: Option<String>,
    ccs: bool,
    host_hint: Option<String>,
    site_hint: Option<String>,
    key_hint: String,
    comments: Vec<String>,
}

/// A route being built: its upstream's owner, its listeners (indices), its
/// hosts and comments.
type RouteDraft = (Owner, Vec<usize>, Vec<String>, Vec<String>);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Site(usize),
    /// Bindings no site claims: all the IIS servers on the binding's port.
    Generic(Option<IpAddr>, u16),
}

struct Builder<'a> {
    netsh: Option<(&'a str, &'a Listing)>,
    sites: Option<(&'a str, &'a SiteConfig)>,
    backends: &'a [String],
    notes: Vec<Note>,
    netsh_by_key: HashMap<SslKey, &'a SslBinding>,
    /// Every HTTP.sys key in the order of the listing, then of the sites.
    keys: Vec<SslKey>,
    uses: Vec<Use>,
    certs: Vec<CertDraft>,
    cert_by_id: HashMap<CertId, usize>,
    cert_of_key: HashMap<SslKey, usize>,
    cert_of_ccs_host: HashMap<(String, u16), usize>,
    listeners: Vec<Listener>,
    upstreams: Vec<Upstream>,
    upstream_by_owner: HashMap<Owner, usize>,
    upstream_owner: Vec<Owner>,
    listener_names: HashSet<String>,
    upstream_names: HashSet<String>,
    /// Per upstream: the certificates (indices) its backends present, for
    /// the TODO to pin them.
    pins: Vec<Vec<usize>>,
}

/// Builds the plan.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut b = Builder {
        netsh: inputs.netsh,
        sites: inputs.sites,
        backends: inputs.backends,
        notes: Vec::new(),
        netsh_by_key: HashMap::new(),
        keys: Vec::new(),
        uses: Vec::new(),
        certs: Vec::new(),
        cert_by_id: HashMap::new(),
        cert_of_key: HashMap::new(),
        cert_of_ccs_host: HashMap::new(),
        listeners: Vec::new(),
        upstreams: Vec::new(),
        upstream_by_owner: HashMap::new(),
        upstream_owner: Vec::new(),
        listener_names: HashSet::new(),
        upstream_names: HashSet::new(),
        pins: Vec::new(),
    };
    b.read_netsh();
    b.read_sites();
    b.register_certificates();
    b.build_listeners();
    let routes = b.build_routes();
    b.finish_upstreams(&routes);
    b.note_unused_sites();
    let certificates = b.name_certificates();
    let mut listeners = b.listeners;
    for l in &mut listeners {
        l.fallback = l
            .fallback
            .take()
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| certificates.get(i))
            .map(|c| c.name.clone());
    }
    let mut upstreams = b.upstreams;
    for (u, pins) in upstreams.iter_mut().zip(&b.pins) {
        u.pin_certificates = pins
            .iter()
            .filter_map(|&i| certificates.get(i))
            .filter(|c| !c.ccs)
            .map(|c| c.name.clone())
            .collect();
    }
    Plan {
        certificates,
        listeners,
        routes,
        upstreams,
        notes: b.notes,
    }
}

fn origin(file: &str, line: usize) -> String {
    format!("{file}:{line}")
}

fn unspecified(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }
}

fn key_port(key: &SslKey) -> u16 {
    match key {
        SslKey::IpPort(a) => a.port(),
        SslKey::HostnamePort(_, p) | SslKey::Ccs(p) | SslKey::ScopedCcs(_, p) => *p,
    }
}

/// `host:port`, an IPv6 address in brackets.
fn server(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

fn ip_server(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

impl<'a> Builder<'a> {
    fn note(&mut self, origin: Option<String>, severity: Severity, message: String) {
        self.notes.push(Note {
            origin,
            severity,
            message,
        });
    }

    fn netsh_origin(&self, line: usize) -> Option<String> {
        self.netsh.map(|(name, _)| origin(name, line))
    }

    fn site_origin(&self, line: usize) -> Option<String> {
        self.sites.map(|(name, _)| origin(name, line))
    }

    fn site_label(&self, si: usize) -> String {
        let Some((_, config)) = self.sites else {
            return String::new();
        };
        let site = &config.sites[si];
        match &site.id {
            Some(id) => format!(
                "site \"{}\" (id {})",
                super::clip(&site.name),
                super::clip(id)
            ),
            None => format!("site \"{}\"", super::clip(&site.name)),
        }
    }

    fn listener_name(&mut self, wanted: &str) -> String {
        unique(&mut self.listener_names, wanted)
    }

    fn upstream_name(&mut self, wanted: &str) -> String {
        unique(&mut self.upstream_names, wanted)
    }

    // ----- inputs -----------------------------------------------------------

    fn read_netsh(&mut self) {
        let Some((file, listing)) = self.netsh else {
            return;
        };
        for p in &listing.problems {
            self.note(
                Some(origin(file, p.line)),
                Severity::NotImported,
                p.message.clone(),
            );
        }
        for b in &listing.bindings {
            let at = Some(origin(file, b.line));
            if let SslKey::HostnamePort(h, _) | SslKey::ScopedCcs(h, _) = &b.key {
                if valid_host(h).is_none() {
                    self.note(
                        at,
                        Severity::NotImported,
                        format!(
                            "{}: \"{}\" is not a host name snigate can match (internationalized names: write the xn-- form)",
                            b.key,
                            super::clip(h)
                        ),
                    );
                    continue;
                }
            }
            if let Some(first) = self.netsh_by_key.get(&b.key) {
                let how = if first.hash == b.hash {
                    "repeats"
                } else {
                    "conflicts with"
                };
                let message = format!(
                    "{}: {how} the binding at line {}; the first is kept",
                    b.key, first.line
                );
                self.note(at, Severity::NotImported, message);
                continue;
            }
            self.netsh_by_key.insert(b.key.clone(), b);
            self.keys.push(b.key.clone());
        }
    }

    fn read_sites(&mut self) {
        let Some((file, config)) = self.sites else {
            return;
        };
        let mut seen: HashMap<(Option<IpAddr>, u16, String), (usize, usize)> = HashMap::new();
        for (si, site) in config.sites.iter().enumerate() {
            let label = self.site_label(si);
            for sb in &site.bindings {
                let at = Some(origin(file, sb.line));
                if sb.protocol == "http" {
                    if let Err(e) = &sb.endpoint {
                        self.note(
                            at,
                            Severity::NotImported,
                            format!("{label}: http binding: {e}"),
                        );
                    }
                    continue;
                }
                if sb.protocol != "https" {
                    self.note(
                        at,
                        Severity::NotImported,
                        format!(
                            "{label}: {} binding \"{}\" is not HTTP or HTTPS; snigate proxies HTTP only",
                            super::clip(&sb.protocol),
                            super::clip(&sb.information)
                        ),
                    );
                    continue;
                }
                let (endpoint, flags) = match (&sb.endpoint, &sb.ssl_flags) {
                    (Ok(e), Ok(f)) => (e.clone(), *f),
                    (Err(e), _) | (_, Err(e)) => {
                        self.note(
                            at,
                            Severity::NotImported,
                            format!("{label}: https binding: {e}"),
                        );
                        continue;
                    }
                };
                if !endpoint.host.is_empty() && valid_host(&endpoint.host).is_none() {
                    self.note(
                        at,
                        Severity::NotImported,
                        format!(
                            "{label}: https binding {endpoint}: \"{}\" is not a host name snigate can match (internationalized names: write the xn-- form)",
                            super::clip(&endpoint.host)
                        ),
                    );
                    continue;
                }
                let ccs = flags & SSL_FLAG_CCS != 0;
                let sni = flags & SSL_FLAG_SNI != 0;
                if (sni || ccs) && endpoint.host.is_empty() {
                    let what = if ccs {
                        "a Centralized Certificate Store"
                    } else {
                        "an SNI"
                    };
                    self.note(
                        at,
                        Severity::NotImported,
                        format!("{label}: https binding {endpoint} is {what} binding without a host name, which IIS cannot serve"),
                    );
                    continue;
                }
                let identity = (endpoint.ip, endpoint.port, endpoint.host.clone());
                if let Some(&(other_site, other_line)) = seen.get(&identity) {
                    let other = self.site_label(other_site);
                    self.note(
                        at,
                        Severity::NotImported,
                        format!(
                            "{label}: https binding {endpoint} is also {other}'s (line {other_line}); \
                             IIS starts only one of them, snigate routes it to the first"
                        ),
                    );
                    continue;
                }
                seen.insert(identity, (si, sb.line));
                // HTTP.sys holds these switches too: the netsh listing
                // reports them when it is given.
                let switches: Vec<&str> = [
                    (4, "DisableHTTP2"),
                    (8, "DisableOCSPStapling"),
                    (16, "DisableQUIC"),
                    (32, "DisableTLS13"),
                ]
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, name)| *name)
                .collect();
                if !switches.is_empty() && self.netsh.is_none() {
                    self.note(
                        at.clone(),
                        Severity::NotImported,
                        format!(
                            "{label}: https binding {endpoint}: sslFlags {flags} sets {}, which \
                             snigate has no per-binding equivalent for",
                            switches.join(", ")
                        ),
                    );
                }
                let key = if ccs {
                    let scoped = SslKey::ScopedCcs(endpoint.host.clone(), endpoint.port);
                    if self.netsh_by_key.contains_key(&scoped) {
                        scoped
                    } else {
                        SslKey::Ccs(endpoint.port)
                    }
                } else if sni {
                    SslKey::HostnamePort(endpoint.host.clone(), endpoint.port)
                } else {
                    let ip = endpoint.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                    SslKey::IpPort(SocketAddr::new(ip, endpoint.port))
                };
                if !self.keys.contains(&key) {
                    self.keys.push(key.clone());
                }
                self.uses.push(Use {
                    site: si,
                    line: sb.line,
                    endpoint,
                    flags,
                    key,
                });
            }
            for cc in &site.client_certificates {
                self.note(
                    self.site_origin(site.line),
                    Severity::NotImported,
                    format!(
                        "{label} asks clients for certificates ({cc}): snigate does not, so IIS \
                         never sees one (pages that require one answer 403.7)"
                    ),
                );
            }
        }
    }
}

/// `wanted`, or `wanted-2`, `wanted-3`, ... whichever `taken` lacks.
fn unique(taken: &mut HashSet<String>, wanted: &str) -> String {
    let base = if wanted.is_empty() { "iis" } else { wanted };
    let mut name = base.to_string();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The http binding to reach a site by: on all addresses without host name
/// first, then on all addresses, then on a specific address.
fn best_binding<'s>(
    bindings: impl Iterator<Item = &'s SiteBinding>,
) -> Option<(&'s SiteBinding, Endpoint)> {
    let mut found: Vec<(&SiteBinding, Endpoint)> = bindings
        .filter_map(|b| b.endpoint.as_ref().ok().map(|e| (b, e.clone())))
        .collect();
    found.sort_by_key(|(_, e)| (e.ip.is_some(), !e.host.is_empty()));
    found.into_iter().next()
}

fn b_endpoint(b: &SiteBinding) -> String {
    match &b.endpoint {
        Ok(e) => e.to_string(),
        Err(_) => b.information.clone(),
    }
}

/// An IIS wildcard host binding (`*.contoso.com`) covering `host`.
fn wildcard_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        None => false,
    }
}

/// A name for the certificate of a binding without host or site: the
/// binding's address.
fn key_slug(key: &SslKey) -> String {
    match key {
        SslKey::IpPort(a) if a.ip().is_unspecified() && a.is_ipv4() => {
            format!("all-ipv4-{}", a.port())
        }
        SslKey::IpPort(a) if a.ip().is_unspecified() => format!("all-ipv6-{}", a.port()),
        SslKey::IpPort(a) => format!("{}-{}", a.ip().to_string().replace(':', "-"), a.port()),
        SslKey::HostnamePort(h, p) | SslKey::ScopedCcs(h, p) => format!("{h}-{p}"),
        SslKey::Ccs(p) => format!("ccs-{p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::import_iis::{netsh, site_config};

    fn run(netsh_text: Option<&str>, config_text: Option<&str>) -> Plan {
        let listing = netsh_text.map(|t| netsh::parse(t).unwrap());
        let config = config_text.map(|t| site_config::parse(t).unwrap());
        let backends = vec!["wfe1".to_string(), "wfe2".to_string()];
        let inputs = Inputs {
            netsh: listing.as_ref().map(|l| ("netsh.txt", l)),
            sites: config.as_ref().map(|c| ("applicationHost.config", c)),
            backends: &backends,
        };
        plan(&inputs)
    }

    const SNI_ONLY: &str = "SSL Certificate bindings:\n\
        Hostname:port : a.test:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
        Hostname:port : b.test:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
        IP:port : 10.0.0.5:443\nCertificate Hash : ffeeddccbbaa99887766554433221100ffeeddcc\n";

    #[test]
    fn sni_without_ipport_is_strict_and_certificates_are_shared() {
        let p = run(Some(SNI_ONLY), None);
        assert_eq!(p.certificates.len(), 2);
        assert_eq!(p.certificates[0].name, "a.test");
        assert_eq!(p.listeners.len(), 2);
        let l = &p.listeners[0];
        assert_eq!(l.name, "https-443");
        assert!(l.strict_sni);
        assert_eq!(l.fallback, None);
        assert_eq!(l.default_upstream.as_deref(), Some("iis-443"));
        // snigate listens on 0.0.0.0:443 beside 10.0.0.5:443 (SO_REUSEPORT).
        assert!(!l.comments.iter().any(|c| c.contains("10.0.0.5:443")));
        let ip = &p.listeners[1];
        assert_eq!(ip.name, "https-10.0.0.5-443");
        assert_eq!(ip.bind, vec!["10.0.0.5:443".parse::<SocketAddr>().unwrap()]);
        assert_eq!(ip.default_upstream.as_deref(), Some("iis-10.0.0.5-443"));
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.routes[0].hosts, vec!["a.test", "b.test"]);
        assert!(p.routes[0].listeners.is_empty());
        let generic = &p.upstreams[0];
        assert_eq!(generic.servers, vec!["wfe1:443", "wfe2:443"]);
        assert!(generic.tls);
        let own = p
            .upstreams
            .iter()
            .find(|u| u.name == "iis-10.0.0.5-443")
            .unwrap();
        assert_eq!(own.servers, vec!["10.0.0.5:443"]);
    }

    #[test]
    fn duplicate_and_conflicting_netsh_blocks_are_noted() {
        let text =
            "IP:port : 0.0.0.0:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            IP:port : 0.0.0.0:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            IP:port : 0.0.0.0:443\nCertificate Hash : ffeeddccbbaa99887766554433221100ffeeddcc\n\
            Hostname:port : b\u{e4}d.test:443\n";
        let p = run(Some(text), None);
        assert_eq!(p.listeners.len(), 1);
        assert_eq!(p.certificates.len(), 1);
        let messages: Vec<&str> = p.notes.iter().map(|n| n.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("repeats the binding at line 1")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("conflicts with the binding at line 1")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("xn--")), "{messages:?}");
        assert_eq!(p.notes[0].origin.as_deref(), Some("netsh.txt:3"));
    }

    #[test]
    fn ipv4_and_ipv6_wildcards_with_one_certificate_share_a_listener() {
        let text =
            "IP:port : 0.0.0.0:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            IP:port : [::]:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n";
        let p = run(Some(text), None);
        assert_eq!(p.listeners.len(), 1);
        assert_eq!(p.listeners[0].bind.len(), 2);
        assert_eq!(p.certificates[0].name, "all-ipv4-443");
    }

    #[test]
    fn ip_specific_site_binding_wins_on_its_own_listener() {
        let netsh =
            "IP:port : 0.0.0.0:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            IP:port : 10.0.0.9:443\nCertificate Hash : ffeeddccbbaa99887766554433221100ffeeddcc\n";
        let config = r#"<sites>
            <site name="All" id="1"><bindings>
              <binding protocol="https" bindingInformation="*:443:shared.test" />
              <binding protocol="http" bindingInformation="*:80:" />
            </bindings></site>
            <site name="Nine" id="2"><bindings>
              <binding protocol="https" bindingInformation="10.0.0.9:443:shared.test" />
              <binding protocol="http" bindingInformation="10.0.0.9:80:shared.test" />
            </bindings></site>
        </sites>"#;
        let p = run(Some(netsh), Some(config));
        assert_eq!(p.routes.len(), 2, "{:#?}", p.routes);
        assert_eq!(p.routes[0].upstream, "nine");
        assert_eq!(p.routes[0].listeners, vec!["nine"]);
        assert_eq!(p.routes[1].upstream, "all");
        assert_eq!(p.routes[1].listeners, vec!["https-443"]);
        assert!(
            p.notes.iter().all(|n| !n.message.contains("conflicts")),
            "{:?}",
            p.notes
        );
        let nine = p.upstreams.iter().find(|u| u.name == "nine").unwrap();
        assert_eq!(nine.servers, vec!["10.0.0.9:80"]);
        assert!(!nine.tls);
        // "All" has no default site on 443: no default upstream.
        assert_eq!(p.listeners[0].default_upstream, None);
    }

    #[test]
    fn site_without_http_port_coverage() {
        let netsh = "Hostname:port : a.test:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n";
        let config = r#"<sites><site name="A" id="1"><bindings>
              <binding protocol="https" bindingInformation="*:443:a.test" sslFlags="1" />
              <binding protocol="http" bindingInformation="*:8080:other.test" />
            </bindings></site></sites>"#;
        let p = run(Some(netsh), Some(config));
        let a = &p.upstreams[0];
        assert_eq!(a.servers, vec!["wfe1:8080", "wfe2:8080"]);
        assert!(
            a.comments
                .iter()
                .any(|c| c.contains("add http binding *:8080:a.test")),
            "{:?}",
            a.comments
        );
    }

    #[test]
    fn tls_switches_in_ssl_flags_are_noted_without_netsh() {
        let config = r#"<sites><site name="A" id="1"><bindings>
              <binding protocol="https" bindingInformation="*:443:" sslFlags="36" />
              <binding protocol="http" bindingInformation="*:80:" />
            </bindings></site></sites>"#;
        let p = run(None, Some(config));
        assert!(
            p.notes.iter().any(|n| n
                .message
                .contains("sslFlags 36 sets DisableHTTP2, DisableTLS13")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.listeners.len(), 1);
    }

    #[test]
    fn an_ipv6_address_does_not_clash_with_the_ipv4_wildcard() {
        let text = "IP:port : 0.0.0.0:443\nCertificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            IP:port : [2001:db8::5]:443\nCertificate Hash : ffeeddccbbaa99887766554433221100ffeeddcc\n";
        let p = run(Some(text), None);
        assert_eq!(p.listeners.len(), 2);
        assert_eq!(p.listeners[1].name, "https-2001-db8-5-443");
        assert_eq!(p.upstreams[1].servers, vec!["[2001:db8::5]:443"]);
        assert!(
            p.notes.iter().all(|n| !n.message.contains("Linux")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn wildcard_hosts() {
        assert!(wildcard_covers("*.contoso.com", "a.contoso.com"));
        assert!(wildcard_covers("*.contoso.com", "a.b.contoso.com"));
        assert!(!wildcard_covers("*.contoso.com", "contoso.com"));
        assert!(!wildcard_covers("*.contoso.com", "xcontoso.com"));
    }
}
