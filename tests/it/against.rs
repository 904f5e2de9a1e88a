//! `snigate report --against NEW.toml LOG...` (README, "What-if over
//! observed traffic"): the captured hellos of tests/data/hellos and a rustls
//! client with and without SNI are sent live to a proxy with config A; its
//! handshake log is replayed through B (A with `strict_sni = true`) and C
//! (A with an RSA-only certificate); then B and C run live with the same
//! hellos, and every kind's predicted outcome must be what the live proxy
//! did: served (a ServerHello, or a completed handshake) exactly when
//! predicted `ok`, and otherwise the very reason logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use snigate::observe::hello_details::HelloId;
use snigate::tls::hello::{parse_client_hello, ClientHelloInfo, Parsed};
use snigate::tls::logged_hello::{details, replayed};
use snigate::tools::against::{against, Against, Change};
use snigate::tools::explain::load_config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const HOST: &str = "portal.contoso.test";
const WAIT: Duration = Duration::from_secs(10);
const WIN7: &str = "Windows 7 SChannel (IE 11, WebDAV mini-redirector, Office 2010)";

/// A kind as the test sent it: its hello id and SNI.
type KindId = (String, Option<String>);

/// The configurations: A (ECDSA fallback, an RSA certificate too), B (A,
/// strict) and C (RSA only). `log` names the handshake log file.
fn config(dir: &Path, pki: &Pki, which: char) -> PathBuf {
    config_logged(dir, pki, which, true)
}

/// As [`config`], with the admin endpoint on port 0, and with or without
/// the handshake log (`log`; the file is named after `which` either way).
fn config_logged(dir: &Path, pki: &Pki, which: char, log: bool) -> PathBuf {
    let ecdsa = pki.leaf(&format!("ecdsa-{which}"), &[HOST], Key::Ecdsa);
    let rsa = pki.leaf(&format!("rsa-{which}"), &[HOST], Key::Rsa);
    let (certs, fallback, strict) = match which {
        'A' => (
            cert_toml("ecdsa", &ecdsa) + &cert_toml("rsa", &rsa),
            "ecdsa",
            false,
        ),
        'B' => (
            cert_toml("ecdsa", &ecdsa) + &cert_toml("rsa", &rsa),
            "ecdsa",
            true,
        ),
        _ => (cert_toml("rsa", &rsa), "rsa", false),
    };
    let log_setting = if log {
        format!("handshake_log = \"handshakes-{which}.jsonl\"")
    } else {
        String::new()
    };
    let text = format!(
        r#"[log]
{log_setting}
[admin]
bind = "127.0.0.1:0"
[timeouts]
handshake = "5s"
{certs}
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "{fallback}"
strict_sni = {strict}
default_upstream = "portal"
[[upstream]]
name = "portal"
servers = ["127.0.0.1:9"]
"#
    );
    let path = dir.join(format!(
        "{which}{}.toml",
        if log { "" } else { "-unlogged" }
    ));
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(path: &Path) -> snigate::server::Proxy {
    let text = std::fs::read_to_string(path).unwrap();
    let settings = snigate::config::Settings::parse(path, &text).expect("config");
    snigate::server::Proxy::start(settings)
        .await
        .expect("start")
}

fn info_of(hello: &[u8]) -> ClientHelloInfo {
    match parse_client_hello(hello) {
        Ok(Parsed::Complete(info, _)) => info,
        other => panic!("not a ClientHello: {other:?}"),
    }
}

fn kind_of(hello: &[u8]) -> KindId {
    let info = info_of(hello);
    (details(&info).id().as_hex(), info.sni)
}

/// Sends `hello` raw; `true` when the answer is a ServerHello.
async fn served_raw(addr: SocketAddr, hello: &[u8]) -> bool {
    let answer = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(hello).await.expect("write hello");
        let mut head = [0u8; 6];
        match s.read_exact(&mut head).await {
            // A handshake record whose first message is a ServerHello.
            Ok(_) => head[0] == 0x16 && head[5] == 2,
            Err(_) => false,
        }
    };
    tokio::time::timeout(WAIT, answer)
        .await
        .expect("an answer to a replayed hello")
}

/// The rustls clients: with SNI and without.
fn rustls_clients() -> [ClientOpts; 2] {
    [ClientOpts::sni(HOST), ClientOpts::no_sni(HOST)]
}

