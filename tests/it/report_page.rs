//! The report as an operator reads it: the page in a real browser (Debian's
//! chromium, headless: its script runs under the page's CSP, sorts the
//! kinds table, and the page fits a laptop and a phone), `/report.csv` and
//! `snigate report --csv` (it parses, one row per kind, no formula
//! injection), `?clients=N` and `--clients N`, and the size bounds of
//! `/report` and `/report.html`.
//!
//! The browser checks need chromium (.ci/run installs it); without it they
//! fail, unless `SNIGATE_SKIP_BROWSER=1`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use snigate::observe::report::{
    html_document, json_document, render_csv, render_html, Bucket, CertificateSeen, ClientReport,
    Counted, HostSeen, KindReport, Listed, OtherClients, OtherKinds, OutcomeSplit, ReasonSeen,
    ReportSnapshot, Summary, Timeline, DEFAULT_CLIENTS, HTML_MAX_BYTES, JSON_MAX_BYTES,
};
use snigate::server::admin::REPORT_CSP;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WEBDAV_UA: &str = "Microsoft-WebDAV-MiniRedir/10.0.19045";
/// A User-Agent built to break a spreadsheet or a CSV parser.
const HOSTILE_UA: &str = "=HYPERLINK(\"http://evil.test/x\",\"click\"), \"quoted\"\r\nline two";
/// What the catalogue calls the XP capture (checked below).
const XP_CATALOGUE_NAME: &str = "Windows XP SChannel (IE 8)";
const XP_HINT: &str = "enable TLS 1.2 on the client (Windows XP cannot: replace it), or set legacy_tls on the listener";

// ---------------------------------------------------------------------------
// A hand-made report
// ---------------------------------------------------------------------------

fn counted(values: &[(&str, u64)]) -> Listed<Counted> {
    Listed {
        items: values
            .iter()
            .map(|(v, n)| Counted {
                value: v.to_string(),
                count: *n,
            })
            .collect(),
        more: 0,
    }
}

fn none<T>() -> Listed<T> {
    Listed {
        items: vec![],
        more: 0,
    }
}

