//! The report as a self-contained HTML page (`GET /report.html`): inline
//! CSS, inline SVG charts, one small inline script (allowed by its hash in
//! the admin endpoint's Content-Security-Policy) that makes the kinds table
//! sortable; no external assets. The page reads the same without the
//! script. Every string that came from the network or a log (User-Agents,
//! Hosts, reasons, ...) is escaped.
//!
//! Order: title and period, summary, what was left out (`folded`), the kinds
//! table (every failing kind with its reasons and hints), the charts, then
//! the per-address tables.

use std::fmt::Write;

use super::snapshot::{
    CertificateSeen, ClientReport, Counted, HostSeen, KindReport, Listed, OtherKinds, OutcomeSplit,
    ReasonSeen, ReportSnapshot, Timeline,
};

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
.scroll{overflow-x:auto;max-width:100%}
.folded{border-left:4px solid #e69500;background:#fff8e6;padding:.4em .8em}
table.kinds{width:100%;min-width:960px;table-layout:fixed;font-size:13px}
table.kinds td,table.kinds th{overflow-wrap:anywhere;padding:.25em .35em}table.kinds th{overflow-wrap:normal}
table.kinds code{word-break:normal;overflow-wrap:anywhere}td.seen{font-size:.88em}
table.kinds ul{padding-left:.9em}ul.ex{list-style:none;padding:0;text-align:left;font-size:.9em}
tr.failing td{background:#fff4f4}tfoot td{background:#f8f8f8}
th button{font:inherit;color:inherit;background:none;border:0;padding:0;cursor:pointer;text-align:left}
th button:focus-visible{outline:2px solid #1a5fb4}
th[aria-sort=ascending] button::after{content:' \\25B2'}th[aria-sort=descending] button::after{content:' \\25BC'}
@media (max-width:600px){body{margin:.6em}h1{font-size:1.25em}}
";

/// The page's one script: makes the kinds table sortable by any column
/// (each header becomes a button; numbers sort numerically, by the cells'
/// `data-sort` values), applies a `#sort=KEY-asc|desc` fragment, and marks
/// the table `data-sortable="ready"`. `REPORT_CSP` (server/admin.rs) allows
/// it by its SHA-256, so any change here changes that hash (a test checks).
pub(crate) const SORT_SCRIPT: &str = r##"(function () {
  var t = document.getElementById("kinds");
  if (!t) return;
  var heads = t.tHead.rows[0].cells, body = t.tBodies[0];
  function sort(col, dir) {
    var num = heads[col].getAttribute("data-type") === "number";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
      var d = num ? x - y : x.localeCompare(y);
      return dir === "asc" ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    heads[col].setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    t.setAttribute("data-sorted", heads[col].getAttribute("data-key") + "-" + dir);
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    var b = document.createElement("button");
    b.type = "button";
    b.title = "sort by this column";
    while (th.firstChild) b.appendChild(th.firstChild);
    th.appendChild(b);
    b.addEventListener("click", function () {
      var now = th.getAttribute("aria-sort");
      var dir = now === "ascending" ? "desc" : now === "descending" ? "asc" :
        th.getAttribute("data-type") === "number" ? "desc" : "asc";
      sort(col, dir);
      history.replaceState(null, "", "#sort=" + th.getAttribute("data-key") + "-" + dir);
    });
  });
  var m = /^#sort=([a-z_]+)-(asc|desc)$/.exec(location.hash);
  for (var i = 0; m && i < heads.length; i++) {
    if (heads[i].getAttribute("data-key") === m[1]) sort(i, m[2]);
  }
  t.setAttribute("data-sortable", "ready");
})();"##;

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
    folded(&mut h, &s.folded);
    kinds_table(&mut h, &s.kinds, &s.other_kinds);
    chart(&mut h, &s.timeline);

    let no_sni: Vec<&ClientReport> = s.clients.iter().filter(|c| c.no_sni > 0).collect();
    let failing: Vec<&ClientReport> = s.clients.iter().filter(|c| c.failed > 0).collect();
    let _ = writeln!(h, "<h2>Addresses without SNI ({})</h2>", no_sni.len());
    h.push_str("<p class=\"muted\">One row per client address and ClientHello (JA4). They get the listener's fallback certificate. A Host marked <span class=\"warn\">not covered</span> means that certificate does not name it: the client saw a certificate warning.</p>\n");
    clients_table(&mut h, &no_sni, false);
    let _ = writeln!(
        h,
        "<h2>Addresses with failed handshakes ({})</h2>",
        failing.len()
    );
    clients_table(&mut h, &failing, true);
    let _ = writeln!(h, "<script>{SORT_SCRIPT}</script>");
    h.push_str("</body></html>\n");
    h
}

