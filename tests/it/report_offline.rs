//! The compatibility report read offline from the JSON-lines logs equals
//! the report fed live with the same records.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use snigate::observe::outcome::HandshakeOutcome;
use snigate::observe::report::{
    from_logs, render_html, render_text, ClientRef, Report, ReportLimits,
};
use snigate::observe::telemetry::{timestamp, AccessRecord, HandshakeRecord};

const WEBDAV_UA: &str = "Microsoft-WebDAV-MiniRedir/6.1.7601";

enum Record {
    Handshake(HandshakeRecord),
    Access(AccessRecord),
}

fn at(ms: u64) -> String {
    timestamp(UNIX_EPOCH + Duration::from_millis(1_790_000_000_000 + ms))
}

fn handshake(ms: u64, conn: u64, peer: &str, sni: Option<&str>, outcome: &'static str) -> Record {
    Record::Handshake(HandshakeRecord {
        ts: UNIX_EPOCH + Duration::from_millis(1_790_000_000_000 + ms),
        event: "tls_handshake",
        conn,
        listener: "main".into(),
        local: "127.0.0.1:8443".parse().expect("an address"),
        peer: peer.parse().expect("an address"),
        sni: sni.map(Into::into),
        fallback: sni.is_none(),
        certificate: Some(if sni.is_some() { "portal" } else { "farm" }.into()),
        offered_versions: vec!["1.2", "1.1", "1.0"],
        offered_suites: vec!["0xc02b".into(), "0x009c".into()],
        offered_alpn: vec![],
        ja3: "0123456789abcdef0123456789abcdef".into(),
        ja4: match sni {
            Some(_) => "t13d1516h2_8daaf6152771_e5627efa2ab1",
            None => "t12i1107h1_5b57614c22b0_3cbfd9057e0d",
        }
        .into(),
        outcome: HandshakeOutcome::from_name(outcome).expect("an outcome snigate logs"),
        version: (outcome == "ok").then_some("1.2"),
        suite: (outcome == "ok").then(|| "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()),
        group: (outcome == "ok").then_some("secp256r1"),
        alpn: None,
        ms: 1.8,
        resumed: false,
        reason: (outcome == "failed").then(|| "no cipher suite in common".into()),
        hint: (outcome == "failed")
            .then(|| "an ECDSA certificate or passthrough to the backend would serve it".into()),
        upstream: None,
        engine: None,
    })
}

fn access(ms: u64, conn: u64, host: &str, ua: Option<&str>, covered: bool) -> Record {
    Record::Access(AccessRecord {
        ts: at(ms),
        event: "http_request",
        conn,
        listener: "main".into(),
        peer: "192.0.2.7:50000".into(),
        sni: None,
        method: "PROPFIND".into(),
        host: Some(host.into()),
        path: "/sites/team/Shared%20Documents".into(),
        status: 207,
        upstream: Some("portal".into()),
        server: Some("127.0.0.1:8080".into()),
        bytes_in: 0,
        bytes_out: 1234,
        ms: 4.2,
        user_agent: ua.map(Into::into),
        version: "HTTP/1.1",
        certificate: Some("farm".into()),
        covered: Some(covered),
        error: None,
        route: None,
    })
}

/// Two runs of the proxy, in time order: no-SNI WebDAV clients, SNI
/// clients, failures, and conn ids that the second run reuses.
fn records() -> Vec<Record> {
    let mut r = vec![
        handshake(0, 1, "192.0.2.7:50000", None, "ok"),
        handshake(5, 2, "198.51.100.1:4000", Some("portal.contoso.test"), "ok"),
        access(10, 1, "portal.contoso.test", Some(WEBDAV_UA), false),
        access(12, 2, "portal.contoso.test", Some("Mozilla/5.0"), true),
        access(20, 1, "portal.contoso.test", Some(WEBDAV_UA), false),
        handshake(
            30,
            3,
            "203.0.113.9:1234",
            Some("portal.contoso.test"),
            "failed",
        ),
        handshake(40, 4, "[2001:db8::7]:51000", None, "ok"),
        access(
            45,
            4,
            "intranet.contoso.test",
            Some("<script>alert(1)</script>"),
            true,
        ),
        handshake(50, 5, "192.0.2.7:50001", None, "ok"),
        access(55, 5, "portal.contoso.test", Some(WEBDAV_UA), false),
        handshake(60, 6, "203.0.113.10:1", None, "rejected"),
        // A request whose handshake line is not in the logs.
        access(65, 99, "portal.contoso.test", Some("lost"), true),
    ];
    // Second run, minutes later: conn ids start again at 1.
    let later = 5 * 60_000;
    r.extend([
        handshake(
            later,
            1,
            "198.51.100.2:4000",
            Some("portal.contoso.test"),
            "ok",
        ),
        access(
            later + 5,
            1,
            "portal.contoso.test",
            Some("Mozilla/5.0"),
            true,
        ),
        handshake(later + 10, 2, "192.0.2.7:50002", None, "ok"),
        access(later + 15, 2, "portal.contoso.test", Some(WEBDAV_UA), false),
        access(later + 16, 2, "portal.contoso.test", None, false),
        handshake(
            later + 20,
            3,
            "203.0.113.9:1235",
            Some("portal.contoso.test"),
            "failed",
        ),
    ]);
    r
}

/// The report fed live: `handshake` for every handshake, `request` for
/// every access record of a tracked connection.
fn live(records: &[Record], limits: ReportLimits) -> snigate::observe::report::ReportSnapshot {
    let report = Report::new(limits);
    let mut conns: HashMap<u64, Option<ClientRef>> = HashMap::new();
    for r in records {
        match r {
            Record::Handshake(h) => {
                conns.insert(h.conn, report.handshake(h, None));
            }
            Record::Access(a) => {
                if let Some(Some(client)) = conns.get(&a.conn) {
                    report.request(client, a);
                }
            }
        }
    }
    // The connections end: those without a request join their kinds.
    drop(conns);
    report.snapshot()
}

fn line<T: serde::Serialize>(out: &mut Vec<u8>, rec: &T) {
    serde_json::to_writer(&mut *out, rec).unwrap();
    out.push(b'\n');
}

/// Writes the handshake log and the access log (with a garbage line and a
/// line of another kind) into `dir`.
fn write_logs(dir: &tempfile::TempDir, records: &[Record]) -> (PathBuf, PathBuf) {
    let mut handshakes = Vec::new();
    let mut accesses = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match r {
            Record::Handshake(h) => line(&mut handshakes, h),
            Record::Access(a) => line(&mut accesses, a),
        }
        if i == 3 {
            accesses.extend_from_slice(b"{\"ts\":\"garbage\n");
            accesses.extend_from_slice(b"\n");
            handshakes.extend_from_slice(b"{\"ts\":\"2026-11-26T12:00:00.000Z\",\"event\":\"upstream_health\",\"server\":\"x\"}\n");
        }
    }
    let hs = dir.path().join("handshakes.jsonl");
    let ac = dir.path().join("access.jsonl");
    std::fs::File::create(&hs)
        .unwrap()
        .write_all(&handshakes)
        .unwrap();
    std::fs::File::create(&ac)
        .unwrap()
        .write_all(&accesses)
        .unwrap();
    (hs, ac)
}