fn outcomes(values: &[(&str, u64)]) -> BTreeMap<String, u64> {
    values.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn fallback(n: u64) -> Listed<CertificateSeen> {
    Listed {
        items: vec![CertificateSeen {
            name: "farm".into(),
            fallback: true,
            count: n,
        }],
        more: 0,
    }
}

fn host(name: &str, requests: u64, covered: bool) -> HostSeen {
    HostSeen {
        host: name.into(),
        requests,
        covered: Some(covered),
        uncovered: if covered { 0 } else { requests },
    }
}

/// A kind with the counts a test sorts by; the rest filled in below.
fn kind(
    client: Option<&str>,
    ua: &str,
    ja4: &str,
    handshakes: u64,
    without_sni: u64,
) -> KindReport {
    KindReport {
        ja4: ja4.into(),
        client: client.map(Into::into),
        client_note: None,
        user_agent: ua.into(),
        addresses: 1,
        addresses_exact: true,
        examples: vec!["192.0.2.10".into()],
        handshakes,
        with_sni: handshakes - without_sni,
        without_sni,
        outcomes: outcomes(&[("ok", handshakes)]),
        requests: handshakes,
        offered_versions: counted(&[("1.3", handshakes), ("1.2", handshakes)]),
        negotiated_versions: counted(&[("1.3", handshakes)]),
        listeners: counted(&[("main", handshakes)]),
        certificates: none(),
        hosts: none(),
        reasons: none(),
        first_seen: Some("2026-11-26T08:00:00.000Z".into()),
        last_seen: Some("2026-11-26T16:27:33.160Z".into()),
    }
}

/// Five kinds of a SharePoint farm's clients: the WebDAV mini-redirector
/// without SNI on a host the fallback does not cover, Windows XP failing,
/// a browser and Outlook with SNI, and a hostile scanner.
fn sample_kinds() -> Vec<KindReport> {
    let mut webdav = kind(
        Some("Windows SChannel (WebDAV mini-redirector)"),
        WEBDAV_UA,
        "t12i1107h1_5b57614c22b0_3cbfd9057e0d",
        412,
        412,
    );
    webdav.client_note = Some("sends no SNI: gets the listener's fallback certificate".into());
    webdav.addresses = 37;
    webdav.examples = (10..15).map(|i| format!("10.20.30.{i}")).collect();
    webdav.offered_versions = counted(&[("1.2", 412), ("1.1", 412), ("1.0", 412)]);
    webdav.negotiated_versions = counted(&[("1.2", 412)]);
    webdav.certificates = fallback(412);
    webdav.hosts = Listed {
        items: vec![
            host("teams.contoso.test", 130, false),
            host("portal.contoso.test", 282, true),
        ],
        more: 0,
    };

    let mut xp = kind(
        Some(XP_CATALOGUE_NAME),
        "",
        "t10i110100_3609b414f052_bc98f8e001b5",
        57,
        57,
    );
    xp.addresses = 3;
    xp.examples = vec![
        "10.20.40.2".into(),
        "10.20.40.3".into(),
        "10.20.40.9".into(),
    ];
    xp.outcomes = outcomes(&[("failed", 57)]);
    xp.requests = 0;
    xp.offered_versions = counted(&[("1.0", 57)]);
    xp.negotiated_versions = none();
    xp.certificates = fallback(57);
    xp.reasons = Listed {
        items: vec![ReasonSeen {
            reason: "the client offers only TLS 1.0, which this listener does not speak".into(),
            hint: Some(XP_HINT.into()),
            count: 57,
        }],
        more: 0,
    };

    let mut edge = kind(
        None,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "t13d1516h2_8daaf6152771_e5627efa2ab1",
        9000,
        0,
    );
    edge.addresses = 1200;
    edge.addresses_exact = false;
    edge.examples = (1..=5).map(|i| format!("2001:db8:40::{i}")).collect();
    edge.certificates = Listed {
        items: vec![CertificateSeen {
            name: "portal".into(),
            fallback: false,
            count: 9000,
        }],
        more: 0,
    };
    edge.hosts = Listed {
        items: vec![host("portal.contoso.test", 8000, true)],
        more: 3,
    };

    let mut outlook = kind(
        Some("Windows SChannel"),
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
        "t12d190800_d83cc789557e_7af1ed941c26",
        800,
        0,
    );
    outlook.addresses = 140;
    outlook.negotiated_versions = counted(&[("1.2", 800)]);
    outlook.hosts = Listed {
        items: vec![host("mail.contoso.test", 800, true)],
        more: 0,
    };

    let mut scanner = kind(None, HOSTILE_UA, "", 2, 2);
    scanner.examples = vec!["198.51.100.66".into()];
    scanner.outcomes = outcomes(&[("rejected", 2)]);
    scanner.requests = 0;
    scanner.offered_versions = none();
    scanner.negotiated_versions = none();
    scanner.reasons = Listed {
        items: vec![ReasonSeen {
            reason: "-not a TLS ClientHello <b>x</b>".into(),
            hint: None,
            count: 2,
        }],
        more: 0,
    };
    vec![edge, outlook, webdav, xp, scanner]
}

fn client(ip: &str, ja4: &str, handshakes: u64, ok: u64, no_sni: u64) -> ClientReport {
    ClientReport {
        ip: ip.into(),
        ja4: ja4.into(),
        client: None,
        handshakes,
        ok,
        failed: handshakes - ok,
        no_sni,
        requests: ok,
        first_seen: Some("2026-11-26T08:00:00.000Z".into()),
        last_seen: Some("2026-11-26T16:27:33.160Z".into()),
        offered_versions: counted(&[("1.2", handshakes)]),
        versions: counted(&[("1.2", ok)]),
        listeners: counted(&[("main", handshakes)]),
        certificates: fallback(handshakes),
        user_agents: counted(&[(WEBDAV_UA, ok)]),
        hosts: Listed {
            items: vec![host("teams.contoso.test", ok, false)],
            more: 0,
        },
        reasons: none(),
    }
}

fn split(ok: u64, failed: u64, rejected: u64) -> OutcomeSplit {
    OutcomeSplit {
        total: ok + failed + rejected,
        outcomes: outcomes(&[
            ("ok", ok),
            ("failed", failed),
            ("rejected", rejected),
            ("passthrough", 0),
            ("legacy_passthrough", 0),
        ]),
    }
}

/// A report of one working day, with five kinds, four more not listed and
/// a per-address table.
fn sample() -> ReportSnapshot {
    let clients = vec![
        client(
            "10.20.30.10",
            "t12i1107h1_5b57614c22b0_3cbfd9057e0d",
            40,
            40,
            40,
        ),
        client(
            "10.20.30.11",
            "t12i1107h1_5b57614c22b0_3cbfd9057e0d",
            25,
            25,
            25,
        ),
        client(
            "10.20.40.2",
            "t10i110100_3609b414f052_bc98f8e001b5",
            20,
            0,
            20,
        ),
    ];
    let buckets = (0..48)
        .map(|i| Bucket {
            start: format!("2026-11-26T{:02}:{:02}:00.000Z", 8 + i / 6, (i % 6) * 10),
            sni_ok: 150 + (i * 37 % 90),
            no_sni_ok: 5 + (i * 13 % 11),
            failed: u64::from(i % 7 == 3) * 4,
        })
        .collect();
    ReportSnapshot {
        summary: Summary {
            handshakes: 10_291,
            with_sni: split(9_800, 0, 0),
            without_sni: split(412, 57, 22),
            fallback_served: 491,
            requests_joined: 412,
            first_seen: Some("2026-11-26T08:00:00.000Z".into()),
            last_seen: Some("2026-11-26T16:27:33.160Z".into()),
            clients_tracked: 3,
            clients_limit: 1000,
            kinds_listed: 9,
            kinds_limit: 1000,
            kinds_pending: 2,
            addresses: 1_412,
            addresses_exact: true,
        },
        timeline: Timeline {
            bucket_ms: 600_000,
            buckets,
        },
        kinds: sample_kinds(),
        other_kinds: OtherKinds {
            kinds: 4,
            handshakes: 20,
            ok: 0,
            failed: 20,
            without_sni: 20,
            requests: 0,
        },
        folded: vec![
            "per-address table: 3 of 250 rows shown (ask for more with ?clients=N or --clients N)"
                .into(),
        ],
        clients,
        other: OtherClients::default(),
        input: None,
    }
}

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

const CSV_HEADER: [&str; 26] = [
    "client",
    "client_note",
    "user_agent",
    "ja4",
    "addresses",
    "addresses_exact",
    "handshakes",
    "with_sni",
    "without_sni",
    "ok",
    "failed",
    "rejected",
    "passthrough",
    "legacy_passthrough",
    "other",
    "requests",
    "offered_versions",
    "negotiated_versions",
    "listeners",
    "certificates",
    "hosts",
    "reasons",
    "hints",
    "first_seen",
    "last_seen",
    "example_addresses",
];

/// The CSV's rows as maps from header to cell; checks the header, the BOM
/// and that every row is as long as the header.
fn parse_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let body = text
        .strip_prefix('\u{feff}')
        .expect("the CSV starts with a UTF-8 BOM (for Excel)");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("a header row")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(header, CSV_HEADER, "the header names are a contract");
    reader
        .records()
        .map(|r| {
            let r = r.expect("a well-formed row");
            assert_eq!(r.len(), header.len(), "{r:?}");
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn csv_parses_one_row_per_kind_and_neutralises_formulas() {
    let s = sample();
    let rows = parse_csv(&render_csv(&s));
    assert_eq!(
        rows.len(),
        s.kinds.len() + 1,
        "one row per kind, and the other kinds"
    );

    let webdav = rows.iter().find(|r| r["user_agent"] == WEBDAV_UA).unwrap();
    assert_eq!(
        webdav["client"],
        "Windows SChannel (WebDAV mini-redirector)"
    );
    assert_eq!(webdav["addresses"], "37");
    assert_eq!(webdav["addresses_exact"], "true");
    assert_eq!(
        (&*webdav["with_sni"], &*webdav["without_sni"]),
        ("0", "412")
    );
    assert_eq!((&*webdav["ok"], &*webdav["failed"]), ("412", "0"));
    assert_eq!(
        webdav["offered_versions"],
        "1.2 (412); 1.1 (412); 1.0 (412)"
    );
    assert_eq!(webdav["negotiated_versions"], "1.2 (412)");
    assert_eq!(webdav["certificates"], "farm (fallback) (412)");
    assert_eq!(
        webdav["hosts"],
        "teams.contoso.test (130 requests, not covered in 130); portal.contoso.test (282 requests, covered)"
    );
    assert_eq!(
        webdav["example_addresses"],
        "10.20.30.10; 10.20.30.11; 10.20.30.12; 10.20.30.13; 10.20.30.14"
    );

    let xp = rows.iter().find(|r| r["ja4"].starts_with("t10i")).unwrap();
    assert_eq!((&*xp["failed"], &*xp["ok"]), ("57", "0"));
    assert_eq!(xp["hints"], XP_HINT);
    assert!(xp["reasons"].ends_with("(57)"), "{}", xp["reasons"]);
    assert_eq!(xp["negotiated_versions"], "");

    let edge = rows
        .iter()
        .find(|r| r["addresses_exact"] == "false")
        .unwrap();
    assert_eq!(edge["client"], "unknown", "never guessed");
    assert_eq!(
        edge["hosts"],
        "portal.contoso.test (8000 requests, covered); +3 more"
    );

    // Quotes, commas and line breaks round-trip; a formula start gets a
    // leading ' so no spreadsheet runs it.
    let scanner = rows.iter().find(|r| r["rejected"] == "2").unwrap();
    assert_eq!(scanner["user_agent"], format!("'{HOSTILE_UA}"));
    assert_eq!(scanner["reasons"], "'-not a TLS ClientHello <b>x</b> (2)");
    for row in &rows {
        for (column, cell) in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{column}: {cell:?} would run as a formula"
            );
        }
    }

    let other = rows.last().unwrap();
    assert_eq!(other["client"], "(other kinds: 4)");
    assert_eq!((&*other["handshakes"], &*other["failed"]), ("20", "20"));
}

#[test]
fn csv_of_an_empty_report_is_the_header_alone() {
    let mut s = sample();
    s.kinds.clear();
    s.other_kinds = OtherKinds::default();
    assert!(parse_csv(&render_csv(&s)).is_empty());
}

// ---------------------------------------------------------------------------
// Size bounds
// ---------------------------------------------------------------------------

/// 500 bytes of text that HTML escaping makes longer still.
fn long_value(i: usize) -> String {
    format!("{i}:{}", "<&\"x".repeat(125))[..500].to_string()
}

/// A flood: 4000 kinds and 3000 addresses with 500-byte values.
fn huge() -> ReportSnapshot {
    let mut s = sample();
    let template = s.kinds[2].clone();
    s.kinds = (0..4000)
        .map(|i| {
            let mut k = template.clone();
            k.user_agent = long_value(i);
            k.client_note = Some(long_value(i + 1));
            k.hosts.items = (0..8)
                .map(|h| host(&long_value(i * 8 + h), 1, false))
                .collect();
            k.reasons.items = vec![ReasonSeen {
                reason: long_value(i),
                hint: Some(long_value(i + 2)),
                count: 1,
            }];
            k.handshakes = 10_000 - i as u64;
            k
        })
        .collect();
    s.other_kinds = OtherKinds::default();
    s.folded.clear();
    let template = s.clients[0].clone();
    s.clients = (0..3000)
        .map(|i| {
            let mut c = template.clone();
            c.ip = format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256);
            c.user_agents = counted(&[(&long_value(i), 1)]);
            c
        })
        .collect();
    s
}