/// Sends every capture raw and both rustls clients; what each kind got
/// (served or not), and how many handshakes were sent.
async fn send_all(addr: SocketAddr, pki: &Pki) -> (HashMap<KindId, bool>, usize) {
    let mut got = HashMap::new();
    for file in CAPTURES {
        let hello = capture(file);
        got.insert(kind_of(&hello), served_raw(addr, &hello).await);
    }
    for opts in rustls_clients() {
        let kind = kind_of(&client_hello_bytes(&pki.ca_der, &opts));
        let done = tokio::time::timeout(WAIT, tls_connect(addr, &pki.ca_der, &opts))
            .await
            .expect("rustls handshake within the wait");
        got.insert(kind, done.is_ok());
    }
    (got, CAPTURES.len() + 2)
}

/// Runs `config` live with every hello: what each kind got, and the log.
async fn live(config: &Path, pki: &Pki) -> (HashMap<KindId, bool>, Vec<Value>) {
    let proxy = start(config).await;
    let addr = proxy.addr("main").expect("addr");
    let (got, sent) = send_all(addr, pki).await;
    let log = config.with_file_name(format!(
        "handshakes-{}.jsonl",
        config.file_stem().unwrap().to_string_lossy()
    ));
    let lines = wait_for_json_lines(&log, sent, WAIT).await;
    assert_eq!(lines.len(), sent, "one line per handshake: {lines:#?}");
    proxy.shutdown().await;
    (got, lines)
}

/// Every kind of listener "main" in `answer`, by (hello id, SNI).
fn predicted(answer: &Against) -> HashMap<KindId, &snigate::tools::against::KindReplay> {
    let main = answer
        .listeners
        .iter()
        .find(|l| l.listener == "main")
        .expect("listener main replayed");
    main.kinds
        .iter()
        .map(|k| ((k.hello_id.clone().expect("hello_id"), k.sni.clone()), k))
        .collect()
}

/// Holds the prediction of every kind against what the live run did.
fn assert_live_matches(answer: &Against, got: &HashMap<KindId, bool>, lines: &[Value]) {
    let kinds = predicted(answer);
    assert_eq!(
        kinds.len(),
        got.len(),
        "one kind per hello sent: {answer:#?}"
    );
    for (id, served) in got {
        let kind = kinds
            .get(id)
            .unwrap_or_else(|| panic!("{id:?} not predicted"));
        let new = kind
            .new
            .as_ref()
            .unwrap_or_else(|| panic!("{id:?} not replayed"));
        let line = lines
            .iter()
            .find(|l| l["hello_id"] == id.0.as_str() && l["sni"].as_str() == id.1.as_deref())
            .unwrap_or_else(|| panic!("{id:?} not in the live log"));
        assert_eq!(
            new.outcome.as_str() == "ok",
            *served,
            "{id:?}: predicted {new:?}, live {line}"
        );
        if *served {
            assert_eq!(
                line["certificate"].as_str(),
                new.certificate.as_deref(),
                "{line}"
            );
        } else {
            assert_eq!(line["outcome"], "failed", "{line}");
            assert_eq!(line["reason"].as_str(), new.reason.as_deref(), "{line}");
        }
    }
}

fn change_of(answer: &Against, change: Change) -> Option<&snigate::tools::against::ChangeSummary> {
    answer.listeners[0]
        .changes
        .iter()
        .find(|c| c.change == change)
}

#[tokio::test]
async fn against_predicts_what_a_live_run_of_the_new_configuration_does() {
    bounded_for(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let [a, b, c] = ['A', 'B', 'C'].map(|w| config(dir.path(), &pki, w));
        let (today, lines_a) = live(&a, &pki).await;
        assert!(today.values().any(|s| *s) && today.values().any(|s| !*s));
        // The details are written once per hello: here every hello is new.
        assert!(
            lines_a.iter().all(|l| l["hello"].is_object()),
            "{lines_a:#?}"
        );
        let log_a = vec![dir.path().join("handshakes-A.jsonl")];

        let under_b = against(&load_config(&b).unwrap(), &b, &log_a).unwrap();
        let under_c = against(&load_config(&c).unwrap(), &c, &log_a).unwrap();
        let refused = change_of(&under_b, Change::Refused).expect("strict refuses some kinds");
        assert!(refused.kinds >= 3, "{refused:?}");
        let fails = change_of(&under_c, Change::Fails).expect("RSA-only fails some kinds");
        assert!(
            fails.clients.iter().any(|c| c.starts_with(WIN7)),
            "{fails:?}"
        );

        let (got_b, lines_b) = live(&b, &pki).await;
        assert_live_matches(&under_b, &got_b, &lines_b);
        let (got_c, lines_c) = live(&c, &pki).await;
        assert_live_matches(&under_c, &got_c, &lines_c);
        // What changes is what changed: some kinds served under A are not
        // under B, nor under C.
        assert!(today.iter().any(|(k, s)| *s && !got_b[k]));
        assert!(today.iter().any(|(k, s)| *s && !got_c[k]));
    })
    .await;
}