#[test]
fn offline_report_equals_live_report() {
    let records = records();
    let limits = ReportLimits::default();
    let expected = live(&records, limits.clone());
    let dir = tempfile::tempdir().unwrap();
    let (hs, ac) = write_logs(&dir, &records);

    for files in [vec![hs.clone(), ac.clone()], vec![ac.clone(), hs.clone()]] {
        let mut got = from_logs(&files, limits.clone()).unwrap();
        let input = got
            .input
            .take()
            .expect("offline reports say what they read");
        assert_eq!(input.files, 2);
        assert_eq!(input.skipped, 2, "the garbage line and the other kind");
        assert_eq!(input.handshakes, 9);
        assert_eq!(input.requests, 9);
        // conn 99 (no handshake); the SNI connections' requests join their kinds.
        assert_eq!(input.requests_unjoined, 1);
        assert_eq!(got, expected, "files {files:?}");
    }

    // The content itself.
    let s = &expected;
    assert_eq!(s.summary.handshakes, 9);
    assert_eq!(s.summary.without_sni.total, 5);
    assert_eq!(s.summary.without_sni.outcomes["ok"], 4);
    assert_eq!(s.summary.without_sni.outcomes["rejected"], 1);
    assert_eq!(s.summary.with_sni.outcomes["failed"], 2);
    assert_eq!(s.summary.requests_joined, 6);
    let webdav = s
        .clients
        .iter()
        .find(|c| c.ip == "192.0.2.7")
        .expect("the WebDAV client is listed");
    assert_eq!((webdav.handshakes, webdav.requests), (3, 5));
    assert_eq!(webdav.user_agents.items[0].value, WEBDAV_UA);
    assert_eq!(webdav.user_agents.items[0].count, 4);
    assert_eq!(webdav.hosts.items[0].host, "portal.contoso.test");
    assert_eq!(webdav.hosts.items[0].covered, Some(false));
    assert_eq!(s.clients[0].ip, "192.0.2.7", "most handshakes first");
    let failing = s.clients.iter().find(|c| c.ip == "203.0.113.9").unwrap();
    assert_eq!(failing.failed, 2);
    assert!(failing.reasons.items[0].hint.is_some());
    assert!(!s.clients.iter().any(|c| c.ip.starts_with("198.51.100.")));

    let html = render_html(s);
    // Only the page's own script: none from the logs.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(render_text(s).contains(WEBDAV_UA));
}

