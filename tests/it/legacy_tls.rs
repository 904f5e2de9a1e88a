//! The OpenSSL engine (`cargo test --features legacy-tls --test it legacy_tls::`):
//!
//! - every capture rustls cannot serve (Windows XP IE8 and Android 2.3.7 at
//!   TLS 1.0, Java 6's SSLv2-format hello, Windows 7 against an RSA
//!   certificate) gets a ServerHello from OpenSSL and a handshake-log line
//!   with `engine: "openssl"` — except XP when the system's OpenSSL has no
//!   3DES suite (Debian 12's has none): OpenSSL's "no shared cipher" then;
//!   the others still get rustls (no `engine`);
//! - a client OpenSSL cannot serve either fails with OpenSSL's reason;
//! - a real TLS 1.0 client (`openssl s_client -tls1`) through snigate's
//!   HTTP proxy path to an echo backend, logged in both logs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::child::{lines_of, openssl_installed, Killed};
use crate::common::*;
use serde_json::Value;
use snigate::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// Old OpenSSL defaults for TLS 1.0 on OpenSSL 3.
const TLS10_CIPHERS: &str = "DEFAULT:@SECLEVEL=0";

struct Lab {
    dir: tempfile::TempDir,
    proxy: Proxy,
    _backend: Backend,
}

impl Lab {
    fn handshakes(&self) -> PathBuf {
        self.dir.path().join("handshakes.jsonl")
    }

    fn access(&self) -> PathBuf {
        self.dir.path().join("access.jsonl")
    }

    /// The handshake line of the connection from `client` to "main".
    async fn line_of(&self, client: SocketAddr) -> Value {
        let main = self.proxy.addr("main").unwrap();
        wait_for_json_line(&self.handshakes(), LOG_WAIT, |v| {
            is_connection(v, client, main)
        })
        .await
    }
}

/// A proxy with both logs on, an https listener "main" with a fallback
/// certificate of `key` for a.test and `legacy_tls = {legacy}`, and a.test
/// routed to the echo backend "A".
async fn lab(key: Key, legacy: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend("A").await;
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["a.test"], key);
    let toml = format!(
        "[log]\nhandshake_log = \"handshakes.jsonl\"\naccess_log = \"access.jsonl\"\n\n{}\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\
         legacy_tls = {legacy}\n\n\
         [[route]]\nhosts = [\"a.test\"]\nupstream = \"A\"\n\n\
         [[upstream]]\nname = \"A\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        backend.addr
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    assert!(
        proxy.state().settings.inactive.is_empty(),
        "{:?}",
        proxy.state().settings.inactive
    );
    Lab {
        dir,
        proxy,
        _backend: backend,
    }
}

/// What came back to a replayed hello.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A ServerHello: record version, ServerHello version, suite.
    ServerHello(u16, u16, u16),
    /// An alert record (level, description).
    Alert(u8, u8),
    /// Anything else (close, other bytes).
    Other(Vec<u8>),
}

/// Sends `hello`, reads the first record, then closes the connection (a
/// capture cannot go on with the handshake).
async fn replay(addr: SocketAddr, hello: &[u8]) -> (SocketAddr, Answer) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let client = s.local_addr().unwrap();
    s.write_all(hello).await.unwrap();
    let mut head = [0u8; 5];
    if s.read_exact(&mut head).await.is_err() {
        return (client, Answer::Other(Vec::new()));
    }
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).await.is_err() {
        return (client, Answer::Other(head.to_vec()));
    }
    let answer = match head[0] {
        0x16 if body.len() > 40 && body[0] == 2 => {
            let version = u16::from_be_bytes([body[4], body[5]]);
            let at = 39 + usize::from(body[38]);
            let suite = u16::from_be_bytes([body[at], body[at + 1]]);
            Answer::ServerHello(u16::from_be_bytes([head[1], head[2]]), version, suite)
        }
        0x15 if body.len() == 2 => Answer::Alert(body[0], body[1]),
        _ => Answer::Other(head.to_vec()),
    };
    drop(s);
    (client, answer)
}

