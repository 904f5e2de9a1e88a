//! The output of `netsh http show sslcert`: HTTP.sys's certificate bindings.
//!
//! Parsed by hand: it is a human-readable listing with no published grammar
//! and no crate reads it. The layout, stable since Windows Vista:
//!
//! ```text
//! SSL Certificate bindings:
//! -------------------------
//!
//!     IP:port                      : 0.0.0.0:443
//!     Certificate Hash             : 1f6e3a3b...
//!     Application ID               : {4dc3e181-e14b-4a21-b022-59fc669b0914}
//!     Certificate Store Name       : My
//!     ...
//!     Negotiate Client Certificate : Disabled
//!
//!     Hostname:port                : portal.contoso.com:443
//!     ...
//! ```
//!
//! A block starts with `IP:port`, `Hostname:port` or `Central Certificate
//! Store` (and, on recent Windows, a scoped CCS line) and runs to the next
//! such line. A name is separated from its value by the first colon that
//! follows a space (names themselves contain `:`). The labels are English
//! only: a listing from a localized Windows is refused with a hint.

use std::net::SocketAddr;

/// What a binding is keyed by in HTTP.sys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SslKey {
    /// `ipport=`: an address (0.0.0.0 / [::] for all) and port.
    IpPort(SocketAddr),
    /// `hostnameport=`: an SNI host name (lower-cased) and port.
    HostnamePort(String, u16),
    /// `ccs=`: the Centralized Certificate Store on a port.
    Ccs(u16),
    /// `scopedccs=`: the Centralized Certificate Store for one host and port.
    ScopedCcs(String, u16),
}

impl std::fmt::Display for SslKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SslKey::IpPort(a) => write!(f, "ipport={a}"),
            SslKey::HostnamePort(h, p) => write!(f, "hostnameport={h}:{p}"),
            SslKey::Ccs(p) => write!(f, "ccs={p}"),
            SslKey::ScopedCcs(h, p) => write!(f, "scopedccs={h}:{p}"),
        }
    }
}

/// One block of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslBinding {
    /// 1-based line of the block's first line.
    pub line: usize,
    pub key: SslKey,
    /// `Certificate Hash`, lower-case hex; `None` for `(null)` (CCS).
    pub hash: Option<String>,
    /// `Application ID` as written.
    pub app_id: Option<String>,
    /// `Certificate Store Name`; `None` for `(null)` (HTTP.sys then uses MY).
    pub store: Option<String>,
    /// `Negotiate Client Certificate : Enabled`.
    pub negotiate_client_cert: bool,
    /// `DS Mapper Usage : Enabled` (client certificates mapped to accounts).
    pub ds_mapper: bool,
    /// `Ctl Identifier` / `Ctl Store Name` when set: the CAs clients'
    /// certificates must chain to.
    pub ctl: Option<String>,
    /// Per-binding HTTP.sys switches that are on (`Disable HTTP2 : Set`,
    /// `Reject Connections : Enabled`, ...), by their netsh names.
    pub switches: Vec<String>,
}

/// A line that could not be used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// The whole listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub bindings: Vec<SslBinding>,
    /// Blocks whose first line could not be read (skipped whole).
    pub problems: Vec<Problem>,
}

/// Most bindings read from one listing.
pub const MAX_BINDINGS: usize = 100_000;

/// Switches that, when on, change what a client gets from the binding.
const SWITCHES: &[&str] = &[
    "reject connections",
    "disable http2",
    "disable quic",
    "disable tls1.2",
    "disable tls1.3",
    "disable ocsp stapling",
    "disable legacy tls versions",
    "enable token binding",
];

