//! `snigate import-iis`: a snigate configuration from an IIS server's HTTPS
//! bindings.
//!
//! Two inputs, either or both:
//!
//! - the output of `netsh http show sslcert` ([`netsh`]): HTTP.sys's
//!   certificate bindings, with the certificate hashes;
//! - IIS's `applicationHost.config` ([`site_config`]): the sites, their
//!   bindings (which site answers which address, port and host) and their
//!   plain-HTTP ports.
//!
//! [`plan`] cross-references them into certificates, listeners, routes and
//! upstreams; [`render`] writes the commented TOML. Inputs come from
//! operators and are treated as hostile: read with a size cap ([`input`]),
//! never trusted into the output unescaped, and nothing panics on them.

pub mod input;
pub mod netsh;
pub mod plan;
pub mod render;
pub mod site_config;

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

pub use input::Source;
use plan::Severity;

/// The backend shown when `--backend` is not given: valid in the file
/// (`snigate check` accepts it) and obviously not a real server.
pub const PLACEHOLDER_BACKEND: &str = "todo-iis-server.invalid";

/// Most `--backend` servers.
const MAX_BACKENDS: usize = 64;

/// What `snigate import-iis` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--netsh FILE`: output of `netsh http show sslcert` (`-`: stdin).
    pub netsh: Option<PathBuf>,
    /// `--config FILE`: IIS applicationHost.config (`-`: stdin).
    pub site_config: Option<PathBuf>,
    /// `--backend HOST`: the IIS servers (names or addresses, no port).
    pub backends: Vec<String>,
    /// `-o FILE`; stdout when `None`.
    pub output: Option<PathBuf>,
}

/// The configuration written and what to tell the operator.
#[derive(Debug, Clone)]
pub struct Import {
    /// The TOML.
    pub toml: String,
    /// One line each, for stderr: `FILE:LINE: not imported: ...` and
    /// `FILE:LINE: todo: ...`.
    pub messages: Vec<String>,
    /// `2 listener(s), 3 certificate(s), ...`.
    pub summary: String,
}

/// Runs the command: reads the inputs, writes the configuration to
/// `options.output` (else `stdout`) and the messages to `stderr`.
pub fn run(
    options: &Options,
    stdin: &mut dyn std::io::Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), String> {
    if options.netsh.is_none() && options.site_config.is_none() {
        return Err(
            "nothing to import: give --netsh FILE (netsh http show sslcert) and/or \
             --config FILE (applicationHost.config)"
                .to_string(),
        );
    }
    let dash = |p: &Option<PathBuf>| p.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if dash(&options.netsh) && dash(&options.site_config) {
        return Err("only one input can be read from stdin (-)".to_string());
    }
    let netsh = options
        .netsh
        .as_deref()
        .map(|p| input::read(p, stdin))
        .transpose()?;
    let site_config = options
        .site_config
        .as_deref()
        .map(|p| input::read(p, stdin))
        .transpose()?;
    let import = import(netsh.as_ref(), site_config.as_ref(), &options.backends)?;
    let target = match &options.output {
        Some(path) => {
            std::fs::write(path, &import.toml)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            path.display().to_string()
        }
        None => {
            stdout
                .write_all(import.toml.as_bytes())
                .and_then(|_| stdout.flush())
                .map_err(|e| format!("cannot write the configuration: {e}"))?;
            "stdout".to_string()
        }
    };
    // stderr is for the operator; a closed one is not worth failing for.
    for m in &import.messages {
        let _ = writeln!(stderr, "{m}");
    }
    let _ = writeln!(
        stderr,
        "snigate import-iis: wrote {target}: {}",
        import.summary
    );
    Ok(())
}

