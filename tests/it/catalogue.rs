//! The client catalogue (README, "Client catalogue";
//! `src/observe/catalogue/clients.toml`): every capture in tests/data/hellos
//! is named, by `snigate explain` and in the handshake log of a running
//! proxy (the capture's bytes replayed over TCP); a hello the catalogue does
//! not know is `client: null`, never a guess; the rustls entry is what our
//! pinned rustls really sends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use snigate::observe::catalogue::{self, Pattern};
use snigate::tls::fingerprint::ja4;
use snigate::tls::hello::{parse_client_hello, Parsed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const WIN7: &str = "Windows 7 SChannel (IE 11, WebDAV mini-redirector, Office 2010)";
const WIN10: &str = "Windows 10 SChannel (IE 11)";
const XP: &str = "Windows XP SChannel (IE 8)";
const JAVA6_ANDROID23: &str = "Java 6 or Android 2.3";
const YAHOO: &str = "Yahoo Slurp crawler (June 2014, OpenSSL)";
const RUSTLS: &str = "rustls 0.23 client, default settings (aws-lc-rs)";

/// Every capture and the client the catalogue must name.
const NAMED: [(&str, &str); 7] = [
    ("win7_ie11_schannel_tls12.hex", WIN7),
    ("win10_ie11_schannel_tls12.hex", WIN10),
    // The same SChannel without SNI: the Windows 7 entry, by its b_c parts.
    ("win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex", WIN7),
    ("yahooslurp_jun2014_openssl_tls12_nosni.hex", YAHOO),
    ("xp_ie8_schannel_tls10_nosni.hex", XP),
    ("android237_tls10_nosni.hex", JAVA6_ANDROID23),
    ("java6u45_sslv2hello_nosni.hex", JAVA6_ANDROID23),
];

const LOG_WAIT: Duration = Duration::from_secs(10);

fn ja4_of(hello: &[u8]) -> String {
    match parse_client_hello(hello) {
        Ok(Parsed::Complete(info, _)) => ja4(&info),
        other => panic!("not a complete ClientHello: {other:?}"),
    }
}

/// `explain` (its pure core, no configuration) on hello bytes: JSON and text.
fn explain(name: &str, hello: &[u8]) -> (Value, String) {
    let file = Path::new(name);
    let json = snigate::tools::explain::explain_hello(&hex(hello).into_bytes(), file, None, true)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let text = snigate::tools::explain::explain_hello(&hex(hello).into_bytes(), file, None, false)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    (serde_json::from_str(&json).expect("JSON"), text)
}

/// The Windows 7 capture with its first cipher suite (0xc028) replaced by
/// one it does not offer (0xc030): the same SChannel everywhere else, but
/// another JA4 `b`, so not a client the catalogue knows.
fn win7_with_another_suite() -> Vec<u8> {
    let mut hello = capture("win7_ie11_schannel_tls12.hex");
    // record header 5, handshake header 4, client_version 2, random 32
    let sid_len = hello[43] as usize;
    let suites = 44 + sid_len + 2;
    assert_eq!(&hello[suites..suites + 2], [0xc0, 0x28], "first suite");
    hello[suites + 1] = 0x30;
    assert!(
        !hello[suites + 2..]
            .chunks(2)
            .take(24)
            .any(|s| s == [0xc0, 0x30]),
        "0xc030 must be new to the hello"
    );
    hello
}

#[test]
fn named_lists_every_capture_in_the_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hellos");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    on_disk.sort();
    let mut named: Vec<String> = NAMED.iter().map(|(f, _)| f.to_string()).collect();
    named.sort();
    assert_eq!(
        on_disk, named,
        "a new capture needs its catalogue entry and a row in NAMED"
    );
    let mut captures: Vec<String> = CAPTURES.iter().map(|f| f.to_string()).collect();
    captures.sort();
    assert_eq!(captures, named);
}

#[test]
fn explain_names_every_capture() {
    for (file, name) in NAMED {
        let (doc, text) = explain(file, &capture(file));
        assert_eq!(doc["client"], name, "{file}");
        let note = doc["client_note"].as_str().expect("client_note");
        let entry = catalogue::identify(doc["ja4"].as_str().unwrap()).expect("an entry");
        assert_eq!(note, entry.note, "{file}");
        assert!(
            text.lines().any(|l| l == format!("Client          {name}")),
            "{file}:\n{text}"
        );
        assert!(
            text.contains(&format!("(catalogue entry: {})", entry.pattern)),
            "{file}:\n{text}"
        );
        // Each entry cites the capture it was made from.
        let stem = file.split('.').next().unwrap();
        assert!(entry.source.contains(stem), "{file}: {:?}", entry.source);
    }
}