/// Whether the system's OpenSSL still has a 3DES suite (TLS_RSA_WITH_3DES_EDE_CBC_SHA,
/// the best Windows XP offers).
fn openssl_has_3des() -> bool {
    let mut b = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls_server()).unwrap();
    b.set_cipher_list("DES-CBC3-SHA:@SECLEVEL=0").is_ok()
}

/// Checks `answer` is a ServerHello of at most TLS 1.2; its version.
fn server_hello(answer: &Answer, what: &str) -> u16 {
    match answer {
        Answer::ServerHello(record, version, _) => {
            assert!(*record <= 0x0303, "{what}: record version {record:#06x}");
            assert!(
                (0x0301..=0x0303).contains(version),
                "{what}: ServerHello version {version:#06x}"
            );
            *version
        }
        other => panic!("{what}: no ServerHello: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_rustls_cannot_serve_get_a_server_hello_from_openssl() {
    bounded(async {
        let lab = lab(Key::Rsa, "{}").await;
        let addr = lab.proxy.addr("main").unwrap();
        // With an RSA certificate rustls serves these two (see the legacy module).
        let rustls = [
            "win10_ie11_schannel_tls12.hex",
            "yahooslurp_jun2014_openssl_tls12_nosni.hex",
        ];
        for file in CAPTURES {
            let (client, answer) = replay(addr, &capture(file)).await;
            let line = lab.line_of(client).await;
            if rustls.contains(&file) {
                assert_eq!(server_hello(&answer, file), 0x0303, "{file}");
                assert!(line.get("engine").is_none(), "{file}: {line}");
            } else if file == "xp_ie8_schannel_tls10_nosni.hex" && !openssl_has_3des() {
                // IE 8 on XP offers only RC4, 3DES, DES and export suites:
                // an OpenSSL 3 without 3DES (Debian 12's) has none of them.
                assert!(matches!(answer, Answer::Alert(2, 40)), "{file}: {answer:?}");
                assert_eq!(line["engine"], "openssl", "{file}: {line}");
                assert_eq!(line["outcome"], "failed", "{file}: {line}");
                let reason = line["reason"].as_str().unwrap();
                assert!(
                    reason.starts_with("OpenSSL: no shared cipher (rustls cannot serve"),
                    "{file}: {line}"
                );
            } else {
                let version = server_hello(&answer, file);
                assert_eq!(line["engine"], "openssl", "{file}: {line}");
                assert_eq!(line["certificate"], "fb", "{file}: {line}");
                // The capture stops after its hello: the handshake ends there.
                assert_eq!(line["outcome"], "failed", "{file}: {line}");
                let reason = line["reason"].as_str().unwrap();
                assert!(
                    reason.contains("rustls cannot serve this client"),
                    "{file}: {line}"
                );
                let want = match file {
                    "win7_ie11_schannel_tls12.hex"
                    | "win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex" => 0x0303,
                    _ => 0x0301,
                };
                assert_eq!(version, want, "{file}: {answer:?}");
            }
        }
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_openssl_cannot_serve_either_fails_with_its_reason() {
    bounded(async {
        // Windows XP offers only RSA key exchange and signatures: nothing
        // for an ECDSA certificate, in OpenSSL as in rustls.
        let lab = lab(Key::Ecdsa, "{ min_version = \"1.0\" }").await;
        let addr = lab.proxy.addr("main").unwrap();
        let (client, answer) = replay(addr, &capture("xp_ie8_schannel_tls10_nosni.hex")).await;
        assert!(
            matches!(answer, Answer::Alert(2, _) | Answer::Other(_)),
            "{answer:?}"
        );
        let line = lab.line_of(client).await;
        assert_eq!(line["engine"], "openssl", "{line}");
        assert_eq!(line["outcome"], "failed", "{line}");
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.starts_with("OpenSSL: "), "{line}");
        assert!(reason.contains("no shared cipher"), "{line}");
        // /metrics counts it under reason="legacy_tls", not as completed.
        let m = Scrape::parse(&lab.proxy.state().metrics.encode());
        let main = [("listener", "main")];
        let failed = [("listener", "main"), ("reason", "legacy_tls")];
        assert_eq!(m.value("snigate_handshake_failures_total", &failed), 1.0);
        assert_eq!(m.value("snigate_legacy_tls_handshakes_total", &main), 0.0);
        // A TLS 1.2 client rustls serves is still rustls's.
        let (client, answer) = replay(addr, &capture("win10_ie11_schannel_tls12.hex")).await;
        assert_eq!(server_hello(&answer, "win10"), 0x0303);
        let line = lab.line_of(client).await;
        assert!(line.get("engine").is_none(), "{line}");
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_keeps_older_clients_out() {
    bounded(async {
        let lab = lab(Key::Rsa, "{ min_version = \"1.2\" }").await;
        let addr = lab.proxy.addr("main").unwrap();
        // Windows 7 (TLS 1.2, CBC suites) is served, XP (TLS 1.0) is not.
        let (_, answer) = replay(addr, &capture("win7_ie11_schannel_tls12.hex")).await;
        assert_eq!(server_hello(&answer, "win7"), 0x0303);
        let (client, answer) = replay(addr, &capture("xp_ie8_schannel_tls10_nosni.hex")).await;
        assert!(!matches!(answer, Answer::ServerHello(..)), "{answer:?}");
        let line = lab.line_of(client).await;
        assert_eq!(line["engine"], "openssl", "{line}");
        assert_eq!(line["outcome"], "failed", "{line}");
        assert!(
            line["reason"].as_str().unwrap().starts_with("OpenSSL: "),
            "{line}"
        );
        lab.proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// A real TLS 1.0 client through the HTTP proxy path
// ---------------------------------------------------------------------------

/// `openssl s_client` with `args` to `addr`, `input` on its stdin; its
/// stdout and stderr once it exits (or after 10 s, when it is killed).
async fn s_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> (String, String) {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .args(args)
        .args(["-ign_eof", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = Killed(cmd.spawn().expect("openssl s_client"));
    client.0.stdin.take().unwrap().write_all(input).unwrap();
    let out = lines_of(client.0.stdout.take().unwrap());
    let err = lines_of(client.0.stderr.take().unwrap());
    // The proxy closes after its answer (Connection: close); s_client then
    // exits and its output ends.
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut text = Vec::new();
        while let Ok(line) = out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            text.push(line);
        }
        drop(client);
        let errs: Vec<String> = err.try_iter().collect();
        (text.join("\n"), errs.join("\n"))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_tls10_client_is_proxied_to_the_backend() {
    if !openssl_installed() {
        eprintln!("SKIPPED: openssl is needed for this test (CI installs it)");
        return;
    }
    bounded(async {
        let lab = lab(Key::Rsa, "{ min_version = \"1.0\" }").await;
        let addr = lab.proxy.addr("main").unwrap();
        // TLS 1.0 only, no SNI (an address), as Windows XP.
        let (out, err) = s_client(
            addr,
            &["-tls1", "-cipher", TLS10_CIPHERS],
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            out.contains("New, TLSv1.0, Cipher is"),
            "the client did not complete a TLS 1.0 handshake:\n{out}\n{err}"
        );
        assert!(
            out.contains("HTTP/1.1 200") && out.contains("\"backend\":\"A\""),
            "the client did not get the backend's answer:\n{out}\n{err}"
        );

        let line = wait_for_json_line(&lab.handshakes(), LOG_WAIT, |v| v["outcome"] == "ok").await;
        assert_eq!(line["engine"], "openssl", "{line}");
        assert_eq!(line["version"], "1.0", "{line}");
        assert_eq!(line["offered_versions"], serde_json::json!(["1.0"]));
        assert_eq!(line["sni"], Value::Null, "{line}");
        assert_eq!(line["certificate"], "fb", "{line}");
        assert_eq!(line["fallback"], true, "{line}");
        assert!(
            line["suite"].as_str().unwrap().starts_with("TLS_"),
            "an IANA suite name: {line}"
        );
        assert!(line.get("reason").is_none(), "{line}");
        // /metrics counts the handshake OpenSSL completed.
        let m = Scrape::parse(&lab.proxy.state().metrics.encode());
        let main = [("listener", "main")];
        assert_eq!(m.value("snigate_legacy_tls_handshakes_total", &main), 1.0);
        let request =
            wait_for_json_line(&lab.access(), LOG_WAIT, |v| v["event"] == "http_request").await;
        assert_eq!(request["conn"], line["conn"], "{request}");
        assert_eq!(request["host"], "a.test", "{request}");
        assert_eq!(request["upstream"], "A", "{request}");
        assert_eq!(request["status"], 200, "{request}");
        assert_eq!(request["certificate"], "fb", "{request}");
        assert_eq!(request["covered"], true, "{request}");
        lab.proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_client_still_gets_rustls() {
    if !openssl_installed() {
        eprintln!("SKIPPED: openssl is needed for this test (CI installs it)");
        return;
    }
    bounded(async {
        let lab = lab(Key::Rsa, "{}").await;
        let addr = lab.proxy.addr("main").unwrap();
        let (out, err) = s_client(
            addr,
            &["-tls1_3"],
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            out.contains("TLSv1.3") && out.contains("\"backend\":\"A\""),
            "{out}\n{err}"
        );
        let line = wait_for_json_line(&lab.handshakes(), LOG_WAIT, |v| v["outcome"] == "ok").await;
        assert_eq!(line["version"], "1.3", "{line}");
        assert!(line.get("engine").is_none(), "{line}");
        lab.proxy.shutdown().await;
    })
    .await
}

#[test]
fn check_builds_the_openssl_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["a.test"], Key::Rsa);
    let settings = |legacy: &str| {
        let toml = format!(
            "{}[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\n\
             fallback_certificate = \"fb\"\nlegacy_tls = {legacy}\n",
            cert_toml("fb", &fb)
        );
        snigate::config::Settings::parse(&dir.path().join("t.toml"), &toml).unwrap()
    };
    let s = settings("{ min_version = \"1.1\", ciphers = \"HIGH:@SECLEVEL=0\" }");
    let tls = s.listeners[0].legacy_tls.as_ref().unwrap();
    assert_eq!(tls.min_version, snigate::config::LegacyTlsVersion::Tls11);
    assert_eq!(tls.ciphers, "HIGH:@SECLEVEL=0");
    snigate::state::check(&s).unwrap();
    // A cipher string OpenSSL cannot use is an error of `check` (and `run`).
    let errors = snigate::state::check(&settings("{ ciphers = \"NO-SUCH-CIPHER\" }")).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("listener \"main\", certificate \"fb\"")
                && e.contains("legacy_tls ciphers \"NO-SUCH-CIPHER\"")),
        "{errors:?}"
    );
}

/// The proxy and `explain` agree on every capture with a `legacy_tls`
/// listener too: OpenSSL's answer, run in memory by `explain`, is the one
/// the proxy's OpenSSL gives.
#[tokio::test]
async fn every_capture_ends_as_explain_says_with_legacy_tls() {
    let extra = r#"
[[listener]]
name = "openssl"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback-rsa"
legacy_tls = { min_version = "1.0", ciphers = "DEFAULT:@SECLEVEL=0" }
default_upstream = "web"
"#;
    let said = tokio::time::timeout(
        Duration::from_secs(60),
        crate::decision::proxy_agrees_with_explain(extra),
    )
    .await
    .expect("bounded");
    // Android 2.3.7 (TLS 1.0, AES-CBC) and Java 6's SSLv2-format hello are
    // OpenSSL's, whatever the system's OpenSSL leaves out.
    for file in [
        "android237_tls10_nosni.hex",
        "java6u45_sslv2hello_nosni.hex",
    ] {
        let (_, on_openssl) = said
            .iter()
            .find(|(f, s)| *f == file && s["listener"] == "openssl")
            .expect("explained");
        assert_eq!(on_openssl["outcome"], "ok", "{on_openssl:#}");
        assert_eq!(on_openssl["engine"], "openssl", "{on_openssl:#}");
    }
}
