//! The report as a document of bounded size: `/report` stays under
//! [`JSON_MAX_BYTES`] and `/report.html` under [`HTML_MAX_BYTES`] whatever
//! the traffic. The per-address table is cut first (to the `clients` asked
//! for, then to what fits), then the kinds table; each cut is said in
//! `folded`, and the kinds cut are added into `other_kinds` so the totals
//! stay whole.

use super::snapshot::{KindReport, OtherKinds, ReportSnapshot};
use crate::observe::outcome::HandshakeOutcome;

/// `/report` and `snigate report --json` stay under this.
pub const JSON_MAX_BYTES: usize = 1024 * 1024;

/// `/report.html` and `snigate report --html` stay under this.
pub const HTML_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Per-address rows shown when the reader does not ask (`?clients=N`).
pub const DEFAULT_CLIENTS: usize = 100;

/// Room kept below the limit for the `folded` notes themselves.
const SLACK: usize = 4 * 1024;

/// The report as pretty JSON under [`JSON_MAX_BYTES`], with at most
/// `clients` per-address rows.
pub fn json_document(snapshot: ReportSnapshot, clients: usize) -> String {
    let render = |s: &ReportSnapshot| serde_json::to_string_pretty(s).unwrap_or_default();
    fit(snapshot, clients, JSON_MAX_BYTES, render)
}

/// The report as an HTML page under [`HTML_MAX_BYTES`], with at most
/// `clients` per-address rows.
pub fn html_document(snapshot: ReportSnapshot, clients: usize) -> String {
    fit(snapshot, clients, HTML_MAX_BYTES, super::render_html)
}

/// The snapshot cut to at most `clients` per-address rows, then (when the
/// rendering is still over `max` bytes) to as many rows and kinds as fit.
/// Rendering is tried O(log n) times: a report is asked for rarely.
pub(crate) fn fit(
    mut s: ReportSnapshot,
    clients: usize,
    max: usize,
    render: impl Fn(&ReportSnapshot) -> String,
) -> String {
    let budget = max.saturating_sub(SLACK);
    let held = s.clients.len();
    if held > clients {
        s.clients.truncate(clients);
        s.folded.push(format!(
            "per-address table: {clients} of {held} rows shown (ask for more with ?clients=N or --clients N)"
        ));
    }
    let out = render(&s);
    if out.len() <= budget {
        return out;
    }
    // Fewer per-address rows first: the kinds are the first view.
    let shown = s.clients.len();
    let keep = largest_fitting(shown, |n| {
        let mut t = s.clone();
        t.clients.truncate(n);
        render(&t).len() <= budget
    });
    if keep < shown {
        s.clients.truncate(keep);
        s.folded.push(format!(
            "per-address table: cut to {keep} rows to keep this document under {} KiB",
            max / 1024
        ));
    }
    let out = render(&s);
    if out.len() <= budget {
        return out;
    }
    let kinds = s.kinds.len();
    let keep = largest_fitting(kinds, |n| {
        let mut t = s.clone();
        fold_kinds(&mut t, n);
        render(&t).len() <= budget
    });
    fold_kinds(&mut s, keep);
    s.folded.push(format!(
        "kinds table: {keep} of {kinds} kinds shown to keep this document under {} KiB; the rest are added up in other_kinds",
        max / 1024
    ));
    render(&s)
}

/// Keeps the first `n` kinds; the rest are added into `other_kinds`.
fn fold_kinds(s: &mut ReportSnapshot, n: usize) {
    for k in s.kinds.drain(n.min(s.kinds.len())..) {
        add_kind(&mut s.other_kinds, &k);
    }
}

/// Adds a kind's counts to the kinds not listed.
fn add_kind(other: &mut OtherKinds, k: &KindReport) {
    let succeeded = |name: &str| HandshakeOutcome::from_name(name).is_some_and(|o| o.succeeded());
    let ok = k
        .outcomes
        .iter()
        .filter(|(name, _)| succeeded(name))
        .map(|(_, n)| n)
        .sum::<u64>();
    other.add(k.handshakes, ok, k.without_sni, k.requests);
}

/// The largest `n` in `0..=high` for which `fits(n)` holds, assuming it
/// holds for every smaller `n` once it holds for one (`0` when none does).
fn largest_fitting(high: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, high);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::largest_fitting;

    #[test]
    fn largest_fitting_finds_the_edge() {
        assert_eq!(largest_fitting(100, |n| n <= 37), 37);
        assert_eq!(largest_fitting(100, |_| true), 100);
        assert_eq!(largest_fitting(100, |_| false), 0);
        assert_eq!(largest_fitting(0, |_| true), 0);
    }
}
