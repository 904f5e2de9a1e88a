//! Real ClientHellos (tests/data/hellos, captured from Windows SChannel,
//! Java 6, Android 2.3 and a crawler) replayed against a running snigate:
//! every TLS 1.2 hello rustls can serve gets a ServerHello from the ECDSA
//! fallback, every other one is closed and logged with its reason.

use crate::common::{capture, wait_for_json_lines};
use std::path::{Path, PathBuf};
use std::time::Duration;

use snigate::config::Settings;
use snigate::server::Proxy;
use snigate::tools::gen_certs::{generate, KeyAlgorithm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// What the server answered to a replayed hello.
#[derive(Debug, PartialEq)]
enum Answer {
    /// ServerHello with (version, cipher suite).
    ServerHello(u16, u16),
    /// A TLS alert (description), then close.
    Alert(u8),
    /// Closed without a word.
    Closed,
}

async fn replay(addr: std::net::SocketAddr, hello: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(hello).await.expect("write hello");
    let mut head = [0u8; 5];
    if s.read_exact(&mut head).await.is_err() {
        return Answer::Closed;
    }
    let len = u16::from_be_bytes([head[3], head[4]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("record body");
    match head[0] {
        0x15 => Answer::Alert(body[1]),
        0x16 => {
            assert_eq!(body[0], 2, "first handshake message must be ServerHello");
            let version = u16::from_be_bytes([body[4], body[5]]);
            let sid_len = body[38] as usize;
            let at = 39 + sid_len;
            Answer::ServerHello(version, u16::from_be_bytes([body[at], body[at + 1]]))
        }
        other => panic!("unexpected record type {other:#x}"),
    }
}

async fn start(dir: &Path, fallback_key: KeyAlgorithm) -> (Proxy, PathBuf) {
    generate(
        &dir.join("certs"),
        &["portal.contoso.test".to_string()],
        fallback_key,
    )
    .expect("certs");
    let log = dir.join("handshakes.jsonl");
    let text = r#"
[log]
handshake_log = "handshakes.jsonl"
[[certificate]]
name = "fallback"
chain = "certs/fallback.crt"
key = "certs/fallback.key"
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "fallback"
default_upstream = "portal"
[[upstream]]
name = "portal"
servers = ["127.0.0.1:9"]
"#;
    let settings = Settings::parse(&dir.join("snigate.toml"), text).expect("config");
    (Proxy::start(settings).await.expect("start"), log)
}

#[tokio::test]
async fn captured_hellos_against_an_ecdsa_fallback() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (proxy, log) = start(dir.path(), KeyAlgorithm::Ecdsa).await;
        let addr = proxy.addr("main").expect("addr");
        // ECDHE_ECDSA_AES_128_GCM_SHA256: server order prefers it for TLS 1.2.
        let served = [
            (
                "win7_ie11_schannel_tls12.hex",
                Answer::ServerHello(0x0303, 0xc02b),
            ),
            (
                "win10_ie11_schannel_tls12.hex",
                Answer::ServerHello(0x0303, 0xc02b),
            ),
            (
                "win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex",
                Answer::ServerHello(0x0303, 0xc02b),
            ),
            (
                "yahooslurp_jun2014_openssl_tls12_nosni.hex",
                Answer::ServerHello(0x0303, 0xc02b),
            ),
        ];
        for (file, want) in served {
            assert_eq!(replay(addr, &capture(file)).await, want, "{file}");
        }
        let refused = [
            "xp_ie8_schannel_tls10_nosni.hex",
            "android237_tls10_nosni.hex",
            "java6u45_sslv2hello_nosni.hex",
        ];
        for file in refused {
            let answer = replay(addr, &capture(file)).await;
            assert!(
                matches!(answer, Answer::Alert(_) | Answer::Closed),
                "{file}: {answer:?}"
            );
        }
        // The served ones are abandoned after ServerHello (a replayed hello
        // cannot finish), so all seven end as failed handshakes in the log.
        let lines = wait_for_json_lines(&log, 7, LIMIT).await;
        let failed: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["outcome"] == "failed").collect();
        assert_eq!(
            failed.len(),
            7,
            "every replayed hello is logged, none completes: {lines:#?}"
        );
        let by_versions = |v: &str| {
            failed
                .iter()
                .filter(|l| l["offered_versions"][0] == v)
                .count()
        };
        assert_eq!(
            by_versions("1.0"),
            3,
            "XP, Android and Java offer TLS 1.0 at most"
        );
        for l in &failed {
            assert!(l["reason"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
            if l["offered_versions"][0] == "1.0" {
                assert_eq!(l["sni"], serde_json::Value::Null);
            }
        }
        let sslv2 = failed
            .iter()
            .find(|l| l["reason"].as_str().unwrap_or("").contains("SSLv2"))
            .expect("SSLv2 hello logged");
        assert!(sslv2["hint"].is_string());
        let no_sigalgs = failed
            .iter()
            .filter(|l| {
                l["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("signature_algorithms")
                    || l["reason"].as_str().unwrap_or("").contains("TLS version")
            })
            .count();
        assert_eq!(no_sigalgs, 2, "XP and Android: {failed:#?}");
        for l in failed.iter().filter(|l| l["offered_versions"][0] == "1.0") {
            assert!(
                l["hint"].as_str().is_some_and(|h| h.contains("TLS 1.2")),
                "{l}"
            );
        }
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn windows7_cannot_use_an_rsa_only_listener() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (proxy, log) = start(dir.path(), KeyAlgorithm::Rsa).await;
        let addr = proxy.addr("main").expect("addr");
        let answer = replay(addr, &capture("win7_ie11_schannel_tls12.hex")).await;
        assert!(
            matches!(answer, Answer::Alert(_) | Answer::Closed),
            "{answer:?}"
        );
        // Windows 10 offers ECDHE_RSA with AES-GCM.
        assert_eq!(
            replay(addr, &capture("win10_ie11_schannel_tls12.hex")).await,
            Answer::ServerHello(0x0303, 0xc02f)
        );
        let lines = wait_for_json_lines(&log, 1, LIMIT).await;
        let win7 = lines
            .iter()
            .find(|l| l["sni"] == "dev.ssllabs.com" && l["outcome"] == "failed")
            .expect("win7 line");
        assert!(
            win7["reason"]
                .as_str()
                .unwrap_or("")
                .contains("no cipher suite in common"),
            "{win7}"
        );
        assert_eq!(win7["fallback"], true);
        let hint = win7["hint"].as_str().unwrap_or("");
        assert!(hint.contains("an ECDSA certificate"), "{win7}");
        proxy.shutdown().await;
    })
    .await
    .expect("bounded");
}
