//! Legacy fallback (`legacy_upstream` on https listeners) and PROXY protocol
//! out (`send_proxy_protocol` on upstreams).
//!
//! - The predicate "can rustls serve this hello with this certificate?"
//!   (`snigate::tls::fit::check`) against real in-memory rustls handshakes, for
//!   every captured hello, the crafted hellos of the diagnosis module, grids of
//!   crafted TLS 1.2 and 1.3 hellos and real rustls client hellos, with
//!   ECDSA P-256, ECDSA P-384, RSA and Ed25519 certificates.
//! - Every capture against a running listener with an ECDSA and then an RSA
//!   certificate: a ServerHello from rustls, or the bytes forwarded exactly
//!   to a recording legacy upstream and logged `legacy_passthrough`.
//! - PROXY v1/v2 headers with the real client address (legacy and
//!   passthrough), bytes both ways, half-close, idle timeout, an unreachable
//!   legacy upstream, strict SNI.
//! - A real TLS 1.0 client (`openssl s_client -tls1`) through snigate to a
//!   TLS 1.0 server (`openssl s_server -tls1 -www`) as the legacy upstream.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::child::{lines_of, openssl_installed, Killed};
use crate::common::*;
use rustls::{Error, InvalidMessage, PeerIncompatible, ServerConfig};
use serde_json::Value;
use snigate::server::Proxy;
use snigate::tls::certs::{load_certificate, LoadedCertificate};
use snigate::tls::hello::{parse_client_hello, ClientHelloInfo, Parsed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// TLS 1.2 signature schemes a 2014 client sends (as the diagnosis module).
const SIGALGS: [u16; 4] = [0x0401, 0x0403, 0x0501, 0x0201];
/// ECDHE_ECDSA AES-GCM and CBC suites, RSA CBC: Windows 7 SChannel's shape.
const WIN7_SUITES: [u16; 6] = [0xc02c, 0xc02b, 0xc024, 0xc023, 0x003d, 0x002f];
/// Only CBC and static-RSA suites.
const CBC_ONLY: [u16; 5] = [0xc014, 0xc013, 0x0035, 0x002f, 0x000a];

// ---------------------------------------------------------------------------
// Crafted ClientHellos
// ---------------------------------------------------------------------------

/// A ClientHello built field by field; `None` leaves an extension out.
#[derive(Clone, Debug, Default)]
struct Craft {
    version: u16,
    suites: Vec<u16>,
    groups: Option<Vec<u16>>,
    points: Option<Vec<u8>>,
    sigalgs: Option<Vec<u16>>,
    versions: Option<Vec<u16>>,
    /// key_share: `Some(true)` one X25519 share, `Some(false)` an empty list.
    x25519_share: Option<bool>,
    alpn: Option<Vec<&'static str>>,
}

impl Craft {
    fn bytes(&self) -> Vec<u8> {
        fn u16s(v: &[u16]) -> Vec<u8> {
            v.iter().flat_map(|x| x.to_be_bytes()).collect()
        }
        fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
            out.extend(kind.to_be_bytes());
            out.extend((data.len() as u16).to_be_bytes());
            out.extend(data);
        }
        fn list16(items: &[u8]) -> Vec<u8> {
            let mut d = (items.len() as u16).to_be_bytes().to_vec();
            d.extend(items);
            d
        }
        let mut exts = Vec::new();
        if let Some(g) = &self.groups {
            ext(&mut exts, 0x000a, &list16(&u16s(g)));
        }
        if let Some(p) = &self.points {
            let mut d = vec![p.len() as u8];
            d.extend(p);
            ext(&mut exts, 0x000b, &d);
        }
        if let Some(s) = &self.sigalgs {
            ext(&mut exts, 0x000d, &list16(&u16s(s)));
        }
        if let Some(a) = &self.alpn {
            let mut names = Vec::new();
            for n in a {
                names.push(n.len() as u8);
                names.extend(n.as_bytes());
            }
            ext(&mut exts, 0x0010, &list16(&names));
        }
        if let Some(v) = &self.versions {
            let mut d = vec![(v.len() * 2) as u8];
            d.extend(u16s(v));
            ext(&mut exts, 0x002b, &d);
        }
        match self.x25519_share {
            None => {}
            Some(false) => ext(&mut exts, 0x0033, &list16(&[])),
            Some(true) => {
                // The X25519 base point: a valid public value.
                let mut share = vec![0x00, 0x1d, 0x00, 0x20, 9];
                share.extend([0u8; 31]);
                ext(&mut exts, 0x0033, &list16(&share));
            }
        }
        let mut body = self.version.to_be_bytes().to_vec();
        body.extend([0x5a; 32]);
        body.push(0);
        body.extend(list16(&u16s(&self.suites)));
        body.extend([1, 0]);
        body.extend(list16(&exts));
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }
}