/// Translates the inputs. An error when an input is not what it should be
/// or nothing in them can be imported.
pub fn import(
    netsh: Option<&Source>,
    site_config: Option<&Source>,
    backends: &[String],
) -> Result<Import, String> {
    let backends_given = !backends.is_empty();
    let backends = parse_backends(backends)?;
    let listing = netsh
        .map(|s| {
            netsh::parse(&s.text).map_err(|e| {
                format!(
                    "{}: {e}{}",
                    s.name,
                    if s.text.contains("<configuration") || s.text.contains("<sites") {
                        " (this looks like applicationHost.config: give it with --config)"
                    } else {
                        ""
                    }
                )
            })
        })
        .transpose()?;
    let sites = site_config
        .map(|s| {
            site_config::parse(&s.text).map_err(|e| {
                format!(
                    "{}: {e}{}",
                    s.name,
                    if s.text.contains("SSL Certificate bindings") {
                        " (this looks like netsh output: give it with --netsh)"
                    } else {
                        ""
                    }
                )
            })
        })
        .transpose()?;
    let inputs = plan::Inputs {
        netsh: netsh
            .zip(listing.as_ref())
            .map(|(s, l)| (s.name.as_str(), l)),
        sites: site_config
            .zip(sites.as_ref())
            .map(|(s, c)| (s.name.as_str(), c)),
        backends: &backends,
    };
    let plan = plan::plan(&inputs);
    if plan.listeners.is_empty() {
        let mut why = String::from("no HTTPS binding to import");
        if let Some(first) = plan.notes.first() {
            why.push_str(&format!(
                " ({} problem(s); the first: {}{})",
                plan.notes.len(),
                first
                    .origin
                    .as_deref()
                    .map(|o| format!("{o}: "))
                    .unwrap_or_default(),
                first.message
            ));
        }
        return Err(why);
    }
    let header = render::Header {
        netsh: netsh
            .zip(listing.as_ref())
            .map(|(s, l)| (s.name.clone(), l.bindings.len())),
        site_config: site_config
            .zip(sites.as_ref())
            .map(|(s, c)| (s.name.clone(), c.sites.len())),
        backends: backends.clone(),
        backends_given,
    };
    let toml = render::render(&header, &plan);
    let mut messages = Vec::new();
    if !backends_given {
        messages.push(format!(
            "snigate import-iis: todo: no --backend given: the upstreams name {PLACEHOLDER_BACKEND}; \
             replace it with the IIS servers"
        ));
    }
    for n in &plan.notes {
        let kind = match n.severity {
            Severity::NotImported => "not imported",
            Severity::Todo => "todo",
        };
        let origin = n.origin.as_deref().unwrap_or("snigate import-iis");
        messages.push(format!("{origin}: {kind}: {}", one_line(&n.message)));
    }
    let not_imported = plan
        .notes
        .iter()
        .filter(|n| n.severity == Severity::NotImported)
        .count();
    let to_export = plan.certificates.iter().filter(|c| !c.ccs).count();
    let summary = format!(
        "{} listener(s), {} certificate(s) to export as .pfx, {} route(s), {} upstream(s); \
         {} thing(s) not imported (see the comments)",
        plan.listeners.len(),
        to_export,
        plan.routes.len(),
        plan.upstreams.len(),
        not_imported
    );
    Ok(Import {
        toml,
        messages,
        summary,
    })
}

/// `--backend` values: names or addresses without port, IPv6 bracketed;
/// the placeholder when none is given.
fn parse_backends(given: &[String]) -> Result<Vec<String>, String> {
    if given.is_empty() {
        return Ok(vec![PLACEHOLDER_BACKEND.to_string()]);
    }
    let mut out: Vec<String> = Vec::new();
    for raw in given.iter().flat_map(|b| b.split(',')) {
        let b = raw.trim();
        if b.is_empty() {
            continue;
        }
        let bare = b
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(b);
        let host = if let Ok(ip) = bare.parse::<IpAddr>() {
            match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            }
        } else if valid_host(b).is_some_and(|h| !h.starts_with("*.")) {
            crate::config::host_name(b)
        } else if b.contains(':') {
            return Err(format!(
                "--backend \"{}\": give the IIS server's name or address without a port; \
                 the ports come from the sites' bindings",
                clip(b)
            ));
        } else {
            return Err(format!(
                "--backend \"{}\" is not a host name or an IP address",
                clip(b)
            ));
        };
        if !out.contains(&host) {
            out.push(host);
        }
    }
    if out.is_empty() {
        return Err("--backend: no server named".to_string());
    }
    if out.len() > MAX_BACKENDS {
        return Err(format!("--backend: more than {MAX_BACKENDS} servers"));
    }
    Ok(out)
}

/// A host name snigate accepts in `hosts`/`names` (lower-cased, no trailing
/// dot, `*.` only as the whole first label), or `None`.
pub(crate) fn valid_host(host: &str) -> Option<String> {
    crate::config::host_pattern(host).ok()
}

/// A name that is safe as a file name and a TOML name: lower case, `*` as
/// `_wildcard` (as `snigate gen-certs` writes it), other characters outside
/// `a-z 0-9 . _ -` as `-`; at most 64 characters. `None` when nothing is left.
pub(crate) fn file_slug(text: &str) -> Option<String> {
    let mut out = String::new();
    for c in text.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c == '*' {
            out.push_str("_wildcard");
        } else if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.len() > 64 {
        out.truncate(64);
        out = out.trim_end_matches(['-', '.']).to_string();
    }
    (!out.is_empty()).then_some(out)
}

