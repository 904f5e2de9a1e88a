//! ClientHello reading and parsing against real captures (tests/data/hellos, see
//! SOURCES.md there) and against hostile input.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use snigate::tls::hello::{
    parse_client_hello, read_client_hello, ClientHello, ClientHelloInfo, HelloError, Parsed,
    MAX_CLIENT_HELLO,
};
use tokio::io::AsyncWriteExt;

/// What SOURCES.md says about each capture. The JA4 string encodes, in its first
/// part, the version, SNI presence (d/i), suite count, extension count (both without
/// GREASE) and the first ALPN value's first and last characters ("00" for none).
struct Expected {
    file: &'static str,
    sni: Option<&'static str>,
    max_version: u16,
    sslv2: bool,
    /// rustls with an ECDSA certificate succeeds (SOURCES.md, last column).
    ecdsa: bool,
    /// None for the SSLv2 hello (no JA4).
    ja4: Option<&'static str>,
    /// Suite count when there is no JA4 (hand-decoded: 20 cipher specs, 16 of them TLS).
    suites: usize,
}

const CAPTURES: &[Expected] = &[
    Expected {
        file: "win7_ie11_schannel_tls12.hex",
        sni: Some("dev.ssllabs.com"),
        max_version: 0x0303,
        sslv2: false,
        ecdsa: true,
        ja4: Some("t12d240700_9295eb73ea51_71440d09e7ee"),
        suites: 24,
    },
    Expected {
        file: "win10_ie11_schannel_tls12.hex",
        sni: Some("dev.ssllabs.com"),
        max_version: 0x0303,
        sslv2: false,
        ecdsa: true,
        ja4: Some("t12d2810h2_bbd4f008d9b2_b5d02e698537"),
        suites: 28,
    },
    Expected {
        file: "xp_ie8_schannel_tls10_nosni.hex",
        sni: None,
        max_version: 0x0301,
        sslv2: false,
        ecdsa: false,
        ja4: Some("t10i110100_3609b414f052_bc98f8e001b5"),
        suites: 11,
    },
    Expected {
        file: "java6u45_sslv2hello_nosni.hex",
        sni: None,
        max_version: 0x0301,
        sslv2: true,
        ecdsa: false,
        ja4: None,
        suites: 16,
    },
    Expected {
        file: "yahooslurp_jun2014_openssl_tls12_nosni.hex",
        sni: None,
        max_version: 0x0303,
        sslv2: false,
        ecdsa: true,
        ja4: Some("t12i740500_c43983326036_3eafcbe19126"),
        suites: 74,
    },
    Expected {
        file: "android237_tls10_nosni.hex",
        sni: None,
        max_version: 0x0301,
        sslv2: false,
        ecdsa: false,
        ja4: Some("t10i160000_9ee8ab185e04_000000000000"),
        suites: 16,
    },
    Expected {
        file: "win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex",
        sni: None,
        max_version: 0x0303,
        sslv2: false,
        ecdsa: true,
        ja4: Some("t12i240600_9295eb73ea51_71440d09e7ee"),
        suites: 24,
    },
];

/// The crate's own copy of the captures, so the tests run from any checkout.
fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hellos");
    assert!(
        dir.is_dir(),
        "ClientHello captures not found at {}: they belong to the crate (copied from \
         shared/hellos); restore tests/data/hellos/*.hex and SOURCES.md",
        dir.display()
    );
    dir
}