/// Every hello the predicate is held against: label and bytes.
fn corpus(pki: &Pki) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = CAPTURES
        .iter()
        .map(|f| (f.to_string(), capture(f)))
        .collect();
    // the diagnosis module's crafted hellos.
    for (label, bytes) in [
        (
            "diag tls10 sigalgs",
            client_hello(0x0301, &CBC_ONLY, Some("a.test"), Some(&SIGALGS)),
        ),
        ("diag tls11", client_hello(0x0302, &CBC_ONLY, None, None)),
        (
            "diag ssl3",
            client_hello(0x0300, &[0x000a, 0x0005], None, None),
        ),
        (
            "diag tls12 no sigalgs",
            client_hello(0x0303, &[0xc02b, 0xc02f], Some("a.test"), None),
        ),
        (
            "diag win7",
            client_hello(0x0303, &WIN7_SUITES, None, Some(&SIGALGS)),
        ),
        (
            "diag cbc",
            client_hello(0x0303, &CBC_ONLY, Some("a.test"), Some(&SIGALGS)),
        ),
        (
            "diag strict",
            client_hello(0x0303, &[0x1301, 0xc02b], None, Some(&SIGALGS)),
        ),
    ] {
        out.push((label.to_string(), bytes));
    }
    // TLS 1.2 (no supported_versions): every suite shape against every
    // signature-scheme, group and point-format shape.
    let suite_sets: [&[u16]; 7] = [
        &WIN7_SUITES,
        &CBC_ONLY,
        &[0xc02f],
        &[0xc02b],
        &[0xcca9, 0xcca8],
        &[0x1301],
        &[0xc030, 0xc02c],
    ];
    let sigalg_sets: [Option<&[u16]>; 7] = [
        None,
        Some(&SIGALGS),
        Some(&[0x0503]),
        Some(&[0x0201, 0x0203]),
        Some(&[0x0804]),
        Some(&[0x0807]),
        Some(&[0x0401]),
    ];
    let group_sets: [Option<&[u16]>; 5] = [
        Some(&[23, 24]),
        None,
        Some(&[29]),
        Some(&[25]),
        Some(&[0x0100]),
    ];
    let point_sets: [Option<&[u8]>; 3] = [None, Some(&[0]), Some(&[1])];
    for version in [0x0300u16, 0x0301, 0x0302, 0x0303] {
        for suites in suite_sets {
            for sigalgs in sigalg_sets {
                for groups in group_sets {
                    for points in point_sets {
                        // Below TLS 1.2 the version decides; a few shapes do.
                        if version < 0x0303 && (groups != Some(&[23, 24][..]) || points.is_some()) {
                            continue;
                        }
                        let c = Craft {
                            version,
                            suites: suites.to_vec(),
                            groups: groups.map(<[u16]>::to_vec),
                            points: points.map(<[u8]>::to_vec),
                            sigalgs: sigalgs.map(<[u16]>::to_vec),
                            ..Default::default()
                        };
                        out.push((format!("{c:?}"), c.bytes()));
                    }
                }
            }
        }
    }
    // supported_versions (TLS 1.3 and its absence), ALPN, key_share.
    let version_sets: [&[u16]; 5] = [
        &[0x0304],
        &[0x0304, 0x0303],
        &[0x0303],
        &[0x0302, 0x0301],
        &[0x7f1c],
    ];
    let suite_sets: [&[u16]; 4] = [
        &[0x1301],
        &[0x1301, 0xc02b, 0xc02f],
        &[0xc02b, 0xc02f],
        &[0x1302],
    ];
    let sigalg_sets: [&[u16]; 6] = [
        &[0x0403, 0x0804],
        &[0x0401, 0x0201],
        &[0x0503],
        &[0x0807],
        &[0x0809],
        &[0x0403, 0x0401],
    ];
    let alpn_sets: [Option<&[&str]>; 3] = [None, Some(&["h2"]), Some(&["spdy/3.1"])];
    for versions in version_sets {
        for suites in suite_sets {
            for sigalgs in sigalg_sets {
                for alpn in alpn_sets {
                    for share in [Some(true), None] {
                        let c = Craft {
                            version: 0x0303,
                            suites: suites.to_vec(),
                            groups: Some(vec![29, 23]),
                            sigalgs: Some(sigalgs.to_vec()),
                            versions: Some(versions.to_vec()),
                            x25519_share: share,
                            alpn: alpn.map(<[&str]>::to_vec),
                            ..Default::default()
                        };
                        out.push((format!("{c:?}"), c.bytes()));
                    }
                }
            }
        }
    }
    // A HelloRetryRequest is an answer too.
    let hrr = Craft {
        version: 0x0303,
        suites: vec![0x1301],
        groups: Some(vec![23]),
        sigalgs: Some(vec![0x0403, 0x0804, 0x0807, 0x0503]),
        versions: Some(vec![0x0304]),
        x25519_share: Some(true),
        ..Default::default()
    };
    out.push((format!("{hrr:?}"), hrr.bytes()));
    // Real rustls clients.
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    for (label, opts) in [
        ("rustls default", ClientOpts::sni("a.test")),
        (
            "rustls no sni h2",
            ClientOpts::no_sni("a.test").alpn(&["h2", "http/1.1"]),
        ),
        ("rustls alpn foo", ClientOpts::sni("a.test").alpn(&["foo"])),
        (
            "rustls tls12 ecdsa",
            ClientOpts::sni("a.test")
                .tls12_suites(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]),
        ),
        (
            "rustls tls12 rsa",
            ClientOpts::sni("a.test")
                .tls12_suites(vec![cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]),
        ),
    ] {
        out.push((label.to_string(), client_hello_bytes(&pki.ca_der, &opts)));
    }
    out
}

