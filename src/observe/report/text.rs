//! The report as terminal text (`snigate report LOG...`): the summary, then
//! the clients without SNI, then the failing clients with reasons and hints.
//! Control characters from the network are shown escaped, never sent to
//! the terminal.

use std::fmt::Write;

use super::snapshot::{ClientReport, Counted, Listed, OutcomeSplit, ReportSnapshot};

/// Makes a value from the network safe to print on a terminal.
fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// "FIRST .. LAST" of the handshakes, or a note that there were none.
pub(super) fn period(s: &ReportSnapshot) -> String {
    match (&s.summary.first_seen, &s.summary.last_seen) {
        (Some(first), Some(last)) => format!("{first} .. {last}"),
        _ => "no handshakes".into(),
    }
}

fn outcomes(o: &OutcomeSplit) -> String {
    let parts: Vec<String> = o
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{} {n}", safe(name)))
        .collect();
    parts.join(", ")
}

fn counted(items: &Listed<Counted>) -> String {
    let mut parts: Vec<String> = items
        .items
        .iter()
        .map(|c| format!("{} x{}", safe(&c.value), c.count))
        .collect();
    if items.more > 0 {
        parts.push(format!("+{} more", items.more));
    }
    parts.join(", ")
}

/// The report as text for a terminal.
pub fn render_text(s: &ReportSnapshot) -> String {
    let mut t = String::new();
    let m = &s.summary;
    let _ = writeln!(t, "snigate compatibility report: {}", period(s));
    let _ = writeln!(t, "  handshakes            {:>8}", m.handshakes);
    let _ = writeln!(
        t,
        "    with SNI            {:>8}  {}",
        m.with_sni.total,
        outcomes(&m.with_sni)
    );
    let _ = writeln!(
        t,
        "    without SNI         {:>8}  {}",
        m.without_sni.total,
        outcomes(&m.without_sni)
    );
    let _ = writeln!(t, "  fallback certificate  {:>8}", m.fallback_served);
    let _ = writeln!(t, "  requests joined       {:>8}", m.requests_joined);
    let _ = writeln!(
        t,
        "  clients listed        {:>8}  (at most {})",
        m.clients_tracked, m.clients_limit
    );
    let o = &s.other;
    if o.clients > 0 {
        let _ = writeln!(
            t,
            "  other clients         {:>8}  {} handshakes ({} ok, {} failed, {} without SNI), {} requests",
            o.clients, o.handshakes, o.ok, o.failed, o.no_sni, o.requests
        );
    }
    if let Some(i) = &s.input {
        let _ = writeln!(
            t,
            "  log lines read        {:>8}  {} files: {} handshakes, {} requests ({} not joined), {} skipped",
            i.lines, i.files, i.handshakes, i.requests, i.requests_unjoined, i.skipped
        );
    }

    let no_sni: Vec<&ClientReport> = s.clients.iter().filter(|c| c.no_sni > 0).collect();
    let _ = writeln!(t, "\nClients without SNI ({})", no_sni.len());
    if no_sni.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for c in no_sni {
        client(&mut t, c, false);
    }
    let failing: Vec<&ClientReport> = s.clients.iter().filter(|c| c.failed > 0).collect();
    let _ = writeln!(t, "\nClients with failed handshakes ({})", failing.len());
    if failing.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for c in failing {
        client(&mut t, c, true);
    }
    t
}

fn client(t: &mut String, c: &ClientReport, failures: bool) {
    let _ = writeln!(
        t,
        "  {}  {}  {}\n    handshakes {} (ok {}, failed {}, no SNI {}), requests {}",
        safe(&c.ip),
        safe(&c.ja4),
        safe(c.client.as_deref().unwrap_or("unknown client")),
        c.handshakes,
        c.ok,
        c.failed,
        c.no_sni,
        c.requests
    );
    if let (Some(first), Some(last)) = (&c.first_seen, &c.last_seen) {
        let _ = writeln!(t, "    seen         {first} .. {last}");
    }
    let line = |t: &mut String, name: &str, value: String| {
        if !value.is_empty() {
            let _ = writeln!(t, "    {name:<12} {value}");
        }
    };
    line(t, "TLS offered", counted(&c.offered_versions));
    line(t, "negotiated", counted(&c.versions));
    line(t, "listener", counted(&c.listeners));
    let mut certs: Vec<String> = c
        .certificates
        .items
        .iter()
        .map(|cert| {
            let fallback = if cert.fallback { " (fallback)" } else { "" };
            format!("{}{fallback} x{}", safe(&cert.name), cert.count)
        })
        .collect();
    if c.certificates.more > 0 {
        certs.push(format!("+{} more", c.certificates.more));
    }
    line(t, "certificate", certs.join(", "));
    for ua in &c.user_agents.items {
        line(
            t,
            "User-Agent",
            format!("{} x{}", safe(&ua.value), ua.count),
        );
    }
    if c.user_agents.more > 0 {
        line(t, "User-Agent", format!("+{} more", c.user_agents.more));
    }
    for h in &c.hosts.items {
        let mark = match h.covered {
            Some(false) => format!(
                "  NOT COVERED by the certificate ({} requests): certificate warning",
                h.uncovered
            ),
            Some(true) => "  covered".into(),
            None => String::new(),
        };
        line(
            t,
            "Host",
            format!("{} x{}{mark}", safe(&h.host), h.requests),
        );
    }
    if c.hosts.more > 0 {
        line(t, "Host", format!("+{} more", c.hosts.more));
    }
    if failures {
        for r in &c.reasons.items {
            line(t, "failure", format!("{} x{}", safe(&r.reason), r.count));
            if let Some(hint) = &r.hint {
                line(t, "  fix", safe(hint));
            }
        }
        if c.reasons.more > 0 {
            line(t, "failure", format!("+{} more", c.reasons.more));
        }
    }
}
