//! JA3 and JA4 fingerprints of a ClientHello.
//!
//! Both name the client *software* (its TLS stack and settings), not the host it
//! connects to, so the handshake log and the compatibility report can group the
//! clients that lack SNI or fail their handshake.
//!
//! - **JA3** (Salesforce, <https://github.com/salesforce/ja3>): the MD5 (lower-case
//!   hex) of `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`,
//!   each a `-`-joined list of decimal values in the order sent, GREASE values
//!   (RFC 8701) removed. `SSLVersion` is the hello's legacy `client_version`, never
//!   the record version nor supported_versions. A hello without extensions gives
//!   empty fields (`769,4-5-10,,,`).
//! - **JA4** (FoxIO, `technical_details/JA4.md` in <https://github.com/FoxIO-LLC/ja4>):
//!   `t13d1516h2_8daaf6152771_e5627efa2ab1`, that is
//!   - `t` (TLS over TCP: snigate sees no QUIC or DTLS);
//!   - the version: the highest non-GREASE supported_versions entry, else the
//!     hello's `client_version`: `13` `12` `11` `10` `s3` `s2` (`d1` `d2` `d3` for
//!     DTLS), `00` for anything else;
//!   - `d` when the server_name extension is present (whatever it holds), else `i`;
//!   - the number of cipher suites and of extensions, two digits each, capped at 99,
//!     GREASE not counted, SCSVs, server_name and ALPN counted;
//!   - the first and last byte of the first ALPN protocol name (`h2`, `h1` for
//!     `http/1.1`; a one-byte name gives that byte twice); when either byte is not an
//!     ASCII letter or digit, the first and last characters of the name's lower-case
//!     hex instead (`0xAB 0xCD` gives `ad`); `00` without ALPN, with an empty list or
//!     an empty first name;
//!   - `_` and the first 12 hex digits of the SHA-256 of the cipher suites as 4-digit
//!     lower-case hex, sorted, comma-joined (`000000000000` when there are none);
//!   - `_` and the first 12 hex digits of the SHA-256 of the extension types, sorted,
//!     without server_name (0000) and ALPN (0010), comma-joined, then — only if the
//!     hello has signature algorithms — `_` and those in the order sent
//!     (`000000000000` when no extension is left after removing SNI and ALPN).
//!
//!   GREASE values are removed everywhere, signature algorithms included.
//!
//! **SSLv2-format hellos** (old Java, OpenSSL 0.9.x; `info.sslv2`): neither reference
//! implementation fingerprints them (both read TLS handshake records only), but an
//! operator wants them grouped like any other client, so snigate computes both from
//! what such a hello carries, by the same rules: the version field of the hello
//! (Java 6's `0x0301` gives JA3 `769` and JA4 `10`; a true SSL 2.0 client's `0x0002`
//! gives `2` and `s2`), the cipher specs that are TLS cipher suites (first byte 0;
//! SSL 2.0-only specs have no 16-bit code and are left out), and no extensions: JA3
//! `769,<suites>,,,`, JA4 `t10i<nn>0000_<hash>_000000000000`. These are snigate's
//! values, not published ones. A TLS-format hello with the same suites and no
//! extensions fingerprints the same: Java 6u45's SSLv2 hello and Android 2.3.7's TLS
//! 1.0 hello both give `t10i160000_9ee8ab185e04_000000000000` (same 16 suites in the
//! same order; `tests/data/hellos/SOURCES.md`). The handshake log's reason tells them
//! apart.
//!
//! Both are computed once per handshake. The hashes are fed piece by piece (no
//! intermediate string); JA4 sorts one scratch vector; the result is one `String`.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::tls::hello::{is_grease, ClientHelloInfo};

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;

/// Where fingerprint text goes: a string (the raw form) or a hash (the fingerprint).
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for Md5 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

impl Sink for Sha256 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

/// The JA3 string, e.g. `771,49196-49195-47,0-10-11-13,29-23-24,0`.
pub fn ja3_string(h: &ClientHelloInfo) -> String {
    let mut s = String::with_capacity(256);
    write_ja3(h, &mut s);
    s
}

/// The JA3 fingerprint: MD5 of [`ja3_string`], 32 lower-case hex digits.
pub fn ja3(h: &ClientHelloInfo) -> String {
    let mut md5 = Md5::new();
    write_ja3(h, &mut md5);
    hex(&md5.finalize(), 32)
}

