//! Text for a terminal made of values from the network or a log (SNI,
//! User-Agents, reasons, listener names): control characters are shown
//! escaped (`\u{1b}`), never sent, so a client cannot move the cursor,
//! recolour or retitle an operator's terminal through a report.

/// `s` with every control character escaped.
pub fn printable(s: &str) -> String {
    escape(s, |_| false)
}

/// `s` with every control character but the line feed escaped: for a
/// whole report written line by line.
pub fn printable_lines(s: &str) -> String {
    escape(s, |c| c == '\n')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(
            printable_lines("a\u{1b}]0;x\u{7}\nb"),
            "a\\u{1b}]0;x\\u{7}\nb"
        );
        assert_eq!(printable("Outlook/16.0 …"), "Outlook/16.0 …");
    }
}
