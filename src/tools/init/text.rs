//! The blocks every profile writes: a TOML document with comments, the
//! header (how the file was made, the certificates to make), `[admin]`,
//! `[log]`, certificates and the backend `tls` choices.
//!
//! Values go through [`quote`]; everything written into comments is either
//! this module's text or an input checked by `inputs` (host names, servers:
//! letters, digits, `.`, `-`, `_`, `*`, `:`, `[`, `]`), so no input can add
//! a line to the file.

use super::Plan;
use crate::tools::import_iis::render::toml_str;

/// A configuration file being written.
#[derive(Debug, Default)]
pub struct Doc {
    text: String,
}

impl Doc {
    pub fn new() -> Doc {
        Doc::default()
    }

    /// `text`, each line as a comment (`#` alone for an empty line).
    pub fn comment(&mut self, text: &str) -> &mut Doc {
        if text.is_empty() {
            self.text.push_str("#\n");
        }
        for line in text.lines() {
            if line.is_empty() {
                self.text.push_str("#\n");
            } else {
                self.text.push_str("# ");
                self.text.push_str(line);
                self.text.push('\n');
            }
        }
        self
    }

    /// One line as is.
    pub fn line(&mut self, line: &str) -> &mut Doc {
        self.text.push_str(line);
        self.text.push('\n');
        self
    }

    /// `key = value`, the value already TOML.
    pub fn key(&mut self, key: &str, value: &str) -> &mut Doc {
        self.line(&format!("{key} = {value}"))
    }

    /// `key = value  # note`, the comment aligned at column 35.
    pub fn key_noted(&mut self, key: &str, value: &str, note: &str) -> &mut Doc {
        let head = format!("{key} = {value}");
        self.line(&format!("{head:<33} # {note}"))
    }

    /// A `[[listener]]` on port 443 of every address, named `name`, whose
    /// fallback certificate is `certificate`.
    pub fn shared_listener(&mut self, name: &str, certificate: &str) -> &mut Doc {
        self.line("[[listener]]")
            .key("name", &quote(name))
            .key_noted(
                "bind",
                &list(&["0.0.0.0:443"]),
                "add \"[::]:443\" for IPv6 clients",
            )
            .key_noted(
                "fallback_certificate",
                &quote(certificate),
                "for ClientHellos without SNI",
            )
    }

    pub fn blank(&mut self) -> &mut Doc {
        self.text.push('\n');
        self
    }

    /// The text, ending in one line break.
    pub fn into_string(self) -> String {
        let mut text = self.text.trim_end().to_string();
        text.push('\n');
        text
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    toml_str(s)
}

/// A TOML array of strings.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// The file's opening comment: what it is for, the command that wrote it,
/// the lab certificates to make, and how to use real ones.
pub fn header(doc: &mut Doc, plan: &Plan, what: &str) {
    doc.comment(what)
        .comment("")
        .comment(&format!("  {}", plan.init_command()))
        .comment("")
        .comment(
            "The README's section \"snigate init\" explains each value and where it\n\
             comes from.\n\
             \n\
             Certificates: a lab set for the names above (run this in the folder\n\
             where `snigate init` ran; the paths in this file are relative to this\n\
             file's folder):",
        )
        .comment("")
        .comment(&format!("  {}", plan.gen_certs_command()))
        .comment("")
        .comment(&format!(
            "then\n\
             \x20 {}\n\
             In production use the farm's certificate as Windows exports it\n\
             (Export-PfxCertificate, or the IIS Manager's Export): in its\n\
             [[certificate]], write pfx = \"site.pfx\" and\n\
             pfx_password_file = \"site.pass\" (the password on one line, readable\n\
             by snigate alone) in place of chain and key. PEM files work too: the\n\
             chain (server certificate first, then the intermediates) and its key.",
            plan.check_command()
        ))
        .blank();
}

/// `[admin]` on loopback, `[log]` with both JSON-lines logs.
pub fn admin_and_log(doc: &mut Doc, plan: &Plan) {
    doc.line("[admin]")
        .key_noted(
            "bind",
            &quote("127.0.0.1:9900"),
            "GET /healthz, /metrics, /report; keep it on loopback",
        )
        .blank()
        .line("[log]")
        .key_noted(
            "format",
            &quote("json"),
            "the human log on stderr, as JSON lines",
        )
        .comment("One line per ClientHello (which clients send no SNI, which fail and why)")
        .comment("and one per request (its route, upstream and server):")
        .key("handshake_log", &quote(&plan.log_file("handshakes.jsonl")))
        .key("access_log", &quote(&plan.log_file("access.jsonl")))
        .blank();
}

/// A `[[certificate]]` from the lab set: `stem.crt` and `stem.key`.
pub fn certificate(doc: &mut Doc, plan: &Plan, name: &str, stem: &str) {
    doc.line("[[certificate]]")
        .key("name", &quote(name))
        .key("chain", &quote(&plan.cert_file(&format!("{stem}.crt"))))
        .key("key", &quote(&plan.cert_file(&format!("{stem}.key"))))
        .blank();
}

/// The comment before upstreams that use TLS: what the written `tls`
/// trusts and what to write instead. `server_name`: the fixed name, if the
/// profile sets one.
pub fn tls_choices(doc: &mut Doc, plan: &Plan, server_name: Option<&str>) {
    let first = plan.backends.first().map(String::as_str).unwrap_or("");
    let sni = server_name.unwrap_or(&plan.hosts[0]);
    let name_key = server_name
        .map(|n| format!("server_name = {}, ", quote(n)))
        .unwrap_or_default();
    doc.comment(&format!(
        "TLS to the servers (--tls-backend). The `tls` below trusts the lab CA of\n\
         `snigate gen-certs` (ca = ...): with it this file passes `snigate check`\n\
         as written, and it works with servers whose certificates that CA issued.\n\
         For a real farm, write one of these instead:\n\
         \x20 - the CA that issued the servers' certificates (an internal CA):\n\
         \x20     tls = {{ {name_key}ca = \"/etc/snigate/internal-ca.crt\" }}\n\
         \x20 - the servers' own certificates (self-signed), by pin, one per server:\n\
         \x20     tls = {{ {name_key}pin_sha256 = [\"<pin 1>\", \"<pin 2>\"] }}\n\
         \x20   each pin from the running server:\n\
         \x20     openssl s_client -connect {first} -servername {sni} </dev/null 2>/dev/null \\\n\
         \x20       | openssl x509 -outform der | openssl dgst -sha256 -binary | base64\n\
         \x20 - a publicly trusted certificate on the servers: leave out `ca` (the\n\
         \x20   system CA bundle is used)."
    ));
}

/// The `tls = { ... }` line of an upstream: the lab CA, and `server_name`
/// when the profile fixes one.
pub fn tls_line(plan: &Plan, server_name: Option<&str>) -> String {
    let ca = quote(&plan.cert_file("ca.crt"));
    match server_name {
        Some(name) => format!("{{ server_name = {}, ca = {ca} }}", quote(name)),
        None => format!("{{ ca = {ca} }}"),
    }
}