#[test]
fn documents_stay_bounded_and_say_what_was_folded() {
    let s = huge();
    let total: u64 = s.kinds.iter().map(|k| k.handshakes).sum();

    let json = json_document(s.clone(), 5000);
    assert!(json.len() < JSON_MAX_BYTES, "{} bytes", json.len());
    let doc: ReportSnapshot = serde_json::from_str(&json).expect("still a report");
    assert!(doc.kinds.len() < 4000, "kinds were folded");
    assert_eq!(doc.other_kinds.kinds as usize + doc.kinds.len(), 4000);
    let listed: u64 = doc.kinds.iter().map(|k| k.handshakes).sum();
    assert_eq!(
        listed + doc.other_kinds.handshakes,
        total,
        "totals stay whole"
    );
    assert!(
        doc.folded.iter().any(|f| f.starts_with("kinds table:")),
        "{:?}",
        doc.folded
    );

    let html = html_document(s.clone(), 5000);
    assert!(html.len() < HTML_MAX_BYTES, "{} bytes", html.len());
    assert!(
        html.contains("Left out of this page"),
        "the page says what was folded"
    );
    assert!(
        html.contains("other kinds, not listed"),
        "the footer adds them up"
    );
    assert!(html.ends_with("</body></html>\n"), "the page is whole");

    // ?clients=N: N per-address rows, and the note says how many there were.
    let mut s = ReportSnapshot {
        kinds: sample_kinds(),
        ..s
    };
    s.clients
        .iter_mut()
        .for_each(|c| c.user_agents = counted(&[(WEBDAV_UA, 1)]));
    let doc: ReportSnapshot = serde_json::from_str(&json_document(s, 7)).unwrap();
    assert_eq!(doc.clients.len(), 7);
    assert!(
        doc.folded.iter().any(|f| f.contains("7 of 3000 rows")),
        "{:?}",
        doc.folded
    );
}