// ---------------------------------------------------------------------------
// The predicate against rustls
// ---------------------------------------------------------------------------

/// A self-signed certificate of `alg`, written as PEM, loaded as snigate does.
fn self_signed(
    dir: &Path,
    label: &str,
    alg: &'static rcgen::SignatureAlgorithm,
) -> LoadedCertificate {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["k.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt, keyf) = (
        dir.join(format!("{label}.crt")),
        dir.join(format!("{label}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&keyf, key.serialize_pem()).unwrap();
    load_certificate(label, &crt, &keyf, None, &snigate::tls::crypto_provider()).unwrap()
}

/// What a fresh rustls server (`config`) does with `hello`: `Ok` when its
/// first flight starts with a ServerHello (or HelloRetryRequest), else the
/// error it fails with.
fn rustls_answer(config: Arc<ServerConfig>, hello: &[u8]) -> Result<(), Error> {
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut rest = hello;
    while !rest.is_empty() {
        if conn.read_tls(&mut rest).unwrap() == 0 {
            break;
        }
        conn.process_new_packets()?;
    }
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    assert!(
        flight.len() > 5 && flight[0] == 0x16 && flight[5] == 2,
        "rustls neither failed nor sent a ServerHello: {}",
        hex(&flight[..flight.len().min(16)])
    );
    Ok(())
}

fn parse(bytes: &[u8]) -> ClientHelloInfo {
    match parse_client_hello(bytes) {
        Ok(Parsed::Complete(info, _)) => info,
        other => panic!("not a complete hello: {other:?}"),
    }
}

#[test]
fn the_predicate_agrees_with_rustls_on_every_hello() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let load = |leaf: &Leaf| {
        load_certificate(
            &leaf.label,
            &leaf.chain,
            &leaf.key,
            None,
            &snigate::tls::crypto_provider(),
        )
        .unwrap()
    };
    let certs = [
        (
            "ecdsa-p256",
            load(&pki.leaf("p256", &["k.test"], Key::Ecdsa)),
        ),
        ("rsa", load(&pki.leaf("rsa", &["k.test"], Key::Rsa))),
        (
            "ecdsa-p384",
            self_signed(dir.path(), "p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ),
        (
            "ed25519",
            self_signed(dir.path(), "ed25519", &rcgen::PKCS_ED25519),
        ),
    ];
    let shared = snigate::tls::TlsShared::new(snigate::tls::crypto_provider()).unwrap();
    let alpn = vec!["h2".to_string(), "http/1.1".to_string()];
    let hellos = corpus(&pki);
    let mut mismatches = Vec::new();
    let mut errors_seen = BTreeSet::new();
    let (mut served, mut refused) = (0usize, 0usize);
    for (key, cert) in &certs {
        // The listener default and, for one key, a listener without ALPN.
        let alpns: &[&[String]] = if *key == "ecdsa-p256" {
            &[&alpn, &[]]
        } else {
            &[&alpn]
        };
        for alpn in alpns {
            let config = shared
                .server_config(cert.certified_key.clone(), alpn, None)
                .unwrap();
            for (label, bytes) in &hellos {
                let info = parse(bytes);
                let predicted = snigate::tls::fit::check(&info, &config, &cert.certified_key);
                let actual = rustls_answer(config.clone(), bytes);
                match &actual {
                    Ok(()) => served += 1,
                    Err(e) => {
                        refused += 1;
                        errors_seen.insert(format!("{e:?}"));
                    }
                }
                if predicted != actual {
                    mismatches.push(format!(
                        "{key} alpn {alpn:?}: {label}\n  predicted {predicted:?}\n  rustls    {actual:?}"
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases disagree:\n{}",
        mismatches.len(),
        served + refused,
        mismatches[..mismatches.len().min(30)].join("\n")
    );
    // The corpus reaches every way rustls can refuse a well-formed hello.
    for want in [
        Error::InvalidMessage(InvalidMessage::InvalidContentType),
        Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired),
        Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
        Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled),
        Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon),
        Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
        Error::PeerIncompatible(PeerIncompatible::NoSignatureSchemesInCommon),
        Error::PeerIncompatible(PeerIncompatible::UncompressedEcPointsRequired),
        Error::PeerIncompatible(PeerIncompatible::KeyShareExtensionRequired),
        Error::NoApplicationProtocol,
        Error::General("incompatible signing key".into()),
    ] {
        assert!(
            errors_seen.contains(&format!("{want:?}")),
            "no case ends in {want:?}; seen: {errors_seen:#?}"
        );
    }
    assert!(
        served > 250 && refused > 1000,
        "{served} served, {refused} refused"
    );
}

#[test]
fn reasons_are_those_of_a_failed_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let leaf = pki.leaf("rsa", &["k.test"], Key::Rsa);
    let cert = load_certificate(
        "rsa",
        &leaf.chain,
        &leaf.key,
        None,
        &snigate::tls::crypto_provider(),
    )
    .unwrap();
    let shared = snigate::tls::TlsShared::new(snigate::tls::crypto_provider()).unwrap();
    let config = shared
        .server_config(cert.certified_key.clone(), &["http/1.1".to_string()], None)
        .unwrap();
    let why = |bytes: &[u8]| {
        snigate::tls::fit::can_serve(&parse(bytes), &config, &cert.certified_key).unwrap_err()
    };
    let xp = why(&capture("xp_ie8_schannel_tls10_nosni.hex"));
    assert!(
        xp.starts_with("the client offers only TLS 1.0; snigate serves TLS 1.2 and 1.3"),
        "{xp}"
    );
    assert!(why(&capture("java6u45_sslv2hello_nosni.hex")).contains("SSLv2"));
    assert_eq!(
        why(&capture("win7_ie11_schannel_tls12.hex")),
        "no cipher suite in common"
    );
    let ssl3 = why(&client_hello(0x0300, &[0x000a], None, None));
    assert!(ssl3.starts_with("the client offers only SSL 3.0"), "{ssl3}");
    // An ECDSA-only client against an RSA key: no scheme the key signs with.
    let p384 = Craft {
        version: 0x0303,
        suites: vec![0xc02f],
        groups: Some(vec![23]),
        sigalgs: Some(vec![0x0503]),
        ..Default::default()
    };
    assert_eq!(
        why(&p384.bytes()),
        "no signature scheme in common with the certificate's key"
    );
    assert!(snigate::tls::fit::can_serve(
        &parse(&capture("win10_ie11_schannel_tls12.hex")),
        &config,
        &cert.certified_key
    )
    .is_ok());
}

// ---------------------------------------------------------------------------
// A recording legacy upstream
// ---------------------------------------------------------------------------

/// What the legacy upstream sends as soon as a connection arrives.
const GREETING: &[u8] = b"LEGACY-UPSTREAM\n";
/// What it sends after the client's end of stream (half-close).
const FAREWELL: &[u8] = b"bytes after your EOF\n";

/// A TCP upstream that greets every connection, records everything it
/// receives until EOF, reports it, then (optionally) answers once more.
struct Recorder {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Vec<u8>>,
    accepted: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start(farewell: Option<&'static [u8]>) -> Recorder {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = socket.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = s.write_all(GREETING).await;
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got).await;
                    let _ = tx.send(got);
                    if let Some(f) = farewell {
                        let _ = s.write_all(f).await;
                    }
                });
            }
        });
        Recorder {
            addr,
            received,
            accepted,
        }
    }

    /// The bytes of the next connection that reached EOF.
    async fn next(&mut self) -> Vec<u8> {
        tokio::time::timeout(LOG_WAIT, self.received.recv())
            .await
            .expect("the legacy upstream saw no complete connection")
            .expect("recorder gone")
    }
}

