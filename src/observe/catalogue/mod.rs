//! The client catalogue: which client software a ClientHello comes from,
//! named by its JA4 (`src/tls/fingerprint.rs`; README, "JA3 and JA4").
//!
//! The data is `clients.toml` in this folder, compiled in and parsed once,
//! on first use, into two hash maps: whole JA4s (`a_b_c`) and JA4 `b_c`
//! parts. [`identify`] looks a JA4 up in the first, then its `b_c` in the
//! second: a whole-JA4 entry is more specific and wins, and a `b_c` entry
//! matches the same software with and without SNI (the `d`/`i` and the
//! extension count are in `a`; `c` leaves out server_name and ALPN). A JA4
//! that neither holds is unknown: `None`, never a guess.
//!
//! A lookup is one or two hash-map lookups on slices of the JA4 string: no
//! allocation, no parsing. The handshake log's `client`
//! ([`HandshakeRecord::client`](crate::observe::telemetry::HandshakeRecord::client)),
//! `snigate explain` and the compatibility report all ask [`identify`].
//!
//! To add an entry: README, "Client catalogue" (the data file, the source to
//! cite, the test to extend).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;

/// The catalogue's data, as shipped.
pub const CLIENTS_TOML: &str = include_str!("clients.toml");

/// Length of a JA4: `a` (10) `_` `b` (12) `_` `c` (12).
const JA4_LEN: usize = 36;
/// Where `b_c` starts in a JA4.
const BC_AT: usize = 11;

/// One piece of client software the catalogue knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKind {
    /// What the handshake log's `client` and `explain` show, e.g.
    /// `"Windows 7 SChannel (IE 11, WebDAV mini-redirector, Office 2010)"`.
    pub name: String,
    /// What it means for snigate: which certificate serves it, or which
    /// legacy path, in plain words.
    pub note: String,
    /// Where the fingerprint comes from: a capture in `tests/data/hellos`
    /// (with its `SOURCES.md` row) or the test that measures it.
    pub source: String,
    /// What the entry matches.
    pub pattern: Pattern,
}

/// What a catalogue entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// This whole JA4, e.g. `t10i110100_3609b414f052_bc98f8e001b5`.
    Ja4(String),
    /// Every JA4 that ends in these `b_c` parts, e.g.
    /// `9295eb73ea51_71440d09e7ee`, whatever its `a` part.
    Bc(String),
}

impl fmt::Display for Pattern {
    /// `JA4 t10i..._..._...` or `JA4 b_c *_9295eb73ea51_71440d09e7ee`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Ja4(ja4) => write!(f, "JA4 {ja4}"),
            Pattern::Bc(bc) => write!(f, "JA4 b_c *_{bc}"),
        }
    }
}

/// The client software whose hello has this JA4, or `None` when the
/// catalogue does not know it (and for `""`, a connection without a hello).
/// A whole-JA4 entry wins over a `b_c` entry.
pub fn identify(ja4: &str) -> Option<&'static ClientKind> {
    CATALOGUE.identify(ja4)
}

/// Every entry, in the order of `clients.toml`.
pub fn entries() -> &'static [ClientKind] {
    &CATALOGUE.entries
}

/// The shipped catalogue. `clients.toml` is compiled in and a unit test
/// parses it, so this cannot fail in a build whose tests pass.
static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    Catalogue::parse(CLIENTS_TOML)
        .unwrap_or_else(|e| panic!("src/observe/catalogue/clients.toml: {e}"))
});

/// Entries and their two lookup tables (index into `entries`).
#[derive(Debug)]
pub struct Catalogue {
    entries: Vec<ClientKind>,
    by_ja4: HashMap<String, usize>,
    by_bc: HashMap<String, usize>,
}

/// `clients.toml`: `[[client]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    client: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    ja4: Option<String>,
    ja4_bc: Option<String>,
    note: String,
    source: String,
}

