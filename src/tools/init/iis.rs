//! The iis profile: the three SNI workarounds (README, "Why") for IIS
//! sites, one site per `--host`: a fallback SAN certificate on a shared
//! listener, a listener of its own per site (its own address, its own
//! certificate), and snigate as the load balancer over `--backend`.

use super::text::{self, list, quote, Doc};
use super::Plan;
use crate::tools::gen_certs::file_stem;

/// The shared listener's and the SAN certificate's names.
const SHARED: &str = "shared";
const SAN: &str = "san";

/// The placeholder address of the `index`-th site's own listener: from
/// 192.0.2.0/24, kept for documentation (RFC 5737), so nothing real is
/// bound until the operator writes the site's address.
fn placeholder_address(index: usize) -> String {
    format!("192.0.2.{}:443", 11 + index)
}

/// The configuration file.
pub fn render(plan: &Plan) -> String {
    let mut doc = Doc::new();
    text::header(&mut doc, plan, "snigate in front of IIS sites, written by:");
    workarounds(&mut doc, plan);
    text::admin_and_log(&mut doc, plan);
    timeouts(&mut doc);
    certificates(&mut doc, plan);
    listeners(&mut doc, plan);
    routes(&mut doc, plan);
    upstreams(&mut doc, plan);
    doc.into_string()
}

fn workarounds(doc: &mut Doc, plan: &Plan) {
    let first = &plan.hosts[0];
    doc.comment(&format!(
        "Clients without SNI (the WebDAV mini-redirector, old Java and Android,\n\
         crawlers) get the wrong certificate, or none, from SNI bindings. This file\n\
         applies the three workarounds, one site per --host:\n\
         \x20 1. listener \"{SHARED}\" on every address serves the SAN certificate \"{SAN}\"\n\
         \x20    (it names every site) to clients without SNI, as HTTP.sys does with an\n\
         \x20    ipport=0.0.0.0:443 binding, and routes each request by its Host;\n\
         \x20 2. each site also has a listener of its own on an address of its own,\n\
         \x20    whose fallback is that site's certificate and whose default is that\n\
         \x20    site: a client without SNI that connects there gets both right,\n\
         \x20    whatever it sends. Their addresses 192.0.2.N are placeholders (a range\n\
         \x20    kept for documentation): write the address DNS gives for the site (for\n\
         \x20    {first}: {}), or delete the listener and its name in the route's\n\
         \x20    `listeners` when workaround 1 is enough;\n\
         \x20 3. snigate is the load balancer: one upstream per site over every server.",
        placeholder_address(0)
    ))
    .blank();
}

fn timeouts(doc: &mut Doc) {
    doc.line("[timeouts]")
        .comment("Pooled connections to IIS are dropped before IIS's own 120 s keep-alive")
        .comment("(connectionTimeout) closes them (the default, written out).")
        .key("upstream_idle", &quote("60s"))
        .blank();
}

fn certificates(doc: &mut Doc, plan: &Plan) {
    doc.comment("The SAN certificate (the lab set's fallback.crt names every --host). It is")
        .comment("declared first, so clients with SNI get it for every site too: one")
        .comment("certificate per connection, which a browser may reuse for all the sites.");
    text::certificate(doc, plan, SAN, "fallback");
    doc.comment("Each site's own certificate, for clients without SNI on its own listener.");
    for host in &plan.hosts {
        text::certificate(doc, plan, host, &file_stem(host));
    }
}

fn listeners(doc: &mut Doc, plan: &Plan) {
    doc.comment("Workaround 1: every address, port 443. A Host that names no site gets 404.")
        .shared_listener(SHARED, SAN)
        .comment("Sites with Windows authentication: alpn = [\"http/1.1\"] saves clients the")
        .comment("retry over HTTP/1.1 that NTLM and Negotiate need after an h2 attempt.")
        .blank();
    for (i, host) in plan.hosts.iter().enumerate() {
        doc.comment(&format!(
            "Workaround 2 for {host}: port 443 of an address of its own (a\n\
             placeholder: write the site's address). On the same port as \"{SHARED}\",\n\
             the more specific address takes the connections, as in IIS."
        ))
        .line("[[listener]]")
        .key("name", &quote(host))
        .key("bind", &list(&[placeholder_address(i)]))
        .key("fallback_certificate", &quote(host))
        .key_noted(
            "default_upstream",
            &quote(host),
            "whatever Host the client sends",
        )
        .blank();
    }
}

fn routes(doc: &mut Doc, plan: &Plan) {
    doc.comment("Routes: each site by its Host, on the shared listener and on its own.")
        .blank();
    for host in &plan.hosts {
        doc.line("[[route]]")
            .key("hosts", &list(&[host]))
            .key("listeners", &list(&[SHARED, host.as_str()]))
            .key("upstream", &quote(host))
            .blank();
    }
}

fn upstreams(doc: &mut Doc, plan: &Plan) {
    doc.comment(
        "Workaround 3: one upstream per site (the access log names the site of each\n\
         request), each over every server, round-robin per request; NTLM and Negotiate\n\
         connections stay with their server by themselves. A server that refuses\n\
         connections is left out for 10 s after 3 failures in a row (the defaults of\n\
         max_fails and fail_timeout). An active check (health = { path = \"/...\" })\n\
         needs a page that answers without authentication, and it names the server's\n\
         address as Host: only for a site whose IIS binding answers any Host.",
    );
    if plan.tls_backend {
        doc.comment("");
        text::tls_choices(doc, plan, None);
        doc.comment(
            "Without server_name, the SNI is each request's Host: the site's name, which\n\
             the servers' certificates must carry (IIS chooses its certificate by it).",
        );
    }
    doc.blank();
    let servers = list(&plan.backends);
    for host in &plan.hosts {
        doc.line("[[upstream]]")
            .key("name", &quote(host))
            .key("servers", &servers);
        if plan.tls_backend {
            doc.key("tls", &text::tls_line(plan, None));
        }
        doc.blank();
    }
}