/// What came back to a replayed hello.
#[derive(Debug, PartialEq)]
enum Answer {
    /// rustls: ServerHello (version, suite).
    ServerHello(u16, u16),
    /// The legacy upstream's greeting.
    Legacy,
    /// Anything else (alert, close).
    Other(Vec<u8>),
}

/// Sends `hello` and reads the first answer; the stream stays open.
async fn replay(addr: SocketAddr, hello: &[u8]) -> (TcpStream, Answer) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut head = [0u8; 5];
    if s.read_exact(&mut head).await.is_err() {
        return (s, Answer::Other(Vec::new()));
    }
    if head[0] == 0x16 {
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(body[0], 2, "first handshake message must be ServerHello");
        let version = u16::from_be_bytes([body[4], body[5]]);
        let at = 39 + usize::from(body[38]);
        let suite = u16::from_be_bytes([body[at], body[at + 1]]);
        return (s, Answer::ServerHello(version, suite));
    }
    let mut rest = vec![0u8; GREETING.len() - head.len()];
    if head[..] == GREETING[..5] && s.read_exact(&mut rest).await.is_ok() && rest == GREETING[5..] {
        return (s, Answer::Legacy);
    }
    (s, Answer::Other(head.to_vec()))
}

struct Lab {
    dir: tempfile::TempDir,
    proxy: Proxy,
}