/// Parses a listing. An error when the text is not one at all.
pub fn parse(text: &str) -> Result<Listing, String> {
    let mut listing = Listing::default();
    let mut header = false;
    let mut current: Option<SslBinding> = None;
    // A block whose first line was unusable: its property lines are skipped.
    let mut skipping = false;
    let mut stray = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.bytes().all(|b| b == b'-') {
            continue;
        }
        if line.eq_ignore_ascii_case("SSL Certificate bindings:") {
            header = true;
            continue;
        }
        let Some((name, value)) = split_property(line) else {
            stray += 1;
            continue;
        };
        let name = normalize_name(name);
        if let Some(key) = block_key(&name, value) {
            if let Some(done) = current.take() {
                push(&mut listing, done)?;
            }
            skipping = false;
            match key {
                Ok(key) => current = Some(SslBinding::new(number, key)),
                Err(message) => {
                    skipping = true;
                    listing.problems.push(Problem {
                        line: number,
                        message,
                    });
                }
            }
            continue;
        }
        let Some(binding) = current.as_mut() else {
            if !skipping {
                stray += 1;
            }
            continue;
        };
        let null = value.eq_ignore_ascii_case("(null)") || value.is_empty();
        let on = value.eq_ignore_ascii_case("enabled") || value.eq_ignore_ascii_case("set");
        match name.as_str() {
            "certificate hash" if !null => match parse_hash(value) {
                Some(h) => binding.hash = Some(h),
                None => {
                    listing.problems.push(Problem {
                        line: number,
                        message: format!(
                            "certificate hash \"{}\" is not hexadecimal",
                            super::clip(value)
                        ),
                    });
                }
            },
            "application id" if !null => binding.app_id = Some(value.to_string()),
            "certificate store name" if !null => binding.store = Some(value.to_string()),
            "negotiate client certificate" => binding.negotiate_client_cert = on,
            "ds mapper usage" => binding.ds_mapper = on,
            "ctl identifier" | "ctl store name" if !null => {
                binding.ctl.get_or_insert_with(|| value.to_string());
            }
            other if on && SWITCHES.contains(&other) => {
                binding.switches.push(other.to_string());
            }
            _ => {}
        }
    }
    if let Some(done) = current.take() {
        push(&mut listing, done)?;
    }
    if listing.bindings.is_empty() && listing.problems.is_empty() && !header {
        return Err(if stray > 0 {
            "not the output of `netsh http show sslcert`: no \"SSL Certificate bindings:\" \
             header and no IP:port, Hostname:port or Central Certificate Store lines \
             (only the English output is understood: on a localized Windows run \
             `chcp 437` first, or export the bindings from an English-language server)"
                .to_string()
        } else {
            "empty: no output of `netsh http show sslcert` in it".to_string()
        });
    }
    Ok(listing)
}

fn push(listing: &mut Listing, binding: SslBinding) -> Result<(), String> {
    if listing.bindings.len() >= MAX_BINDINGS {
        return Err(format!(
            "more than {MAX_BINDINGS} certificate bindings: not imported"
        ));
    }
    listing.bindings.push(binding);
    Ok(())
}

impl SslBinding {
    fn new(line: usize, key: SslKey) -> SslBinding {
        SslBinding {
            line,
            key,
            hash: None,
            app_id: None,
            store: None,
            negotiate_client_cert: false,
            ds_mapper: false,
            ctl: None,
            switches: Vec::new(),
        }
    }
}

/// `Name   : value` split at the first colon that follows whitespace.
fn split_property(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let at = (1..bytes.len()).find(|&i| bytes[i] == b':' && bytes[i - 1].is_ascii_whitespace())?;
    Some((line[..at].trim(), line[at + 1..].trim()))
}

/// Lower case, runs of whitespace as one space.
fn normalize_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// The key of a block when `name` starts one: `Some(Ok)` when its value
/// reads, `Some(Err)` when it does not.
fn block_key(name: &str, value: &str) -> Option<Result<SslKey, String>> {
    let key = match name {
        "ip:port" => value
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| a.port() != 0)
            .map(SslKey::IpPort)
            .ok_or_else(|| {
                format!(
                    "IP:port \"{}\" is not an address and port",
                    super::clip(value)
                )
            }),
        "hostname:port" => host_port(value)
            .map(|(h, p)| SslKey::HostnamePort(h, p))
            .ok_or_else(|| {
                format!(
                    "Hostname:port \"{}\" is not a host name and port",
                    super::clip(value)
                )
            }),
        "central certificate store" => value
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(SslKey::Ccs)
            .ok_or_else(|| {
                format!(
                    "Central Certificate Store \"{}\" is not a port",
                    super::clip(value)
                )
            }),
        n if n.starts_with("scoped")
            && (n.contains("ccs") || n.contains("central certificate store")) =>
        {
            host_port(value)
                .map(|(h, p)| SslKey::ScopedCcs(h, p))
                .ok_or_else(|| {
                    format!(
                        "scoped CCS \"{}\" is not a host name and port",
                        super::clip(value)
                    )
                })
        }
        _ => return None,
    };
    Some(key)
}

/// `name:port` with a non-empty name (lower-cased, no trailing dot) and a
/// port that is not 0.
fn host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.rsplit_once(':')?;
    let port = port.trim().parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = crate::config::host_name(host.trim());
    (!host.is_empty()).then_some((host, port))
}

