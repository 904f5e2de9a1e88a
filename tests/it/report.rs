//! The compatibility report as an operator gets it: `GET /report`,
//! `GET /report.html` and `snigate report LOG...`, after a mix of clients
//! with SNI, without SNI (the WebDAV mini-redirector) and failing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use snigate::server::Proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WEBDAV_UA: &str = "Microsoft-WebDAV-MiniRedir/6.1.7601";

struct Farm {
    _dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    handshakes: PathBuf,
    access: PathBuf,
}

/// A listener whose fallback (fb.test) does not cover portal.contoso.test,
/// which has a certificate of its own for clients that send SNI.
async fn farm() -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let portal = pki.leaf("portal", &["portal.contoso.test"], Key::Ecdsa);
    let be = backend("portal").await;
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [log]\nhandshake_log = \"logs/handshakes.jsonl\"\naccess_log = \"logs/access.jsonl\"\n\n{}{}\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\n\n\
         [[route]]\nhosts = [\"portal.contoso.test\"]\nupstream = \"portal\"\n\n\
         [[upstream]]\nname = \"portal\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        cert_toml("portal", &portal),
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
    }
}

async fn report(proxy: &Proxy) -> Value {
    let reply = admin_get(proxy, "/report").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    serde_json::from_slice(&reply.body).expect("report is JSON")
}

