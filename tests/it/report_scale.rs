//! The report at farm scale, offline: generated logs of 2,000 and 100,000
//! clients through `snigate report` (library and binary). Every handshake
//! and address is counted, clients fall into the right kinds, and the
//! documents stay under their size bounds, saying what they left out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use snigate::observe::report::{
    from_logs, html_document, json_document, ReportLimits, ReportSnapshot, DEFAULT_CLIENTS,
    HTML_MAX_BYTES, JSON_MAX_BYTES,
};

const WIN7_JA4: &str = "t12i1107h1_9295eb73ea51_71440d09e7ee";
const EDGE_JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";
const JAVA6_JA4: &str = "t10i160000_9ee8ab185e04_000000000000";
const WIN7: &str = "Windows 7 SChannel (IE 11, WebDAV mini-redirector, Office 2010)";

/// One simulated client: its address, hello, SNI, outcome and User-Agent.
struct Client {
    ip: String,
    ja4: &'static str,
    sni: Option<&'static str>,
    ok: bool,
    user_agent: Option<String>,
}

/// A timestamp `n` milliseconds into the run.
fn ts(n: usize) -> String {
    let secs = 1_790_000_000 + (n / 1000) as u64;
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(secs)
        + std::time::Duration::from_millis((n % 1000) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The handshake and access logs of `clients`, one connection each (with
/// two requests when the handshake succeeded and a User-Agent is set).
fn write_logs(dir: &Path, clients: &[Client]) -> (PathBuf, PathBuf) {
    let hs = dir.join("handshakes.jsonl");
    let ac = dir.join("access.jsonl");
    let mut h = std::io::BufWriter::new(std::fs::File::create(&hs).unwrap());
    let mut a = std::io::BufWriter::new(std::fs::File::create(&ac).unwrap());
    for (i, c) in clients.iter().enumerate() {
        let conn = i as u64 + 1;
        let peer = format!("{}:{}", c.ip, 40000 + i % 20000);
        let line = json!({
            "ts": ts(i), "event": "tls_handshake", "conn": conn, "listener": "main",
            "local": "127.0.0.1:443", "peer": peer, "sni": c.sni,
            "fallback": c.sni.is_none(), "certificate": "farm",
            "offered_versions": if c.ja4 == EDGE_JA4 { vec!["1.3", "1.2"] } else { vec!["1.0"] },
            "ja4": c.ja4,
            "outcome": if c.ok { "ok" } else { "failed" },
            "version": if c.ok { Some("1.2") } else { None },
            "reason": if c.ok { None } else { Some("the client offers only TLS 1.0") },
            "hint": if c.ok { None } else { Some("route it to legacy_upstream") },
        });
        writeln!(h, "{line}").unwrap();
        if let (true, Some(ua)) = (c.ok, &c.user_agent) {
            for r in 0..2 {
                let line = json!({
                    "ts": ts(i), "event": "http_request", "conn": conn, "listener": "main",
                    "peer": peer, "method": "PROPFIND", "host": "portal.contoso.test",
                    "path": format!("/sites/{r}"), "status": 207, "user_agent": ua,
                    "version": "HTTP/1.1", "covered": c.sni.is_some(),
                });
                writeln!(a, "{line}").unwrap();
            }
        }
    }
    h.flush().unwrap();
    a.flush().unwrap();
    (hs, ac)
}

/// A farm of 2,000: 1,500 WebDAV users without SNI (each User-Agent with
/// its own install token), 300 Edge browsers with SNI, 150 Java 6 clients
/// that fail, 50 Win7 clients with no request.
fn farm() -> Vec<Client> {
    let mut clients = Vec::new();
    for i in 0..2000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        let (ja4, sni, ok, user_agent) = match i {
            0..1500 => (
                WIN7_JA4,
                None,
                true,
                Some(format!(
                    "Microsoft-WebDAV-MiniRedir/6.1.7601 id={:032x}",
                    u128::from(i) * 0x9e37_79b9_7f4a_7c15
                )),
            ),
            1500..1800 => (
                EDGE_JA4,
                Some("portal.contoso.test"),
                true,
                Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/120.0.2210.91".into()),
            ),
            1800..1950 => (JAVA6_JA4, None, false, None),
            _ => (WIN7_JA4, None, true, None),
        };
        clients.push(Client {
            ip,
            ja4,
            sni,
            ok,
            user_agent,
        });
    }
    clients
}

/// The kind of `ja4` whose User-Agent starts with `ua_start` (`""`: the
/// kind without one).
fn kind<'a>(
    s: &'a ReportSnapshot,
    ja4: &str,
    ua_start: &str,
) -> &'a snigate::observe::report::KindReport {
    s.kinds
        .iter()
        .find(|k| {
            let ua = &k.user_agent;
            let same_ua = match ua_start {
                "" => ua.is_empty(),
                start => ua.starts_with(start),
            };
            k.ja4 == ja4 && same_ua
        })
        .unwrap_or_else(|| panic!("no kind {ja4} {ua_start:?} in {:#?}", s.kinds))
}

