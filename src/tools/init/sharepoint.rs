//! The sharepoint profile: each `--host` a web application, routed whole
//! to an upstream of its own over every web front end, balanced by the
//! `X-SharePointHealthScore` each front end reports; the SharePoint-side
//! settings (Alternate Access Mappings, Kerberos, upload limits) in the
//! comments.

use super::text::{self, list, quote, Doc};
use super::Plan;

/// The response header in which SharePoint reports its load, 0 to 10.
const HEALTH_SCORE_HEADER: &str = "X-SharePointHealthScore";

/// The configuration file.
pub fn render(plan: &Plan) -> String {
    let mut doc = Doc::new();
    text::header(
        &mut doc,
        plan,
        "snigate in front of a SharePoint Server farm, written by:",
    );
    sharepoint_side(&mut doc, plan);
    text::admin_and_log(&mut doc, plan);
    timeouts(&mut doc);
    certificate_and_listener(&mut doc, plan);
    routes(&mut doc, plan);
    upstreams(&mut doc, plan);
    doc.into_string()
}

/// What the farm needs on its side: AAM, Kerberos, upload limits.
fn sharepoint_side(doc: &mut Doc, plan: &Plan) {
    let first = &plan.hosts[0];
    let aam = if plan.tls_backend {
        format!(
            "  - Alternate Access Mappings: the servers are reached over https with the\n\
             \x20   public names, so the zone's public URL (https://{first}) needs nothing\n\
             \x20   more."
        )
    } else {
        format!(
            "  - Alternate Access Mappings (SSL offloading): the web front ends are\n\
             \x20   reached over http. In Central Administration > Alternate Access\n\
             \x20   Mappings make https://{first} the public URL of the zone and add\n\
             \x20   http://{first} as an internal URL of the same zone (likewise for each\n\
             \x20   --host), so SharePoint writes https links although it is reached over\n\
             \x20   http. In PowerShell:\n\
             \x20     New-SPAlternateURL -Url http://{first} -WebApplication https://{first} -Zone Default -Internal"
        )
    };
    doc.comment("On the SharePoint side:")
        .comment(&aam)
        .comment(&format!(
            "  - Windows authentication: NTLM and Negotiate authenticate a connection;\n\
             \x20   snigate keeps the server connection that answered the challenge for\n\
             \x20   that client connection alone (nothing to configure). Kerberos: clients\n\
             \x20   ask for a ticket for HTTP/{first}, so that SPN must be registered on\n\
             \x20   the web application's application pool account, for example\n\
             \x20     setspn -S HTTP/{first} CONTOSO\\sp-apppool\n\
             \x20 - Uploads: snigate streams request bodies and sets no size limit. The\n\
             \x20   limits are SharePoint's: the web application's Maximum Upload Size\n\
             \x20   (Central Administration > Manage web applications > General Settings)\n\
             \x20   and IIS request filtering's maxAllowedContentLength on the front ends."
        ))
        .blank();
}

fn timeouts(doc: &mut Doc) {
    doc.line("[timeouts]")
        .comment("Pooled connections to IIS are dropped before IIS's own 120 s keep-alive")
        .comment("closes them (the default, written out). upstream_response (5 minutes)")
        .comment("starts once a request's body is sent: a long upload is never cut by it.")
        .key("upstream_idle", &quote("60s"))
        .comment("Let a large upload or download finish when the service stops.")
        .key("shutdown_grace", &quote("60s"))
        .blank();
}

fn certificate_and_listener(doc: &mut Doc, plan: &Plan) {
    doc.comment("One certificate for every web application (the lab set's fallback.crt");
    doc.comment("names every --host).");
    text::certificate(doc, plan, "sharepoint", "fallback");
    doc.comment("Every address, port 443. Clients without SNI (the WebDAV mini-redirector")
        .comment("behind \"Open with Explorer\" and mapped drives, old Java, crawlers) get the")
        .comment("fallback certificate, which names every web application, and are routed")
        .comment("by their Host like everyone else. A Host that names no web application")
        .comment(&format!(
            "gets 404; add default_upstream = \"{}\" to send it to the first.",
            plan.hosts[0]
        ))
        .shared_listener("sharepoint", "sharepoint")
        .comment("Windows authentication binds to one HTTP/1.1 connection: an h2 request that")
        .comment("carries it is refused and retried over HTTP/1.1. Offering HTTP/1.1 alone")
        .comment("saves that round trip.")
        .key("alpn", &list(&["http/1.1"]))
        .blank();
}

fn routes(doc: &mut Doc, plan: &Plan) {
    doc.comment("Routes: one per web application, every path (each front end serves the")
        .comment("whole web application, so routing by path would gain nothing).")
        .blank();
    for host in &plan.hosts {
        doc.line("[[route]]")
            .key("hosts", &list(&[host]))
            .key("upstream", &quote(host))
            .blank();
    }
}

fn upstreams(doc: &mut Doc, plan: &Plan) {
    doc.comment(&format!(
        "Upstreams: one per web application (the access log names the web application\n\
         of each request; each keeps its own pool of connections), each over every\n\
         front end.\n\
         \n\
         health_score_header: every SharePoint response carries {HEALTH_SCORE_HEADER},\n\
         from 0 (idle) to 10 (the server is throttling requests). snigate prefers the\n\
         servers with lower scores and sends no new request to a server at 10.\n\
         \n\
         No active check (`health`): SharePoint has no page that answers without\n\
         authentication on every farm, and snigate's check names the server's address\n\
         as Host, which a web application's host-named IIS site does not answer. A\n\
         server that refuses connections is left out by the passive check: 3 failed\n\
         connections in a row (max_fails) take it out for 10 s (fail_timeout)."
    ));
    if plan.tls_backend {
        doc.comment("");
        text::tls_choices(doc, plan, None);
        doc.comment(
            "Without server_name, the SNI is each request's Host: the web application's\n\
             name, which the servers' certificates must carry.",
        );
    }
    doc.blank();
    let servers = list(&plan.backends);
    for host in &plan.hosts {
        doc.line("[[upstream]]")
            .key("name", &quote(host))
            .key("servers", &servers)
            .key("health_score_header", &quote(HEALTH_SCORE_HEADER));
        if plan.tls_backend {
            doc.key("tls", &text::tls_line(plan, None));
        }
        doc.blank();
    }
}
