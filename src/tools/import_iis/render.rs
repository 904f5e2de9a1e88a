//! The plan as a commented snigate configuration (TOML).
//!
//! Everything that came from the inputs goes through [`toml_str`] (values)
//! or [`comment`] (comments: control characters, line breaks included,
//! replaced), so no input can add a line or a key to the file.

use std::fmt::Write;

use super::plan::{Certificate, Listener, Plan, Route, Severity, Upstream};
use super::PLACEHOLDER_BACKEND;

/// Where the plan came from, for the file's header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The listing's name and its number of bindings.
    pub netsh: Option<(String, usize)>,
    /// applicationHost.config's name and its number of sites.
    pub site_config: Option<(String, usize)>,
    pub backends: Vec<String>,
    /// `false`: `backends` is the placeholder.
    pub backends_given: bool,
}

/// Comment lines are wrapped at this width.
const WIDTH: usize = 96;

/// The configuration file.
pub fn render(header: &Header, plan: &Plan) -> String {
    let mut out = String::new();
    write_header(&mut out, header, plan);
    for c in &plan.certificates {
        certificate(&mut out, c);
    }
    for l in &plan.listeners {
        listener(&mut out, l);
    }
    for r in &plan.routes {
        route(&mut out, r);
    }
    for u in &plan.upstreams {
        upstream(&mut out, u, header);
    }
    out
}

fn write_header(out: &mut String, header: &Header, plan: &Plan) {
    out.push_str("# snigate configuration written by `snigate import-iis` from an IIS server's bindings.\n#\n");
    out.push_str("# Read from:\n");
    if let Some((name, n)) = &header.netsh {
        comment(
            out,
            &format!("netsh http show sslcert: {name} ({n} binding(s))"),
            "#   ",
        );
    }
    if let Some((name, n)) = &header.site_config {
        comment(
            out,
            &format!("applicationHost.config:  {name} ({n} site(s))"),
            "#   ",
        );
    }
    if header.backends_given {
        comment(
            out,
            &format!("IIS servers (--backend): {}", header.backends.join(", ")),
            "#   ",
        );
    } else {
        comment(
            out,
            &format!(
                "IIS servers: TODO: none given (--backend); the upstreams name {PLACEHOLDER_BACKEND}: replace it"
            ),
            "#   ",
        );
    }
    out.push_str("#\n# Before `snigate run`:\n");
    for step in [
        "1. Export every certificate below from Windows as a .pfx to the paths it names (each has a \
         TODO with the command).",
        "2. The listeners bind the addresses IIS listened on: move them to this host (or change them), \
         and point DNS or the load balancer here.",
        "3. Upstreams that reach a site over plain HTTP end TLS at snigate. SharePoint needs its \
         Alternate Access Mappings for that: the https public URL of each zone, with the http URL as \
         an internal URL of the same zone.",
        "4. Resolve every TODO in this file, then run `snigate check -c THIS_FILE`.",
    ] {
        comment(out, step, "#   ");
    }
    let not_imported: Vec<_> = plan
        .notes
        .iter()
        .filter(|n| n.severity == Severity::NotImported)
        .collect();
    if !not_imported.is_empty() {
        out.push_str("#\n# Not imported (also printed on stderr):\n");
        for n in not_imported {
            let text = match &n.origin {
                Some(o) => format!("- {o}: {}", n.message),
                None => format!("- {}", n.message),
            };
            comment(out, &text, "#   ");
        }
    }
    out.push('\n');
}

fn certificate(out: &mut String, c: &Certificate) {
    let pfx = format!("certs/{}.pfx", c.name);
    let pass = format!("certs/{}.pass", c.name);
    let exported = format!("{}.pfx", c.name);
    let copy = format!(
        "Copy it here as {pfx}, and write its password alone in {pass} (a trailing newline is \
         ignored); chmod 600 both."
    );
    if c.ccs {
        for line in &c.comments {
            comment(out, line, "# ");
        }
        comment(
            out,
            &format!(
                "Not imported: IIS takes this certificate from its Centralized Certificate Store, a \
                 folder of <host>.pfx files with one password. Copy the host's .pfx from that folder \
                 to {pfx}, write the store's password alone in {pass}, and uncomment the \
                 [[certificate]] lines below:"
            ),
            "# ",
        );
        out.push_str("# [[certificate]]\n");
        let _ = writeln!(out, "# name = {}", toml_str(&c.name));
        let _ = writeln!(out, "# pfx = {}", toml_str(&pfx));
        let _ = writeln!(out, "# pfx_password_file = {}\n", toml_str(&pass));
        return;
    }
    out.push_str("[[certificate]]\n");
    for line in &c.comments {
        comment(out, line, "# ");
    }
    let store = c
        .store
        .as_deref()
        .map(|s| {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "My".to_string());
    let hash = c
        .hash
        .as_deref()
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| "<HASH>".to_string());
    comment(
        out,
        &format!(
            "TODO: export certificate {} from the Windows store {store} (Cert:\\LocalMachine\\{store}) \
             as a .pfx with its private key (it must have been imported as exportable):",
            c.hash.as_deref().unwrap_or("<HASH, see above>")
        ),
        "# ",
    );
    verbatim(
        out,
        &format!(
            "PS> Export-PfxCertificate -Cert Cert:\\LocalMachine\\{store}\\{hash} -FilePath {exported} \
             -ChainOption BuildChain -Password (Read-Host -AsSecureString 'PFX password')"
        ),
        "#     ",
    );
    comment(out, &copy, "#   ");
    let _ = writeln!(out, "name = {}", toml_str(&c.name));
    let _ = writeln!(out, "pfx = {}", toml_str(&pfx));
    let _ = writeln!(out, "pfx_password_file = {}\n", toml_str(&pass));
}