impl Catalogue {
    /// Parses and checks catalogue data in the format of `clients.toml`:
    /// every entry has a name, a note, a source and exactly one of `ja4`
    /// (a well-formed JA4) and `ja4_bc` (its `b_c` parts); no key twice.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut cat = Catalogue {
            entries: Vec::with_capacity(file.client.len()),
            by_ja4: HashMap::new(),
            by_bc: HashMap::new(),
        };
        for (i, e) in file.client.into_iter().enumerate() {
            let at = format!("[[client]] #{} ({:?})", i + 1, e.name);
            for (field, value) in [("name", &e.name), ("note", &e.note), ("source", &e.source)] {
                if value.trim().is_empty() {
                    return Err(format!("{at}: empty {field}"));
                }
            }
            let (pattern, table) = match (e.ja4, e.ja4_bc) {
                (Some(ja4), None) if is_ja4(&ja4) => (Pattern::Ja4(ja4), &mut cat.by_ja4),
                (Some(ja4), None) => {
                    return Err(format!(
                        "{at}: ja4 {ja4:?} is not a JA4 (like t12d240700_9295eb73ea51_71440d09e7ee)"
                    ))
                }
                (None, Some(bc)) if is_bc(&bc) => (Pattern::Bc(bc), &mut cat.by_bc),
                (None, Some(bc)) => {
                    return Err(format!(
                        "{at}: ja4_bc {bc:?} is not the b_c parts of a JA4 (like 9295eb73ea51_71440d09e7ee)"
                    ))
                }
                _ => return Err(format!("{at}: needs exactly one of ja4 and ja4_bc")),
            };
            let key = match &pattern {
                Pattern::Ja4(k) | Pattern::Bc(k) => k.clone(),
            };
            if let Some(first) = table.insert(key.clone(), i) {
                return Err(format!(
                    "{at}: {key} is already the key of {:?}",
                    cat.entries[first].name
                ));
            }
            cat.entries.push(ClientKind {
                name: e.name,
                note: e.note,
                source: e.source,
                pattern,
            });
        }
        Ok(cat)
    }

    /// The entry for this JA4: a whole-JA4 entry, else a `b_c` entry.
    pub fn identify(&self, ja4: &str) -> Option<&ClientKind> {
        let at = self.by_ja4.get(ja4).or_else(|| {
            let bc = (ja4.len() == JA4_LEN && ja4.as_bytes()[BC_AT - 1] == b'_')
                .then(|| ja4.get(BC_AT..))
                .flatten()?;
            self.by_bc.get(bc)
        })?;
        Some(&self.entries[*at])
    }
}

