//! The kinds table as CSV (`GET /report.csv`, `snigate report --csv`): one
//! row per client kind, a header row, multi-valued cells joined with "; ",
//! for a spreadsheet.
//!
//! The file starts with a UTF-8 byte order mark: without it Excel reads
//! UTF-8 as the machine's ANSI code page and garbles every non-ASCII
//! character (User-Agents, the `…` of clipped values).
//!
//! Spreadsheet formula injection (OWASP "CSV injection"): User-Agents,
//! Hosts, reasons and the other text cells come from clients or logs, and a
//! spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (tab and CR
//! too, in some) as a formula: `=HYPERLINK(...)` in a User-Agent would become
//! a live link in the operator's spreadsheet. Every text cell that starts
//! with one of those characters gets a leading `'`, which spreadsheets show
//! as text and do not evaluate. Quoting (commas, quotes, line breaks) is the
//! `csv` crate's.

use super::snapshot::{CertificateSeen, Counted, HostSeen, KindReport, Listed, ReasonSeen};
use super::snapshot::{OtherKinds, ReportSnapshot};

/// The header row: stable names, in this order.
pub(crate) const CSV_COLUMNS: [&str; 26] = [
    "client",
    "client_note",
    "user_agent",
    "ja4",
    "addresses",
    "addresses_exact",
    "handshakes",
    "with_sni",
    "without_sni",
    "ok",
    "failed",
    "rejected",
    "passthrough",
    "legacy_passthrough",
    "other",
    "requests",
    "offered_versions",
    "negotiated_versions",
    "listeners",
    "certificates",
    "hosts",
    "reasons",
    "hints",
    "first_seen",
    "last_seen",
    "example_addresses",
];

/// The outcomes with a column of their own; any other name counts in
/// `other`.
const OUTCOME_COLUMNS: [&str; 5] = [
    "ok",
    "failed",
    "rejected",
    "passthrough",
    "legacy_passthrough",
];

/// Joins the values of a multi-valued cell.
const JOIN: &str = "; ";

/// The UTF-8 byte order mark the file starts with (for Excel).
const BOM: &str = "\u{feff}";

/// The kinds table as CSV: the header, one row per kind, and a row for the
/// kinds not listed (`other_kinds`) when there are any.
pub fn render_csv(s: &ReportSnapshot) -> String {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(1024 + 512 * s.kinds.len()));
    // Writing to a Vec cannot fail, and every row has the header's length.
    let _ = w.write_record(CSV_COLUMNS);
    for k in &s.kinds {
        let _ = w.write_record(kind_row(k));
    }
    if s.other_kinds.kinds > 0 {
        let _ = w.write_record(other_row(&s.other_kinds));
    }
    let bytes = w.into_inner().unwrap_or_default();
    // The writer only writes the UTF-8 it was given.
    BOM.to_string() + &String::from_utf8_lossy(&bytes)
}

/// One kind's cells, in [`CSV_COLUMNS`] order.
fn kind_row(k: &KindReport) -> Vec<String> {
    let count = |name: &str| k.outcomes.get(name).copied().unwrap_or(0);
    let other: u64 = k
        .outcomes
        .iter()
        .filter(|(name, _)| !OUTCOME_COLUMNS.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum();
    let mut row = vec![
        text(k.client.as_deref().unwrap_or("unknown")),
        text(k.client_note.as_deref().unwrap_or("")),
        text(&k.user_agent),
        text(&k.ja4),
        k.addresses.to_string(),
        k.addresses_exact.to_string(),
        k.handshakes.to_string(),
        k.with_sni.to_string(),
        k.without_sni.to_string(),
    ];
    row.extend(OUTCOME_COLUMNS.iter().map(|o| count(o).to_string()));
    row.extend([
        other.to_string(),
        k.requests.to_string(),
        text(&counted(&k.offered_versions)),
        text(&counted(&k.negotiated_versions)),
        text(&counted(&k.listeners)),
        text(&certificates(&k.certificates)),
        text(&hosts(&k.hosts)),
        text(&reasons(&k.reasons)),
        text(&hints(&k.reasons)),
        text(k.first_seen.as_deref().unwrap_or("")),
        text(k.last_seen.as_deref().unwrap_or("")),
        text(&k.examples.join(JOIN)),
    ]);
    row
}

/// The row that adds up the kinds not listed: its `client` cell says so,
/// the counts that `other_kinds` keeps are filled, the rest left empty.
fn other_row(o: &OtherKinds) -> Vec<String> {
    CSV_COLUMNS
        .iter()
        .map(|column| match *column {
            "client" => format!("(other kinds: {})", o.kinds),
            "handshakes" => o.handshakes.to_string(),
            "with_sni" => o.handshakes.saturating_sub(o.without_sni).to_string(),
            "without_sni" => o.without_sni.to_string(),
            // `ok` and `failed` are what OtherKinds keeps: succeeded (ok,
            // passthrough, legacy_passthrough) and did not.
            "ok" => o.ok.to_string(),
            "failed" => o.failed.to_string(),
            "requests" => o.requests.to_string(),
            _ => String::new(),
        })
        .collect()
}

/// A text cell, safe from formula injection: a leading `'` when it starts
/// with a character a spreadsheet would take as the start of a formula.
pub(crate) fn text(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    }
}

/// "+N more" for the values a list counted but did not keep.
fn with_more(mut parts: Vec<String>, more: u64) -> String {
    if more > 0 {
        parts.push(format!("+{more} more"));
    }
    parts.join(JOIN)
}

/// `1.2 (3); 1.0 (1)`.
fn counted(l: &Listed<Counted>) -> String {
    let parts = l.items.iter().map(|c| format!("{} ({})", c.value, c.count));
    with_more(parts.collect(), l.more)
}

/// `farm (fallback) (3); portal (1)`.
fn certificates(l: &Listed<CertificateSeen>) -> String {
    let parts = l.items.iter().map(|c| {
        let fallback = if c.fallback { " (fallback)" } else { "" };
        format!("{}{fallback} ({})", c.name, c.count)
    });
    with_more(parts.collect(), l.more)
}

/// `teams.contoso.test (3 requests, not covered in 3); portal.contoso.test
/// (1 requests, covered)`.
fn hosts(l: &Listed<HostSeen>) -> String {
    let parts = l.items.iter().map(|h| {
        let covered = match h.covered {
            Some(false) => format!(", not covered in {}", h.uncovered),
            Some(true) => ", covered".to_string(),
            None => String::new(),
        };
        format!("{} ({} requests{covered})", h.host, h.requests)
    });
    with_more(parts.collect(), l.more)
}

/// `no cipher suite in common (2)`.
fn reasons(l: &Listed<ReasonSeen>) -> String {
    let parts = l
        .items
        .iter()
        .map(|r| format!("{} ({})", r.reason, r.count));
    with_more(parts.collect(), l.more)
}

/// The distinct hints of the reasons, in the reasons' order.
fn hints(l: &Listed<ReasonSeen>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for hint in l.items.iter().filter_map(|r| r.hint.as_deref()) {
        if !seen.contains(&hint) {
            seen.push(hint);
        }
    }
    seen.join(JOIN)
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn formula_starts_are_neutralised() {
        for hostile in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(text(hostile), format!("'{hostile}"));
        }
        for plain in [
            "Microsoft-WebDAV-MiniRedir/6.1.7601",
            "",
            "1.2 (3)",
            "'quoted",
        ] {
            assert_eq!(text(plain), plain);
        }
    }
}
