//! The proxy and `snigate explain` make one decision (`tls::decide`): every
//! capture in tests/data/hellos, replayed against a running snigate on
//! listeners of each kind (ECDSA fallback, RSA fallback, strict SNI,
//! `legacy_upstream`, both of those; `legacy_tls` in the feature build),
//! ends as `explain`
//! says it would — the same outcome, certificate, fallback, reason and hint.

use std::path::Path;
use std::time::Duration;

use crate::common::{capture, wait_for_json_line, CAPTURES};
use serde_json::Value;
use snigate::config::Settings;
use snigate::server::Proxy;
use snigate::tools::gen_certs::{generate, KeyAlgorithm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);
const LOG_WAIT: Duration = Duration::from_secs(10);

/// What the proxy answered a replayed hello with.
#[derive(Debug, PartialEq)]
enum Answer {
    ServerHello,
    Alert,
    Closed,
}

/// Writes `hello`, reads the first record (or the close), then closes.
async fn replay(stream: &mut TcpStream, hello: &[u8]) -> Answer {
    stream.write_all(hello).await.expect("write hello");
    let mut head = [0u8; 5];
    if stream.read_exact(&mut head).await.is_err() {
        return Answer::Closed;
    }
    match head[0] {
        0x16 => Answer::ServerHello,
        0x15 => Answer::Alert,
        other => panic!("unexpected record type {other:#x}"),
    }
}

/// A legacy upstream that reads the hello and closes.
async fn closing_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

fn certificates(dir: &Path) -> String {
    let names = ["dev.ssllabs.com".to_string(), "portal.contoso.test".into()];
    generate(&dir.join("ec"), &names, KeyAlgorithm::Ecdsa).expect("certs");
    generate(&dir.join("rsa"), &names, KeyAlgorithm::Rsa).expect("certs");
    let mut toml = String::new();
    for (name, file) in [
        ("fallback-ec", "ec/fallback"),
        ("fallback-rsa", "rsa/fallback"),
        ("dev-ec", "ec/dev.ssllabs.com"),
        ("portal-rsa", "rsa/portal.contoso.test"),
    ] {
        toml += &format!(
            "[[certificate]]\nname = \"{name}\"\nchain = \"{file}.crt\"\nkey = \"{file}.key\"\n\n"
        );
    }
    toml
}

/// Replays every capture against every TLS listener of a configuration
/// (`extra` adds listeners) and compares each handshake-log line with what
/// `explain` says of that hello and listener. Returns what `explain` said,
/// per (capture, listener).
pub(crate) async fn proxy_agrees_with_explain(extra: &str) -> Vec<(&'static str, Value)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let legacy = closing_upstream().await;
    let text = format!(
        r#"
[log]
handshake_log = "handshakes.jsonl"
{certs}
[[listener]]
name = "ecdsa"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback-ec"
default_upstream = "web"

[[listener]]
name = "rsa"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback-rsa"
default_upstream = "web"

[[listener]]
name = "strict"
bind = ["127.0.0.1:0"]
strict_sni = true
default_upstream = "web"

[[listener]]
name = "legacy"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback-rsa"
legacy_upstream = "old"
default_upstream = "web"

# A strict listener refuses a name it has no certificate for even when a
# legacy path could take the client.
[[listener]]
name = "strict-legacy"
bind = ["127.0.0.1:0"]
strict_sni = true
legacy_upstream = "old"
default_upstream = "web"
{extra}
[[upstream]]
name = "web"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "old"
servers = ["{legacy}"]
"#,
        certs = certificates(dir.path()),
    );
    let path = dir.path().join("snigate.toml");
    std::fs::write(&path, &text).unwrap();
    let state = snigate::tools::explain::load_config(&path).expect("explain loads it");
    let proxy = Proxy::start(Settings::parse(&path, &text).expect("config"))
        .await
        .expect("start");
    let log = dir.path().join("handshakes.jsonl");
    let mut compared = Vec::new();
    for file in CAPTURES {
        let hello = capture(file);
        let hex: String = hello.iter().map(|b| format!("{b:02x}")).collect();
        let explained = snigate::tools::explain::explain_hello(
            hex.as_bytes(),
            Path::new(file),
            Some((&path, &state)),
            true,
        )
        .expect("explain");
        let explained: Value = serde_json::from_str(&explained).unwrap();
        for said in explained["listeners"].as_array().expect("listeners") {
            let name = said["listener"].as_str().unwrap();
            let mut stream = TcpStream::connect(proxy.addr(name).expect("addr"))
                .await
                .unwrap();
            let peer = stream.local_addr().unwrap().to_string();
            let answer = replay(&mut stream, &hello).await;
            drop(stream);
            // The kernel may give a connection to another listener the same
            // source port: the line is this listener's.
            let logged = wait_for_json_line(&log, LOG_WAIT, |v| {
                v["peer"] == peer.as_str() && v["listener"] == name
            })
            .await;
            compare(file, name, said, answer, &logged);
            // The client catalogue names the client alike in both.
            assert_eq!(logged["client"], explained["client"], "{file} on {name}");
            compared.push((file, said.clone()));
        }
    }
    proxy.shutdown().await;
    compared
}