// ---------------------------------------------------------------------------
// The page's HTML (no browser)
// ---------------------------------------------------------------------------

/// The section of `html` from `from` to the next `to`.
fn section<'a>(html: &'a str, from: &str, to: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in the page"));
    let len = html[start..].find(to).unwrap_or(html.len() - start);
    &html[start..start + len]
}

#[test]
fn page_puts_the_kinds_first_with_hints_and_two_version_lists() {
    let html = render_html(&sample());
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the page"))
    };
    assert!(at("<h2>Summary") < at("Left out of this page"));
    assert!(at("Left out of this page") < at("id=\"kinds\""));
    assert!(at("id=\"kinds\"") < at("<svg"), "kinds before the charts");
    assert!(
        at("<svg") < at("<h2>Addresses without SNI"),
        "charts before the addresses"
    );

    let kinds = section(&html, "id=\"kinds\"", "</table>");
    assert!(kinds.contains(">TLS offered</th>") && kinds.contains(">TLS negotiated</th>"));
    assert_eq!(
        kinds.matches("<tr class=\"failing\">").count(),
        2,
        "XP and the scanner"
    );
    let xp = section(kinds, XP_CATALOGUE_NAME, "</tr>");
    assert!(
        xp.contains(&format!("fix: {}", XP_HINT.replace('\'', "&#39;"))),
        "{xp}"
    );
    assert!(kinds.contains("at least 1200"), "a lower bound says so");
    assert!(kinds.contains("unknown client"), "never guessed");
    assert!(kinds.contains("not covered (130 requests)"));
    // Escaped, and sortable by its raw value.
    assert!(!kinds.contains("<b>x</b>"));
    assert!(kinds.contains("data-sort=\"=HYPERLINK(&quot;http://evil.test/x&quot;"));
    assert!(kinds.contains("<td class=\"n\" data-sort=\"9000\">9000</td>"));
    assert!(kinds.contains("4 other kinds, not listed"));
}

