//! The exchange profile: Exchange Server 2013 and later behind snigate.
//! One route and one upstream per virtual directory, each upstream over
//! every server and checked on its own `healthcheck.htm`, so that one
//! failed application pool takes one service off one server; the long
//! requests of ActiveSync, Outlook Anywhere and MAPI get their own
//! timeouts (README, "Timeouts per route").

use super::text::{self, list, quote, Doc};
use super::Plan;

/// One Exchange virtual directory and how snigate treats its requests.
struct VirtualDirectory {
    /// The route's path, also the start of its health check path.
    path: &'static str,
    /// The upstream's name.
    upstream: &'static str,
    /// What it is and why its values are what they are (comment lines).
    about: &'static str,
    /// `[route.timeouts]`: key and value.
    timeouts: &'static [(&'static str, &'static str)],
    /// Requests that last: `buffer_request = false` written out.
    long_requests: bool,
}

const VIRTUAL_DIRECTORIES: [VirtualDirectory; 8] = [
    VirtualDirectory {
        path: "/owa",
        upstream: "exchange-owa",
        about: "Outlook on the web (OWA).",
        timeouts: &[],
        long_requests: false,
    },
    VirtualDirectory {
        path: "/ecp",
        upstream: "exchange-ecp",
        about: "The Exchange admin center and OWA's options pages (ECP).",
        timeouts: &[],
        long_requests: false,
    },
    VirtualDirectory {
        path: "/ews",
        upstream: "exchange-ews",
        about: "Exchange Web Services (EWS).",
        timeouts: &[],
        long_requests: false,
    },
    VirtualDirectory {
        path: "/mapi",
        upstream: "exchange-mapi",
        about: "MAPI over HTTP (Outlook). Short requests on connections Outlook keeps open;\n\
                long operations answer at once and send PENDING keep-alives in the body,\n\
                so the default upstream_read holds. client_idle: 15 minutes, Microsoft's\n\
                minimum idle time-out in front of Exchange (KB 905013, KB 2535656).",
        timeouts: &[("client_idle", "15m")],
        long_requests: true,
    },
    VirtualDirectory {
        path: "/rpc",
        upstream: "exchange-rpc",
        about: "Outlook Anywhere (RPC over HTTP). Two long requests per client: RPC_IN_DATA,\n\
                whose body (up to 1 GiB) lasts the session, and RPC_OUT_DATA, whose response\n\
                does. Their keep-alives come every 12 minutes from Outlook (720 s) and every\n\
                15 minutes from Exchange (900 s) by default (Microsoft, \"Outlook Anywhere\n\
                Network Timeout Issue\", 2012): 20 minutes of silence is a dead session.",
        timeouts: &[("upstream_read", "20m"), ("client_idle", "20m")],
        long_requests: true,
    },
    VirtualDirectory {
        path: "/oab",
        upstream: "exchange-oab",
        about: "The offline address book (OAB) Outlook downloads.",
        timeouts: &[],
        long_requests: false,
    },
    VirtualDirectory {
        path: "/Microsoft-Server-ActiveSync",
        upstream: "exchange-activesync",
        about: "Exchange ActiveSync (phones). A Ping (Direct Push) is held by the server\n\
                until mail arrives or the device's heartbeat ends, up to 59 minutes\n\
                (MaxHeartbeatInterval = 3540 s in ActiveSync's web.config), so the wait for\n\
                the answer is 61 minutes; Microsoft KB 905013 asks for idle time-outs of at\n\
                least 15 minutes in front of Exchange.",
        timeouts: &[("upstream_response", "61m"), ("client_idle", "15m")],
        long_requests: true,
    },
    VirtualDirectory {
        path: "/autodiscover",
        upstream: "exchange-autodiscover",
        about: "Autodiscover: where Outlook and phones find their settings\n\
                (/autodiscover/autodiscover.xml on autodiscover.<domain> or the namespace).",
        timeouts: &[],
        long_requests: false,
    },
];

/// The configuration file.
pub fn render(plan: &Plan) -> String {
    let mut doc = Doc::new();
    text::header(
        &mut doc,
        plan,
        "snigate in front of an Exchange Server farm (2013 and later), written by:",
    );
    text::admin_and_log(&mut doc, plan);
    timeouts(&mut doc);
    certificate_and_listener(&mut doc, plan);
    routes(&mut doc, plan);
    upstreams(&mut doc, plan);
    doc.into_string()
}