fn write_ja3(h: &ClientHelloInfo, out: &mut impl Sink) {
    let mut num = itoa::Buffer::default();
    out.put(num.format(h.client_version));
    out.put(",");
    decimal_list(
        out,
        &mut num,
        h.cipher_suites.iter().copied().filter(|v| !is_grease(*v)),
    );
    out.put(",");
    decimal_list(
        out,
        &mut num,
        h.extensions.iter().copied().filter(|v| !is_grease(*v)),
    );
    out.put(",");
    decimal_list(
        out,
        &mut num,
        h.groups.iter().copied().filter(|v| !is_grease(*v)),
    );
    out.put(",");
    decimal_list(
        out,
        &mut num,
        h.ec_point_formats.iter().map(|f| u16::from(*f)),
    );
}

fn decimal_list(out: &mut impl Sink, num: &mut itoa::Buffer, values: impl Iterator<Item = u16>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.put("-");
        }
        out.put(num.format(v));
    }
}

/// The JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub fn ja4(h: &ClientHelloInfo) -> String {
    let mut out = String::with_capacity(36);
    let parts = Ja4Parts::new(h);
    parts.write_a(&mut out);
    out.push('_');
    if parts.ciphers().is_empty() {
        out.push_str(ZEROS);
    } else {
        let mut sha = Sha256::new();
        parts.write_b(&mut sha);
        out.push_str(&hex(&sha.finalize(), 12));
    }
    out.push('_');
    if parts.extensions().is_empty() {
        out.push_str(ZEROS);
    } else {
        let mut sha = Sha256::new();
        parts.write_c(&mut sha);
        out.push_str(&hex(&sha.finalize(), 12));
    }
    out
}

/// The raw JA4 (FoxIO's `ja4_r`): the same three parts before hashing, e.g.
/// `t13d1516h2_002f,0035,..._0005,000a,..._0403,0804,...`. For reading and for
/// comparing with other tools; the log carries [`ja4`].
pub fn ja4_raw(h: &ClientHelloInfo) -> String {
    let mut out = String::with_capacity(64 + 5 * (h.cipher_suites.len() + h.extensions.len()));
    let parts = Ja4Parts::new(h);
    parts.write_a(&mut out);
    out.push('_');
    parts.write_b(&mut out);
    out.push('_');
    parts.write_c(&mut out);
    out
}

const ZEROS: &str = "000000000000";

/// What JA4 is computed from: the hello, and its cipher suites and extensions with
/// GREASE removed, sorted, in one scratch vector.
struct Ja4Parts<'a> {
    h: &'a ClientHelloInfo,
    /// Sorted non-GREASE suites, then sorted non-GREASE extensions without SNI/ALPN.
    sorted: Vec<u16>,
    n_ciphers: usize,
    /// Non-GREASE extensions, SNI and ALPN included (the count in part a).
    n_extensions: usize,
}

impl<'a> Ja4Parts<'a> {
    fn new(h: &'a ClientHelloInfo) -> Self {
        let mut sorted = Vec::with_capacity(h.cipher_suites.len() + h.extensions.len());
        sorted.extend(h.cipher_suites.iter().copied().filter(|v| !is_grease(*v)));
        let n_ciphers = sorted.len();
        sorted.sort_unstable();
        let mut n_extensions = 0;
        for &e in &h.extensions {
            if is_grease(e) {
                continue;
            }
            n_extensions += 1;
            if e != EXT_SERVER_NAME && e != EXT_ALPN {
                sorted.push(e);
            }
        }
        sorted[n_ciphers..].sort_unstable();
        Ja4Parts {
            h,
            sorted,
            n_ciphers,
            n_extensions,
        }
    }

    fn ciphers(&self) -> &[u16] {
        &self.sorted[..self.n_ciphers]
    }

    fn extensions(&self) -> &[u16] {
        &self.sorted[self.n_ciphers..]
    }

    /// `t13d1516h2`
    fn write_a(&self, out: &mut String) {
        let h = self.h;
        out.push('t');
        out.push_str(version_code(h.max_version()));
        out.push(if h.extensions.contains(&EXT_SERVER_NAME) {
            'd'
        } else {
            'i'
        });
        let _ = write!(
            out,
            "{:02}{:02}",
            self.n_ciphers.min(99),
            self.n_extensions.min(99)
        );
        let [first, last] = alpn_code(h.alpn_first_ends);
        out.push(first);
        out.push(last);
    }

    fn write_b(&self, out: &mut impl Sink) {
        hex_list(out, self.ciphers().iter().copied());
    }

    fn write_c(&self, out: &mut impl Sink) {
        hex_list(out, self.extensions().iter().copied());
        let mut sigalgs = self
            .h
            .signature_algorithms
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .peekable();
        if sigalgs.peek().is_some() {
            out.put("_");
            hex_list(out, sigalgs);
        }
    }
}

/// The two-character JA4 version code.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The two JA4 ALPN characters from the first and last byte of the first ALPN
/// protocol name.
fn alpn_code(ends: Option<[u8; 2]>) -> [char; 2] {
    let Some([a, z]) = ends else {
        return ['0', '0'];
    };
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        return [char::from(a), char::from(z)];
    }
    // First character of the first byte's hex, last character of the last byte's.
    [hex_digit(a >> 4), hex_digit(z & 0x0f)]
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

