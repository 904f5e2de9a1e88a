//! The handshake and access logs of the README ("Logs"), as an operator reads them:
//! one JSON line per ClientHello (ok, failed, rejected) and per request.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use serde_json::Value;
use snigate::server::Proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LOG_WAIT: Duration = Duration::from_secs(5);

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    handshakes: PathBuf,
    access: PathBuf,
    backend: SocketAddr,
}

impl Farm {
    fn addr(&self) -> SocketAddr {
        self.proxy.addr("main").unwrap()
    }

    /// The handshake line of the connection from `peer` to "main".
    async fn handshake(&self, peer: SocketAddr) -> Value {
        let main = self.addr();
        wait_for_json_line(&self.handshakes, LOG_WAIT, |v| is_connection(v, peer, main)).await
    }

    /// The access line of connection `conn` for `path`.
    async fn access(&self, conn: &Value, path: &str) -> Value {
        wait_for_json_line(&self.access, LOG_WAIT, |v| {
            &v["conn"] == conn && v["path"] == path
        })
        .await
    }
}

/// Logs under `logs/` (relative to the configuration file). ECDSA
/// certificates only: fallback fb.test and a.test; a.test routes to "a".
async fn farm() -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
    let be = backend("A").await;
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [log]\nhandshake_log = \"logs/handshakes.jsonl\"\naccess_log = \"logs/access.jsonl\"\n\n{}{}\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\n\
         [[route]]\nhosts = [\"a.test\"]\nupstream = \"a\"\n\n[[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        cert_toml("a", &a),
        be.addr
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    let logs = dir.path().join("logs");
    Farm {
        handshakes: logs.join("handshakes.jsonl"),
        access: logs.join("access.jsonl"),
        _dir: dir,
        pki,
        proxy,
        backend: be.addr,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// Fields every handshake line has, whatever its outcome.
fn assert_common_handshake_fields(line: &Value, f: &Farm, peer: SocketAddr) {
    assert_eq!(line["event"], "tls_handshake", "{line}");
    assert!(line["conn"].as_u64().is_some(), "conn: {line}");
    assert_eq!(line["listener"], "main");
    assert_eq!(line["local"], f.addr().to_string());
    assert_eq!(line["peer"], peer.to_string());
    let ts = line["ts"].as_str().expect("ts");
    assert!(ts.ends_with('Z') && ts.contains('T'), "ts {ts}");
    assert!(
        line["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "ms: {line}"
    );
    assert!(
        line.get("sni").is_some(),
        "sni must be present (null without SNI): {line}"
    );
    assert!(
        line.get("client").is_some(),
        "client must be present (null when the catalogue does not know the JA4): {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_and_no_sni_connections_are_logged() {
    bounded(async {
        let f = farm().await;

        // A browser-like client with SNI.
        let tls = tls_connect(f.addr(), &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let (sni_info, mut h1) = tls.into_h1().await;
        let mut req = get("a.test", "/sites/team/default.aspx?x=1");
        req.headers_mut().insert(
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0)".parse().unwrap(),
        );
        let reply = h1.send(req).await;
        assert_eq!(reply.status, 200);
        let sni_reply_len = reply.body.len() as u64;

        // The WebDAV mini-redirector: no SNI.
        let tls = tls_connect(f.addr(), &f.pki.ca_der, &ClientOpts::no_sni("fb.test"))
            .await
            .unwrap();
        let (nosni_info, mut h1b) = tls.into_h1().await;
        let body = "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>";
        let mut req = request("PROPFIND", "a.test", "/sites/team/Shared%20Documents", body);
        req.headers_mut().insert(
            "user-agent",
            "Microsoft-WebDAV-MiniRedir/6.1.7601".parse().unwrap(),
        );
        req.headers_mut().insert("depth", "1".parse().unwrap());
        let reply = h1b.send(req).await;
        assert_eq!(reply.status, 200);
        let nosni_reply_len = reply.body.len() as u64;

        // Handshake lines.
        let hs = f.handshake(sni_info.local).await;
        assert_common_handshake_fields(&hs, &f, sni_info.local);
        assert_eq!(hs["sni"], "a.test");
        assert_eq!(hs["fallback"], false);
        assert_eq!(hs["certificate"], "a");
        let versions = strings(&hs["offered_versions"]);
        assert!(
            versions.contains(&"1.3".into()) && versions.contains(&"1.2".into()),
            "{versions:?}"
        );
        let suites = strings(&hs["offered_suites"]);
        assert!(
            suites.contains(&"0x1301".into()) && suites.contains(&"0xc02b".into()),
            "{suites:?}"
        );
        for s in &suites {
            assert!(
                s.len() == 6
                    && s.starts_with("0x")
                    && s[2..].bytes().all(|b| b.is_ascii_hexdigit()),
                "suite {s}"
            );
        }
        assert_eq!(hs["offered_alpn"], serde_json::json!([]));
        assert_eq!(hs["outcome"], "ok");
        assert_eq!(hs["version"], "1.3");
        assert_eq!(hs["suite"], "TLS13_AES_128_GCM_SHA256");
        assert!(hs["alpn"].is_null());
        assert!(hs["ja3"].is_string() && hs["ja4"].is_string(), "{hs}");
        assert!(hs.get("reason").is_none(), "{hs}");

        let hs2 = f.handshake(nosni_info.local).await;
        assert_common_handshake_fields(&hs2, &f, nosni_info.local);
        assert!(hs2["sni"].is_null(), "{hs2}");
        assert_eq!(hs2["fallback"], true);
        assert_eq!(hs2["certificate"], "fb");
        assert_eq!(hs2["outcome"], "ok");
        assert_ne!(hs["conn"], hs2["conn"]);

        // Access lines, tied to their connections.
        let acc = f.access(&hs["conn"], "/sites/team/default.aspx?x=1").await;
        assert_eq!(acc["event"], "http_request");
        assert_eq!(acc["listener"], "main");
        assert_eq!(acc["sni"], "a.test");
        assert_eq!(acc["method"], "GET");
        assert_eq!(acc["host"], "a.test");
        assert_eq!(acc["status"], 200);
        assert_eq!(acc["upstream"], "a");
        assert_eq!(acc["server"], f.backend.to_string());
        assert_eq!(acc["bytes_in"], 0);
        assert_eq!(acc["bytes_out"], sni_reply_len);
        assert_eq!(acc["user_agent"], "Mozilla/5.0 (Windows NT 10.0)");
        assert!(acc["ms"].as_f64().is_some());
        assert!(acc["ts"].as_str().is_some_and(|t| t.ends_with('Z')));

        let acc = f
            .access(&hs2["conn"], "/sites/team/Shared%20Documents")
            .await;
        assert_eq!(acc["event"], "http_request");
        assert!(acc["sni"].is_null(), "{acc}");
        assert_eq!(acc["method"], "PROPFIND");
        assert_eq!(acc["host"], "a.test");
        assert_eq!(acc["status"], 200);
        assert_eq!(acc["upstream"], "a");
        assert_eq!(acc["server"], f.backend.to_string());
        assert_eq!(acc["bytes_in"], body.len() as u64);
        assert_eq!(acc["bytes_out"], nosni_reply_len);
        assert_eq!(acc["user_agent"], "Microsoft-WebDAV-MiniRedir/6.1.7601");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_alpn_details_are_logged() {
    bounded(async {
        let f = farm().await;
        let opts = ClientOpts::sni("a.test")
            .tls12_suites(vec![
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ])
            .alpn(&["h2", "http/1.1"]);
        let tls = tls_connect(f.addr(), &f.pki.ca_der, &opts).await.unwrap();
        let hs = f.handshake(tls.local).await;
        assert_eq!(strings(&hs["offered_versions"]), ["1.2"]);
        let suites = strings(&hs["offered_suites"]);
        assert_eq!(&suites[..2], ["0xc02c", "0xc02b"], "{suites:?}");
        assert_eq!(strings(&hs["offered_alpn"]), ["h2", "http/1.1"]);
        assert_eq!(hs["version"], "1.2");
        assert_eq!(hs["suite"], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(hs["alpn"], "h2");
        assert_eq!(hs["outcome"], "ok");

        // A request over h2 is logged with its version.
        let mut h2 = H2::new(tls.stream).await;
        let req = http::Request::builder()
            .uri("https://a.test/h2")
            .body(full(""))
            .unwrap();
        assert_eq!(h2.send(req).await.status, 200);
        let acc = f.access(&hs["conn"], "/h2").await;
        assert_eq!(acc["host"], "a.test");
        assert_eq!(acc["status"], 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshake_is_logged_with_its_reason() {
    bounded(async {
        let f = farm().await;
        // An old client that takes only RSA certificates, against a listener
        // that has only ECDSA ones.
        let opts = ClientOpts::sni("a.test").tls12_suites(vec![
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ]);
        let tcp = TcpStream::connect(f.addr()).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let err = match tls_over(tcp, &f.pki.ca_der, &opts).await {
            Ok(t) => panic!("handshake succeeded with {}", f.pki.which(&t.leaf)),
            Err(e) => e,
        };
        assert!(
            matches!(rustls_error(&err), Some(rustls::Error::AlertReceived(_))),
            "the client should get an alert, got {err}"
        );
        let hs = f.handshake(local).await;
        assert_common_handshake_fields(&hs, &f, local);
        assert_eq!(hs["outcome"], "failed");
        assert_eq!(hs["sni"], "a.test");
        let reason = hs["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("no reason: {hs}"));
        assert!(
            reason.contains("no cipher suite in common"),
            "reason: {reason}"
        );
        assert_eq!(strings(&hs["offered_suites"])[..2], ["0xc02f", "0xc030"]);
        assert_eq!(strings(&hs["offered_versions"]), ["1.2"]);
        assert!(hs["version"].is_null() && hs["suite"].is_null(), "{hs}");
        assert!(hs.get("group").is_some_and(Value::is_null), "{hs}");
    })
    .await
}

/// The key exchange group: a client that offers the hybrid post-quantum
/// X25519MLKEM768 first gets it, one that offers only X25519 (or, on TLS
/// 1.2, only P-256) gets that; the handshake log says which (`group`) and
/// `/metrics` counts completed handshakes by group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_exchange_group_is_logged_and_counted() {
    use rustls::crypto::aws_lc_rs::kx_group;
    bounded(async {
        let f = farm().await;
        let cases = [
            (
                "X25519MLKEM768",
                ClientOpts::sni("a.test").kx_groups(&[kx_group::X25519MLKEM768, kx_group::X25519]),
            ),
            (
                "X25519",
                ClientOpts::sni("a.test").kx_groups(&[kx_group::X25519]),
            ),
            (
                "secp256r1",
                ClientOpts::sni("a.test")
                    .tls12_suites(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256])
                    .kx_groups(&[kx_group::SECP256R1]),
            ),
        ];
        for (group, opts) in cases {
            let tls = tls_connect(f.addr(), &f.pki.ca_der, &opts).await.unwrap();
            let negotiated = tls.stream.get_ref().1.negotiated_key_exchange_group();
            assert_eq!(
                negotiated.map(|g| snigate::tls::group_name(g.name())),
                Some(group),
                "the client's view"
            );
            let hs = f.handshake(tls.local).await;
            assert_eq!(hs["outcome"], "ok", "{hs}");
            assert_eq!(hs["group"], group, "{hs}");
        }

        let main = ("listener", "main");
        let m = scrape_until(&f.proxy, |m| {
            m.value(
                "snigate_handshakes_total",
                &[main, ("sni", "present"), ("outcome", "ok")],
            ) >= 3.0
        })
        .await;
        for (group, want) in [
            ("X25519MLKEM768", 1.0),
            ("X25519", 1.0),
            ("secp256r1", 1.0),
            ("secp384r1", 0.0),
            ("none", 0.0),
        ] {
            assert_eq!(
                m.value("snigate_tls_key_exchange_total", &[main, ("group", group)]),
                want,
                "{group}"
            );
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_a_client_hello_are_logged_as_rejected() {
    bounded(async {
        let f = farm().await;
        for (what, bytes) in [
            (
                "plain HTTP",
                b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
            ),
            (
                "oversized record",
                vec![0x16, 0x03, 0x01, 0xEA, 0x60, 0x01, 0x00, 0xEA, 0x5C],
            ),
        ] {
            let mut s = TcpStream::connect(f.addr()).await.unwrap();
            let local = s.local_addr().unwrap();
            s.write_all(&bytes).await.unwrap();
            assert!(
                wait_closed(&mut s, Duration::from_secs(3)).await.is_some(),
                "{what}: not closed"
            );
            let hs = f.handshake(local).await;
            assert_common_handshake_fields(&hs, &f, local);
            assert_eq!(hs["outcome"], "rejected", "{what}: {hs}");
            assert!(hs["sni"].is_null());
            assert!(
                hs["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{what}: {hs}"
            );
        }
        let hs = wait_for_json_line(&f.handshakes, LOG_WAIT, |v| {
            v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("plain HTTP"))
        })
        .await;
        assert!(
            hs["reason"]
                .as_str()
                .unwrap()
                .contains("not a TLS ClientHello"),
            "{hs}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_snigate_writes_itself_are_logged() {
    bounded(async {
        let f = farm().await;
        let tls = tls_connect(f.addr(), &f.pki.ca_der, &ClientOpts::sni("a.test"))
            .await
            .unwrap();
        let (info, mut h1) = tls.into_h1().await;
        // 421: the a.test certificate does not cover b.test.
        assert_eq!(h1.send(get("b.test", "/misdirected")).await.status, 421);
        let hs = f.handshake(info.local).await;
        let acc = f.access(&hs["conn"], "/misdirected").await;
        assert_eq!(acc["status"], 421);
        assert_eq!(acc["host"], "b.test");
        assert!(acc["upstream"].is_null(), "{acc}");

        // 404: no route and no default_upstream on this listener.
        let tls = tls_connect(f.addr(), &f.pki.ca_der, &ClientOpts::no_sni("fb.test"))
            .await
            .unwrap();
        let (info, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("nowhere.test", "/lost")).await.status, 404);
        let hs = f.handshake(info.local).await;
        let acc = f.access(&hs["conn"], "/lost").await;
        assert_eq!(acc["status"], 404);
        assert_eq!(acc["host"], "nowhere.test");
        assert!(acc["sni"].is_null());
    })
    .await
}

/// `handshake_log = "-"` and `access_log = "-"`: both logs go to the
/// process's standard output (containers), whole lines, and nothing else
/// does (the human log stays on stderr).
#[tokio::test]
async fn logs_to_standard_output() {
    bounded_for(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("site", &["site.test"], Key::Ecdsa);
        let farm = backend("farm").await;
        let text = format!(
            "[log]\nformat = \"json\"\nhandshake_log = \"-\"\naccess_log = \"-\"\n\n{}\
             [[listener]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"site\"\ndefault_upstream = \"farm\"\n\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{}\"]\n",
            cert_toml("site", &leaf),
            farm.addr
        );
        let config = dir.path().join("snigate.toml");
        std::fs::write(&config, &text).unwrap();
        assert_eq!(
            snigate::config::Settings::load(&config)
                .unwrap()
                .log
                .handshake_log
                .as_deref(),
            Some(std::path::Path::new("-")),
            "\"-\" is not a path relative to the configuration"
        );
        let mut snigate = common::process::Snigate::spawn(&config);
        let addr = snigate.listening("web", Duration::from_secs(20)).await;
        let (reply, _) = https_once(
            addr,
            &pki.ca_der,
            &ClientOpts::sni("site.test"),
            get("site.test", "/hello"),
        )
        .await;
        assert_eq!(reply.status, 200);

        let mut events = Vec::new();
        while events.len() < 2 {
            let line = tokio::time::timeout(Duration::from_secs(20), snigate.stdout.recv())
                .await
                .expect("a line on stdout")
                .expect("stdout open");
            assert!(line.is_object(), "not a JSON line: {line}");
            events.push(line);
        }
        assert_eq!(events[0]["event"], "tls_handshake");
        assert_eq!(events[0]["sni"], "site.test");
        assert_eq!(events[1]["event"], "http_request");
        assert_eq!(events[1]["path"], "/hello");
        assert!(
            !snigate.seen.iter().any(|v| v["event"] == "tls_handshake"),
            "the handshake log is not on stderr"
        );
    })
    .await;
}
