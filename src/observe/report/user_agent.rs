//! User-Agent values as the report keeps them: clipped and normalised so
//! that one kind of client software is one value.
//!
//! Version numbers are kept (`Microsoft-WebDAV-MiniRedir/10.0.19045`,
//! `Outlook 16.0.17126`): they tell which build lacks SNI. What is cut are
//! random tokens some clients append per install or per request (GUIDs,
//! hex or base64 identifiers, long digit runs): a word of 16 characters or
//! more that holds a digit becomes `…`. Runs of white space become one
//! space (other control characters stay: the renderings escape them), and
//! the result is at most
//! [`MAX_BYTES`] (cut at a character boundary, ending in `…`).

use std::borrow::Cow;

/// The longest User-Agent kept, in bytes (before the closing `…`).
pub const MAX_BYTES: usize = 200;

/// Words this long or longer that hold a digit are random tokens.
const TOKEN_MIN: usize = 16;

/// What a long random token becomes.
const CUT: &str = "…";

/// The User-Agent as the report keeps it (see the module comment).
pub fn normalise(ua: &str) -> Cow<'_, str> {
    if ua.len() <= MAX_BYTES && is_plain(ua) {
        return Cow::Borrowed(ua);
    }
    let mut out = String::with_capacity(ua.len().min(MAX_BYTES + CUT.len()));
    let mut rest = ua.trim();
    while let Some(c) = rest.chars().next() {
        if out.len() >= MAX_BYTES {
            out.push_str(CUT);
            break;
        }
        if is_word(c) {
            let end = rest.find(|c| !is_word(c)).unwrap_or(rest.len());
            push_clipped(&mut out, word(&rest[..end]));
            rest = &rest[end..];
        } else if out.len() + c.len_utf8() > MAX_BYTES {
            out.push_str(CUT);
            break;
        } else if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            rest = rest.trim_start();
        } else {
            // Control characters stay: the renderings escape them, and they
            // say something about the client.
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Cow::Owned(out)
}

/// Nothing to change: no long token, no control character, no white space
/// other than single spaces, nothing to trim.
fn is_plain(ua: &str) -> bool {
    let mut run = 0usize;
    let mut digit = false;
    let mut prev_space = true;
    for c in ua.chars() {
        if c.is_whitespace() && (c != ' ' || prev_space) {
            return false;
        }
        prev_space = c == ' ';
        if is_word(c) {
            run += 1;
            digit |= c.is_ascii_digit();
            if run >= TOKEN_MIN && digit {
                return false;
            }
        } else {
            run = 0;
            digit = false;
        }
    }
    !prev_space || ua.is_empty()
}

/// Characters of one word: what random tokens are made of (GUIDs and
/// base64 included), but not `.`, `/`, `;` or `=`, which separate versions,
/// products and `key=value` pairs.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+')
}

/// A word, or [`CUT`] for a random token.
fn word(w: &str) -> &str {
    if w.len() >= TOKEN_MIN && w.bytes().any(|b| b.is_ascii_digit()) {
        CUT
    } else {
        w
    }
}

/// Appends `s`, cut so that `out` stays within [`MAX_BYTES`].
fn push_clipped(out: &mut String, s: &str) {
    let room = MAX_BYTES.saturating_sub(out.len());
    if s.len() <= room {
        out.push_str(s);
        return;
    }
    let mut end = room;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&s[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_stay_and_random_tokens_go() {
        let keep = [
            "Microsoft-WebDAV-MiniRedir/10.0.19045",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
            "Dalvik/1.4.0 (Linux; U; Android 2.3.7; Nexus S Build/GRK39F)",
            "Apple-iPhone7C2/1202.466",
            "",
        ];
        for ua in keep {
            assert_eq!(normalise(ua), ua);
            assert!(matches!(normalise(ua), Cow::Borrowed(_)), "{ua}");
        }
        assert_eq!(
            normalise("Outlook-iOS/2.0 (device 3f2504e0-4f89-11d3-9a0c-0305e82c3301)"),
            "Outlook-iOS/2.0 (device …)"
        );
        assert_eq!(
            normalise(
                "SyncClient/1.0 token=QmFzZTY0RW5jb2RlZFRva2VuMTIzNDU2 id=12345678901234567890"
            ),
            "SyncClient/1.0 token=… id=…"
        );
        // Long words without a digit are names, not tokens.
        assert_eq!(
            normalise("Microsoft-Server-ActiveSync-Client"),
            "Microsoft-Server-ActiveSync-Client"
        );
    }

    #[test]
    fn white_space_and_control_characters_are_tidied() {
        assert_eq!(normalise("  curl/8.5.0 \t\r\n extra  "), "curl/8.5.0 extra");
        assert_eq!(normalise("a\u{7}b"), "a\u{7}b");
    }

    #[test]
    fn long_values_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(300);
        let n = normalise(&long);
        assert!(n.len() <= MAX_BYTES + CUT.len(), "{}", n.len());
        assert!(n.ends_with(CUT));
        let words = "word ".repeat(100);
        assert!(normalise(&words).len() <= MAX_BYTES + CUT.len());
    }

    #[test]
    fn any_input_gives_a_bounded_value_that_normalises_to_itself() {
        // Fixed-seed inputs mixing ASCII, digits, separators, white space,
        // control and multi-byte characters.
        let alphabet: Vec<char> = "aZ09-_+=./;() \t\n\u{1}é€😀".chars().collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 400) as usize;
            let ua: String = (0..len)
                .map(|i| alphabet[((x >> (i % 48)) as usize + i * 7) % alphabet.len()])
                .collect();
            let once = normalise(&ua).into_owned();
            assert!(once.len() <= MAX_BYTES + CUT.len(), "{ua:?} gave {once:?}");
            assert_eq!(normalise(&once), once, "{ua:?} gave {once:?}");
        }
    }
}