impl Lab {
    fn handshakes(&self) -> std::path::PathBuf {
        self.dir.path().join("handshakes.jsonl")
    }

    /// The handshake line of the connection from `client` to `listener`.
    async fn line_of(&self, client: SocketAddr, listener: SocketAddr) -> Value {
        wait_for_json_line(&self.handshakes(), LOG_WAIT, |v| {
            is_connection(v, client, listener)
        })
        .await
    }
}

/// A proxy with the handshake log on, `[timeouts] client_idle = idle`, and
/// `body` (certificates, listeners, upstreams).
async fn lab(idle: &str, body: impl Fn(&Path) -> String) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[log]\nhandshake_log = \"handshakes.jsonl\"\n\n[timeouts]\nclient_idle = \"{idle}\"\n\n{}",
        body(dir.path())
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    assert!(
        proxy.state().settings.inactive.is_empty(),
        "{:?}",
        proxy.state().settings.inactive
    );
    Lab { dir, proxy }
}

/// An https listener "main" with a fallback certificate of `key` and
/// legacy_upstream "iis-legacy" at `legacy`.
fn legacy_listener(dir: &Path, key: Key, legacy: SocketAddr, extra: &str) -> String {
    let pki = Pki::new(dir);
    let fb = pki.leaf("fb", &["fb.test"], key);
    format!(
        "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
         legacy_upstream = \"iis-legacy\"\n{extra}\n\
         [[upstream]]\nname = \"iis-legacy\"\nservers = [\"{legacy}\"]\n",
        cert_toml("fb", &fb)
    )
}

// ---------------------------------------------------------------------------
// Captures against a running listener
// ---------------------------------------------------------------------------