fn listener(out: &mut String, l: &Listener) {
    out.push_str("[[listener]]\n");
    for line in &l.comments {
        comment(out, line, "# ");
    }
    let _ = writeln!(out, "name = {}", toml_str(&l.name));
    let _ = writeln!(
        out,
        "bind = {}",
        toml_list(l.bind.iter().map(|a| a.to_string()))
    );
    if let Some(f) = &l.fallback {
        let _ = writeln!(out, "fallback_certificate = {}", toml_str(f));
    }
    if l.strict_sni {
        out.push_str("strict_sni = true\n");
    }
    if let Some(u) = &l.default_upstream {
        let _ = writeln!(out, "default_upstream = {}", toml_str(u));
    }
    if l.http1_only {
        out.push_str("alpn = [\"http/1.1\"]\n");
    }
    out.push('\n');
}

fn route(out: &mut String, r: &Route) {
    out.push_str("[[route]]\n");
    for line in &r.comments {
        comment(out, line, "# ");
    }
    let _ = writeln!(out, "hosts = {}", toml_list(r.hosts.iter().cloned()));
    if !r.listeners.is_empty() {
        let _ = writeln!(
            out,
            "listeners = {}",
            toml_list(r.listeners.iter().cloned())
        );
    }
    let _ = writeln!(out, "upstream = {}\n", toml_str(&r.upstream));
}

fn upstream(out: &mut String, u: &Upstream, header: &Header) {
    out.push_str("[[upstream]]\n");
    for line in &u.comments {
        comment(out, line, "# ");
    }
    let _ = writeln!(out, "name = {}", toml_str(&u.name));
    if !header.backends_given && u.servers.iter().any(|s| s.starts_with(PLACEHOLDER_BACKEND)) {
        comment(
            out,
            "TODO: the IIS servers: give --backend to import-iis, or write them here",
            "# ",
        );
    }
    let _ = writeln!(out, "servers = {}", toml_list(u.servers.iter().cloned()));
    if u.tls {
        comment(
            out,
            "TODO: these servers are reached over https, and snigate trusts any certificate \
             there until you pin the one IIS presents:",
            "# ",
        );
        if u.pin_certificates.is_empty() {
            verbatim(
                out,
                "$ openssl s_client -connect SERVER:PORT -servername HOST </dev/null 2>/dev/null | openssl x509 -outform der | openssl dgst -sha256 -binary | base64",
                "#     ",
            );
        } else {
            for c in &u.pin_certificates {
                verbatim(
                    out,
                    &format!(
                        "$ openssl pkcs12 -in certs/{c}.pfx -passin file:certs/{c}.pass -nokeys -clcerts | openssl x509 -outform der | openssl dgst -sha256 -binary | base64"
                    ),
                    "#     ",
                );
            }
            comment(
                out,
                "(OpenSSL 3 with a .pfx from Windows Server 2016 or older: add -legacy after pkcs12.)",
                "#   ",
            );
        }
        comment(
            out,
            "and replace the next line with  tls = { pin_sha256 = [\"<pin>\", ...] }  (one pin per \
             certificate the site presents).",
            "#   ",
        );
        out.push_str("tls = { insecure_skip_verify = true }\n");
    }
    out.push('\n');
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|s| toml_str(&s)).collect();
    format!("[{}]", items.join(", "))
}

/// Text without characters a TOML comment may not hold.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` as comment lines: the first with `first`, wrapped at spaces,
/// continuations indented two more.
fn comment(out: &mut String, text: &str, first: &str) {
    let text = comment_safe(text);
    let rest = format!("{first}  ");
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A command on one comment line, not wrapped.
fn verbatim(out: &mut String, text: &str, prefix: &str) {
    out.push_str(prefix);
    out.push_str(&comment_safe(text));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_cannot_break_out() {
        assert_eq!(toml_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        let mut out = String::new();
        comment(
            &mut out,
            "site \"x\"\n[[listener]]\r\nname = \"evil\"",
            "# ",
        );
        assert!(out.lines().all(|l| l.starts_with('#')), "{out}");
        let parsed: toml::Table =
            toml::from_str(&format!("{out}a = {}\n", toml_str("x\ny\u{7f}"))).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("x\ny\u{7f}"));
    }

    #[test]
    fn comments_wrap_at_spaces() {
        let mut out = String::new();
        comment(&mut out, &"word ".repeat(60), "# ");
        assert!(out.lines().count() > 1);
        assert!(
            out.lines()
                .all(|l| l.chars().count() <= WIDTH && l.starts_with('#')),
            "{out}"
        );
        assert!(out.lines().skip(1).all(|l| l.starts_with("#   ")));
    }
}