/// Runs `config` live with every hello and saves what `GET /report/hellos`
/// then serves as `save`.
async fn live_saved(config: &Path, pki: &Pki, save: &Path) {
    let proxy = start(config).await;
    let addr = proxy.addr("main").expect("addr");
    let (_, sent) = send_all(addr, pki).await;
    // Every handshake is counted before its connection is answered or
    // closed; poll only for the clients' last connections to be done.
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let reply = admin_get(&proxy, "/report/hellos").await;
        assert_eq!(reply.status, 200);
        let doc: Value = serde_json::from_slice(&reply.body).expect("JSON");
        let counted = doc["listeners"]["main"]["handshakes"].as_u64();
        if counted == Some(sent as u64) || tokio::time::Instant::now() >= deadline {
            assert_eq!(counted, Some(sent as u64), "{doc:#}");
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    std::fs::write(save, &body).unwrap();
    proxy.shutdown().await;
}

/// The answer without the names of what was read (logs or documents).
fn replayed_part(answer: &Against) -> Value {
    serde_json::to_value(&answer.listeners).unwrap()
}

#[tokio::test]
async fn a_saved_report_replays_as_the_handshake_log_does() {
    bounded_for(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let [a, b, c] = ['A', 'B', 'C'].map(|w| config(dir.path(), &pki, w));
        let saved = dir.path().join("hellos-A.json");
        live_saved(&a, &pki, &saved).await;
        let log_a = vec![dir.path().join("handshakes-A.jsonl")];
        // And once more without any handshake log: the report alone.
        let unlogged = config_logged(dir.path(), &pki, 'A', false);
        let saved_unlogged = dir.path().join("hellos-A-unlogged.json");
        live_saved(&unlogged, &pki, &saved_unlogged).await;

        for new in [&b, &c] {
            let state = load_config(new).unwrap();
            let from_log = against(&state, new, &log_a).unwrap();
            let from_saved = against(&state, new, std::slice::from_ref(&saved)).unwrap();
            let from_unlogged =
                against(&state, new, std::slice::from_ref(&saved_unlogged)).unwrap();
            assert!(from_log.listeners[0].changes.iter().any(|c| c.kinds > 0));
            assert_eq!(from_log.listeners[0].not_replayed, 0);
            assert_eq!(replayed_part(&from_saved), replayed_part(&from_log));
            assert_eq!(replayed_part(&from_unlogged), replayed_part(&from_log));
        }

        // The binary reads a saved document as it reads a log.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"))
            .args(["report", "--against"])
            .arg(&b)
            .arg(&saved_unlogged)
            .output()
            .expect("run snigate");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("would be refused under NEW:"), "{text}");
        // A document cut short is an error, not an empty answer.
        let cut = dir.path().join("cut.json");
        let whole = std::fs::read(&saved).unwrap();
        std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
        let err = against(&load_config(&b).unwrap(), &b, &[cut]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a document of GET /report/hellos"),
            "{err:#}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_binary_prints_the_same_table_as_json_and_as_text() {
    bounded_for(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let [a, c] = ['A', 'C'].map(|w| config(dir.path(), &pki, w));
        live(&a, &pki).await;
        let log_a = dir.path().join("handshakes-A.jsonl");
        let run = |json: bool| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"));
            cmd.args(["report", "--against"]).arg(&c).arg(&log_a);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.output().expect("run snigate");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let library = serde_json::to_value(
            against(&load_config(&c).unwrap(), &c, std::slice::from_ref(&log_a)).unwrap(),
        )
        .unwrap();
        let printed: Value = serde_json::from_str(&run(true)).unwrap();
        assert_eq!(printed, library);
        let text = run(false);
        assert!(
            text.contains("listener \"main\" (https under NEW)"),
            "{text}"
        );
        assert!(text.contains("would fail under NEW:"), "{text}");
        assert!(text.contains(WIN7), "{text}");

        // A missing configuration or log: a clear error, exit 1.
        for (new, log) in [
            (dir.path().join("nope.toml"), log_a.clone()),
            (c.clone(), dir.path().join("nope.jsonl")),
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"))
                .args(["report", "--against"])
                .arg(&new)
                .arg(&log)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("nope"), "{err}");
        }
    })
    .await;
}