// ---------------------------------------------------------------------------
// The page in a real browser
// ---------------------------------------------------------------------------

/// Debian's chromium, or `None` when `SNIGATE_SKIP_BROWSER=1` says to skip;
/// panics when it is missing otherwise.
fn browser() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var("SNIGATE_SKIP_BROWSER").as_deref() == Ok("1") => {
            eprintln!(
                "report_page: chromium not found; browser checks skipped (SNIGATE_SKIP_BROWSER=1)"
            );
            None
        }
        None => panic!(
            "report_page: chromium is not installed, so the report page cannot be checked in a \
             real browser. Install Debian's chromium (apt-get install chromium; .ci/run does), \
             or set SNIGATE_SKIP_BROWSER=1 to skip these checks"
        ),
    }
}

/// What a headless chromium run printed.
struct Run {
    stdout: String,
    stderr: String,
}

/// Upper bound for one chromium run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs headless chromium with `args` in a profile of its own, killed with
/// its whole process group if it outlives [`BROWSER_TIMEOUT`].
fn chromium(bin: &Path, args: &[String]) -> Run {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let group = child.id() as i32;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let errs = std::thread::spawn(move || {
            let _ = err.read_to_string(&mut stderr);
            stderr
        });
        let _ = out.read_to_string(&mut stdout);
        let _ = tx.send((stdout, errs.join().unwrap_or_default()));
    });
    let output = rx.recv_timeout(BROWSER_TIMEOUT);
    if output.is_err() {
        // SAFETY: kill(2) on the process group chromium leads (and only it).
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let status = child.wait().unwrap();
    let (stdout, stderr) = output
        .unwrap_or_else(|_| panic!("chromium {args:?} did not finish within {BROWSER_TIMEOUT:?}"));
    assert!(
        status.success(),
        "chromium {args:?} failed: {status}\n{stderr}"
    );
    Run { stdout, stderr }
}

/// The DOM of `url` after its scripts ran.
fn dump_dom(bin: &Path, url: &str, width: u32, height: u32) -> Run {
    chromium(
        bin,
        &[
            format!("--window-size={width},{height}"),
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            url.into(),
        ],
    )
}

/// A screenshot of `url` at `width`x`height` into `png`.
fn screenshot(bin: &Path, url: &str, width: u32, height: u32, png: &Path) {
    chromium(
        bin,
        &[
            format!("--window-size={width},{height}"),
            "--virtual-time-budget=5000".into(),
            format!("--screenshot={}", png.display()),
            url.into(),
        ],
    );
}

/// CSP complaints chromium logged (its console goes to stderr).
fn csp_violations(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Refused to"))
        .collect()
}

