//! The report as terminal text (`snigate report LOG...`): the summary, the
//! client kinds, then the clients without SNI, then the failing clients
//! with reasons and hints.
//! Control characters from the network are shown escaped, never sent to
//! the terminal.

use std::fmt::Write;

use crate::observe::terminal::printable as safe;

use std::collections::BTreeMap;

use super::snapshot::{
    CertificateSeen, ClientReport, Counted, HostSeen, KindReport, Listed, OutcomeSplit, ReasonSeen,
    ReportSnapshot,
};

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
    let _ = writeln!(
        t,
        "  client addresses      {:>8}{}",
        m.addresses,
        if m.addresses_exact {
            ""
        } else {
            "  (at least)"
        }
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
    let _ = writeln!(
        t,
        "  client kinds          {:>8}  (at most {}; {} connections not kinded yet: no request so far)",
        m.kinds_listed, m.kinds_limit, m.kinds_pending
    );
    let k = &s.other_kinds;
    if k.kinds > 0 {
        let _ = writeln!(
            t,
            "  other kinds           {:>8}  {} handshakes ({} ok, {} failed, {} without SNI), {} requests",
            k.kinds, k.handshakes, k.ok, k.failed, k.without_sni, k.requests
        );
    }
    if let Some(i) = &s.input {
        let _ = writeln!(
            t,
            "  log lines read        {:>8}  {} files: {} handshakes, {} requests ({} not joined), {} skipped",
            i.lines, i.files, i.handshakes, i.requests, i.requests_unjoined, i.skipped
        );
    }

    for note in &s.folded {
        let _ = writeln!(t, "  left out: {}", safe(note));
    }

    let _ = writeln!(
        t,
        "\nClient kinds ({}): most addresses first",
        s.kinds.len()
    );
    if s.kinds.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for k in &s.kinds {
        kind(&mut t, k);
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

/// One line of a kind or client entry, when there is something to say.
fn line(t: &mut String, name: &str, value: String) {
    if !value.is_empty() {
        let _ = writeln!(t, "    {name:<12} {value}");
    }
}

fn kind(t: &mut String, k: &KindReport) {
    let at_least = if k.addresses_exact { "" } else { "at least " };
    let ua = if k.user_agent.is_empty() {
        "no User-Agent".to_string()
    } else {
        safe(&k.user_agent)
    };
    let _ = writeln!(
        t,
        "  {}  |  {ua}\n    addresses    {at_least}{} (e.g. {}), handshakes {} (with SNI {}, without {}), requests {}",
        safe(k.client.as_deref().unwrap_or("unknown client")),
        k.addresses,
        safe(&k.examples.join(", ")),
        k.handshakes,
        k.with_sni,
        k.without_sni,
        k.requests
    );
    line(t, "JA4", safe(&k.ja4));
    line(t, "outcome", outcome_counts(&k.outcomes));
    if let (Some(first), Some(last)) = (&k.first_seen, &k.last_seen) {
        line(t, "seen", format!("{first} .. {last}"));
    }
    line(t, "TLS offered", counted(&k.offered_versions));
    line(t, "negotiated", counted(&k.negotiated_versions));
    line(t, "listener", counted(&k.listeners));
    line(t, "certificate", certificates(&k.certificates));
    hosts(t, &k.hosts);
    reasons(t, &k.reasons);
    if let Some(note) = &k.client_note {
        line(t, "note", safe(note));
    }
}

fn outcome_counts(outcomes: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|(name, n)| format!("{} {n}", safe(name)))
        .collect();
    parts.join(", ")
}

fn certificates(certs: &Listed<CertificateSeen>) -> String {
    let mut parts: Vec<String> = certs
        .items
        .iter()
        .map(|cert| {
            let fallback = if cert.fallback { " (fallback)" } else { "" };
            format!("{}{fallback} x{}", safe(&cert.name), cert.count)
        })
        .collect();
    if certs.more > 0 {
        parts.push(format!("+{} more", certs.more));
    }
    parts.join(", ")
}

fn hosts(t: &mut String, hosts: &Listed<HostSeen>) {
    for h in &hosts.items {
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
    if hosts.more > 0 {
        line(t, "Host", format!("+{} more", hosts.more));
    }
}

fn reasons(t: &mut String, reasons: &Listed<ReasonSeen>) {
    for r in &reasons.items {
        line(t, "failure", format!("{} x{}", safe(&r.reason), r.count));
        if let Some(hint) = &r.hint {
            line(t, "  fix", safe(hint));
        }
    }
    if reasons.more > 0 {
        line(t, "failure", format!("+{} more", reasons.more));
    }
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
        line(t, "seen", format!("{first} .. {last}"));
    }
    line(t, "TLS offered", counted(&c.offered_versions));
    line(t, "negotiated", counted(&c.versions));
    line(t, "listener", counted(&c.listeners));
    line(t, "certificate", certificates(&c.certificates));
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
    hosts(t, &c.hosts);
    if failures {
        reasons(t, &c.reasons);
    }
}
