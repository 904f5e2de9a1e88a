use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const WEBDAV_UA: &str = "Microsoft-WebDAV-MiniRedir/6.1.7601";
const NO_SNI_JA4: &str = "t12i1107h1_5b57614c22b0_3cbfd9057e0d";
const SNI_JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";

fn ts(secs: u64, ms: u64) -> String {
    format_ts(1_790_000_000_000 + secs * 1000 + ms)
}

/// The time `ms` milliseconds after the epoch.
fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn handshake(conn: u64, peer: &str, sni: Option<&str>, outcome: &'static str) -> HandshakeRecord {
    HandshakeRecord {
        ts: at_ms(1_790_000_000_000 + conn * 1000),
        event: "tls_handshake",
        conn,
        listener: "main".into(),
        local: "127.0.0.1:8443".parse().expect("an address"),
        peer: peer.parse().expect("an address"),
        sni: sni.map(Into::into),
        fallback: sni.is_none(),
        certificate: Some("farm".into()),
        offered_versions: vec!["1.2", "1.1", "1.0"],
        offered_suites: vec!["0xc02b".into()],
        offered_alpn: vec![],
        ja3: "0123456789abcdef0123456789abcdef".into(),
        ja4: if sni.is_some() { SNI_JA4 } else { NO_SNI_JA4 }.into(),
        outcome: HandshakeOutcome::from_name(outcome).expect("an outcome snigate logs"),
        version: (outcome == "ok").then_some("1.2"),
        suite: None,
        group: None,
        alpn: None,
        ms: 1.5,
        resumed: false,
        reason: None,
        hint: None,
        upstream: None,
        engine: None,
    }
}

fn access(conn: u64, host: &str, ua: &str, covered: bool) -> AccessRecord {
    AccessRecord {
        ts: ts(conn, 500),
        event: "http_request",
        conn,
        listener: "main".into(),
        peer: "192.0.2.7:50000".into(),
        sni: None,
        method: "PROPFIND".into(),
        host: Some(host.into()),
        path: "/".into(),
        status: 207,
        upstream: Some("portal".into()),
        server: Some("127.0.0.1:8080".into()),
        bytes_in: 0,
        bytes_out: 100,
        ms: 3.0,
        user_agent: Some(ua.into()),
        route: None,
        version: "HTTP/1.1",
        certificate: Some("farm".into()),
        covered: Some(covered),
        error: None,
    }
}

#[test]
fn no_sni_client_listed_with_user_agent_and_uncovered_host() {
    let report = Report::new(ReportLimits::default());
    let client = report
        .handshake(&handshake(1, "192.0.2.7:50000", None, "ok"), None)
        .expect("a client without SNI is tracked");
    report.request(&client, &access(1, "portal.contoso.test", WEBDAV_UA, false));
    report.request(&client, &access(1, "portal.contoso.test", WEBDAV_UA, false));
    for conn in 2..5 {
        // SNI clients that succeed are counted (and kinded), not listed.
        report.handshake(
            &handshake(conn, "198.51.100.1:4000", Some("portal.contoso.test"), "ok"),
            None,
        );
    }

    let s = report.snapshot();
    assert_eq!(s.summary.handshakes, 4);
    assert_eq!(s.summary.with_sni.total, 3);
    assert_eq!(s.summary.with_sni.outcomes["ok"], 3);
    assert_eq!(s.summary.without_sni.total, 1);
    assert_eq!(s.summary.without_sni.outcomes["ok"], 1);
    assert_eq!(s.summary.without_sni.outcomes["failed"], 0);
    assert_eq!(s.summary.fallback_served, 1);
    assert_eq!(s.summary.requests_joined, 2);
    assert_eq!(s.summary.first_seen.as_deref(), Some(ts(1, 0).as_str()));
    assert_eq!(s.summary.last_seen.as_deref(), Some(ts(4, 0).as_str()));
    assert_eq!(s.clients.len(), 1, "only the no-SNI client is listed");

    let c = &s.clients[0];
    assert_eq!(c.ip, "192.0.2.7");
    assert_eq!(c.ja4, NO_SNI_JA4);
    assert_eq!(
        (c.handshakes, c.ok, c.failed, c.no_sni, c.requests),
        (1, 1, 0, 1, 2)
    );
    assert_eq!(
        c.user_agents.items,
        vec![Counted {
            value: WEBDAV_UA.into(),
            count: 2
        }]
    );
    assert_eq!(
        c.hosts.items,
        vec![HostSeen {
            host: "portal.contoso.test".into(),
            requests: 2,
            covered: Some(false),
            uncovered: 2,
        }]
    );
    assert_eq!(
        c.certificates.items,
        vec![CertificateSeen {
            name: "farm".into(),
            fallback: true,
            count: 1
        }]
    );
    assert_eq!(c.versions.items[0].value, "1.2");
    assert_eq!(c.offered_versions.items.len(), 3);
    assert_eq!(c.last_seen.as_deref(), Some(ts(1, 500).as_str()));

    let text = render_text(&s);
    assert!(text.contains(WEBDAV_UA), "{text}");
    assert!(text.contains("NOT COVERED"), "{text}");
}