/// Input text for a message or a comment: control characters (line breaks
/// included) as `?`, at most 120 characters.
pub(crate) fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// A message on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        assert_eq!(
            parse_backends(&[]).unwrap(),
            vec![PLACEHOLDER_BACKEND.to_string()]
        );
        assert_eq!(
            parse_backends(&[
                "WFE1.contoso.com,10.0.0.11".into(),
                "fd00::1".into(),
                "wfe1.contoso.com".into()
            ])
            .unwrap(),
            vec!["wfe1.contoso.com", "10.0.0.11", "[fd00::1]"]
        );
        assert_eq!(
            parse_backends(&["[fd00::2]".into()]).unwrap(),
            vec!["[fd00::2]"]
        );
        assert!(parse_backends(&["wfe1:80".into()])
            .unwrap_err()
            .contains("without a port"));
        assert!(parse_backends(&["a b".into()]).is_err());
        assert!(parse_backends(&["*.contoso.com".into()]).is_err());
        assert!(parse_backends(&[",".into()]).is_err());
    }

    #[test]
    fn slugs_and_hosts() {
        assert_eq!(
            file_slug("SharePoint - portal").as_deref(),
            Some("sharepoint-portal")
        );
        assert_eq!(
            file_slug("*.apps.contoso.com").as_deref(),
            Some("_wildcard.apps.contoso.com")
        );
        assert_eq!(file_slug("../../etc/passwd").as_deref(), Some("etc-passwd"));
        assert_eq!(file_slug("Ünïcode").as_deref(), Some("n-code"));
        assert_eq!(file_slug("\n\r"), None);
        assert_eq!(file_slug(&"a".repeat(200)).map(|s| s.len()), Some(64));
        assert_eq!(
            valid_host("Portal.Contoso.com.").as_deref(),
            Some("portal.contoso.com")
        );
        assert_eq!(valid_host("*.apps.test").as_deref(), Some("*.apps.test"));
        assert_eq!(valid_host("a.*.test"), None);
        assert_eq!(valid_host("bäd.test"), None);
        assert_eq!(clip("a\nb"), "a?b");
    }

    #[test]
    fn needs_an_input_and_refuses_swapped_files() {
        let e = run(
            &Options::default(),
            &mut std::io::empty(),
            &mut Vec::<u8>::new(),
            &mut Vec::<u8>::new(),
        )
        .unwrap_err();
        assert!(e.contains("nothing to import"), "{e}");
        let xml = Source::new("ah.config", "<configuration><system.applicationHost><sites/></system.applicationHost></configuration>");
        let e = import(Some(&xml), None, &[]).unwrap_err();
        assert!(e.contains("give it with --config"), "{e}");
        let text = Source::new("n.txt", "SSL Certificate bindings:\n-----\n");
        let e = import(None, Some(&text), &[]).unwrap_err();
        assert!(e.contains("give it with --netsh"), "{e}");
        // A valid but empty listing: nothing to import.
        let e = import(Some(&text), None, &[]).unwrap_err();
        assert!(e.contains("no HTTPS binding"), "{e}");
    }

    /// Whatever the import writes, the configuration loader accepts:
    /// the samples cut at every line, and with each line left out.
    #[test]
    fn every_written_configuration_validates() {
        const NETSH: &str = include_str!("../../../tests/data/iis/netsh-sslcert.txt");
        const SITES: &str = include_str!("../../../tests/data/iis/applicationHost.config");
        let variants = |text: &str| {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let mut out = Vec::new();
            for i in 0..=lines.len() {
                out.push(lines[..i].concat());
                let mut without = lines.clone();
                if i < lines.len() {
                    without.remove(i);
                    out.push(without.concat());
                }
            }
            out
        };
        let check = |netsh: Option<&str>, sites: Option<&str>| {
            let n = netsh.map(|t| Source::new("n.txt", t));
            let c = sites.map(|t| Source::new("a.config", t));
            if let Ok(import) = import(n.as_ref(), c.as_ref(), &["wfe1".to_string()]) {
                if let Err(e) =
                    crate::config::Settings::parse(std::path::Path::new("x.toml"), &import.toml)
                {
                    panic!("{e}\n---\n{}", import.toml);
                }
            }
        };
        for v in variants(NETSH) {
            check(Some(&v), None);
            check(Some(&v), Some(SITES));
        }
        for v in variants(SITES) {
            check(None, Some(&v));
            check(Some(NETSH), Some(&v));
        }
    }
}