/// A page a test server serves: type, Content-Security-Policy, body.
type Page = (&'static str, Option<String>, String);

/// Serves `pages` by path (query and fragment ignored) on 127.0.0.1 until
/// dropped; its address.
async fn serve(
    pages: BTreeMap<&'static str, Page>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pages = std::sync::Arc::new(pages);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer(stream, pages.clone()));
        }
    });
    (addr, task)
}

async fn answer(mut stream: TcpStream, pages: std::sync::Arc<BTreeMap<&'static str, Page>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let reply = match pages.get(path) {
        Some((ctype, csp, body)) => {
            let csp = csp
                .as_ref()
                .map(|c| format!("Content-Security-Policy: {c}\r\n"))
                .unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{csp}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The report in a frame of `width` px, and a script that writes into
/// `<body>` how far the framed page and the kinds table overflow
/// horizontally (0: nothing is cut off or scrolls).
fn layout_probe(width: u32) -> String {
    format!(
        r#"<!DOCTYPE html><html><body><iframe id="f" src="/framed.html" width="{width}" height="844" style="border:0"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {{
  var d = this.contentDocument, e = d.documentElement, k = d.getElementById("kinds").parentNode;
  document.body.setAttribute("data-page-overflow", e.scrollWidth - e.clientWidth);
  document.body.setAttribute("data-kinds-overflow", k.scrollWidth - k.clientWidth);
}});
</script></body></html>"#
    )
}

/// The value of `attr="..."` on the first element that has it.
fn attr<'a>(dom: &'a str, attr: &str) -> Option<&'a str> {
    let start = dom.find(&format!("{attr}=\""))? + attr.len() + 2;
    Some(&dom[start..start + dom[start..].find('"')?])
}