#[test]
fn one_mixed_log_file_works_too() {
    let records = records();
    let limits = ReportLimits::default();
    let expected = live(&records, limits.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.jsonl");
    let mut out = Vec::new();
    for r in &records {
        match r {
            Record::Handshake(h) => line(&mut out, h),
            Record::Access(a) => line(&mut out, a),
        }
    }
    out.extend_from_slice(b"\x00\xff not json at all\n");
    std::fs::write(&path, out).unwrap();
    let mut got = from_logs(&[path], limits).unwrap();
    assert_eq!(got.input.take().unwrap().skipped, 1);
    assert_eq!(got, expected);
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = from_logs(&[dir.path().join("nope.jsonl")], ReportLimits::default()).unwrap_err();
    assert!(format!("{err:#}").contains("nope.jsonl"));
}

#[test]
fn garbage_is_skipped_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mess.jsonl");
    let mut out = Vec::new();
    // Binary noise, a line longer than any log line, JSON of the right
    // kind with missing fields, JSON that is not an object.
    let mut x = 7u32;
    for _ in 0..10_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.push((x >> 16) as u8);
    }
    out.push(b'\n');
    out.extend(std::iter::repeat_n(b'a', 3 << 20));
    out.extend_from_slice(b"\n{\"event\":\"tls_handshake\"}\n[1,2,3]\nnull\n");
    // A valid last line without a newline.
    let Record::Handshake(h) = handshake(0, 1, "192.0.2.7:1", None, "ok") else {
        unreachable!()
    };
    serde_json::to_writer(&mut out, &h).unwrap();
    std::fs::write(&path, out).unwrap();

    let s = from_logs(&[path], ReportLimits::default()).unwrap();
    let input = s.input.unwrap();
    assert_eq!(input.handshakes, 1);
    assert!(input.skipped >= 5, "{input:?}");
    assert_eq!(s.summary.without_sni.total, 1);
    assert_eq!(s.clients.len(), 1);
}