fn hex_decode(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn load(file: &str) -> Vec<u8> {
    let path = data_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read capture {}: {e}", path.display()));
    hex_decode(&text)
}

fn all_captures() -> Vec<(&'static Expected, Vec<u8>)> {
    CAPTURES.iter().map(|e| (e, load(e.file))).collect()
}

fn complete(bytes: &[u8]) -> (ClientHelloInfo, usize) {
    match parse_client_hello(bytes) {
        Ok(Parsed::Complete(info, n)) => (info, n),
        other => panic!("expected a complete hello, got {other:?}"),
    }
}

fn non_grease(v: &[u16]) -> usize {
    v.iter()
        .filter(|x| !snigate::tls::hello::is_grease(**x))
        .count()
}

/// The JA4 "a" part as it follows from the parsed fields; compared with the vector.
fn ja4_a_from(info: &ClientHelloInfo) -> String {
    let version = match info.max_version() {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let sni = if info.sni.is_some() { "d" } else { "i" };
    let alpn = match info.alpn.first() {
        Some(a) if !a.is_empty() => {
            let c: Vec<char> = a.chars().collect();
            format!("{}{}", c[0], c[c.len() - 1])
        }
        _ => "00".to_string(),
    };
    format!(
        "t{version}{sni}{:02}{:02}{alpn}",
        non_grease(&info.cipher_suites).min(99),
        non_grease(&info.extensions).min(99)
    )
}

#[test]
fn captures_are_present_and_match_shared_copy() {
    let dir = data_dir();
    let mut hex_files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read tests/data/hellos")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    hex_files.sort();
    let mut expected: Vec<String> = CAPTURES.iter().map(|c| c.file.to_string()).collect();
    expected.sort();
    assert_eq!(
        hex_files, expected,
        "every capture in tests/data/hellos needs an expectation here, and vice versa"
    );
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).expect("SOURCES.md");
    for c in CAPTURES {
        let row = sources
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", c.file)))
            .unwrap_or_else(|| panic!("{} not described in SOURCES.md", c.file));
        if let Some(ja4) = c.ja4 {
            assert!(row.contains(ja4), "{}: JA4 differs from SOURCES.md", c.file);
        }
        assert!(
            row.contains(&format!("{:#x}", c.max_version)),
            "{}: max version differs from SOURCES.md",
            c.file
        );
    }
    // The project-level copy (shared/hellos beside the crate) is where these came
    // from; when it is there, the crate's copy must not have drifted. It is absent in
    // a standalone checkout of the crate, which is fine: the crate has its own copy.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/hellos");
    if shared.is_dir() {
        for c in CAPTURES {
            let theirs = std::fs::read_to_string(shared.join(c.file))
                .unwrap_or_else(|e| panic!("{}: {e}", shared.join(c.file).display()));
            assert_eq!(
                hex_decode(&theirs),
                load(c.file),
                "tests/data/hellos/{} differs from {}",
                c.file,
                shared.display()
            );
        }
    } else {
        eprintln!(
            "note: {} not found; using the crate's copy in tests/data/hellos only",
            shared.display()
        );
    }
}

#[test]
fn captures_parse_as_documented() {
    for (exp, bytes) in all_captures() {
        let f = exp.file;
        let (info, consumed) = complete(&bytes);
        assert_eq!(consumed, bytes.len(), "{f}: consumed");
        assert_eq!(info.sni.as_deref(), exp.sni, "{f}: sni");
        assert_eq!(info.max_version(), exp.max_version, "{f}: max version");
        assert_eq!(info.sslv2, exp.sslv2, "{f}: sslv2");
        assert_eq!(info.offers_ecdsa(), exp.ecdsa, "{f}: offers_ecdsa");
        assert_eq!(info.offered_suites_hex().len(), exp.suites, "{f}: suites");
        assert!(
            info.offered_suites_hex()
                .iter()
                .all(|s| s.len() == 6 && s.starts_with("0x")),
            "{f}: suite format"
        );
        match exp.ja4 {
            Some(ja4) => assert_eq!(ja4_a_from(&info), ja4[..10], "{f}: JA4 a-part"),
            None => {
                assert!(info.extensions.is_empty(), "{f}: SSLv2 has no extensions");
                assert_eq!(info.record_version, 0x0002, "{f}: SSLv2 record version");
            }
        }
        let offered = info.offered_versions();
        match exp.max_version {
            0x0303 => assert_eq!(offered, ["1.2", "1.1", "1.0"], "{f}"),
            0x0301 => assert_eq!(offered, ["1.0"], "{f}"),
            _ => unreachable!(),
        }
    }
}

#[test]
fn capture_details() {
    let (win10, _) = complete(&load("win10_ie11_schannel_tls12.hex"));
    assert_eq!(win10.alpn, ["h2", "http/1.1"]);
    assert_eq!(win10.groups, [0x0017, 0x0018]);
    assert_eq!(win10.ec_point_formats, [0]);
    assert_eq!(win10.record_version, 0x0303);
    assert_eq!(win10.client_version, 0x0303);
    assert!(win10.supported_versions.is_empty());
    assert_eq!(win10.extensions.first(), Some(&0)); // server_name first
    assert_eq!(win10.offered_suites_hex()[..2], ["0xc02c", "0xc02b"]);

    let (yahoo, _) = complete(&load("yahooslurp_jun2014_openssl_tls12_nosni.hex"));
    // OpenSSL 1.0.1 sent a TLS 1.0 record version around a TLS 1.2 hello.
    assert_eq!(yahoo.record_version, 0x0301);
    assert_eq!(yahoo.client_version, 0x0303);
    assert_eq!(yahoo.ec_point_formats, [0, 1, 2]);
    assert!(yahoo.signature_algorithms.contains(&0x0403));

    let (java, _) = complete(&load("java6u45_sslv2hello_nosni.hex"));
    assert_eq!(java.client_version, 0x0301);
    assert_eq!(java.cipher_suites.first(), Some(&0x0004));
    assert_eq!(java.cipher_suites.last(), Some(&0x00ff));

    let (no_sni, _) = complete(&load("win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex"));
    let (with_sni, _) = complete(&load("win7_ie11_schannel_tls12.hex"));
    assert_eq!(with_sni.server_name().as_deref(), Some("dev.ssllabs.com"));
    assert_eq!(no_sni.server_name(), None);
    assert_eq!(no_sni.cipher_suites, with_sni.cipher_suites);
}

/// Write `bytes` into a duplex whose buffer holds one byte, so every read returns a
/// single byte (a hello fragmented into one-byte TCP segments).
async fn read_fragmented(bytes: &[u8], timeout: Duration) -> Result<ClientHello, HelloError> {
    let (mut client, mut server) = tokio::io::duplex(1);
    let data = bytes.to_vec();
    let writer = tokio::spawn(async move {
        // The reader stops at the end of the hello, so a write may fail after that.
        let _ = client.write_all(&data).await;
        // Keep the connection open: the hello must be recognised as complete by its
        // length fields, not by EOF.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(client);
    });
    let r = read_client_hello(&mut server, timeout).await;
    writer.abort();
    r
}

#[tokio::test]
async fn captures_read_one_byte_at_a_time() {
    for (exp, bytes) in all_captures() {
        let f = exp.file;
        let (info, _) = complete(&bytes);
        let r = read_fragmented(&bytes, Duration::from_secs(10)).await;
        let hello = match (exp.sslv2, r) {
            (false, Ok(h)) => h,
            (true, Err(HelloError::Sslv2 { hello })) => *hello,
            (_, other) => panic!("{f}: unexpected {other:?}"),
        };
        assert_eq!(hello.bytes, bytes, "{f}: bytes read");
        assert_eq!(hello.info, info, "{f}: info");
    }
}

#[tokio::test]
async fn extra_bytes_after_the_hello_are_kept() {
    let hello = load("win10_ie11_schannel_tls12.hex");
    let mut sent = hello.clone();
    sent.extend_from_slice(b"\x14\x03\x03\x00\x01\x01 early");
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    client.write_all(&sent).await.unwrap();
    let got = read_client_hello(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.bytes, sent);
    let (info, consumed) = complete(&got.bytes);
    assert_eq!(consumed, hello.len());
    assert_eq!(info, got.info);
}

/// Re-frame a single-record hello's handshake message into records cut at `cuts`
/// (offsets into the handshake message).
fn split_records(single: &[u8], cuts: &[usize]) -> Vec<u8> {
    let msg = &single[5..];
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&msg.len())) {
        let part = &msg[start..end];
        out.extend_from_slice(&single[..3]);
        out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
        start = end;
    }
    out
}