#[test]
fn two_thousand_clients_fall_into_four_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let (hs, ac) = write_logs(dir.path(), &farm());
    let s = from_logs(&[hs.clone(), ac.clone()], ReportLimits::default()).unwrap();
    assert_eq!(s.summary.handshakes, 2000);
    assert_eq!(
        (s.summary.addresses, s.summary.addresses_exact),
        (2000, true)
    );
    assert_eq!(s.kinds.len(), 4, "{:#?}", s.kinds);
    assert_eq!(s.other_kinds.kinds, 0);

    let webdav = kind(&s, WIN7_JA4, "Microsoft-WebDAV-MiniRedir/6.1.7601 id=…");
    assert_eq!(
        (webdav.addresses, webdav.handshakes, webdav.requests),
        (1500, 1500, 3000)
    );
    assert_eq!((webdav.without_sni, webdav.with_sni), (1500, 0));
    assert_eq!(webdav.client.as_deref(), Some(WIN7));
    assert_eq!(webdav.examples.len(), 5);
    assert_eq!(webdav.hosts.items[0].covered, Some(false));
    let edge = kind(&s, EDGE_JA4, "Mozilla/5.0");
    assert_eq!(
        (edge.addresses, edge.with_sni, edge.requests),
        (300, 300, 600)
    );
    assert_eq!(
        edge.client, None,
        "not in the catalogue: unknown, never guessed"
    );
    let java = kind(&s, JAVA6_JA4, "");
    assert_eq!((java.addresses, java.outcomes["failed"]), (150, 150));
    assert_eq!(
        java.reasons.items[0].hint.as_deref(),
        Some("route it to legacy_upstream")
    );
    let quiet = kind(&s, WIN7_JA4, "");
    assert_eq!((quiet.addresses, quiet.requests), (50, 0));
    assert_eq!(s.kinds[0].addresses, 1500, "most addresses first");

    let json = json_document(s.clone(), DEFAULT_CLIENTS);
    assert!(json.len() < JSON_MAX_BYTES);
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["kinds"].as_array().unwrap().len(), 4);
    assert_eq!(doc["clients"].as_array().unwrap().len(), DEFAULT_CLIENTS);
    let folded = doc["folded"][0].as_str().unwrap();
    assert!(
        folded.contains(&format!("{DEFAULT_CLIENTS} of 1000")),
        "{folded}"
    );
}

/// 100,000 addresses, each with a 500-byte User-Agent of its own: the
/// memory bounds hold, every handshake and address is counted, and both
/// documents stay under their bounds and say what they left out.
#[test]
fn a_hundred_thousand_unique_clients_stay_bounded() {
    let clients: Vec<Client> = (0..100_000u32)
        .map(|i| Client {
            ip: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            ja4: if i % 2 == 0 { WIN7_JA4 } else { EDGE_JA4 },
            sni: (i % 2 == 1).then_some("portal.contoso.test"),
            ok: true,
            user_agent: Some(format!(
                "Agent{i}/1.0 {}",
                "words and more words ".repeat(24)
            )),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (hs, ac) = write_logs(dir.path(), &clients);
    let s = from_logs(&[hs.clone(), ac.clone()], ReportLimits::default()).unwrap();
    assert_eq!(s.summary.handshakes, 100_000);
    assert_eq!(
        (s.summary.addresses, s.summary.addresses_exact),
        (100_000, true)
    );
    assert_eq!(s.kinds.len(), 1000, "the kinds table is bounded");
    let listed: u64 = s.kinds.iter().map(|k| k.handshakes).sum();
    assert_eq!(
        listed + s.other_kinds.handshakes,
        100_000,
        "every handshake counted"
    );
    let requests: u64 = s.kinds.iter().map(|k| k.requests).sum();
    assert_eq!(
        requests + s.other_kinds.requests,
        200_000,
        "every request counted"
    );
    assert!(s
        .kinds
        .iter()
        .all(|k| k.user_agent.len() <= 200 + "…".len()));

    let json = json_document(s.clone(), usize::MAX);
    assert!(json.len() < JSON_MAX_BYTES, "{} bytes", json.len());
    let doc: Value = serde_json::from_str(&json).unwrap();
    let kinds_shown = doc["kinds"].as_array().unwrap().len() as u64;
    assert!(kinds_shown > 0);
    assert_eq!(
        doc["other_kinds"]["handshakes"].as_u64().unwrap()
            + doc["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["handshakes"].as_u64().unwrap())
                .sum::<u64>(),
        100_000
    );
    let folded: Vec<&str> = doc["folded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        folded.iter().any(|f| f.contains("kinds table")),
        "{folded:?}"
    );

    let html = html_document(s, usize::MAX);
    assert!(html.len() < HTML_MAX_BYTES, "{} bytes", html.len());

    // The command prints the same bounded document.
    let out = Command::new(env!("CARGO_BIN_EXE_snigate"))
        .arg("report")
        .arg("--json")
        .arg(&hs)
        .arg(&ac)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() < JSON_MAX_BYTES,
        "{} bytes",
        out.stdout.len()
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["summary"]["addresses"], 100_000);
}