#[test]
fn kinds_without_details_are_listed_as_not_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let c = config(dir.path(), &pki, 'C');
    let log = dir.path().join("old.jsonl");
    // A line of an older snigate (no hello_id), and one whose details were
    // in a rotated file.
    let lines = [
        r#"{"event":"tls_handshake","listener":"main","peer":"192.0.2.1:1","sni":null,"ja4":"t12i240600_9295eb73ea51_71440d09e7ee","outcome":"ok"}"#,
        r#"{"event":"tls_handshake","listener":"main","peer":"192.0.2.2:1","sni":"a.test","ja4":"t12d240700_9295eb73ea51_71440d09e7ee","outcome":"ok","hello_id":"0123456789abcdef"}"#,
        r#"{"event":"tls_handshake","listener":"gone","peer":"192.0.2.3:1","sni":null,"ja4":"t12i240600_9295eb73ea51_71440d09e7ee","outcome":"ok","hello_id":"0123456789abcdef"}"#,
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let answer = against(&load_config(&c).unwrap(), &c, &[log]).unwrap();
    let main = answer
        .listeners
        .iter()
        .find(|l| l.listener == "main")
        .unwrap();
    assert_eq!(main.not_replayed, 2);
    for kind in &main.kinds {
        assert_eq!(
            kind.not_replayed.as_deref(),
            Some("not replayable: hello details not in these logs")
        );
        assert_eq!(kind.client.as_deref(), Some(WIN7));
    }
    let gone = answer
        .listeners
        .iter()
        .find(|l| l.listener == "gone")
        .unwrap();
    assert_eq!(gone.mode_under_new, None);
    assert!(gone.kinds[0]
        .not_replayed
        .as_deref()
        .unwrap()
        .contains("no listener named \"gone\""));
}

/// hello -> logged details -> hello gives the same decision and the same
/// prediction, for every capture and the rustls hellos, on A, B and C.
#[test]
fn the_logged_details_decide_as_the_hello_does() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut hellos: Vec<Vec<u8>> = CAPTURES.iter().map(|f| capture(f)).collect();
    hellos.extend(
        rustls_clients()
            .iter()
            .map(|o| client_hello_bytes(&pki.ca_der, o)),
    );
    for which in ['A', 'B', 'C'] {
        let state = load_config(&config(dir.path(), &pki, which)).unwrap();
        let l = &state.listeners[0];
        for bytes in &hellos {
            let hello = info_of(bytes);
            let logged = details(&hello);
            // Through the log's JSON too.
            let json = serde_json::to_string(&logged).unwrap();
            let read = serde_json::from_str(&json).unwrap();
            assert_eq!(logged, read);
            let back = replayed(&read, hello.sni.as_deref());
            let decide =
                |h: &ClientHelloInfo| snigate::tls::decide::decide(l.tls(), h, &state.certificates);
            let predict = |h: &ClientHelloInfo| {
                snigate::tls::predict::predict(l.tls(), h, &state.certificates)
            };
            assert_eq!(decide(&back), decide(&hello), "{which}: {hello:?}");
            assert_eq!(predict(&back), predict(&hello), "{which}: {hello:?}");
            assert_eq!(HelloId::parse(&logged.id().as_hex()), Some(logged.id()));
        }
    }
}

/// SNI and listener names come from clients and logs: printed as text,
/// their control characters are escaped, so a client cannot drive the
/// operator's terminal (clear it, recolour it, set its title).
#[test]
fn hostile_names_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let c = config(dir.path(), &pki, 'C');
    let log = dir.path().join("hostile.jsonl");
    let line = r#"{"event":"tls_handshake","listener":"main\u001b]0;owned\u0007","peer":"192.0.2.1:1","sni":"a\u001b[2Jb.test","ja4":"t12i240600_9295eb73ea51_71440d09e7ee","outcome":"ok"}"#;
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let text = snigate::tools::against::render_text(
        &against(&load_config(&c).unwrap(), &c, &[log]).unwrap(),
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("a\\u{1b}[2Jb.test"), "{text}");
    assert!(text.contains("main\\u{1b}]0;owned\\u{7}"), "{text}");
}
