//! The report as a self-contained HTML page (`GET /report.html`): inline
//! CSS, an inline SVG chart, no scripts, no external assets. Every string
//! that came from the network or a log (User-Agents, Hosts, reasons, ...) is
//! escaped.

use std::fmt::Write;

use super::snapshot::{ClientReport, Counted, Listed, OutcomeSplit, ReportSnapshot, Timeline};

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.muted{color:#666}table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
ul{margin:0;padding-left:1.1em}code{font-size:.9em;word-break:break-all}
.warn{color:#b00020;font-weight:600}.okc{color:#1b7f3b}.hint{color:#555;font-style:italic}
.chart{width:100%;max-width:1100px;height:180px;border:1px solid #ddd;background:#fafafa}
.legend span{display:inline-block;margin-right:1.2em}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
.c-sni{background:#4e9a06}.c-nosni{background:#e69500}.c-fail{background:#cc0000}
";

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The report as an HTML page.
pub fn render_html(s: &ReportSnapshot) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<title>snigate compatibility report</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>snigate compatibility report</h1>\n");
    let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(&super::text::period(s)));
    summary(&mut h, s);
    chart(&mut h, &s.timeline);

    let no_sni: Vec<&ClientReport> = s.clients.iter().filter(|c| c.no_sni > 0).collect();
    let failing: Vec<&ClientReport> = s.clients.iter().filter(|c| c.failed > 0).collect();
    let _ = writeln!(h, "<h2>Clients without SNI ({})</h2>", no_sni.len());
    h.push_str("<p class=\"muted\">They get the listener's fallback certificate. A Host marked <span class=\"warn\">not covered</span> means that certificate does not name it: the client saw a certificate warning.</p>\n");
    clients_table(&mut h, &no_sni, false);
    let _ = writeln!(
        h,
        "<h2>Clients with failed handshakes ({})</h2>",
        failing.len()
    );
    clients_table(&mut h, &failing, true);
    h.push_str("</body></html>\n");
    h
}

fn outcomes(o: &OutcomeSplit) -> String {
    let parts: Vec<String> = o
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{} {n}", esc(name)))
        .collect();
    parts.join(" · ")
}

fn summary(h: &mut String, s: &ReportSnapshot) {
    let m = &s.summary;
    h.push_str("<h2>Summary</h2>\n<table>\n");
    let row = |h: &mut String, name: &str, n: u64, detail: String| {
        let _ = writeln!(
            h,
            "<tr><th>{name}</th><td class=\"n\">{n}</td><td>{detail}</td></tr>"
        );
    };
    row(h, "Handshakes", m.handshakes, String::new());
    row(h, "with SNI", m.with_sni.total, outcomes(&m.with_sni));
    row(
        h,
        "without SNI",
        m.without_sni.total,
        outcomes(&m.without_sni),
    );
    row(
        h,
        "Fallback certificate served",
        m.fallback_served,
        String::new(),
    );
    row(
        h,
        "Requests joined",
        m.requests_joined,
        "requests on connections of the clients listed below".into(),
    );
    row(
        h,
        "Clients listed",
        m.clients_tracked,
        format!("at most {} are kept", m.clients_limit),
    );
    let o = &s.other;
    row(
        h,
        "Other clients",
        o.clients,
        format!(
            "pushed out of the list: {} handshakes ({} ok, {} failed, {} without SNI), {} requests",
            o.handshakes, o.ok, o.failed, o.no_sni, o.requests
        ),
    );
    if let Some(i) = &s.input {
        row(
            h,
            "Log lines read",
            i.lines,
            format!(
                "{} files: {} handshakes, {} requests ({} not joined), {} skipped",
                i.files, i.handshakes, i.requests, i.requests_unjoined, i.skipped
            ),
        );
    }
    h.push_str("</table>\n");
}

/// Two stacked bar charts over time: all handshakes, then those without
/// SNI and the failed ones on their own scale (they are often too few to
/// see next to the rest).
fn chart(h: &mut String, t: &Timeline) {
    h.push_str("<h2>Handshakes over time</h2>\n");
    let width = t.bucket_ms.max(1);
    let points: Vec<(u64, [u64; 3])> = t
        .buckets
        .iter()
        .filter_map(|b| {
            let ms = super::parse_ts(&b.start)?;
            Some((ms / width, [b.sni_ok, b.no_sni_ok, b.failed]))
        })
        .collect();
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.0).min(),
        points.iter().map(|p| p.0).max(),
    ) else {
        h.push_str("<p class=\"muted\">No handshakes yet.</p>\n");
        return;
    };
    // At least 24 bar widths, so that a few buckets do not fill the chart.
    let slots = (last - first).saturating_add(1).max(24);
    let _ = writeln!(
        h,
        "<p class=\"legend\"><span><i class=\"sw c-sni\"></i>with SNI, ok</span><span><i class=\"sw c-nosni\"></i>without SNI, ok</span><span><i class=\"sw c-fail\"></i>failed</span><span class=\"muted\">one bar = {}</span></p>",
        esc(&humantime::format_duration(std::time::Duration::from_millis(width)).to_string())
    );
    // Indexes into a point's counts, bottom to top, and their colours.
    const FILLS: [&str; 3] = ["#4e9a06", "#e69500", "#cc0000"];
    let panels: [(&str, &[usize]); 2] = [
        ("All handshakes", &[0, 1, 2]),
        ("Without SNI and failed", &[1, 2]),
    ];
    for (title, series) in panels {
        let max = points
            .iter()
            .map(|(_, v)| series.iter().map(|&k| v[k]).sum::<u64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let _ = write!(
            h,
            "<p class=\"muted\">{title} (highest bar: {max})</p>\n<svg class=\"chart\" viewBox=\"0 0 {slots} 100\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{title}\" xmlns=\"http://www.w3.org/2000/svg\">"
        );
        for (index, v) in &points {
            let x = index - first;
            let start = super::format_ts(index.saturating_mul(width));
            let _ = write!(
                h,
                "<g><title>{}: with SNI ok {}, without SNI ok {}, failed {}</title>",
                esc(&start),
                v[0],
                v[1],
                v[2]
            );
            let mut y = 100.0;
            for &k in series {
                let (n, fill) = (v[k], FILLS[k]);
                if n == 0 {
                    continue;
                }
                // Never thinner than one unit, so a single failure shows.
                let bar = (n as f64 * 98.0 / max as f64).max(1.0);
                y -= bar;
                let _ = write!(
                    h,
                    "<rect fill=\"{fill}\" x=\"{:.2}\" y=\"{y:.2}\" width=\".84\" height=\"{bar:.2}\"/>",
                    x as f64 + 0.08
                );
            }
            h.push_str("</g>");
        }
        h.push_str("</svg>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} … {}</p>",
        esc(&super::format_ts(first.saturating_mul(width))),
        esc(&super::format_ts(
            last.saturating_add(1).saturating_mul(width)
        ))
    );
}

fn list(items: &Listed<Counted>) -> String {
    let mut out = String::new();
    for c in &items.items {
        let _ = write!(
            out,
            "<li>{} <span class=\"muted\">×{}</span></li>",
            esc(&c.value),
            c.count
        );
    }
    finish_list(out, items.more)
}

fn finish_list(mut items: String, more: u64) -> String {
    if more > 0 {
        let _ = write!(items, "<li class=\"muted\">+{more} more</li>");
    }
    if items.is_empty() {
        return String::new();
    }
    format!("<ul>{items}</ul>")
}

/// `list`, or a muted "none" for an empty one (a labelled list must
/// not vanish: "negotiated" with nothing under it says the handshake failed).
fn list_or_none(l: &Listed<Counted>) -> String {
    match list(l) {
        empty if empty.is_empty() => "<ul><li class=\"muted\">none</li></ul>".to_string(),
        items => items,
    }
}

fn clients_table(h: &mut String, clients: &[&ClientReport], failures: bool) {
    if clients.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n");
        return;
    }
    h.push_str("<table><tr><th>Client (IP, JA4, software)</th><th>Handshakes</th><th>Requests</th><th>Seen</th><th>TLS versions</th><th>Listener</th><th>Certificate served</th><th>User-Agents</th><th>Hosts</th>");
    if failures {
        h.push_str("<th>Failures and fixes</th>");
    }
    h.push_str("</tr>\n");
    for c in clients {
        let _ = write!(
            h,
            "<tr><td>{}<br><code>{}</code><br>{}</td><td class=\"n\">{}<br><span class=\"okc\">{} ok</span><br><span class=\"{}\">{} failed</span><br>{} no SNI</td><td class=\"n\">{}</td><td>{}<br>{}</td>",
            esc(&c.ip),
            esc(&c.ja4),
            match &c.client {
                Some(name) => esc(name),
                None => "<span class=\"muted\">unknown client</span>".to_string(),
            },
            c.handshakes,
            c.ok,
            if c.failed > 0 { "warn" } else { "muted" },
            c.failed,
            c.no_sni,
            c.requests,
            esc(c.first_seen.as_deref().unwrap_or("")),
            esc(c.last_seen.as_deref().unwrap_or("")),
        );
        let _ = write!(
            h,
            "<td><span class=\"muted\">offered</span>{}<span class=\"muted\">negotiated</span>{}</td><td>{}</td>",
            list_or_none(&c.offered_versions),
            list_or_none(&c.versions),
            list(&c.listeners)
        );
        let mut certs = String::new();
        for cert in &c.certificates.items {
            let _ = write!(
                certs,
                "<li>{}{} <span class=\"muted\">×{}</span></li>",
                esc(&cert.name),
                if cert.fallback {
                    " <span class=\"muted\">(fallback)</span>"
                } else {
                    ""
                },
                cert.count
            );
        }
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td>",
            finish_list(certs, c.certificates.more),
            list(&c.user_agents)
        );
        let mut hosts = String::new();
        for host in &c.hosts.items {
            let mark = match host.covered {
                Some(false) => format!(
                    " <span class=\"warn\">not covered ({} requests): certificate warning</span>",
                    host.uncovered
                ),
                Some(true) => " <span class=\"okc\">covered</span>".into(),
                None => String::new(),
            };
            let _ = write!(
                hosts,
                "<li>{} <span class=\"muted\">×{}</span>{mark}</li>",
                esc(&host.host),
                host.requests
            );
        }
        let _ = write!(h, "<td>{}</td>", finish_list(hosts, c.hosts.more));
        if failures {
            let mut reasons = String::new();
            for r in &c.reasons.items {
                let _ = write!(
                    reasons,
                    "<li>{} <span class=\"muted\">×{}</span>",
                    esc(&r.reason),
                    r.count
                );
                if let Some(hint) = &r.hint {
                    let _ = write!(
                        reasons,
                        "<br><span class=\"hint\">fix: {}</span>",
                        esc(hint)
                    );
                }
                reasons.push_str("</li>");
            }
            let _ = write!(h, "<td>{}</td>", finish_list(reasons, c.reasons.more));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}