#[test]
fn failed_client_listed_with_reason_and_hint() {
    let report = Report::new(ReportLimits::default());
    let mut rec = handshake(7, "203.0.113.9:1234", Some("portal.contoso.test"), "failed");
    rec.reason = Some("no cipher suite in common".into());
    rec.hint = Some("an ECDSA certificate or passthrough to the backend would serve it".into());
    report.handshake(&rec, None);
    report.handshake(&rec, None);
    let mut rejected = handshake(8, "203.0.113.10:1234", None, "rejected");
    rejected.ja4 = "".into();
    rejected.reason = Some("not a TLS ClientHello".into());
    report.handshake(&rejected, None);

    let s = report.snapshot();
    assert_eq!(s.summary.with_sni.outcomes["failed"], 2);
    assert_eq!(s.summary.without_sni.outcomes["rejected"], 1);
    assert_eq!(s.clients.len(), 2);
    let c = &s.clients[0];
    assert_eq!(
        (c.ip.as_str(), c.handshakes, c.failed, c.ok),
        ("203.0.113.9", 2, 2, 0)
    );
    assert_eq!(
        c.reasons.items,
        vec![ReasonSeen {
            reason: "no cipher suite in common".into(),
            hint: Some("an ECDSA certificate or passthrough to the backend would serve it".into()),
            count: 2,
        }]
    );
    let text = render_text(&s);
    assert!(text.contains("no cipher suite in common x2"), "{text}");
    assert!(text.contains("ECDSA certificate"), "{text}");
    let html = render_html(&s);
    assert!(html.contains("fix: an ECDSA certificate"), "{html}");
    // Offered and negotiated versions are two labelled lists; a failed
    // handshake negotiated none, which says so.
    let cell = html
        .split("<td>")
        .find(|c| c.contains(">offered<"))
        .expect("a labelled versions cell");
    let (offered, negotiated) = cell.split_once(">negotiated<").expect("{cell}");
    assert!(offered.contains("1.2"), "{cell}");
    assert!(negotiated.contains("none"), "{cell}");
}