/// Polls `/report` until `ready` holds (up to 5 s).
async fn report_until(proxy: &Proxy, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = report(proxy).await;
        if ready(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "report never got there: {r:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn values(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| {
            i.get("value")
                .or_else(|| i.get("host"))
                .or_else(|| i.get("name"))
                .or_else(|| i.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Three clients: SNI (two requests), WebDAV without SNI (one request for a
/// host the fallback does not cover), and Windows XP's TLS 1.0 hello.
async fn traffic(f: &Farm) {
    let addr = f.proxy.addr("main").unwrap();
    let tls = tls_connect(addr, &f.pki.ca_der, &ClientOpts::sni("portal.contoso.test"))
        .await
        .unwrap();
    let (_, mut h1) = tls.into_h1().await;
    assert_eq!(h1.send(get("portal.contoso.test", "/a")).await.status, 200);
    assert_eq!(h1.send(get("portal.contoso.test", "/b")).await.status, 200);

    // The mini-redirector sends no SNI; this one accepts whatever it gets.
    let tls = tls_connect(addr, &f.pki.ca_der, &ClientOpts::no_sni("fb.test"))
        .await
        .unwrap();
    let (_, mut webdav) = tls.into_h1().await;
    let mut req = request("PROPFIND", "portal.contoso.test", "/sites/team", "");
    req.headers_mut()
        .insert("user-agent", WEBDAV_UA.parse().unwrap());
    req.headers_mut().insert("depth", "0".parse().unwrap());
    assert_eq!(webdav.send(req).await.status, 200);

    let mut xp = TcpStream::connect(addr).await.unwrap();
    xp.write_all(&capture("xp_ie8_schannel_tls10_nosni.hex"))
        .await
        .unwrap();
    wait_closed(&mut xp, Duration::from_secs(5))
        .await
        .expect("the proxy closes the failed handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_clients_without_sni_and_failing_clients() {
    bounded(async {
        let f = farm().await;
        traffic(&f).await;
        let r = report_until(&f.proxy, |r| {
            r["summary"]["handshakes"] == 3 && r["summary"]["requests_joined"] == 1
        })
        .await;
        let s = &r["summary"];
        assert_eq!(s["with_sni"]["total"], 1, "{s:#}");
        assert_eq!(s["with_sni"]["outcomes"]["ok"], 1);
        assert_eq!(s["without_sni"]["total"], 2);
        assert_eq!(s["without_sni"]["outcomes"]["ok"], 1);
        assert_eq!(s["without_sni"]["outcomes"]["failed"], 1);
        // Chosen for both clients without SNI (XP failed after the choice).
        assert_eq!(s["fallback_served"], 2);

        let clients = r["clients"].as_array().unwrap();
        assert_eq!(
            clients.len(),
            2,
            "the SNI client is counted, not listed: {r:#}"
        );
        let webdav = clients
            .iter()
            .find(|c| values(&c["user_agents"]).contains(&WEBDAV_UA.to_string()))
            .unwrap_or_else(|| panic!("no WebDAV client: {r:#}"));
        assert_eq!(webdav["ip"], "127.0.0.1");
        assert_eq!(webdav["no_sni"], 1);
        assert_eq!(webdav["ok"], 1);
        assert_eq!(webdav["requests"], 1);
        assert!(
            webdav["ja4"].as_str().unwrap().starts_with("t13i"),
            "{webdav}"
        );
        let host = &webdav["hosts"]["items"][0];
        assert_eq!(host["host"], "portal.contoso.test");
        assert_eq!(
            host["covered"], false,
            "fb.test does not cover the host: the client saw a name warning"
        );
        let cert = &webdav["certificates"]["items"][0];
        assert_eq!(
            (&cert["name"], &cert["fallback"]),
            (&"fb".into(), &true.into())
        );

        let xp = clients
            .iter()
            .find(|c| c["failed"] == 1)
            .unwrap_or_else(|| panic!("no failing client: {r:#}"));
        assert_eq!(xp["ja4"], "t10i110100_3609b414f052_bc98f8e001b5");
        assert_eq!(values(&xp["offered_versions"])[0], "1.0");
        let reason = &xp["reasons"]["items"][0];
        assert!(
            reason["reason"].as_str().unwrap().contains("TLS 1.0"),
            "{reason}"
        );
        assert!(
            reason["hint"].as_str().unwrap().contains("enable TLS 1.2"),
            "{reason}"
        );

        // The page an operator reads: self-contained, escaped, with a chart.
        let page = admin_get(&f.proxy, "/report.html").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        let html = String::from_utf8(page.body.to_vec()).unwrap();
        assert!(html.contains(WEBDAV_UA), "UA missing from the page");
        assert!(html.contains("portal.contoso.test"));
        assert!(html.contains("<svg"), "no chart");
        assert!(html.contains("enable TLS 1.2"), "no hint");
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(external), "external asset: {external}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_command_on_the_logs_matches_the_live_report() {
    bounded(async {
        let f = farm().await;
        traffic(&f).await;
        let live = report_until(&f.proxy, |r| {
            r["summary"]["handshakes"] == 3 && r["summary"]["requests_joined"] == 1
        })
        .await;
        assert_eq!(
            wait_for_json_lines(&f.handshakes, 3, Duration::from_secs(5))
                .await
                .len(),
            3
        );
        assert_eq!(
            wait_for_json_lines(&f.access, 3, Duration::from_secs(5))
                .await
                .len(),
            3
        );

        // Files in either order give the same report as the proxy.
        for files in [[&f.handshakes, &f.access], [&f.access, &f.handshakes]] {
            let out = Command::new(env!("CARGO_BIN_EXE_snigate"))
                .arg("report")
                .arg("--json")
                .args(files)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut offline: Value = serde_json::from_slice(&out.stdout).unwrap();
            let input = offline.as_object_mut().unwrap().remove("input").unwrap();
            assert_eq!(input["skipped"], 0, "{input}");
            assert_eq!(offline, live);
        }

        // The text report names the client and what would fix the failing one.
        let out = Command::new(env!("CARGO_BIN_EXE_snigate"))
            .arg("report")
            .arg(&f.handshakes)
            .arg(&f.access)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(WEBDAV_UA), "{text}");
        assert!(text.contains("enable TLS 1.2"), "{text}");

        // A missing file is a clear error, not an empty report.
        let out = Command::new(env!("CARGO_BIN_EXE_snigate"))
            .args(["report", "/nonexistent/handshakes.jsonl"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/handshakes.jsonl"));
    })
    .await
}

/// One live client from `ip` (an address of 127.0.0.0/8): a handshake with
/// or without SNI, then one request with `user_agent`.
async fn live_client(
    addr: std::net::SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    ip: std::net::Ipv4Addr,
    sni: bool,
    user_agent: String,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let opts = if sni {
        ClientOpts::sni("portal.contoso.test")
    } else {
        ClientOpts::no_sni("fb.test")
    };
    let (_, mut h1) = tls_over(tcp, &ca, &opts).await.unwrap().into_h1().await;
    let mut req = get("portal.contoso.test", "/");
    req.headers_mut()
        .insert("user-agent", user_agent.parse().unwrap());
    assert_eq!(h1.send(req).await.status, 200);
}

/// 2,000 live clients from 2,000 addresses: 1,500 WebDAV users without
/// SNI (each User-Agent with its own install token) and 500 browsers with
/// SNI are two kinds, every address counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_live_clients_are_two_kinds() {
    bounded_for(Duration::from_secs(120), async {
        let f = farm().await;
        let addr = f.proxy.addr("main").unwrap();
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..2000u32 {
            let ip = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            let webdav = i < 1500;
            let ua = if webdav {
                format!(
                    "{WEBDAV_UA} id={:032x}",
                    u128::from(i) * 0x9e37_79b9_7f4a_7c15
                )
            } else {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/120.0.2210.91".to_string()
            };
            clients.spawn(live_client(addr, f.pki.ca_der.clone(), ip, !webdav, ua));
            if clients.len() >= 16 {
                clients.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
        let r = report_until(&f.proxy, |r| {
            let kinds = r["kinds"].as_array().map_or(0, Vec::len);
            kinds == 2 && r["summary"]["addresses"] == 2000
        })
        .await;
        let kinds = r["kinds"].as_array().unwrap();
        let webdav = &kinds[0];
        assert_eq!(webdav["user_agent"], format!("{WEBDAV_UA} id=…"));
        assert_eq!(webdav["addresses"], 1500);
        assert_eq!(webdav["handshakes"], 1500);
        assert_eq!(webdav["without_sni"], 1500);
        assert_eq!(webdav["requests"], 1500);
        assert_eq!(webdav["examples"].as_array().unwrap().len(), 5);
        let browser = &kinds[1];
        assert_eq!(browser["addresses"], 500);
        assert_eq!(browser["with_sni"], 500);
        assert_eq!(
            browser["client"],
            "rustls 0.23 client, default settings (aws-lc-rs)"
        );
        assert_eq!(r["summary"]["handshakes"], 2000);
        let bytes = serde_json::to_vec(&r).unwrap().len();
        assert!(bytes < snigate::observe::report::JSON_MAX_BYTES, "{bytes}");
    })
    .await;
}