#[tokio::test]
async fn hello_split_across_records() {
    let single = load("win10_ie11_schannel_tls12.hex");
    let (info, _) = complete(&single);
    let msg_len = single.len() - 5;
    // Every two-record split, including inside the 4-byte handshake header.
    for cut in 1..msg_len {
        let two = split_records(&single, &[cut]);
        let (got, consumed) = complete(&two);
        assert_eq!(got, info, "split at {cut}");
        assert_eq!(consumed, two.len(), "split at {cut}");
        for p in 0..two.len() {
            assert_eq!(
                parse_client_hello(&two[..p]).unwrap(),
                Parsed::Incomplete,
                "split at {cut}, prefix {p}"
            );
        }
    }
    // Many records (one handshake byte each), fragmented TCP on top.
    let cuts: Vec<usize> = (1..msg_len).collect();
    let many = split_records(&single, &cuts);
    assert!(many.len() < MAX_CLIENT_HELLO);
    let got = read_fragmented(&many, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.info, info);
    assert_eq!(got.bytes, many);
    // A record after the hello's last record is not part of it.
    let mut two = split_records(&single, &[100]);
    let first_len = two.len();
    two.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x02, 0x0f, 0x00]);
    assert_eq!(complete(&two).1, first_len);
}

#[tokio::test]
async fn plain_http_is_not_tls() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // The writer stays open: rejection must not wait for more bytes.
    let start = Instant::now();
    let r = read_client_hello(&mut server, Duration::from_secs(10)).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    match r {
        Err(e @ HelloError::NotTls { .. }) => {
            let HelloError::NotTls { first_bytes } = &e else {
                unreachable!()
            };
            assert_eq!(first_bytes, "474554202f20485454502f312e310d0a");
            assert!(e.reason().contains("plain HTTP"), "{}", e.reason());
        }
        other => panic!("expected NotTls, got {other:?}"),
    }
    drop(client);
}

