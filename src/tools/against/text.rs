//! `report --against` as text: per listener, a table of kinds (today, under
//! NEW, handshakes, addresses) with the reason under NEW below each row,
//! then what changes in plain words.

use std::fmt::Write as _;

use crate::observe::terminal::printable_lines;

use super::{kind_name, Against, ChangeSummary, KindReplay, ListenerReplay};

/// Width of the kind column.
const KIND: usize = 58;
/// Width of the two outcome columns.
const OUTCOME: usize = 20;

/// The whole answer as text.
pub fn render(answer: &Against) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "What-if: the client kinds in {} replayed through {} ({} lines read, {} skipped)",
        answer.logs.join(", "),
        answer.config,
        answer.lines,
        answer.skipped
    );
    if answer.listeners.is_empty() {
        out.push_str("\nNo handshake of a ClientHello in these logs.\n");
    }
    for listener in &answer.listeners {
        render_listener(&mut out, listener);
    }
    // SNI, listener names, JA4s and reasons come from the logs.
    printable_lines(&out)
}

fn render_listener(out: &mut String, l: &ListenerReplay) {
    let mode = match l.mode_under_new {
        Some(mode) => format!("{mode} under NEW"),
        None => "not in NEW".into(),
    };
    let _ = writeln!(
        out,
        "\nlistener \"{}\" ({mode}): {} handshakes",
        l.listener, l.handshakes
    );
    let _ = writeln!(
        out,
        "  {:<KIND$} {:<OUTCOME$} {:<OUTCOME$} {:>10} {:>9}",
        "KIND", "TODAY", "UNDER NEW", "HANDSHAKES", "ADDRESSES"
    );
    for kind in &l.kinds {
        render_kind(out, kind);
    }
    if l.more_handshakes > 0 {
        let _ = writeln!(
            out,
            "  ... and {} handshakes of kinds not listed (too many kinds)",
            l.more_handshakes
        );
    }
    out.push('\n');
    for change in &l.changes {
        render_change(out, change);
    }
    if l.not_replayed > 0 {
        let _ = writeln!(
            out,
            "  not replayed: {} kinds (see the rows above)",
            l.not_replayed
        );
    }
    if l.changes.is_empty() {
        out.push_str("  no replayed kind changes outcome under NEW\n");
    }
}

fn render_kind(out: &mut String, kind: &KindReplay) {
    let today = kind
        .today
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let under = match &kind.new {
        Some(new) => match new.engine {
            Some(engine) => format!("{} ({engine})", new.outcome),
            None => new.outcome.to_string(),
        },
        None => "not replayed".into(),
    };
    let addresses = if kind.addresses_capped {
        format!(">={}", kind.addresses)
    } else {
        kind.addresses.to_string()
    };
    let mut name = kind_name(kind);
    if name.chars().count() > KIND {
        // Too long for its column: on a line of its own, the row below it.
        let _ = writeln!(out, "  {name}");
        name.clear();
    }
    let _ = writeln!(
        out,
        "  {:<KIND$} {:<OUTCOME$} {:<OUTCOME$} {:>10} {:>9}",
        name, today, under, kind.handshakes, addresses
    );
    let ja4 = if kind.ja4.is_empty() {
        "no JA4"
    } else {
        &kind.ja4
    };
    let _ = writeln!(out, "      JA4 {ja4}");
    if let Some(new) = &kind.new {
        if let Some(certificate) = &new.certificate {
            let fallback = if new.fallback { " (fallback)" } else { "" };
            let _ = writeln!(out, "      certificate under NEW: {certificate}{fallback}");
        }
        if let Some(upstream) = &new.upstream {
            let _ = writeln!(out, "      upstream under NEW: {upstream}");
        }
        if let Some(reason) = &new.reason {
            let _ = writeln!(out, "      why: {reason}");
        }
        if let Some(hint) = &new.hint {
            let _ = writeln!(out, "      hint: {hint}");
        }
    }
    if let Some(why) = &kind.not_replayed {
        let _ = writeln!(out, "      {why}");
    }
}

fn render_change(out: &mut String, c: &ChangeSummary) {
    let kinds = if c.kinds == 1 { "kind" } else { "kinds" };
    let _ = writeln!(
        out,
        "  {}: {} {kinds} ({} addresses, {:.0}% of handshakes): {}",
        c.change.words(),
        c.kinds,
        c.addresses,
        c.percent,
        c.clients.join("; ")
    );
}