/// A thumbprint: hex digits (spaces, as certutil prints them, ignored), an
/// even number of them, 16 to 64 bytes.
fn parse_hash(value: &str) -> Option<String> {
    let hex: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let ok = hex.len().is_multiple_of(2)
        && (32..=128).contains(&hex.len())
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n\
        \x20   IP:port                      : 0.0.0.0:443\r\n\
        \x20   Certificate Hash             : 1F6E3A3BD3E24E5F8A0C4B9D2E7F6A5B4C3D2E1F\r\n\
        \x20   Application ID               : {4dc3e181-e14b-4a21-b022-59fc669b0914}\r\n\
        \x20   Certificate Store Name       : My\r\n\
        \x20   Verify Client Certificate Revocation : Enabled\r\n\
        \x20   Ctl Store Name               : (null)\r\n\
        \x20   Negotiate Client Certificate : Disabled\r\n\
        \x20   Disable HTTP2                : Set\r\n\
        \x20   Disable QUIC                 : Not Set\r\n\
        \r\n\
        \x20   Hostname:port                : Portal.Contoso.com.:443\r\n\
        \x20   Certificate Hash             : a7c2d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7\r\n\
        \x20   Certificate Store Name       : WebHosting\r\n\
        \x20   Negotiate Client Certificate : Enabled\r\n\
        \x20   Ctl Store Name               : AdfsTrustedDevices\r\n\
        \r\n\
        \x20   Central Certificate Store    : 443\r\n\
        \x20   Certificate Hash             : (null)\r\n\
        \x20   Certificate Store Name       : (null)\r\n\
        \r\n\
        \x20   IP:port                      : [::]:8443\r\n\
        \x20   Certificate Hash             : 00112233445566778899aabbccddeeff00112233\r\n";

    #[test]
    fn reads_every_kind_of_block() {
        let l = parse(SAMPLE).unwrap();
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.bindings.len(), 4);
        let b = &l.bindings[0];
        assert_eq!(b.line, 5);
        assert_eq!(b.key, SslKey::IpPort("0.0.0.0:443".parse().unwrap()));
        assert_eq!(
            b.hash.as_deref(),
            Some("1f6e3a3bd3e24e5f8a0c4b9d2e7f6a5b4c3d2e1f")
        );
        assert_eq!(
            b.app_id.as_deref(),
            Some("{4dc3e181-e14b-4a21-b022-59fc669b0914}")
        );
        assert_eq!(b.store.as_deref(), Some("My"));
        assert!(!b.negotiate_client_cert);
        assert_eq!(b.ctl, None);
        assert_eq!(b.switches, vec!["disable http2".to_string()]);
        let b = &l.bindings[1];
        assert_eq!(
            b.key,
            SslKey::HostnamePort("portal.contoso.com".into(), 443)
        );
        assert!(b.negotiate_client_cert);
        assert_eq!(b.ctl.as_deref(), Some("AdfsTrustedDevices"));
        assert_eq!(b.store.as_deref(), Some("WebHosting"));
        let b = &l.bindings[2];
        assert_eq!(b.key, SslKey::Ccs(443));
        assert_eq!((b.hash.as_deref(), b.store.as_deref()), (None, None));
        assert_eq!(
            l.bindings[3].key,
            SslKey::IpPort("[::]:8443".parse().unwrap())
        );
    }

    #[test]
    fn compact_spacing_and_lf_line_ends() {
        let text =
            "IP:port : 10.0.0.1:443\nCertificate Hash : d4a17e3b57e48c1166f18394a819edf770459ac8\n";
        let l = parse(text).unwrap();
        assert_eq!(l.bindings.len(), 1);
        assert_eq!(
            l.bindings[0].hash.as_deref(),
            Some("d4a17e3b57e48c1166f18394a819edf770459ac8")
        );
    }

    #[test]
    fn bad_blocks_are_problems_not_errors() {
        let text = "SSL Certificate bindings:\n\
            IP:port : 999.0.0.1:443\n\
            Certificate Hash : 00112233445566778899aabbccddeeff00112233\n\
            Hostname:port : nohost\n\
            Hostname:port : :443\n\
            IP:port : 10.0.0.1:0\n\
            Central Certificate Store : x\n\
            Hostname:port : ok.test:443\n\
            Certificate Hash : xyz\n";
        let l = parse(text).unwrap();
        assert_eq!(l.bindings.len(), 1);
        assert_eq!(l.bindings[0].hash, None);
        let lines: Vec<usize> = l.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7, 9], "{:?}", l.problems);
    }

    #[test]
    fn an_empty_listing_is_fine_but_other_text_is_not() {
        let l =
            parse("\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n").unwrap();
        assert!(l.bindings.is_empty());
        assert!(parse("").unwrap_err().contains("empty"));
        let e = parse("<configuration><sites/></configuration>").unwrap_err();
        assert!(
            e.contains("not the output of `netsh http show sslcert`"),
            "{e}"
        );
        // German Windows: "SSL-Zertifikatbindungen:", "IP:Port : ..." is
        // not read (names are compared in English).
        let e = parse("SSL-Zertifikatbindungen:\n    IP-Adresse:Port : 0.0.0.0:443\n").unwrap_err();
        assert!(e.contains("English"), "{e}");
    }

    #[test]
    fn hostile_text_does_not_panic() {
        for text in [
            ":",
            " :",
            "IP:port :",
            "IP:port : [",
            "Hostname:port : \u{1F600}:443",
            "Certificate Hash : 00",
            "\u{0}\u{0}\u{0}",
            "IP:port\t:\t127.0.0.1:1",
            "Hostname:port : a:65536",
            "é : é",
        ] {
            let _ = parse(text);
        }
        let l = parse("IP:port\t:\t127.0.0.1:1").unwrap();
        assert_eq!(l.bindings.len(), 1);
    }
}