#[tokio::test]
async fn truncated_hello_then_eof_is_closed() {
    let bytes = load("win7_ie11_schannel_tls12.hex");
    for cut in [1, 5, 9, 100, bytes.len() - 1] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&bytes[..cut]).await.unwrap();
        drop(client);
        match read_client_hello(&mut server, Duration::from_secs(10)).await {
            Err(HelloError::Closed { received }) => assert_eq!(received, cut),
            other => panic!("cut {cut}: expected Closed, got {other:?}"),
        }
    }
    // Nothing at all.
    let (client, mut server) = tokio::io::duplex(1024);
    drop(client);
    assert!(matches!(
        read_client_hello(&mut server, Duration::from_secs(10)).await,
        Err(HelloError::Closed { received: 0 })
    ));
}

#[tokio::test]
async fn truncated_hello_with_open_writer_times_out() {
    let bytes = load("win7_ie11_schannel_tls12.hex");
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&bytes[..50]).await.unwrap();
    let start = Instant::now();
    let r = read_client_hello(&mut server, Duration::from_millis(200)).await;
    let elapsed = start.elapsed();
    match r {
        Err(e @ HelloError::Timeout { received: 50 }) => {
            assert_eq!(
                e.reason(),
                "no complete ClientHello within the client_hello timeout (50 bytes received)"
            );
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    drop(client);
}

#[tokio::test]
async fn slow_drip_shares_one_deadline() {
    // One byte every 50 ms: each read is quick, but the whole hello is not.
    let bytes = load("win7_ie11_schannel_tls12.hex");
    let (mut client, mut server) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        for b in bytes {
            if client.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let start = Instant::now();
    let r = read_client_hello(&mut server, Duration::from_millis(300)).await;
    assert!(matches!(r, Err(HelloError::Timeout { received }) if received > 0 && received < 20));
    assert!(start.elapsed() < Duration::from_secs(3));
    writer.abort();
}

async fn expect_fast_rejection(header: &[u8]) -> HelloError {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(header).await.unwrap();
    // Writer stays open and a long deadline: only the header may decide.
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        read_client_hello(&mut server, Duration::from_secs(30)),
    )
    .await
    .expect("the header alone must decide; no waiting for the announced data");
    drop(client);
    r.expect_err("must be rejected")
}

#[tokio::test]
async fn oversized_announcements_are_rejected_without_waiting() {
    // A record header announcing 60 KiB.
    let e = expect_fast_rejection(&[0x16, 0x03, 0x01, 0xf0, 0x00]).await;
    assert!(
        matches!(e, HelloError::TooLarge { .. } | HelloError::Malformed(_)),
        "{e:?}"
    );
    // A full-size record whose handshake header announces a 60 KiB ClientHello.
    let e = expect_fast_rejection(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xf0, 0x00]).await;
    assert!(
        matches!(e, HelloError::TooLarge { limit } if limit == MAX_CLIENT_HELLO),
        "{e:?}"
    );
    // A hello just over the limit, announced in a small record.
    let e = expect_fast_rejection(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x40, 0x00]).await;
    assert!(matches!(e, HelloError::TooLarge { .. }), "{e:?}");
    // An SSLv2 header announcing 32 KiB.
    let e = expect_fast_rejection(&[0xff, 0xff, 0x01]).await;
    assert!(matches!(e, HelloError::TooLarge { .. }), "{e:?}");
}