fn hex_list(out: &mut impl Sink, values: impl Iterator<Item = u16>) {
    let mut buf = [0u8; 5];
    for (i, v) in values.enumerate() {
        buf[0] = b',';
        for (k, shift) in [12u16, 8, 4, 0].into_iter().enumerate() {
            buf[k + 1] = b"0123456789abcdef"[usize::from((v >> shift) & 0x0f)];
        }
        let text = if i == 0 { &buf[1..] } else { &buf[..] };
        // Always ASCII.
        out.put(std::str::from_utf8(text).unwrap_or_default());
    }
}

/// The first `digits` lower-case hex digits of `bytes`.
fn hex(bytes: &[u8], digits: usize) -> String {
    let mut s = String::with_capacity(digits);
    for b in bytes {
        if s.len() >= digits {
            break;
        }
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(*b));
    }
    s.truncate(digits);
    s
}

/// Formats small integers without going through `fmt` (JA3 formats dozens per hello).
mod itoa {
    /// A stack buffer for one `u16` in decimal.
    #[derive(Default)]
    pub struct Buffer([u8; 5]);

    impl Buffer {
        pub fn format(&mut self, mut v: u16) -> &str {
            let mut i = self.0.len();
            loop {
                i -= 1;
                // `v % 10` < 10: the cast cannot truncate.
                self.0[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            std::str::from_utf8(&self.0[i..]).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JA4 spec's example (technical_details/JA4.md, "Example"): 15 suites,
    /// 16 extensions, ALPN h2, eight signature algorithms.
    fn spec_example() -> ClientHelloInfo {
        ClientHelloInfo {
            client_version: 0x0303,
            supported_versions: vec![0x0304, 0x0303],
            cipher_suites: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            alpn: vec!["h2".into()],
            alpn_first_ends: Some(*b"h2"),
            sni: Some("example.com".into()),
            ..Default::default()
        }
    }

    #[test]
    fn spec_example_hash_and_raw() {
        let h = spec_example();
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            ja4_raw(&h),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
             0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
             0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    #[test]
    fn spec_example_without_sigalgs_drops_the_underscore() {
        // JA4.md: "0005,...,ff01 = 6d807ffa2a79" when there are no signature algorithms.
        let mut h = spec_example();
        h.signature_algorithms.clear();
        assert!(ja4(&h).ends_with("_6d807ffa2a79"), "{}", ja4(&h));
        assert!(ja4_raw(&h).ends_with(",4469,ff01"), "{}", ja4_raw(&h));
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let plain = spec_example();
        let mut g = spec_example();
        g.cipher_suites.insert(0, 0x0a0a);
        g.cipher_suites.push(0xfafa);
        g.extensions.insert(0, 0x1a1a);
        g.extensions.push(0xeaea);
        g.signature_algorithms.insert(3, 0x4a4a);
        g.supported_versions.insert(0, 0x7a7a);
        g.groups = vec![0x2a2a, 0x001d];
        assert_eq!(ja4(&g), ja4(&plain));
        assert_eq!(ja4_raw(&g), ja4_raw(&plain));
        let mut p = plain.clone();
        p.groups = vec![0x001d];
        assert_eq!(ja3_string(&g), ja3_string(&p));
        assert!(!ja3_string(&g).contains("2570"), "{}", ja3_string(&g));
    }

    #[test]
    fn grease_only_supported_versions_falls_back_to_client_version() {
        let mut h = spec_example();
        h.supported_versions = vec![0x3a3a];
        assert!(ja4(&h).starts_with("t12d"), "{}", ja4(&h));
        h.supported_versions = vec![0x0304, 0x7f1c];
        assert!(
            ja4(&h).starts_with("t00d"),
            "draft version is unknown: {}",
            ja4(&h)
        );
    }

    #[test]
    fn versions() {
        let mut h = ClientHelloInfo::default();
        for (v, code) in [
            (0x0304, "13"),
            (0x0303, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0x0100, "00"),
            (0xffff, "00"),
        ] {
            h.client_version = v;
            assert_eq!(&ja4(&h)[1..3], code, "{v:#06x}");
        }
        // The record version is ignored.
        h.client_version = 0x0303;
        h.record_version = 0x0301;
        assert_eq!(&ja4(&h)[1..3], "12");
    }

    #[test]
    fn no_alpn_is_00() {
        let mut h = spec_example();
        h.alpn.clear();
        h.alpn_first_ends = None;
        assert_eq!(&ja4(&h)[8..10], "00");
    }

    #[test]
    fn alpn_rules_from_the_spec() {
        // As hello.rs records them: first and last byte of the first name.
        let code = |b: &[u8]| {
            let ends = b.first().zip(b.last()).map(|(a, z)| [*a, *z]);
            alpn_code(ends).iter().collect::<String>()
        };
        assert_eq!(code(b"h2"), "h2");
        assert_eq!(code(b"http/1.1"), "h1");
        assert_eq!(code(b"q"), "qq");
        assert_eq!(code(&[0xab]), "ab");
        assert_eq!(code(&[0xab, 0xcd]), "ad");
        assert_eq!(code(&[0x30, 0xab]), "3b");
        assert_eq!(code(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(code(&[0x30, 0xab, 0xcd, 0x31]), "01");
        assert_eq!(code(b"h/"), "6f");
        assert_eq!(alpn_code(None), ['0', '0']);
    }

    #[test]
    fn counts_cap_at_99() {
        let h = ClientHelloInfo {
            client_version: 0x0303,
            cipher_suites: (1..=150).collect(),
            extensions: (0x0100..0x0100 + 120).collect(),
            ..Default::default()
        };
        let fp = ja4(&h);
        assert!(fp.starts_with("t12i9999"), "{fp}");
        let h = ClientHelloInfo {
            client_version: 0x0303,
            cipher_suites: (1..=99).collect(),
            extensions: (0x0100..0x0100 + 7).collect(),
            ..Default::default()
        };
        assert!(ja4(&h).starts_with("t12i9907"), "{}", ja4(&h));
    }

    #[test]
    fn sni_and_alpn_counted_but_not_hashed() {
        let mut h = spec_example();
        h.extensions.retain(|e| *e != 0x0000);
        h.sni = None;
        let fp = ja4(&h);
        assert!(fp.starts_with("t13i1515h2_"), "{fp}");
        // Same part c: SNI was never hashed.
        assert!(fp.ends_with("_e5627efa2ab1"), "{fp}");
    }

    #[test]
    fn sni_extension_without_host_name_is_d() {
        let mut h = spec_example();
        h.sni = None; // extension present, no host_name entry
        assert!(ja4(&h).starts_with("t13d"), "{}", ja4(&h));
    }

    #[test]
    fn no_extensions_and_no_ciphers() {
        let h = ClientHelloInfo {
            client_version: 0x0301,
            cipher_suites: vec![0x0005, 0x0004],
            ..Default::default()
        };
        let fp = ja4(&h);
        assert!(fp.starts_with("t10i020000_"), "{fp}");
        assert!(fp.ends_with("_000000000000"), "{fp}");
        assert_eq!(ja4_raw(&h), "t10i020000_0004,0005_");
        assert_eq!(ja3_string(&h), "769,5-4,,,");

        // Only SNI and ALPN: nothing left to hash in part c.
        let h = ClientHelloInfo {
            client_version: 0x0303,
            extensions: vec![0x0000, 0x0010],
            alpn_first_ends: Some(*b"h1"),
            ..Default::default()
        };
        assert_eq!(ja4(&h), "t12d0002h1_000000000000_000000000000");
    }

    #[test]
    fn ja3_readme_examples() {
        // salesforce/ja3 README, "How it works".
        let h = ClientHelloInfo {
            client_version: 769,
            cipher_suites: vec![47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
            extensions: vec![0, 10, 11],
            groups: vec![23, 24, 25],
            ec_point_formats: vec![0],
            ..Default::default()
        };
        assert_eq!(
            ja3_string(&h),
            "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
        );
        assert_eq!(ja3(&h), "ada70206e40642a3e4461f35503241d5");
        let h = ClientHelloInfo {
            client_version: 769,
            cipher_suites: vec![4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99],
            ..Default::default()
        };
        assert_eq!(ja3_string(&h), "769,4-5-10-9-100-98-3-6-19-18-99,,,");
        assert_eq!(ja3(&h), "de350869b8c85de67a350c8d186f11e6");
    }

    #[test]
    fn sslv2_hello() {
        let h = ClientHelloInfo {
            record_version: 0x0002,
            client_version: 0x0301,
            cipher_suites: vec![0x0004, 0x0005, 0x002f],
            sslv2: true,
            ..Default::default()
        };
        assert_eq!(ja3_string(&h), "769,4-5-47,,,");
        assert!(ja4(&h).starts_with("t10i030000_"), "{}", ja4(&h));
        assert!(ja4(&h).ends_with("_000000000000"), "{}", ja4(&h));
    }

    #[test]
    fn itoa_formats() {
        let mut b = itoa::Buffer::default();
        assert_eq!(b.format(0), "0");
        assert_eq!(b.format(7), "7");
        assert_eq!(b.format(771), "771");
        assert_eq!(b.format(65535), "65535");
    }
}