/// One hello on one listener: the proxy did what `explain` said.
fn compare(file: &str, listener: &str, said: &Value, answer: Answer, logged: &Value) {
    let case = format!("{file} on {listener}:\n explain {said:#}\n log {logged:#}");
    assert_eq!(said["certificate"], logged["certificate"], "{case}");
    assert_eq!(said["fallback"], logged["fallback"], "{case}");
    match said["outcome"].as_str().unwrap() {
        // A replayed hello cannot finish its handshake: the proxy answered
        // with a ServerHello, then the client left.
        "ok" => {
            assert_eq!(answer, Answer::ServerHello, "{case}");
            assert_eq!(logged["outcome"], "failed", "{case}");
            assert_eq!(logged["engine"], said["engine"], "{case}");
        }
        "legacy_passthrough" => {
            assert_eq!(logged["outcome"], "legacy_passthrough", "{case}");
            assert_eq!(said["upstream"], logged["upstream"], "{case}");
            assert_eq!(said["reason"], logged["reason"], "{case}");
        }
        outcome @ ("failed" | "refused") => {
            assert_eq!(answer, refusal_on_the_wire(outcome, said), "{case}");
            assert_eq!(logged["outcome"], "failed", "{case}");
            assert_eq!(said["reason"], logged["reason"], "{case}");
            assert_eq!(said["hint"], logged["hint"], "{case}");
        }
        other => panic!("{case}: outcome {other}"),
    }
}

/// How a hello the proxy does not serve ends on the wire: a refused name
/// gets an `unrecognized_name` alert, a failed rustls handshake rustls's
/// alert, and an SSLv2-format hello a close without a word (its client
/// cannot read a TLS alert).
fn refusal_on_the_wire(outcome: &str, said: &Value) -> Answer {
    let sslv2 = said["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("SSLv2-compatible"));
    if outcome == "failed" && sslv2 {
        Answer::Closed
    } else {
        Answer::Alert
    }
}

#[tokio::test]
async fn every_capture_ends_as_explain_says() {
    let said = tokio::time::timeout(LIMIT, proxy_agrees_with_explain(""))
        .await
        .expect("bounded");
    assert_eq!(said.len(), CAPTURES.len() * 5);
    // Each kind of ending is among them.
    for outcome in ["ok", "failed", "refused", "legacy_passthrough"] {
        assert!(
            said.iter().any(|(_, s)| s["outcome"] == outcome),
            "{outcome}: {said:#?}"
        );
    }
    // Java 6 (SSLv2-format, no SNI): refused by the strict listener whose
    // legacy_upstream would take it, forwarded by the one that is not strict.
    let java = |listener: &str| {
        said.iter()
            .find(|(f, s)| f.starts_with("java6") && s["listener"] == listener)
            .map(|(_, s)| s["outcome"].clone())
            .unwrap()
    };
    assert_eq!(java("strict-legacy"), "refused");
    assert_eq!(java("legacy"), "legacy_passthrough");
}