#[test]
fn per_client_lists_are_bounded() {
    let limits = ReportLimits {
        per_client: 2,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    let client = report
        .handshake(&handshake(1, "192.0.2.7:1", None, "ok"), None)
        .unwrap();
    for ua in ["a", "b", "c", "c", "d"] {
        report.request(&client, &access(1, "h.test", ua, true));
    }
    let s = report.snapshot();
    let c = &s.clients[0];
    assert_eq!(c.user_agents.items.len(), 2);
    assert_eq!(c.user_agents.more, 3);
    assert_eq!(c.hosts.items[0].covered, Some(true));
    assert!(render_text(&s).contains("+3 more"));
}

#[test]
fn requests_per_connection_are_capped() {
    let report = Report::new(ReportLimits::default());
    let client = report
        .handshake(&handshake(1, "192.0.2.7:1", None, "ok"), None)
        .unwrap();
    let copy = client.clone();
    for _ in 0..100 {
        report.request(&copy, &access(1, "h.test", "ua", true));
    }
    let s = report.snapshot();
    assert_eq!(
        s.summary.requests_joined,
        u64::from(REQUESTS_PER_CONNECTION)
    );
    assert_eq!(s.clients[0].requests, u64::from(REQUESTS_PER_CONNECTION));
}

#[test]
fn bounded_under_a_flood_of_random_clients() {
    let limits = ReportLimits {
        clients: 100,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    let mut frequent = None;
    let mut rng = 0x1234_5678_u64;
    let mut total = 0u64;
    let mut failed = 0u64;
    // A client that already has a high count, then keeps coming back
    // (rarely) during the flood.
    for i in 0..50 {
        frequent = report.handshake(&handshake(i, "10.9.9.9:1000", None, "ok"), None);
        total += 1;
    }
    for i in 0..100_000u64 {
        if i.is_multiple_of(2000) {
            frequent = report.handshake(&handshake(i, "10.9.9.9:1000", None, "ok"), None);
            total += 1;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let peer = format!(
            "{}.{}.{}.{}:443",
            rng >> 56,
            (rng >> 48) & 255,
            (rng >> 40) & 255,
            (rng >> 32) & 255
        );
        let outcome = if i.is_multiple_of(3) { "failed" } else { "ok" };
        failed += u64::from(i.is_multiple_of(3));
        let mut rec = handshake(i, &peer, None, outcome);
        rec.ja4 = format!("t12i{rng:016x}").into();
        report.handshake(&rec, None);
        total += 1;
    }
    let frequent = frequent.unwrap();
    report.request(
        &frequent,
        &access(1, "portal.contoso.test", WEBDAV_UA, false),
    );

    let s = report.snapshot();
    assert!(s.clients.len() <= 100);
    assert_eq!(s.summary.clients_tracked, s.clients.len() as u64);
    assert_eq!(s.summary.handshakes, total);
    let listed: u64 = s.clients.iter().map(|c| c.handshakes).sum();
    assert_eq!(listed + s.other.handshakes, total, "totals stay exact");
    let listed_failed: u64 = s.clients.iter().map(|c| c.failed).sum();
    assert_eq!(listed_failed + s.other.failed, failed);
    let listed_no_sni: u64 = s.clients.iter().map(|c| c.no_sni).sum();
    assert_eq!(listed_no_sni + s.other.no_sni, total);
    assert!(s.other.clients >= 100_000 - 100);
    let top = &s.clients[0];
    assert_eq!((top.ip.as_str(), top.handshakes), ("10.9.9.9", 100));
    assert_eq!(top.first_seen.as_deref(), Some(ts(0, 0).as_str()));
    assert_eq!(
        top.requests, 1,
        "the frequent client's ClientRef still joins"
    );
    let listed_requests: u64 = s.clients.iter().map(|c| c.requests).sum();
    assert_eq!(
        listed_requests + s.other.requests,
        s.summary.requests_joined
    );
}

#[test]
fn requests_of_an_evicted_client_go_to_other() {
    let limits = ReportLimits {
        clients: 1,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    let first = report
        .handshake(&handshake(1, "192.0.2.1:1", None, "ok"), None)
        .unwrap();
    let _second = report
        .handshake(&handshake(2, "192.0.2.2:1", None, "ok"), None)
        .unwrap();
    report.request(&first, &access(1, "h.test", "ua", true));
    let s = report.snapshot();
    assert_eq!(s.clients.len(), 1);
    assert_eq!(s.clients[0].ip, "192.0.2.2");
    assert_eq!(s.clients[0].requests, 0);
    assert_eq!(
        (s.other.clients, s.other.handshakes, s.other.requests),
        (1, 1, 1)
    );
}

#[test]
fn html_escapes_values_from_the_network() {
    let report = Report::new(ReportLimits::default());
    let client = report
        .handshake(&handshake(1, "192.0.2.7:1", None, "ok"), None)
        .unwrap();
    report.request(
        &client,
        &access(1, "<b>evil.test</b>", "<script>alert('x')</script>", false),
    );
    let html = render_html(&report.snapshot());
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script: {html}"
    );
    assert!(!html.contains("<b>evil"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("&lt;b&gt;evil.test&lt;/b&gt;"));
    assert!(html.contains("<svg"));
}

#[test]
fn text_escapes_control_characters() {
    let report = Report::new(ReportLimits::default());
    let client = report
        .handshake(&handshake(1, "192.0.2.7:1", None, "ok"), None)
        .unwrap();
    report.request(&client, &access(1, "h.test", "evil\u{1b}[2Jua", true));
    let text = render_text(&report.snapshot());
    assert!(!text.contains('\u{1b}'));
    assert!(text.contains("evil\\u{1b}[2Jua"), "{text}");
}

#[test]
fn timeline_buckets_and_drops_old_buckets() {
    let limits = ReportLimits {
        bucket: Duration::from_secs(60),
        buckets: 3,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    let base = 1_790_000_040_000u64; // a whole minute
    let at = |ms: u64, sni: Option<&str>, outcome: &'static str| {
        let mut rec = handshake(1, "192.0.2.7:1", sni, outcome);
        rec.ts = at_ms(base + ms);
        report.handshake(&rec, None);
    };
    at(0, Some("a.test"), "ok"); // minute 0: falls out of the window later
    at(60_000, Some("a.test"), "ok"); // minute 1
    at(61_000, None, "ok");
    at(119_999, None, "failed");
    at(120_000, Some("a.test"), "passthrough"); // minute 2
    at(180_000, None, "ok"); // minute 3: the window is now minutes 1..=3
    at(1_000, Some("a.test"), "ok"); // too old: dropped
    let t = report.snapshot().timeline;
    assert_eq!(t.bucket_ms, 60_000);
    let got: Vec<(String, u64, u64, u64)> = t
        .buckets
        .iter()
        .map(|b| (b.start.clone(), b.sni_ok, b.no_sni_ok, b.failed))
        .collect();
    let want = vec![
        (format_ts(base + 60_000), 1, 1, 1),
        (format_ts(base + 120_000), 1, 0, 0),
        (format_ts(base + 180_000), 0, 1, 0),
    ];
    assert_eq!(got, want);
    // Every handshake still counts in the summary.
    assert_eq!(report.snapshot().summary.handshakes, 7);
}

#[test]
fn timeline_does_not_depend_on_arrival_order() {
    let limits = ReportLimits {
        buckets: 4,
        ..ReportLimits::default()
    };
    let stamps: Vec<u64> = (0..40).map(|i| (i * 7_919) % 600_000).collect();
    let feed = |order: &[u64]| {
        let report = Report::new(limits.clone());
        for ms in order {
            let mut rec = handshake(1, "192.0.2.7:1", Some("a.test"), "ok");
            rec.ts = at_ms(1_790_000_040_000 + ms);
            report.handshake(&rec, None);
        }
        report.snapshot().timeline
    };
    let mut reversed = stamps.clone();
    reversed.reverse();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(feed(&stamps), feed(&reversed));
    assert_eq!(feed(&stamps), feed(&sorted));
}

#[test]
fn snapshot_round_trips_through_json() {
    let report = Report::new(ReportLimits::default());
    let client = report
        .handshake(&handshake(1, "[2001:db8::1]:443", None, "ok"), None)
        .unwrap();
    report.request(&client, &access(1, "portal.contoso.test", WEBDAV_UA, false));
    let s = report.snapshot();
    assert_eq!(s.clients[0].ip, "2001:db8::1");
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("\"input\""), "live snapshots carry no input");
    let back: ReportSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn clip_keeps_char_boundaries() {
    let long = "é".repeat(500);
    let c = clip(&long, MAX_VALUE_BYTES);
    assert!(c.len() <= MAX_VALUE_BYTES);
    assert!(c.ends_with('…'));
    assert_eq!(clip("short", 10), "short");
}

#[test]
fn legacy_passthrough_clients_are_listed_with_their_reason() {
    let report = Report::new(ReportLimits::default());
    let mut rec = handshake(
        1,
        "192.0.2.9:50000",
        Some("portal.contoso.test"),
        "legacy_passthrough",
    );
    rec.reason = Some("the client offers only TLS 1.0; snigate serves TLS 1.2 and 1.3".into());
    rec.upstream = Some("iis-legacy".into());
    assert!(
        report.handshake(&rec, None).is_some(),
        "a forwarded client is tracked"
    );
    // A modern client with SNI is only counted (and kinded), not listed.
    report.handshake(
        &handshake(2, "192.0.2.10:50000", Some("portal.contoso.test"), "ok"),
        None,
    );
    let snap = report.snapshot();
    assert_eq!(snap.summary.with_sni.outcomes["legacy_passthrough"], 1);
    assert_eq!(snap.clients.len(), 1);
    let c = &snap.clients[0];
    assert_eq!(c.ip, "192.0.2.9");
    assert_eq!(c.ok, 1, "forwarded counts as served");
    assert_eq!(
        c.reasons.items[0].reason,
        "the client offers only TLS 1.0; snigate serves TLS 1.2 and 1.3"
    );
}

#[test]
fn a_log_line_with_an_outcome_snigate_does_not_write_is_counted_under_its_name() {
    let report = Report::new(ReportLimits::default());
    let rec = handshake(1, "192.0.2.7:1", Some("a.test"), "ok");
    let mut ev = HandshakeEvent::from_record(&rec);
    ev.outcome = EventOutcome::parse("timeout");
    assert_eq!(ev.outcome, EventOutcome::Other("timeout"));
    assert!(
        report.handshake_event(&ev).is_some(),
        "not a success: tracked"
    );
    ev.outcome = EventOutcome::parse("passthrough");
    assert!(report.handshake_event(&ev).is_none(), "a success with SNI");
    let s = report.snapshot();
    assert_eq!(s.summary.with_sni.outcomes["timeout"], 1);
    assert_eq!(s.summary.with_sni.outcomes["passthrough"], 1);
    assert_eq!(s.summary.with_sni.outcomes["ok"], 0);
}

#[test]
fn listed_clients_are_named_by_the_catalogue_or_unknown() {
    let report = Report::new(ReportLimits::default());
    // Windows 7 SChannel without SNI (the catalogue matches its b and c
    // parts), and a fingerprint no entry knows.
    let mut win7 = handshake(1, "192.0.2.7:1", None, "ok");
    win7.ja4 = "t12i1709h2_9295eb73ea51_71440d09e7ee".into();
    report.handshake(&win7, None);
    let mut odd = handshake(2, "192.0.2.8:1", None, "ok");
    odd.ja4 = "t12i0101h2_000000000000_000000000000".into();
    report.handshake(&odd, None);
    let s = report.snapshot();
    let name = |ip: &str| {
        s.clients
            .iter()
            .find(|c| c.ip == ip)
            .unwrap()
            .client
            .clone()
    };
    let win7_name = name("192.0.2.7").expect("named");
    assert!(win7_name.starts_with("Windows 7 SChannel"), "{win7_name}");
    assert_eq!(name("192.0.2.8"), None);
    let text = render_text(&s);
    assert!(
        text.contains("Windows 7 SChannel") && text.contains("unknown client"),
        "{text}"
    );
    let html = render_html(&s);
    assert!(html.contains("Windows 7 SChannel") && html.contains("unknown client"));
}

#[test]
fn clients_are_grouped_into_kinds_by_fingerprint_and_user_agent() {
    let report = Report::new(ReportLimits::default());
    // Three WebDAV users without SNI: one kind.
    for (conn, peer) in [(1, "10.0.0.1:1"), (2, "10.0.0.2:1"), (3, "10.0.0.3:1")] {
        let c = report
            .handshake(&handshake(conn, peer, None, "ok"), None)
            .unwrap();
        report.request(&c, &access(conn, "portal.contoso.test", WEBDAV_UA, false));
        report.request(&c, &access(conn, "portal.contoso.test", "Other/1.0", false));
    }
    // The same address again, same kind: not a new address.
    let again = report
        .handshake(&handshake(4, "10.0.0.1:2", None, "ok"), None)
        .unwrap();
    report.request(&again, &access(4, "portal.contoso.test", WEBDAV_UA, false));
    // A browser with SNI: its own kind.
    let browser = report
        .handshake(
            &handshake(5, "10.0.0.9:1", Some("portal.contoso.test"), "ok"),
            None,
        )
        .unwrap();
    report.request(
        &browser,
        &access(5, "portal.contoso.test", "Mozilla/5.0 Edge/120.0", true),
    );
    // A failed handshake: a kind with no User-Agent, with its reason.
    let mut failed = handshake(6, "10.0.0.4:1", Some("portal.contoso.test"), "failed");
    failed.reason = Some("no signature algorithm in common".into());
    failed.hint = Some("serve an RSA certificate".into());
    assert!(
        report.handshake(&failed, None).is_some(),
        "a failed client is tracked"
    );
    let s = report.snapshot();
    assert_eq!(s.kinds.len(), 3, "{:#?}", s.kinds);
    let webdav = &s.kinds[0];
    assert_eq!(webdav.user_agent, WEBDAV_UA);
    assert_eq!(webdav.ja4, NO_SNI_JA4);
    assert_eq!(webdav.addresses, 3);
    assert!(webdav.addresses_exact);
    assert_eq!(webdav.examples, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(
        (webdav.handshakes, webdav.without_sni, webdav.with_sni),
        (4, 4, 0)
    );
    assert_eq!(
        webdav.requests, 7,
        "every joined request, whatever its own User-Agent"
    );
    assert_eq!(webdav.outcomes, BTreeMap::from([("ok".to_string(), 4)]));
    assert_eq!(webdav.offered_versions.items.len(), 3);
    assert_eq!(webdav.negotiated_versions.items[0].value, "1.2");
    assert_eq!(webdav.hosts.items[0].covered, Some(false));
    assert!(webdav.certificates.items[0].fallback);
    let failing = s.kinds.iter().find(|k| k.user_agent.is_empty()).unwrap();
    assert_eq!(
        failing.outcomes,
        BTreeMap::from([("failed".to_string(), 1)])
    );
    assert_eq!(
        failing.reasons.items[0].hint.as_deref(),
        Some("serve an RSA certificate")
    );
    let edge = s
        .kinds
        .iter()
        .find(|k| k.user_agent.contains("Edge"))
        .unwrap();
    assert_eq!(
        (edge.with_sni, edge.hosts.items[0].covered),
        (1, Some(true))
    );
    let total: u64 = s.kinds.iter().map(|k| k.handshakes).sum();
    assert_eq!(
        total, s.summary.handshakes,
        "each handshake in exactly one kind"
    );
}

#[test]
fn a_connection_without_requests_joins_its_kind_when_it_ends() {
    let report = Report::new(ReportLimits::default());
    let quiet = report
        .handshake(&handshake(1, "10.0.0.1:1", None, "ok"), None)
        .unwrap();
    let s = report.snapshot();
    assert!(s.kinds.is_empty());
    assert_eq!(s.summary.kinds_pending, 1);
    drop(quiet.clone());
    assert_eq!(
        report.snapshot().summary.kinds_pending,
        1,
        "a clone is not the end"
    );
    drop(quiet);
    let s = report.snapshot();
    assert_eq!(s.summary.kinds_pending, 0);
    assert_eq!(s.kinds.len(), 1);
    assert_eq!(
        (s.kinds[0].user_agent.as_str(), s.kinds[0].handshakes),
        ("", 1)
    );
}

#[test]
fn kind_user_agents_are_normalised() {
    let report = Report::new(ReportLimits::default());
    for (conn, token) in [(1, "a1b2c3d4e5f6a7b8c9d0"), (2, "ffee00112233445566778899")] {
        let c = report
            .handshake(&handshake(conn, "10.0.0.1:1", None, "ok"), None)
            .unwrap();
        let ua = format!("Outlook/16.0.17126   install={token}");
        report.request(&c, &access(conn, "mail.contoso.test", &ua, true));
    }
    let s = report.snapshot();
    assert_eq!(s.kinds.len(), 1, "{:#?}", s.kinds);
    assert_eq!(s.kinds[0].user_agent, "Outlook/16.0.17126 install=…");
}

#[test]
fn address_counts_beyond_the_budget_are_a_lower_bound() {
    let limits = ReportLimits {
        addresses: 2,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    for conn in 1..=4 {
        let peer = format!("10.0.0.{conn}:1");
        let mut rec = handshake(conn, &peer, None, "failed");
        rec.reason = Some("x".into());
        report.handshake(&rec, None);
    }
    let s = report.snapshot();
    assert_eq!(s.kinds.len(), 1);
    assert_eq!(
        (s.kinds[0].addresses, s.kinds[0].addresses_exact),
        (2, false)
    );
    assert_eq!(s.kinds[0].handshakes, 4);
    assert!(render_text(&s).contains("at least 2"));
}

#[test]
fn evicted_kinds_are_added_up_in_other_kinds() {
    let limits = ReportLimits {
        kinds: 4,
        ..ReportLimits::default()
    };
    let report = Report::new(limits);
    for conn in 1..=50u64 {
        let c = report
            .handshake(&handshake(conn, "10.0.0.1:1", Some("a.test"), "ok"), None)
            .unwrap();
        report.request(
            &c,
            &access(conn, "a.test", &format!("Client{conn}/1.0"), true),
        );
        report.request(&c, &access(conn, "a.test", "x", true));
    }
    let s = report.snapshot();
    assert_eq!(s.kinds.len(), 4);
    assert_eq!(s.other_kinds.kinds, 46);
    let listed: u64 = s.kinds.iter().map(|k| k.handshakes).sum();
    assert_eq!(listed + s.other_kinds.handshakes, 50);
    let requests: u64 = s.kinds.iter().map(|k| k.requests).sum();
    assert_eq!(requests + s.other_kinds.requests, 100);
    assert_eq!(s.other_kinds.ok, s.other_kinds.handshakes);
}

#[test]
fn a_kind_seen_again_is_found_by_its_borrowed_key() {
    let report = Report::new(ReportLimits::default());
    let long_ja4 = format!("t13d1516h2_{}", "a".repeat(80));
    // Passthrough joins its kind at once; the same JA4 on another listener
    // and from another address is the same kind.
    for (conn, listener, peer) in [
        (1, "main", "10.0.0.1:1"),
        (2, "main", "10.0.0.1:2"),
        (3, "other", "10.0.0.2:1"),
    ] {
        let mut rec = handshake(conn, peer, Some("a.test"), "passthrough");
        rec.listener = listener.into();
        rec.ja4 = long_ja4.as_str().into();
        assert!(report.handshake(&rec, None).is_none());
    }
    // A User-Agent already normalised and one that normalises to it.
    for (conn, ua) in [
        (4, "Outlook/16.0.17126 install=…"),
        (5, "Outlook/16.0.17126   install=a1b2c3d4e5f6a7b8c9d0"),
        (6, "Outlook/16.0.17126 install=…"),
    ] {
        let mut rec = handshake(conn, "10.0.0.3:1", Some("a.test"), "ok");
        rec.ja4 = long_ja4.as_str().into();
        let c = report.handshake(&rec, None).unwrap();
        report.request(&c, &access(conn, "a.test", ua, true));
    }
    let s = report.snapshot();
    let kinds: Vec<_> = s
        .kinds
        .iter()
        .map(|k| {
            (
                k.ja4.as_str(),
                k.user_agent.as_str(),
                k.handshakes,
                k.addresses,
                k.listeners.items.len(),
            )
        })
        .collect();
    let clipped = clip(&long_ja4, 64);
    assert_eq!(clipped.len(), 64);
    assert_eq!(
        kinds,
        [
            (&*clipped, "", 3, 2, 2),
            (&*clipped, "Outlook/16.0.17126 install=…", 3, 1, 1),
        ]
    );
    assert_eq!(s.summary.addresses, 3);
}