async fn captures_against(key: Key, served: &[(&str, u16)]) {
    let mut legacy = Recorder::start(None).await;
    let legacy_addr = legacy.addr;
    let lab = lab("120s", |d| legacy_listener(d, key, legacy_addr, "")).await;
    let addr = lab.proxy.addr("main").unwrap();
    let mut forwarded = Vec::new();
    for file in CAPTURES {
        let hello = capture(file);
        let (mut s, answer) = replay(addr, &hello).await;
        let client = s.local_addr().unwrap();
        match served.iter().find(|(f, _)| *f == file) {
            Some((_, suite)) => {
                assert_eq!(
                    answer,
                    Answer::ServerHello(0x0303, *suite),
                    "{key:?} {file}"
                );
            }
            None => {
                assert_eq!(answer, Answer::Legacy, "{key:?} {file}");
                s.shutdown().await.unwrap();
                assert_eq!(
                    legacy.next().await,
                    hello,
                    "{key:?} {file}: the legacy upstream must receive the hello byte for byte"
                );
                let line = lab.line_of(client, addr).await;
                assert_eq!(line["outcome"], "legacy_passthrough", "{line}");
                assert_eq!(line["upstream"], "iis-legacy", "{line}");
                assert_eq!(line["certificate"], Value::Null, "{line}");
                assert!(
                    line["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{line}"
                );
                forwarded.push((file, line));
            }
        }
    }
    let reason = |f: &str| {
        forwarded
            .iter()
            .find(|(file, _)| *file == f)
            .map(|(_, l)| l["reason"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(
        reason("xp_ie8_schannel_tls10_nosni.hex").starts_with("the client offers only TLS 1.0;")
    );
    assert!(reason("android237_tls10_nosni.hex").starts_with("the client offers only TLS 1.0;"));
    assert!(reason("java6u45_sslv2hello_nosni.hex").contains("SSLv2"));
    if key == Key::Rsa {
        assert_eq!(
            reason("win7_ie11_schannel_tls12.hex"),
            "no cipher suite in common"
        );
    }
    // Counted in the report (and by the same call in the metrics).
    let summary = lab.proxy.state().report.snapshot().summary;
    let counted = |split: &snigate::observe::report::OutcomeSplit| {
        split
            .outcomes
            .get("legacy_passthrough")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        counted(&summary.with_sni) + counted(&summary.without_sni),
        forwarded.len() as u64
    );
    assert_eq!(legacy.accepted.load(Ordering::SeqCst), forwarded.len());
    lab.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_with_an_ecdsa_certificate() {
    // snigate's server order puts ECDHE_ECDSA_AES_128_GCM first (see
    // tests/data/hellos/SOURCES.md).
    bounded(captures_against(
        Key::Ecdsa,
        &[
            ("win7_ie11_schannel_tls12.hex", 0xc02b),
            ("win10_ie11_schannel_tls12.hex", 0xc02b),
            ("win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex", 0xc02b),
            ("yahooslurp_jun2014_openssl_tls12_nosni.hex", 0xc02b),
        ],
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_with_an_rsa_certificate() {
    // Windows 7 offers no ECDHE_RSA AES-GCM suite: it goes to the legacy
    // upstream along with the TLS 1.0 and SSLv2-format clients.
    bounded(captures_against(
        Key::Rsa,
        &[
            ("win10_ie11_schannel_tls12.hex", 0xc02f),
            ("yahooslurp_jun2014_openssl_tls12_nosni.hex", 0xc02f),
        ],
    ))
    .await
}

// ---------------------------------------------------------------------------
// PROXY protocol out
// ---------------------------------------------------------------------------

/// Splits a PROXY header (v1 or v2) off `bytes`, parsed by `ppp`: the source
/// and destination it names, and what follows it.
fn split_proxy_header(bytes: &[u8]) -> (SocketAddr, SocketAddr, &[u8]) {
    if bytes.starts_with(b"PROXY ") {
        let end = bytes.windows(2).position(|w| w == b"\r\n").expect("CRLF") + 2;
        let text = std::str::from_utf8(&bytes[..end]).unwrap();
        let header = ppp::v1::Header::try_from(text).expect("a v1 header");
        let (s, d) = match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => (
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            ),
            other => panic!("not TCP4: {other:?}"),
        };
        return (s, d, &bytes[end..]);
    }
    assert!(
        bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n"),
        "no PROXY header: {}",
        hex(&bytes[..16.min(bytes.len())])
    );
    let end = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let header = ppp::v2::Header::try_from(&bytes[..end]).expect("a v2 header");
    assert_eq!(header.command, ppp::v2::Command::Proxy);
    let (s, d) = match header.addresses {
        ppp::v2::Addresses::IPv4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        other => panic!("not IPv4: {other:?}"),
    };
    (s, d, &bytes[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_v1_and_v2_before_the_hello() {
    bounded(async {
        let mut v1 = Recorder::start(None).await;
        let mut v2 = Recorder::start(None).await;
        let (a1, a2) = (v1.addr, v2.addr);
        let lab = lab("120s", |d| {
            let pki = Pki::new(d);
            let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
            format!(
                "{}[[listener]]\nname = \"l1\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\nlegacy_upstream = \"old-v1\"\n\n\
                 [[listener]]\nname = \"l2\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\nlegacy_upstream = \"old-v2\"\n\n\
                 [[listener]]\nname = \"p1\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\ndefault_upstream = \"old-v1\"\n\n\
                 [[listener]]\nname = \"p2\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\ndefault_upstream = \"old-v2\"\n\n\
                 [[upstream]]\nname = \"old-v1\"\nservers = [\"{a1}\"]\nsend_proxy_protocol = \"v1\"\n\n\
                 [[upstream]]\nname = \"old-v2\"\nservers = [\"{a2}\"]\nsend_proxy_protocol = \"v2\"\n",
                cert_toml("fb", &fb)
            )
        })
        .await;
        let xp = capture("xp_ie8_schannel_tls10_nosni.hex");
        let win10 = capture("win10_ie11_schannel_tls12.hex");
        for (listener, which, hello, outcome) in [
            ("l1", 1, &xp, "legacy_passthrough"),
            ("l2", 2, &xp, "legacy_passthrough"),
            ("p1", 1, &win10, "passthrough"),
            ("p2", 2, &win10, "passthrough"),
        ] {
            let proxy_addr = lab.proxy.addr(listener).unwrap();
            let (mut s, answer) = replay(proxy_addr, hello).await;
            assert_eq!(answer, Answer::Legacy, "{listener}");
            let client = s.local_addr().unwrap();
            s.shutdown().await.unwrap();
            let got = if which == 1 {
                v1.next().await
            } else {
                v2.next().await
            };
            let (source, destination, rest) = split_proxy_header(&got);
            assert_eq!(source, client, "{listener}: the real client address");
            assert_eq!(destination, proxy_addr, "{listener}");
            assert_eq!(rest, &hello[..], "{listener}: then the hello, byte for byte");
            let line = lab.line_of(client, proxy_addr).await;
            assert_eq!(line["outcome"], outcome, "{line}");
        }
        lab.proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// The forwarded stream
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flow_both_ways_and_half_close_is_passed_on() {
    bounded(async {
        let mut legacy = Recorder::start(Some(FAREWELL)).await;
        let legacy_addr = legacy.addr;
        let lab = lab("120s", |d| legacy_listener(d, Key::Ecdsa, legacy_addr, "")).await;
        let hello = capture("java6u45_sslv2hello_nosni.hex");
        let (mut s, answer) = replay(lab.proxy.addr("main").unwrap(), &hello).await;
        assert_eq!(
            answer,
            Answer::Legacy,
            "the upstream's bytes reach the client"
        );
        s.write_all(b"more client bytes").await.unwrap();
        // The client is done sending; the upstream sees EOF and still answers.
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, FAREWELL);
        let mut want = hello.clone();
        want.extend_from_slice(b"more client bytes");
        assert_eq!(legacy.next().await, want);
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_legacy_stream_is_closed_on_both_sides() {
    bounded(async {
        let mut legacy = Recorder::start(None).await;
        let legacy_addr = legacy.addr;
        let lab = lab("300ms", |d| legacy_listener(d, Key::Ecdsa, legacy_addr, "")).await;
        let hello = capture("xp_ie8_schannel_tls10_nosni.hex");
        let started = Instant::now();
        let (mut s, answer) = replay(lab.proxy.addr("main").unwrap(), &hello).await;
        assert_eq!(answer, Answer::Legacy);
        // Neither side sends anything more: client_idle closes both.
        assert_eq!(
            wait_closed(&mut s, Duration::from_secs(5)).await,
            Some(Ended::Eof(0)),
            "the client side must be closed"
        );
        assert_eq!(legacy.next().await, hello, "the upstream side must see EOF");
        assert!(started.elapsed() >= Duration::from_millis(300));
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_legacy_upstream_fails_the_handshake() {
    bounded(async {
        let dead = dead_addr().await;
        let lab = lab("120s", |d| legacy_listener(d, Key::Ecdsa, dead, "")).await;
        let mut s = TcpStream::connect(lab.proxy.addr("main").unwrap())
            .await
            .unwrap();
        let client = s.local_addr().unwrap();
        s.write_all(&capture("xp_ie8_schannel_tls10_nosni.hex"))
            .await
            .unwrap();
        assert!(wait_closed(&mut s, Duration::from_secs(5)).await.is_some());
        let line = lab.line_of(client, lab.proxy.addr("main").unwrap()).await;
        assert_eq!(line["outcome"], "failed", "{line}");
        assert_eq!(line["upstream"], "iis-legacy", "{line}");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("cannot reach legacy_upstream \"iis-legacy\": cannot connect to"),
            "{reason}"
        );
        assert!(reason.contains("TLS 1.0"), "{reason}");
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_still_refuses_before_the_legacy_path() {
    bounded(async {
        let legacy = Recorder::start(None).await;
        let legacy_addr = legacy.addr;
        let lab = lab("120s", |d| {
            legacy_listener(d, Key::Ecdsa, legacy_addr, "strict_sni = true\n")
        })
        .await;
        let mut s = TcpStream::connect(lab.proxy.addr("main").unwrap())
            .await
            .unwrap();
        let client = s.local_addr().unwrap();
        s.write_all(&capture("xp_ie8_schannel_tls10_nosni.hex"))
            .await
            .unwrap();
        assert!(wait_closed(&mut s, Duration::from_secs(5)).await.is_some());
        let line = lab.line_of(client, lab.proxy.addr("main").unwrap()).await;
        assert_eq!(line["outcome"], "failed", "{line}");
        assert!(
            line["reason"].as_str().unwrap().contains("sent no SNI"),
            "{line}"
        );
        assert_eq!(legacy.accepted.load(Ordering::SeqCst), 0);
        lab.proxy.shutdown().await;
    })
    .await
}

#[test]
fn configuration() {
    let parse = |toml: &str| snigate::config::Settings::parse(Path::new("t.toml"), toml);
    let base = "[[certificate]]\nname = \"c\"\nchain = \"c.crt\"\nkey = \"c.key\"\n\n\
                [[upstream]]\nname = \"old\"\nservers = [\"10.0.0.1:443\"]\n";
    // legacy_upstream on an https listener is active; the name must exist.
    let ok = parse(&format!(
        "{base}[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"c\"\nlegacy_upstream = \"old\"\n"
    ))
    .unwrap();
    assert!(ok.inactive.is_empty(), "{:?}", ok.inactive);
    assert_eq!(ok.listeners[0].legacy_upstream.as_deref(), Some("old"));
    let e = parse(&format!(
        "{base}[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"c\"\nlegacy_upstream = \"nope\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("legacy_upstream \"nope\" names no [[upstream]]"),
        "{e}"
    );
    // ... and means nothing to a passthrough listener.
    let pt = parse(&format!(
        "{base}[[listener]]\nname = \"p\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\ndefault_upstream = \"old\"\nlegacy_upstream = \"old\"\n"
    ))
    .unwrap();
    assert_eq!(pt.inactive.len(), 1, "{:?}", pt.inactive);
    assert!(pt.inactive[0].contains("legacy_upstream"));

    // send_proxy_protocol: "v1" | "v2", nothing else.
    let with = |v: &str, listener: &str| {
        parse(&format!(
            "[[certificate]]\nname = \"c\"\nchain = \"c.crt\"\nkey = \"c.key\"\n\n\
             [[upstream]]\nname = \"old\"\nservers = [\"10.0.0.1:443\"]\nsend_proxy_protocol = {v}\n\n{listener}"
        ))
    };
    let pt = "[[listener]]\nname = \"p\"\nbind = [\"127.0.0.1:0\"]\nmode = \"passthrough\"\ndefault_upstream = \"old\"\n";
    use snigate::config::ProxyProtocolVersion;
    for (v, want) in [
        ("\"v1\"", ProxyProtocolVersion::V1),
        ("\"v2\"", ProxyProtocolVersion::V2),
    ] {
        let s = with(v, pt).unwrap();
        assert_eq!(s.upstreams[0].send_proxy_protocol, Some(want));
        assert!(s.inactive.is_empty(), "{:?}", s.inactive);
    }
    for bad in ["\"v3\"", "true", "2"] {
        let e = with(bad, pt).unwrap_err().to_string();
        assert!(e.contains("t.toml:"), "{e}");
    }
    // An upstream that also takes HTTP requests gets those without it: said.
    let https = "[[listener]]\nname = \"m\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"c\"\ndefault_upstream = \"old\"\n";
    let s = with("\"v2\"", https).unwrap();
    assert_eq!(s.inactive.len(), 1, "{:?}", s.inactive);
    assert!(
        s.inactive[0].contains("send_proxy_protocol"),
        "{:?}",
        s.inactive
    );
}

// ---------------------------------------------------------------------------
// A real TLS 1.0 client through snigate to a real TLS 1.0 server
// ---------------------------------------------------------------------------

/// Old OpenSSL defaults for TLS 1.0 on OpenSSL 3: security level 0 allows
/// its SHA-1/MD5 handshake signatures.
const TLS10_CIPHERS: &str = "DEFAULT:@SECLEVEL=0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_tls10_client_reaches_a_tls10_server() {
    if !openssl_installed() {
        eprintln!("SKIPPED: openssl is needed for this test (CI installs it)");
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let backend_leaf = pki.leaf("iis", &["legacy.test"], Key::Rsa);
        // The legacy upstream: a TLS 1.0-only server answering an HTTP page.
        let mut server = Command::new("openssl");
        server
            .args([
                "s_server",
                "-tls1",
                "-cipher",
                TLS10_CIPHERS,
                "-www",
                "-accept",
                "127.0.0.1:0",
            ])
            .arg("-cert")
            .arg(&backend_leaf.chain)
            .arg("-key")
            .arg(&backend_leaf.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut server = Killed(server.spawn().expect("openssl s_server"));
        let server_out = lines_of(server.0.stdout.take().unwrap());
        let server_err = lines_of(server.0.stderr.take().unwrap());
        let port = tokio::task::spawn_blocking(move || {
            // "ACCEPT 127.0.0.1:PORT" once it listens.
            loop {
                match server_out.recv_timeout(Duration::from_secs(10)) {
                    Ok(line) => {
                        if let Some(port) = line.strip_prefix("ACCEPT 127.0.0.1:") {
                            return Ok(port.trim().parse::<u16>().unwrap());
                        }
                    }
                    Err(e) => {
                        let err: Vec<String> = server_err.try_iter().collect();
                        return Err(format!("s_server did not listen ({e}): {}", err.join("\n")));
                    }
                }
            }
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));

        let legacy = SocketAddr::from(([127, 0, 0, 1], port));
        let lab = lab("120s", |d| legacy_listener(d, Key::Ecdsa, legacy, "")).await;
        let proxy_addr = lab.proxy.addr("main").unwrap();

        // The client: TLS 1.0 only, no SNI (an address), as Windows XP.
        let mut client = Command::new("openssl");
        client
            .args([
                "s_client",
                "-tls1",
                "-cipher",
                TLS10_CIPHERS,
                "-ign_eof",
                "-connect",
            ])
            .arg(proxy_addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut client = Killed(client.spawn().expect("openssl s_client"));
        client
            .0
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        let out = lines_of(client.0.stdout.take().unwrap());
        let err = lines_of(client.0.stderr.take().unwrap());
        // The server closes after its page; s_client then exits and its
        // output ends.
        let (out, err) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut text = Vec::new();
            while let Ok(line) =
                out.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                text.push(line);
            }
            let errs: Vec<String> = err.try_iter().collect();
            (text.join("\n"), errs.join("\n"))
        })
        .await
        .unwrap();
        assert!(
            out.contains("New, TLSv1.0, Cipher is"),
            "the client did not complete a TLS 1.0 handshake:\n{out}\n{err}"
        );
        assert!(
            out.contains("HTTP/1.0 200 ok") && out.contains("s_server -tls1"),
            "the client did not get the server's page:\n{out}\n{err}"
        );
        drop(client);
        drop(server);

        let line = wait_for_json_line(&lab.handshakes(), LOG_WAIT, |v| {
            v["outcome"] == "legacy_passthrough"
        })
        .await;
        assert_eq!(line["offered_versions"], serde_json::json!(["1.0"]));
        assert_eq!(line["sni"], Value::Null);
        assert!(
            line["reason"]
                .as_str()
                .unwrap()
                .starts_with("the client offers only TLS 1.0;"),
            "{line}"
        );
        lab.proxy.shutdown().await;
    })
    .await
}