#[test]
fn windows7_without_sni_is_the_windows7_entry_by_its_b_c_parts() {
    let (with, _) = explain("with", &capture("win7_ie11_schannel_tls12.hex"));
    let (without, text) = explain(
        "without",
        &capture("win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex"),
    );
    assert_eq!(with["ja4"], "t12d240700_9295eb73ea51_71440d09e7ee");
    assert_eq!(without["ja4"], "t12i240600_9295eb73ea51_71440d09e7ee");
    let entry = catalogue::identify("t12i240600_9295eb73ea51_71440d09e7ee").unwrap();
    assert_eq!(
        entry.pattern,
        Pattern::Bc("9295eb73ea51_71440d09e7ee".into()),
        "one entry for both, not one per JA4"
    );
    assert!(
        !catalogue::entries()
            .iter()
            .any(|e| e.pattern == Pattern::Ja4("t12i240600_9295eb73ea51_71440d09e7ee".into())),
        "the synthetic hello has no entry of its own"
    );
    assert!(text.contains("(catalogue entry: JA4 b_c *_9295eb73ea51_71440d09e7ee)"));
    // What the note says: served with ECDSA only.
    assert!(
        entry.note.contains("ECDSA certificate only"),
        "{}",
        entry.note
    );
}

#[test]
fn explain_says_unknown_for_a_hello_the_catalogue_does_not_know() {
    let unknown = [
        ("modified capture", win7_with_another_suite()),
        (
            "hand-made hello",
            client_hello(
                0x0303,
                &[0xc02b, 0xc02f],
                Some("a.test"),
                Some(&[0x0403][..]),
            ),
        ),
    ];
    for (what, hello) in unknown {
        let (doc, text) = explain(what, &hello);
        assert!(doc["client"].is_null(), "{what}: {doc:#}");
        assert!(doc["client_note"].is_null(), "{what}: {doc:#}");
        assert!(
            text.lines()
                .any(|l| l == "Client          unknown (no catalogue entry for this JA4)"),
            "{what}:\n{text}"
        );
    }
    // The modified capture differs from Windows 7 in `b` only.
    let (doc, _) = explain("modified", &win7_with_another_suite());
    let ja4 = doc["ja4"].as_str().unwrap();
    assert!(
        ja4.starts_with("t12d240700_") && ja4.ends_with("_71440d09e7ee"),
        "{ja4}"
    );
    assert_ne!(ja4, "t12d240700_9295eb73ea51_71440d09e7ee");
}

/// The rustls entry is what rustls, as pinned in Cargo.lock, sends: a
/// default `ClientConfig` and the test clients, with and without SNI and
/// ALPN. When rustls is updated and this fails, measure the new hello and
/// update (or drop) the entry in clients.toml.
#[test]
fn rustls_default_client_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut hellos = vec![
        client_hello_bytes(&pki.ca_der, &ClientOpts::sni("a.test")),
        client_hello_bytes(&pki.ca_der, &ClientOpts::no_sni("a.test")),
        client_hello_bytes(
            &pki.ca_der,
            &ClientOpts::sni("a.test").alpn(&["h2", "http/1.1"]),
        ),
    ];
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "a.test".try_into().unwrap()).unwrap();
    let mut default = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut default).unwrap();
    }
    hellos.push(default);
    let ja4s: Vec<String> = hellos.iter().map(|h| ja4_of(h)).collect();
    assert_eq!(
        ja4s,
        [
            "t13d101000_61a7ad8aa9b6_0d308c48d2a3",
            "t13i100900_61a7ad8aa9b6_0d308c48d2a3",
            "t13d1011h2_61a7ad8aa9b6_0d308c48d2a3",
            "t13d101000_61a7ad8aa9b6_0d308c48d2a3",
        ],
        "rustls's ClientHello changed: update its entry in clients.toml"
    );
    for ja4 in &ja4s {
        assert_eq!(
            catalogue::identify(ja4).map(|c| c.name.as_str()),
            Some(RUSTLS)
        );
    }
    // Unusual settings (TLS 1.2 only, one suite) are another fingerprint:
    // unknown.
    let odd = client_hello_bytes(
        &pki.ca_der,
        &ClientOpts::sni("a.test").tls12_suites(vec![
            rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]),
    );
    assert_eq!(catalogue::identify(&ja4_of(&odd)), None);
}