/// What this document leaves out, and why (`folded`); nothing when it is
/// whole.
fn folded(h: &mut String, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    h.push_str("<div class=\"folded\"><h2>Left out of this page</h2><ul>");
    for note in notes {
        let _ = write!(h, "<li>{}</li>", esc(note));
    }
    h.push_str("</ul></div>\n");
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
        "Client addresses",
        m.addresses,
        if m.addresses_exact {
            "distinct addresses".into()
        } else {
            "at least this many distinct addresses (more than the report keeps)".into()
        },
    );
    row(
        h,
        "Client kinds",
        m.kinds_listed,
        format!(
            "at most {} are kept; {} connections not in a kind yet (no request so far)",
            m.kinds_limit, m.kinds_pending
        ),
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
    h.push_str("<div class=\"scroll\"><table><tr><th>Client (IP, JA4, software)</th><th>Handshakes</th><th>Requests</th><th>Seen</th><th>TLS versions</th><th>Listener</th><th>Certificate served</th><th>User-Agents</th><th>Hosts</th>");
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
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td>",
            certificates(&c.certificates),
            list(&c.user_agents),
            hosts(&c.hosts)
        );
        if failures {
            let _ = write!(h, "<td>{}</td>", reasons(&c.reasons));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

/// The kinds table's columns: header, `data-key` (for `#sort=KEY-dir`),
/// whether the column sorts as numbers, and its share of the width in
/// percent (fixed: long User-Agents and JA4s wrap inside their column).
const KIND_COLUMNS: [(&str, &str, bool, f32); 13] = [
    ("Client software", "client", false, 10.0),
    ("User-Agent", "user_agent", false, 12.0),
    ("Addresses", "addresses", true, 7.0),
    ("Hand&shy;shakes", "handshakes", true, 7.0),
    ("With SNI", "with_sni", true, 4.5),
    ("Without SNI", "without_sni", true, 6.0),
    ("Outcome, reasons and fixes", "failed", true, 11.0),
    ("TLS offered", "offered", false, 5.5),
    ("TLS negotiated", "negotiated", false, 7.5),
    ("Certificates served", "certificates", false, 7.5),
    ("Hosts asked for", "hosts", false, 9.0),
    ("First seen", "first_seen", false, 6.75),
    ("Last seen", "last_seen", false, 6.25),
];

/// Outcomes that count as a success (the client was served or handed on).
const SUCCEEDED: [&str; 3] = ["ok", "passthrough", "legacy_passthrough"];

/// The kinds table: one row per client kind (JA4 and User-Agent), failing
/// kinds with their reasons and hints in the outcome cell, the kinds not
/// listed added up in the footer.
fn kinds_table(h: &mut String, kinds: &[KindReport], other: &OtherKinds) {
    let _ = writeln!(
        h,
        "<h2>Client kinds ({})</h2>\n<p class=\"muted\">One row per kind of client: the same ClientHello (JA4) and the same User-Agent. The software is named only when the client catalogue knows the JA4. Click a column header to sort.</p>",
        kinds.len() as u64 + other.kinds
    );
    h.push_str("<div class=\"scroll\"><table id=\"kinds\" class=\"kinds\"><colgroup>");
    for (_, _, _, width) in KIND_COLUMNS {
        let _ = write!(h, "<col style=\"width:{width}%\">");
    }
    h.push_str("</colgroup><thead><tr>");
    for (title, key, number, _) in KIND_COLUMNS {
        let kind = if number { "number" } else { "text" };
        let _ = write!(
            h,
            "<th scope=\"col\" data-key=\"{key}\" data-type=\"{kind}\">{title}</th>"
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for k in kinds {
        kind_row(h, k);
    }
    h.push_str("</tbody>\n");
    if other.kinds > 0 {
        let _ = writeln!(
            h,
            "<tfoot><tr><td colspan=\"3\">{} other kinds, not listed</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td colspan=\"7\">{} ok, <span class=\"{}\">{} failed</span>; {} requests</td></tr></tfoot>",
            other.kinds,
            other.handshakes,
            other.handshakes.saturating_sub(other.without_sni),
            other.without_sni,
            other.ok,
            if other.failed > 0 { "warn" } else { "muted" },
            other.failed,
            other.requests
        );
    }
    h.push_str("</table></div>\n");
    if kinds.is_empty() && other.kinds == 0 {
        h.push_str("<p class=\"muted\">No client kinds yet.</p>\n");
    }
}

/// Handshakes of a kind that did not succeed.
fn kind_failed(k: &KindReport) -> u64 {
    let ok: u64 = SUCCEEDED.iter().filter_map(|o| k.outcomes.get(*o)).sum();
    k.handshakes.saturating_sub(ok)
}

/// One kind's row; each cell carries its raw value in `data-sort`.
fn kind_row(h: &mut String, k: &KindReport) {
    let failed = kind_failed(k);
    let class = if failed > 0 { " class=\"failing\"" } else { "" };
    let _ = write!(h, "<tr{class}>");
    text_cell(
        h,
        k.client.as_deref().unwrap_or(""),
        &software(k.client.as_deref(), k.client_note.as_deref(), &k.ja4),
    );
    let ua = match k.user_agent.as_str() {
        "" => "<span class=\"muted\">none</span>".to_string(),
        ua => format!("<code>{}</code>", esc(ua)),
    };
    text_cell(h, &k.user_agent, &ua);
    number_cell(h, k.addresses, &addresses(k));
    number_cell(h, k.handshakes, &k.handshakes.to_string());
    number_cell(h, k.with_sni, &k.with_sni.to_string());
    number_cell(h, k.without_sni, &k.without_sni.to_string());
    let _ = write!(
        h,
        "<td data-sort=\"{failed}\">{}{}</td>",
        kind_outcomes(k),
        reasons(&k.reasons)
    );
    text_cell(
        h,
        &versions_key(&k.offered_versions),
        &list_or_none(&k.offered_versions),
    );
    text_cell(
        h,
        &versions_key(&k.negotiated_versions),
        &list_or_none(&k.negotiated_versions),
    );
    let names: Vec<&str> = k
        .certificates
        .items
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    text_cell(h, &names.join(" "), &certificates(&k.certificates));
    let hosts_key: Vec<&str> = k.hosts.items.iter().map(|x| x.host.as_str()).collect();
    text_cell(h, &hosts_key.join(" "), &hosts(&k.hosts));
    for seen in [&k.first_seen, &k.last_seen] {
        let seen = seen.as_deref().unwrap_or("");
        let _ = write!(
            h,
            "<td class=\"seen\" data-sort=\"{}\">{}</td>",
            esc(seen),
            short_time(seen)
        );
    }
    h.push_str("</tr>\n");
}

/// A log timestamp for a narrow column: the date above the time, without
/// the milliseconds (`2026-11-26<br>16:27:33Z`); anything else as it is.
fn short_time(ts: &str) -> String {
    match ts.split_once('T') {
        Some((date, time)) => {
            let time = time.split_once('.').map_or(time, |(hms, _)| hms);
            let zone = if ts.ends_with('Z') && !time.ends_with('Z') {
                "Z"
            } else {
                ""
            };
            format!("{}<br>{}{zone}", esc(date), esc(time))
        }
        None => esc(ts),
    }
}

/// A cell sorted as text by `key`, showing `html` (already escaped).
fn text_cell(h: &mut String, key: &str, html: &str) {
    let _ = write!(h, "<td data-sort=\"{}\">{html}</td>", esc(key));
}

/// A cell sorted as the number `key`, showing `html` (already escaped).
fn number_cell(h: &mut String, key: u64, html: &str) {
    let _ = write!(h, "<td class=\"n\" data-sort=\"{key}\">{html}</td>");
}

/// The catalogue's name and note, or "unknown client" (never guessed), and
/// the JA4.
fn software(name: Option<&str>, note: Option<&str>, ja4: &str) -> String {
    let mut out = match name {
        Some(name) => format!("<b>{}</b>", esc(name)),
        None => "<span class=\"muted\">unknown client</span>".to_string(),
    };
    if let Some(note) = note {
        let _ = write!(out, "<br><span class=\"hint\">{}</span>", esc(note));
    }
    let ja4 = match ja4 {
        "" => "<span class=\"muted\">no ClientHello</span>".to_string(),
        ja4 => format!("<code>{}</code>", esc(ja4)),
    };
    let _ = write!(out, "<br>{ja4}");
    out
}

/// "N" or "at least N" distinct addresses, and up to 5 of them.
fn addresses(k: &KindReport) -> String {
    let mut out = if k.addresses_exact {
        k.addresses.to_string()
    } else {
        format!("at least {}", k.addresses)
    };
    if !k.examples.is_empty() {
        out.push_str("<ul class=\"ex muted\">");
        for ip in k.examples.iter().take(5) {
            let _ = write!(out, "<li><code>{}</code></li>", esc(ip));
        }
        out.push_str("</ul>");
    }
    out
}

/// The kind's handshakes by outcome: succeeded ones green, the rest red.
fn kind_outcomes(k: &KindReport) -> String {
    let parts: Vec<String> = k
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| {
            let class = if SUCCEEDED.contains(&name.as_str()) {
                "okc"
            } else {
                "warn"
            };
            format!("<span class=\"{class}\">{} {n}</span>", esc(name))
        })
        .collect();
    parts.join(" · ")
}

/// The versions of a list in ascending order, as the text a column sorts
/// by ("1.0 1.2": the oldest version offered first).
fn versions_key(l: &Listed<Counted>) -> String {
    let mut values: Vec<&str> = l.items.iter().map(|c| c.value.as_str()).collect();
    values.sort_unstable();
    values.join(" ")
}

/// Certificates served, the fallback marked.
fn certificates(l: &Listed<CertificateSeen>) -> String {
    let mut items = String::new();
    for cert in &l.items {
        let _ = write!(
            items,
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
    finish_list(items, l.more)
}

/// Hosts asked for, each marked covered or not covered by the certificate
/// served.
fn hosts(l: &Listed<HostSeen>) -> String {
    let mut items = String::new();
    for host in &l.items {
        let mark = match host.covered {
            Some(false) => format!(
                " <span class=\"warn\">not covered ({} requests): certificate warning</span>",
                host.uncovered
            ),
            Some(true) => " <span class=\"okc\">covered</span>".into(),
            None => String::new(),
        };
        let _ = write!(
            items,
            "<li>{} <span class=\"muted\">×{}</span>{mark}</li>",
            esc(&host.host),
            host.requests
        );
    }
    finish_list(items, l.more)
}

/// Why handshakes failed, each with its hint ("fix: ...").
fn reasons(l: &Listed<ReasonSeen>) -> String {
    let mut items = String::new();
    for r in &l.items {
        let _ = write!(
            items,
            "<li>{} <span class=\"muted\">×{}</span>",
            esc(&r.reason),
            r.count
        );
        if let Some(hint) = &r.hint {
            let _ = write!(items, "<br><span class=\"hint\">fix: {}</span>", esc(hint));
        }
        items.push_str("</li>");
    }
    finish_list(items, l.more)
}