/// 12 lower-case hex digits (a JA4 hash part).
fn is_hash(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `b_c`: two hash parts.
fn is_bc(s: &str) -> bool {
    s.split_once('_')
        .is_some_and(|(b, c)| is_hash(b) && is_hash(c))
}

/// A whole JA4 as snigate writes it: `a` is the protocol (`t`, or `q`/`d`
/// for QUIC/DTLS), two version characters, `d`/`i`, two two-digit counts
/// and two ALPN characters (lower-case letters or digits); then `_b_c`.
fn is_ja4(s: &str) -> bool {
    let Some((a, bc)) = s.split_once('_') else {
        return false;
    };
    let a = a.as_bytes();
    a.len() == 10
        && matches!(a[0], b't' | b'q' | b'd')
        && a[1..3]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && matches!(a[3], b'd' | b'i')
        && a[4..8].iter().all(u8::is_ascii_digit)
        && a[8..10]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && is_bc(bc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIN7_SNI: &str = "t12d240700_9295eb73ea51_71440d09e7ee";
    const WIN7_NO_SNI: &str = "t12i240600_9295eb73ea51_71440d09e7ee";

    fn catalogue(entries: &str) -> Catalogue {
        Catalogue::parse(entries).unwrap_or_else(|e| panic!("{e}\n{entries}"))
    }

    fn entry(name: &str, key: &str, value: &str) -> String {
        format!(
            "[[client]]\nname = \"{name}\"\n{key} = \"{value}\"\nnote = \"n\"\nsource = \"s\"\n\n"
        )
    }

    #[test]
    fn the_shipped_file_parses_and_every_entry_is_well_formed() {
        let cat = Catalogue::parse(CLIENTS_TOML).expect("clients.toml");
        assert!(cat.entries.len() >= 5, "{cat:?}");
        assert_eq!(entries().len(), cat.entries.len());
        for e in &cat.entries {
            // Every entry names its source: a capture or a test.
            assert!(
                e.source.contains("tests/data/hellos/") || e.source.contains("tests/it/"),
                "{}: source {:?}",
                e.name,
                e.source
            );
            for text in [&e.name, &e.note, &e.source] {
                assert_eq!(text.trim(), text, "{}: surrounding blanks", e.name);
                assert!(!text.contains('\n'), "{}: a line break in {text:?}", e.name);
            }
            // Each entry is what identify answers for its own key.
            let probe = match &e.pattern {
                Pattern::Ja4(ja4) => ja4.clone(),
                Pattern::Bc(bc) => format!("t13d0000h2_{bc}"),
            };
            assert_eq!(identify(&probe), Some(e), "{probe}");
        }
        let names: std::collections::HashSet<&str> =
            cat.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), cat.entries.len(), "two entries with one name");
    }

    #[test]
    fn b_c_parts_match_with_and_without_sni() {
        let cat = catalogue(&entry("Win7", "ja4_bc", "9295eb73ea51_71440d09e7ee"));
        assert_eq!(
            cat.identify(WIN7_SNI).map(|c| c.name.as_str()),
            Some("Win7")
        );
        assert_eq!(
            cat.identify(WIN7_NO_SNI).map(|c| c.name.as_str()),
            Some("Win7")
        );
        // Another b or c part is another client.
        assert_eq!(cat.identify("t12d240700_9295eb73ea51_71440d09e7ef"), None);
        assert_eq!(cat.identify("t12d240700_9295eb73ea50_71440d09e7ee"), None);
    }

    #[test]
    fn a_whole_ja4_wins_over_b_c_parts() {
        let text = entry("SChannel", "ja4_bc", "9295eb73ea51_71440d09e7ee")
            + &entry("SChannel without SNI", "ja4", WIN7_NO_SNI);
        let cat = catalogue(&text);
        let name = |ja4| cat.identify(ja4).map(|c| c.name.as_str());
        assert_eq!(name(WIN7_NO_SNI), Some("SChannel without SNI"));
        assert_eq!(name(WIN7_SNI), Some("SChannel"));
        // Listed the other way round: the same answers.
        let text = entry("SChannel without SNI", "ja4", WIN7_NO_SNI)
            + &entry("SChannel", "ja4_bc", "9295eb73ea51_71440d09e7ee");
        let cat = catalogue(&text);
        assert_eq!(
            cat.identify(WIN7_NO_SNI).unwrap().name,
            "SChannel without SNI"
        );
        assert_eq!(cat.identify(WIN7_SNI).unwrap().name, "SChannel");
    }

    #[test]
    fn a_whole_ja4_entry_matches_only_itself() {
        let cat = catalogue(&entry("XP", "ja4", "t10i110100_3609b414f052_bc98f8e001b5"));
        assert!(cat
            .identify("t10i110100_3609b414f052_bc98f8e001b5")
            .is_some());
        assert_eq!(cat.identify("t10d110200_3609b414f052_bc98f8e001b5"), None);
    }

    #[test]
    fn unknown_and_odd_inputs_are_none() {
        let cat = catalogue(&entry("Win7", "ja4_bc", "9295eb73ea51_71440d09e7ee"));
        for ja4 in [
            "",
            "9295eb73ea51_71440d09e7ee",
            "_9295eb73ea51_71440d09e7ee",
            "t12d240700x9295eb73ea51_71440d09e7ee",
            "t12d2407000_9295eb73ea51_71440d09e7ee",
            "t13d1516h2_8daaf6152771_e5627efa2ab1",
            "t12d240700_9295eb73ea51_71440d09e7e\u{e9}",
            "t12d240700\u{e9}295eb73ea51_71440d09e7ee",
        ] {
            assert_eq!(cat.identify(ja4), None, "{ja4:?}");
        }
        assert_eq!(identify(""), None);
        assert_eq!(identify("t13d1516h2_8daaf6152771_e5627efa2ab1"), None);
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry_named() {
        let bad = [
            (entry("A", "ja4", "t12d240700_9295eb73ea51"), "not a JA4"),
            (entry("A", "ja4", "T12D240700_9295EB73EA51_71440D09E7EE"), "not a JA4"),
            (entry("A", "ja4_bc", "t12d240700_9295eb73ea51_71440d09e7ee"), "not the b_c"),
            (entry("A", "ja4_bc", "9295eb73ea5_71440d09e7ee"), "not the b_c"),
            (entry("", "ja4_bc", "9295eb73ea51_71440d09e7ee"), "empty name"),
            (
                "[[client]]\nname = \"A\"\nnote = \"n\"\nsource = \"s\"\n".to_string(),
                "exactly one of ja4 and ja4_bc",
            ),
            (
                "[[client]]\nname = \"A\"\nja4 = \"t10i110100_3609b414f052_bc98f8e001b5\"\nja4_bc = \"3609b414f052_bc98f8e001b5\"\nnote = \"n\"\nsource = \"s\"\n".to_string(),
                "exactly one of ja4 and ja4_bc",
            ),
            (
                "[[client]]\nname = \"A\"\nja4_bc = \"3609b414f052_bc98f8e001b5\"\nsource = \"s\"\n".to_string(),
                "missing field `note`",
            ),
            (
                entry("A", "ja4_bc", "3609b414f052_bc98f8e001b5") + "colour = \"blue\"\n",
                "unknown field",
            ),
            (
                entry("A", "ja4_bc", "3609b414f052_bc98f8e001b5")
                    + &entry("B", "ja4_bc", "3609b414f052_bc98f8e001b5"),
                "already the key of \"A\"",
            ),
        ];
        for (text, want) in bad {
            let err = Catalogue::parse(&text).expect_err(&text);
            assert!(err.contains(want), "{err:?} should say {want:?}:\n{text}");
        }
    }
}