/// Writes `bytes`, waits for the proxy's first record or its close, then
/// closes; returns the client's address (the log line's `peer`).
async fn replay(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let peer = s.local_addr().unwrap().to_string();
    s.write_all(bytes).await.expect("write hello");
    let mut head = [0u8; 5];
    let _ = s.read_exact(&mut head).await;
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_log_names_the_client() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("fallback", &["portal.test"], Key::Ecdsa);
        let proxy = start_proxy(
            dir.path(),
            &format!(
                r#"
[log]
handshake_log = "handshakes.jsonl"
{cert}
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback"
default_upstream = "web"

[[upstream]]
name = "web"
servers = ["127.0.0.1:9"]
"#,
                cert = cert_toml("fallback", &leaf)
            ),
        )
        .await;
        let addr = proxy.addr("main").expect("addr");
        let log = dir.path().join("handshakes.jsonl");
        let line = |peer: String| {
            let log = log.clone();
            async move { wait_for_json_line(&log, LOG_WAIT, |v| v["peer"] == peer.as_str()).await }
        };

        // Every capture, replayed as its client sent it.
        for (file, name) in NAMED {
            let hs = line(replay(addr, &capture(file)).await).await;
            assert_eq!(hs["client"], name, "{file}: {hs}");
            assert_eq!(hs["ja4"], ja4_of(&capture(file)), "{file}");
        }

        // Unknown: a modified capture, and bytes that are no hello at all.
        let hs = line(replay(addr, &win7_with_another_suite()).await).await;
        assert_eq!(hs.get("client"), Some(&Value::Null), "{hs}");
        let hs = line(replay(addr, b"GET / HTTP/1.1\r\nHost: portal.test\r\n\r\n").await).await;
        assert_eq!(hs["outcome"], "rejected", "{hs}");
        assert_eq!(hs.get("client"), Some(&Value::Null), "{hs}");

        // Real handshakes: the rustls test client with and without SNI is
        // named; with unusual settings it is not.
        let named = [
            ClientOpts::sni("portal.test"),
            ClientOpts::no_sni("portal.test"),
        ];
        for opts in named {
            let tls = tls_connect(addr, &pki.ca_der, &opts)
                .await
                .expect("handshake");
            let hs = line(tls.local.to_string()).await;
            assert_eq!(hs["outcome"], "ok", "{hs}");
            assert_eq!(hs["client"], RUSTLS, "{hs}");
        }
        let odd = ClientOpts::sni("portal.test").tls12_suites(vec![
            rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]);
        let tls = tls_connect(addr, &pki.ca_der, &odd)
            .await
            .expect("handshake");
        let hs = line(tls.local.to_string()).await;
        assert_eq!(hs["outcome"], "ok", "{hs}");
        assert_eq!(hs.get("client"), Some(&Value::Null), "{hs}");

        // `client` comes after `ja4`, before `outcome`, in every line.
        let text = std::fs::read_to_string(&log).unwrap();
        for l in text.lines() {
            let at = |key: &str| {
                l.find(&format!("\"{key}\":"))
                    .unwrap_or_else(|| panic!("{key}: {l}"))
            };
            assert!(
                at("ja4") < at("client") && at("client") < at("outcome"),
                "{l}"
            );
        }
        proxy.shutdown().await;
    })
    .await
}

/// The README's "Client catalogue" lists every entry: its name and key.
#[test]
fn the_readme_lists_every_entry() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n### Client catalogue\n")
        .nth(1)
        .expect("a \"Client catalogue\" section")
        .split("\n## ")
        .next()
        .unwrap();
    for e in catalogue::entries() {
        let key = match &e.pattern {
            Pattern::Ja4(k) | Pattern::Bc(k) => k,
        };
        assert!(
            section.contains(&format!("| {} |", e.name)) && section.contains(key.as_str()),
            "README \"Client catalogue\" lacks {:?} ({key})",
            e.name
        );
    }
}