#[tokio::test]
async fn many_tiny_records_hit_the_limit() {
    // A 15000-byte handshake message in 1-byte records: 6 bytes on the wire per
    // byte of message, so the buffer limit is reached long before the message ends.
    let mut sent = vec![0x16, 0x03, 0x01, 0x00, 0x01, 0x01];
    for b in [0x00u8, 0x3a, 0x98] {
        sent.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, b]);
    }
    while sent.len() < 2 * MAX_CLIENT_HELLO {
        sent.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x00]);
    }
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        let _ = client.write_all(&sent).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let r = read_client_hello(&mut server, Duration::from_secs(10)).await;
    assert!(matches!(r, Err(HelloError::TooLarge { .. })), "{r:?}");
    writer.abort();
}

#[test]
fn garbage_and_wrong_messages() {
    let cases: &[(&[u8], &str)] = &[
        (b"\x16\x03\x01\x00\x00", "zero-length record"),
        (
            b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
            "ServerHello type",
        ),
        (
            b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
            "ClientHello of 1 byte",
        ),
        (
            b"\x16\x03\x01\x00\x02\x01\x00\x15\x03",
            "alert record inside",
        ),
    ];
    for (bytes, what) in cases {
        assert!(
            matches!(parse_client_hello(bytes), Err(HelloError::Malformed(_))),
            "{what}: {:?}",
            parse_client_hello(bytes)
        );
    }
    assert!(matches!(
        parse_client_hello(b"\x16\x04\x01"),
        Err(HelloError::NotTls { .. })
    ));
    assert!(matches!(
        parse_client_hello(b"\x00\x00"),
        Err(HelloError::NotTls { .. })
    ));
    // An SSLv2 header with a message that is not CLIENT-HELLO.
    assert!(matches!(
        parse_client_hello(b"\x80\x20\x02"),
        Err(HelloError::NotTls { .. })
    ));
}

#[test]
fn every_truncation_of_each_capture_is_incomplete() {
    for (exp, bytes) in all_captures() {
        for p in 0..bytes.len() {
            assert_eq!(
                parse_client_hello(&bytes[..p]).unwrap(),
                Parsed::Incomplete,
                "{} truncated to {p}",
                exp.file
            );
        }
    }
}

/// Knuth's MMIX LCG: deterministic, so a failure reproduces.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n as u64)) as usize
    }
    fn byte(&mut self) -> u8 {
        (self.next() & 0xff) as u8
    }
}

#[test]
fn fuzz_never_panics() {
    let captures: Vec<Vec<u8>> = all_captures().into_iter().map(|(_, b)| b).collect();
    let mut rng = Lcg(0x5eed_2026);
    let mut complete_count = 0;
    // SNIGATE_FUZZ_ITERS=2000000 for a longer run by hand.
    let iterations: usize = std::env::var("SNIGATE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for i in 0..iterations {
        let input: Vec<u8> = match i % 4 {
            // Pure noise.
            0 => (0..rng.below(400)).map(|_| rng.byte()).collect(),
            // Noise behind a plausible record header, so the parser gets deeper.
            1 => {
                let len = rng.below(600);
                let mut v = vec![0x16, 0x03, rng.byte() & 3];
                v.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
                v.extend_from_slice(&[0x01, 0x00, rng.byte() & 1, rng.byte()]);
                v.extend_from_slice(&[0x03, 0x03]);
                v.extend((0..len).map(|_| rng.byte()));
                v
            }
            // A real capture with a few bytes changed (length fields included).
            2 | 3 => {
                let mut v = captures[rng.below(captures.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(v.len());
                    v[at] = if rng.below(2) == 0 {
                        rng.byte()
                    } else {
                        v[at].wrapping_add(1 + rng.byte() % 3)
                    };
                }
                if rng.below(4) == 0 {
                    v.truncate(rng.below(v.len() + 1));
                }
                v
            }
            _ => unreachable!(),
        };
        if let Ok(Parsed::Complete(info, n)) = parse_client_hello(&input) {
            assert!(n <= input.len(), "consumed beyond the input");
            // The accessors must be total too.
            let _ = (
                info.max_version(),
                info.offered_versions(),
                info.offered_suites_hex(),
                info.offers_ecdsa(),
                info.server_name(),
            );
            complete_count += 1;
        }
    }
    // Sanity: the mutation cases still reach the "complete" path often.
    assert!(
        complete_count > iterations / 20,
        "only {complete_count} complete parses"
    );
}
