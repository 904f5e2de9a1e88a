//! Reading an input file: bounded in size, and decoded from whatever
//! encoding Windows wrote it in.
//!
//! `netsh http show sslcert > file` writes UTF-16LE with a byte order mark
//! from Windows PowerShell 5.1, UTF-8 from PowerShell 7, and the OEM code
//! page from cmd.exe; applicationHost.config is UTF-8 (with or without a
//! BOM). All of these end lines with CRLF. Everything that matters here
//! (addresses, host names, hashes, the English labels of netsh) is ASCII,
//! so bytes that are not valid UTF-8 are replaced rather than refused.

use std::io::Read;
use std::path::Path;

/// Largest input accepted, per file. A server with ten thousand SNI sites
/// has about 10 MiB of netsh output; applicationHost.config is smaller.
pub const MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// One input file, decoded.
#[derive(Debug, Clone)]
pub struct Source {
    /// How messages name it: the path as given, or `<stdin>`.
    pub name: String,
    pub text: String,
}

impl Source {
    /// A source from text already in memory (tests, callers with their own I/O).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Reads `path` (`-`: `stdin`), at most [`MAX_INPUT_BYTES`], and decodes it.
pub fn read(path: &Path, stdin: &mut dyn Read) -> Result<Source, String> {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let mut bytes = Vec::new();
    let result = if path.as_os_str() == "-" {
        stdin.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)
    } else {
        match std::fs::File::open(path) {
            Ok(f) => f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes),
            Err(e) => return Err(format!("{name}: cannot open: {e}")),
        }
    };
    if let Err(e) = result {
        return Err(format!("{name}: cannot read: {e}"));
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "{name}: larger than {} MiB; this is not a netsh listing or an applicationHost.config",
            MAX_INPUT_BYTES / (1024 * 1024)
        ));
    }
    Ok(Source {
        name,
        text: decode(&bytes),
    })
}

/// Text from bytes: UTF-16 (LE or BE) by its byte order mark, or LE without
/// one when every other byte of the start is zero; otherwise UTF-8 (a BOM
/// dropped), invalid sequences replaced.
pub fn decode(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, u16::from_be_bytes);
    }
    if looks_like_utf16le(bytes) {
        return utf16(bytes, u16::from_le_bytes);
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// ASCII text in UTF-16LE without a BOM: a zero in every odd position of
/// the first bytes, and not in the even ones.
fn looks_like_utf16le(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64) & !1];
    head.len() >= 4
        && head.chunks(2).all(|pair| pair[1] == 0)
        && head.chunks(2).any(|pair| pair[0] != 0)
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
        for u in text.encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }

    #[test]
    fn utf16_with_and_without_bom() {
        let text = "SSL Certificate bindings:\r\n    IP:port : 0.0.0.0:443\r\n";
        assert_eq!(decode(&utf16le(text, true)), text);
        assert_eq!(decode(&utf16le(text, false)), text);
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode(&be), text);
    }

    #[test]
    fn utf8_bom_dropped_and_bad_bytes_replaced() {
        assert_eq!(decode(b"\xEF\xBB\xBF<a/>"), "<a/>");
        assert_eq!(decode(b"site \x82t\xE9"), "site \u{FFFD}t\u{FFFD}");
        assert_eq!(decode(b""), "");
        // An odd trailing byte and an unpaired surrogate do not panic.
        assert_eq!(decode(&[0xFF, 0xFE, 0x41, 0x00, 0x42]), "A");
        assert_eq!(decode(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00]), "\u{FFFD}A");
    }

    #[test]
    fn reading_is_bounded() {
        let mut big = std::io::repeat(b'a');
        let e = read(Path::new("-"), &mut big).unwrap_err();
        assert!(e.starts_with("<stdin>: larger than 32 MiB"), "{e}");
        let e = read(Path::new("/nonexistent/netsh.txt"), &mut std::io::empty()).unwrap_err();
        assert!(e.contains("cannot open"), "{e}");
    }
}