/// The handshakes (4th column) of the kinds table's rows, in DOM order.
fn handshakes_in_order(dom: &str) -> Vec<u64> {
    let kinds = section(dom, "id=\"kinds\"", "</table>");
    let body = section(kinds, "<tbody>", "</tbody>");
    body.split("<tr")
        .skip(1)
        .map(|row| {
            let cell = row.split("data-sort=\"").nth(4).expect("a 4th cell");
            cell[..cell.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_a_real_browser_sorts_under_its_csp_and_fits_a_laptop_and_a_phone() {
    let Some(bin) = browser() else { return };
    let page = render_html(&sample());
    let without_frame_ancestors = REPORT_CSP.replace("; frame-ancestors 'none'", "");
    let html = "text/html; charset=utf-8";
    let pages = BTreeMap::from([
        (
            "/report.html",
            (html, Some(REPORT_CSP.to_string()), page.clone()),
        ),
        // The control: a policy without the script's hash.
        (
            "/blocked.html",
            (
                html,
                Some(REPORT_CSP.replace("script-src 'sha256-", "script-src 'sha256-X")),
                page.clone(),
            ),
        ),
        ("/framed.html", (html, Some(without_frame_ancestors), page)),
        ("/probe-1280.html", (html, None, layout_probe(1280))),
        ("/probe-390.html", (html, None, layout_probe(390))),
    ]);
    let (addr, server) = serve(pages).await;
    let base = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let shots = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // The script runs under the CSP: headers became buttons, the
        // fragment's sort is applied, nothing was refused.
        let run = dump_dom(
            &bin,
            &format!("{base}/report.html#sort=handshakes-asc"),
            1280,
            900,
        );
        assert_eq!(
            attr(&run.stdout, "data-sortable"),
            Some("ready"),
            "the script did not run:\n{}",
            run.stderr
        );
        assert_eq!(attr(&run.stdout, "data-sorted"), Some("handshakes-asc"));
        assert_eq!(handshakes_in_order(&run.stdout), [2, 57, 412, 800, 9000]);
        assert!(run.stdout.contains("aria-sort=\"ascending\""));
        let heads = section(&run.stdout, "<thead>", "</thead>");
        assert_eq!(
            heads.matches("<button type=\"button\"").count(),
            13,
            "{heads}"
        );
        assert!(
            csp_violations(&run).is_empty(),
            "{:?}",
            csp_violations(&run)
        );
        assert!(run
            .stdout
            .contains(&format!("fix: {}", XP_HINT.replace('\'', "&#39;"))));

        // Sorted the other way by text, as people sort (punctuation and
        // case aside): Mozilla, Microsoft-WebDAV, Microsoft Office,
        // =HYPERLINK, then the kind without a User-Agent.
        let run = dump_dom(
            &bin,
            &format!("{base}/report.html#sort=user_agent-desc"),
            1280,
            900,
        );
        assert_eq!(attr(&run.stdout, "data-sorted"), Some("user_agent-desc"));
        assert_eq!(handshakes_in_order(&run.stdout), [9000, 412, 800, 2, 57]);

        // The control: without the hash in the policy the browser refuses
        // the script (so the checks above do see a refusal), and the page
        // is still the server's order, readable.
        let run = dump_dom(
            &bin,
            &format!("{base}/blocked.html#sort=handshakes-asc"),
            1280,
            900,
        );
        assert_eq!(attr(&run.stdout, "data-sortable"), None);
        assert!(
            !csp_violations(&run).is_empty(),
            "chromium logged no refusal:\n{}",
            run.stderr
        );
        assert_eq!(handshakes_in_order(&run.stdout), [9000, 800, 412, 57, 2]);

        // 1280 px: nothing overflows, the kinds table needs no scrolling.
        let run = dump_dom(&bin, &format!("{base}/probe-1280.html"), 1300, 900);
        assert_eq!(
            attr(&run.stdout, "data-page-overflow"),
            Some("0"),
            "{}",
            run.stdout
        );
        assert_eq!(
            attr(&run.stdout, "data-kinds-overflow"),
            Some("0"),
            "the kinds table scrolls at 1280 px"
        );
        // A phone: the page itself is not wider than the screen (the
        // tables scroll inside their own boxes).
        let run = dump_dom(&bin, &format!("{base}/probe-390.html"), 400, 844);
        assert_eq!(
            attr(&run.stdout, "data-page-overflow"),
            Some("0"),
            "cut off at 390 px"
        );

        for (width, height) in [(1280, 900), (390, 844)] {
            let png = shots.join(format!("report-{width}.png"));
            screenshot(&bin, &format!("{base}/report.html"), width, height, &png);
            let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
            assert!(
                bytes.len() > 20_000,
                "{width}x{height}: a blank page? {} bytes",
                bytes.len()
            );
        }
    })
    .await
    .unwrap();
    server.abort();
}

// ---------------------------------------------------------------------------
// The live endpoints and the command
// ---------------------------------------------------------------------------

/// A proxy with an admin endpoint, a client without SNI (with a hostile
/// User-Agent) and a failing Windows XP client in its report: two
/// per-address rows (one address, two JA4s).
async fn farm_with_two_addresses(dir: &Path) -> snigate::server::Proxy {
    let pki = Pki::new(dir);
    let fb = pki.leaf("fb", &["fb.test"], Key::Ecdsa);
    let be = backend("portal").await;
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [log]\nhandshake_log = \"logs/handshakes.jsonl\"\naccess_log = \"logs/access.jsonl\"\n\n{}\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \"fb\"\ndefault_upstream = \"portal\"\n\n\
         [[upstream]]\nname = \"portal\"\nservers = [\"{}\"]\n",
        cert_toml("fb", &fb),
        be.addr
    );
    let proxy = start_proxy(dir, &toml).await;
    let addr = proxy.addr("main").unwrap();
    let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::no_sni("fb.test"))
        .await
        .unwrap();
    let (_, mut h1) = tls.into_h1().await;
    let mut req = get("portal.contoso.test", "/");
    req.headers_mut().insert(
        "user-agent",
        HOSTILE_UA.replace("\r\n", " ").parse().unwrap(),
    );
    assert_eq!(h1.send(req).await.status, 200);
    let mut xp = TcpStream::connect(addr).await.unwrap();
    xp.write_all(&capture("xp_ie8_schannel_tls10_nosni.hex"))
        .await
        .unwrap();
    wait_closed(&mut xp, Duration::from_secs(5))
        .await
        .expect("the proxy closes the failed handshake");
    // Both are in the report once it counts two handshakes and the request.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = admin_get(&proxy, "/report").await.json();
        if r["summary"]["handshakes"] == 2 && r["summary"]["requests_joined"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_report_endpoints_take_clients_and_serve_csv() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = farm_with_two_addresses(dir.path()).await;

        let all = admin_get(&proxy, "/report").await.json();
        assert_eq!(all["clients"].as_array().unwrap().len(), 2, "{all:#}");
        assert_eq!(all["folded"], serde_json::json!([]));

        let one = admin_get(&proxy, "/report?clients=1").await;
        assert_eq!(one.status, 200);
        let one = one.json();
        assert_eq!(one["clients"].as_array().unwrap().len(), 1);
        assert!(
            one["folded"][0].as_str().unwrap().contains("1 of 2 rows"),
            "{}",
            one["folded"]
        );
        let page = admin_get(&proxy, "/report.html?clients=0").await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("0 of 2 rows"));

        for bad in [
            "/report?clients=many",
            "/report.html?clients=-1",
            "/report?clients=",
        ] {
            let reply = admin_get(&proxy, bad).await;
            assert_eq!(reply.status, 400, "{bad}");
            assert!(
                reply.text().contains("whole number"),
                "{bad}: {}",
                reply.text()
            );
        }

        let csv = admin_get(&proxy, "/report.csv").await;
        assert_eq!(csv.status, 200);
        assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
        assert_eq!(
            csv.headers["content-disposition"],
            "attachment; filename=\"snigate-report.csv\""
        );
        assert_eq!(csv.headers["x-content-type-options"], "nosniff");
        let rows = parse_csv(&csv.text());
        let kinds = admin_get(&proxy, "/report").await.json();
        let other = u64::from(kinds["other_kinds"]["kinds"].as_u64().unwrap_or(0) > 0);
        assert_eq!(
            rows.len() as u64,
            kinds["kinds"].as_array().unwrap().len() as u64 + other,
            "one row per kind of /report"
        );
        proxy.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_report_page_runs_its_script_in_a_real_browser() {
    let Some(bin) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let proxy = bounded(farm_with_two_addresses(dir.path())).await;
    let url = format!("http://{}/report.html", proxy.admin_addr().unwrap());
    let run = tokio::task::spawn_blocking(move || dump_dom(&bin, &url, 1280, 900))
        .await
        .unwrap();
    assert_eq!(
        attr(&run.stdout, "data-sortable"),
        Some("ready"),
        "the admin endpoint's CSP refused the page's script:\n{}",
        run.stderr
    );
    assert!(
        csp_violations(&run).is_empty(),
        "{:?}",
        csp_violations(&run)
    );
    assert!(
        run.stdout.contains("=HYPERLINK("),
        "the client's User-Agent, as text"
    );
    // The XP client's handshake failed before any request: its kind row,
    // as the browser laid it out, is shaded, named by the catalogue and
    // carries the live reason's fix.
    let kinds = section(&run.stdout, "<table id=\"kinds\"", "</table>");
    let xp = kinds
        .split("<tr")
        .find(|row| row.contains(XP_CATALOGUE_NAME))
        .unwrap_or_else(|| panic!("no row names {XP_CATALOGUE_NAME:?}: {kinds}"));
    assert!(xp.starts_with(" class=\"failing\""), "{xp}");
    assert!(xp.contains("fix: "), "{xp}");
    proxy.shutdown().await;
}

#[test]
fn report_command_prints_csv_and_takes_clients() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("handshakes.jsonl");
    let line = |conn: u32, peer: &str| {
        serde_json::json!({
            "ts": format!("2026-11-26T12:00:0{conn}.000Z"), "event": "tls_handshake", "conn": conn,
            "listener": "main", "local": "127.0.0.1:8443", "peer": peer, "sni": null,
            "fallback": true, "certificate": "farm", "offered_versions": ["1.2"],
            "offered_suites": ["0xc02b"], "offered_alpn": [], "ja3": "", "ja4": "t12i0101h1_aaaaaaaaaaaa_bbbbbbbbbbbb",
            "outcome": "ok", "version": "1.2", "ms": 1.0
        })
        .to_string()
    };
    let text = [
        line(1, "192.0.2.1:5000"),
        line(2, "192.0.2.2:5000"),
        line(3, "192.0.2.3:5000"),
    ]
    .join("\n");
    std::fs::write(&logs, text + "\n").unwrap();
    let snigate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_snigate"))
            .arg("report")
            .args(args)
            .arg(&logs)
            .output()
            .unwrap()
    };

    let out = snigate(&["--json", "--clients", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: ReportSnapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc.clients.len(), 2);
    assert!(doc.folded[0].contains("2 of 3 rows"), "{:?}", doc.folded);
    let out = snigate(&["--json"]);
    let doc: ReportSnapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc.clients.len(), 3, "default: {DEFAULT_CLIENTS}");

    let out = snigate(&["--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        rows.len(),
        doc.kinds.len() + usize::from(doc.other_kinds.kinds > 0)
    );

    for both in [["--csv", "--json"], ["--csv", "--html"]] {
        let out = snigate(&both);
        assert_eq!(out.status.code(), Some(2), "{both:?} conflict");
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    }
    let out = snigate(&["--clients", "many"]);
    assert_eq!(out.status.code(), Some(2));
}