fn timeouts(doc: &mut Doc) {
    doc.line("[timeouts]")
        .comment("Pooled connections to IIS are dropped before IIS's own 120 s keep-alive")
        .comment("closes them (the default, written out). Longer waits are set per route")
        .comment("([route.timeouts] below), so a hung server is still noticed within the")
        .comment("default 5 minutes on every other path.")
        .key("upstream_idle", &quote("60s"))
        .blank();
}

fn certificate_and_listener(doc: &mut Doc, plan: &Plan) {
    doc.comment("One certificate for every --host (the lab set's fallback.crt names them all).");
    text::certificate(doc, plan, "exchange", "fallback");
    doc.comment("Every address, port 443. Clients with SNI get the certificate by name;")
        .comment("clients without (old ActiveSync devices, old Java, scripts) get the")
        .comment("fallback, which names every --host too.")
        .shared_listener("exchange", "exchange")
        .comment("Outlook, EWS and MAPI authenticate with NTLM or Negotiate, which bind to")
        .comment("one HTTP/1.1 connection: an h2 request carrying them is refused and retried")
        .comment("over HTTP/1.1. Offering HTTP/1.1 alone saves that round trip.")
        .key("alpn", &list(&["http/1.1"]))
        .blank();
}

fn routes(doc: &mut Doc, plan: &Plan) {
    let hosts = list(&plan.hosts);
    doc.comment(&format!(
        "Routes: one per virtual directory, for every --host ({} is the\n\
         namespace; autodiscover.<domain> and other names get the same routes). A path\n\
         matches on segment boundaries, ASCII case ignored: /ews takes /EWS/Exchange.asmx.",
        plan.hosts[0]
    ))
    .blank();
    for v in &VIRTUAL_DIRECTORIES {
        doc.comment(v.about)
            .line("[[route]]")
            .key("hosts", &hosts)
            .key("paths", &list(&[v.path]))
            .key("upstream", &quote(v.upstream));
        if v.long_requests {
            doc.key_noted(
                "buffer_request",
                "false",
                "streamed as it arrives; snigate never buffers a body",
            );
        }
        if !v.timeouts.is_empty() {
            doc.blank().line("[route.timeouts]");
            for (key, value) in v.timeouts {
                doc.key(key, &quote(value));
            }
        }
        doc.blank();
    }
    doc.comment("Everything else on these hosts: \"/\" (IIS redirects it to /owa) and any path")
        .comment("no route above names. snigate has no rule that refuses a path: leave this")
        .comment(
            "route out to publish only the virtual directories above (\"/\" then answers 404).",
        )
        .line("[[route]]")
        .key("hosts", &hosts)
        .key("upstream", &quote(VIRTUAL_DIRECTORIES[0].upstream))
        .blank();
}

fn upstreams(doc: &mut Doc, plan: &Plan) {
    doc.comment(
        "Upstreams: one per virtual directory, each over every server and each checked\n\
         on its own healthcheck.htm, which Exchange answers 200, without authentication,\n\
         while Managed Availability finds that protocol healthy on that server. Two\n\
         failed checks in a row (5 s apart) take that service, and only that one, off\n\
         that server. NTLM and Negotiate connections stay with their server by\n\
         themselves (snigate pins them); round-robin spreads the rest.",
    );
    let server_name = plan.hosts[0].as_str();
    if plan.tls_backend {
        doc.comment("");
        text::tls_choices(doc, plan, Some(server_name));
        doc.comment(&format!(
            "server_name = \"{server_name}\": the SNI, the name checked in each server's\n\
             certificate and the Host of the health checks (without it they would\n\
             name the server's address)."
        ));
    } else {
        doc.comment(
            "\n\
             The servers are reached over plain HTTP. Exchange's virtual directories\n\
             require SSL by default: plain HTTP needs SSL offloading set up on every\n\
             server (Microsoft, \"Configuring SSL offloading in Exchange 2013\"). Write\n\
             the file again with --tls-backend to keep HTTPS to the servers.",
        );
    }
    doc.blank();
    let servers = list(&plan.backends);
    for v in &VIRTUAL_DIRECTORIES {
        doc.line("[[upstream]]")
            .key("name", &quote(v.upstream))
            .key("servers", &servers)
            .key(
                "health",
                &format!(
                    "{{ path = {} }}",
                    quote(&format!("{}/healthcheck.htm", v.path))
                ),
            );
        if plan.tls_backend {
            doc.key("tls", &text::tls_line(plan, Some(server_name)));
        }
        doc.blank();
    }
}
