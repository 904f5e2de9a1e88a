//! `snigate explain`: the built binary on the captures in tests/data/hellos, against
//! configurations written to a temporary folder (certificates from `gen_certs`).
//! explain binds nothing and writes nothing; every run is bounded in time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use snigate::tools::gen_certs::{generate, KeyAlgorithm};

/// Upper bound for one `snigate explain` run.
const LIMIT: Duration = Duration::from_secs(30);

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hellos")
        .join(name)
}

/// Runs `snigate explain ARGS` in `cwd`, killed (and the test failed) after LIMIT.
fn explain(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snigate"))
        .arg("explain")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snigate");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("snigate explain {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(o),
        err(o)
    );
    text(o)
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(o)))
}

fn toml_path(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// A configuration with one listener of each kind, all on the fallback certificate
/// (key type `key`) for portal.contoso.test:
/// - `main`: https, fallback certificate;
/// - `strict`: https, strict_sni;
/// - `pt`: passthrough, dev.ssllabs.com to upstream `ssllabs`, the rest to `legacy`;
/// - `plain`: http (explain skips it).
fn config(dir: &Path, key: KeyAlgorithm) -> PathBuf {
    let set = generate(
        &dir.join("certs"),
        &["portal.contoso.test".to_string()],
        key,
    )
    .expect("certificates");
    let text = format!(
        r#"
[log]
handshake_log = "logs/handshakes.jsonl"
access_log = "logs/access.jsonl"

[admin]
bind = "127.0.0.1:1"

[[certificate]]
name = "farm"
chain = {chain}
key = {key}

[[listener]]
name = "main"
bind = ["127.0.0.1:18443"]
fallback_certificate = "farm"
default_upstream = "portal"

[[listener]]
name = "strict"
bind = ["127.0.0.1:18444"]
fallback_certificate = "farm"
strict_sni = true
default_upstream = "portal"

[[listener]]
name = "pt"
bind = ["127.0.0.1:18445"]
mode = "passthrough"
default_upstream = "legacy"

[[listener]]
name = "iis"
bind = ["127.0.0.1:18446"]
fallback_certificate = "farm"
default_upstream = "portal"
legacy_upstream = "legacy"

[[listener]]
name = "plain"
bind = ["127.0.0.1:18080"]
mode = "http"
default_upstream = "portal"

[[route]]
hosts = ["dev.ssllabs.com"]
listeners = ["pt"]
upstream = "ssllabs"

[[upstream]]
name = "portal"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "legacy"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "ssllabs"
servers = ["127.0.0.1:9"]
"#,
        chain = toml_path(&set.fallback.0),
        key = toml_path(&set.fallback.1),
    );
    let path = dir.join("snigate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn listener<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["listener"] == name)
        .unwrap_or_else(|| panic!("no listener {name} in {doc:#}"))
}

fn explain_json(dir: &Path, config: &Path, hello: &str) -> Value {
    let c = config.display().to_string();
    let h = capture(hello).display().to_string();
    json(&explain(dir, &[&h, "-c", &c, "--json"]))
}

#[test]
fn windows7_ie11_against_an_rsa_fallback_needs_ecdsa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Rsa);
    let doc = explain_json(dir.path(), &cfg, "win7_ie11_schannel_tls12.hex");
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "failed", "{main:#}");
    assert_eq!(main["certificate"], "farm");
    assert_eq!(main["certificate_key"], "rsa");
    assert_eq!(
        main["fallback"], true,
        "dev.ssllabs.com matches no certificate"
    );
    assert_eq!(main["reason"], "no cipher suite in common");
    let hint = main["hint"].as_str().expect("hint");
    assert!(hint.contains("ECDSA"), "{hint}");
    // The text form says the same.
    let c = cfg.display().to_string();
    let h = capture("win7_ie11_schannel_tls12.hex")
        .display()
        .to_string();
    let out = ok(&explain(dir.path(), &[&h, "-c", &c]));
    assert!(out.contains("failed: no cipher suite in common"), "{out}");
    assert!(out.contains("ECDSA certificate"), "{out}");
    // Nothing was written next to the configuration: no logs.
    assert!(
        !dir.path().join("logs").exists(),
        "explain must not open the logs"
    );
}

#[test]
fn windows7_ie11_against_an_ecdsa_fallback_gets_tls12_ecdhe_ecdsa_gcm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    for hello in [
        "win7_ie11_schannel_tls12.hex",
        "win7_ie11_schannel_tls12_SNI-REMOVED.synthetic.hex",
    ] {
        let doc = explain_json(dir.path(), &cfg, hello);
        let main = listener(&doc, "main");
        assert_eq!(main["outcome"], "ok", "{hello}: {main:#}");
        assert_eq!(main["version"], "1.2", "{hello}");
        // SOURCES.md's table has AES_256 for a rustls server that follows the
        // client's order; snigate's server prefers AES-128-GCM (src/tls.rs), which is
        // what the running proxy answers too (real_hellos: 0xc02b).
        assert_eq!(
            main["suite"], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "{hello}: {main:#}"
        );
        assert!(
            main["reason"].is_null() && main["hint"].is_null(),
            "{main:#}"
        );
    }
}

#[test]
fn windows10_ie11_gets_tls12_with_either_key() {
    for (key, suite) in [
        (KeyAlgorithm::Rsa, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        (
            KeyAlgorithm::Ecdsa,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), key);
        let doc = explain_json(dir.path(), &cfg, "win10_ie11_schannel_tls12.hex");
        let main = listener(&doc, "main");
        assert_eq!(main["outcome"], "ok", "{main:#}");
        assert_eq!(main["version"], "1.2");
        assert_eq!(main["suite"], suite);
        // It offers h2 and http/1.1; the listener's default ALPN list has h2 first.
        assert_eq!(main["alpn"], "h2", "{main:#}");
    }
}

#[test]
fn xp_ie8_fails_with_a_tls10_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Rsa);
    let doc = explain_json(dir.path(), &cfg, "xp_ie8_schannel_tls10_nosni.hex");
    assert!(doc["sni"].is_null());
    assert_eq!(doc["versions"], serde_json::json!(["1.0"]));
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "failed", "{main:#}");
    assert_eq!(main["fallback"], true);
    assert!(
        main["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{main:#}"
    );
    let hint = main["hint"].as_str().expect("hint");
    assert!(hint.contains("TLS 1.0"), "{hint}");
    // No SNI on a strict listener: refused before any handshake.
    let strict = listener(&doc, "strict");
    assert_eq!(strict["outcome"], "refused", "{strict:#}");
    assert!(strict["certificate"].is_null());
    assert!(
        strict["reason"].as_str().unwrap().contains("no SNI"),
        "{strict:#}"
    );
    // Passthrough: no SNI goes to the default upstream.
    let pt = listener(&doc, "pt");
    assert_eq!(pt["outcome"], "passthrough");
    assert_eq!(pt["upstream"], "legacy");
    assert_eq!(pt["fallback"], true);
}

#[test]
fn java6_sslv2_hello_gets_the_sslv2_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    let doc = explain_json(dir.path(), &cfg, "java6u45_sslv2hello_nosni.hex");
    assert_eq!(doc["format"], "sslv2");
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "failed", "{main:#}");
    assert!(
        main["certificate"].is_null(),
        "refused before a certificate is chosen"
    );
    assert!(
        main["reason"]
            .as_str()
            .unwrap()
            .contains("SSLv2-compatible"),
        "{main:#}"
    );
    assert_eq!(main["hint"], snigate::tls::diagnose::SSLV2);
    // Passthrough can still route it (as a hello without SNI).
    let pt = listener(&doc, "pt");
    assert_eq!(pt["outcome"], "passthrough", "{pt:#}");
    assert_eq!(pt["upstream"], "legacy");
}

#[test]
fn sni_routes_passthrough_and_strict_refuses_unknown_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    let doc = explain_json(dir.path(), &cfg, "win10_ie11_schannel_tls12.hex");
    assert_eq!(doc["sni"], "dev.ssllabs.com");
    let pt = listener(&doc, "pt");
    assert_eq!(pt["outcome"], "passthrough");
    assert_eq!(pt["upstream"], "ssllabs");
    assert_eq!(pt["fallback"], false);
    let strict = listener(&doc, "strict");
    assert_eq!(strict["outcome"], "refused");
    assert_eq!(
        strict["reason"],
        "no certificate for SNI \"dev.ssllabs.com\" and the listener has strict_sni = true"
    );
    assert!(strict["hint"].as_str().unwrap().contains("[[certificate]]"));
    // HTTP listeners are not TLS: not listed.
    assert!(doc["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["listener"] != "plain"));
}

#[test]
fn json_has_the_decode_and_the_fingerprints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    let doc = explain_json(dir.path(), &cfg, "win7_ie11_schannel_tls12.hex");
    assert_eq!(doc["sni"], "dev.ssllabs.com");
    assert_eq!(doc["versions"], serde_json::json!(["1.2", "1.1", "1.0"]));
    let suites = doc["suites"].as_array().expect("suites");
    assert_eq!(suites.len(), 24);
    assert_eq!(suites[0]["id"], "0xc028");
    assert_eq!(suites[0]["name"], "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384");
    assert!(suites
        .iter()
        .any(|s| s["id"] == "0x000a" && s["name"] == "TLS_RSA_WITH_3DES_EDE_CBC_SHA"));
    assert_eq!(doc["alpn"], serde_json::json!([]));
    assert_eq!(doc["ja3"], "98eaec8c8ef8baab245d0b65f788be91");
    assert_eq!(doc["ja4"], "t12d240700_9295eb73ea51_71440d09e7ee");
    assert_eq!(doc["config"], cfg.display().to_string());
    for l in doc["listeners"].as_array().unwrap() {
        for field in [
            "listener",
            "certificate",
            "fallback",
            "outcome",
            "version",
            "suite",
            "reason",
            "hint",
            "upstream",
            "routes",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l:#}");
        }
    }
    let sigalgs = doc["signature_algorithms"].as_array().unwrap();
    assert_eq!(sigalgs[0]["name"], "rsa_pkcs1_sha512");
    assert_eq!(doc["groups"][0]["name"], "secp256r1");
}

#[test]
fn without_a_configuration_it_decodes_only() {
    // An empty working folder: no config/snigate.toml.
    let dir = tempfile::tempdir().expect("tempdir");
    let h = capture("android237_tls10_nosni.hex").display().to_string();
    let out = ok(&explain(dir.path(), &[&h]));
    assert!(out.contains("No configuration used"), "{out}");
    assert!(
        out.contains("t10i160000_9ee8ab185e04_000000000000"),
        "{out}"
    );
    assert!(out.contains("TLS_RSA_WITH_RC4_128_MD5"), "{out}");
    assert!(!out.contains("listener \""), "{out}");
    let doc = json(&explain(dir.path(), &[&h, "--json"]));
    assert!(doc["config"].is_null());
    assert_eq!(doc["listeners"], serde_json::json!([]));
    assert_eq!(doc["ja3"], "b677934e592ece9e09805bf36cd68d8a");
}

#[test]
fn default_configuration_is_used_when_present() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    std::fs::create_dir(dir.path().join("config")).unwrap();
    // Certificate paths in the generated configuration are absolute.
    std::fs::copy(&cfg, dir.path().join("config/snigate.toml")).unwrap();
    let h = capture("win7_ie11_schannel_tls12.hex")
        .display()
        .to_string();
    let doc = json(&explain(dir.path(), &[&h, "--json"]));
    assert_eq!(doc["config"], "config/snigate.toml");
    assert_eq!(listener(&doc, "main")["outcome"], "ok");
}

#[test]
fn input_forms_hex_with_whitespace_binary_and_bare_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hex = std::fs::read_to_string(capture("win10_ie11_schannel_tls12.hex")).unwrap();
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    // Wireshark-style: spaced pairs, 16 per line, upper case.
    let spaced: String = bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("spaced.txt"), spaced).unwrap();
    std::fs::write(dir.path().join("hello.bin"), &bytes).unwrap();
    // The handshake message without its 5-byte record header (one record here).
    std::fs::write(dir.path().join("message.bin"), &bytes[5..]).unwrap();
    for file in ["spaced.txt", "hello.bin", "message.bin"] {
        let doc = json(&explain(dir.path(), &[file, "--json"]));
        assert_eq!(doc["ja4"], "t12d2810h2_bbd4f008d9b2_b5d02e698537", "{file}");
        assert_eq!(doc["bytes"], bytes.len(), "{file}");
        assert_eq!(doc["wrapped"], file == "message.bin", "{file}");
    }
}

#[test]
fn bad_input_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("garbage.txt"), "this is not a ClientHello\n").unwrap();
    std::fs::write(d.join("garbage.bin"), [0x00u8, 0x01, 0x02, 0xff, 0x10]).unwrap();
    std::fs::write(d.join("http.txt"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::fs::write(d.join("odd.hex"), "16030").unwrap();
    std::fs::write(d.join("empty.hex"), "  \n").unwrap();
    let full = std::fs::read_to_string(capture("win7_ie11_schannel_tls12.hex")).unwrap();
    std::fs::write(d.join("truncated.hex"), &full.trim()[..100]).unwrap();
    let cases: [(&str, &[&str], &str); 8] = [
        ("garbage.txt", &[], "not a TLS ClientHello"),
        ("garbage.bin", &[], "not a TLS ClientHello"),
        ("http.txt", &[], "plain HTTP"),
        ("odd.hex", &[], "odd number of hex digits"),
        ("empty.hex", &[], "empty"),
        ("truncated.hex", &[], "incomplete ClientHello"),
        ("missing.hex", &[], "cannot read"),
        (
            "garbage.txt",
            &["-c", "nowhere.toml"],
            "not a TLS ClientHello",
        ),
    ];
    for (file, extra, want) in cases {
        let mut args = vec![file];
        args.extend_from_slice(extra);
        let o = explain(d, &args);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", err(&o));
        let e = err(&o);
        assert!(e.contains(want), "{file}: want {want:?} in {e:?}");
        assert!(
            e.contains(file),
            "{file}: the message names the file: {e:?}"
        );
        assert!(o.stdout.is_empty(), "{file}: nothing on stdout");
    }
    // A good hello with a configuration that does not exist.
    let h = capture("win7_ie11_schannel_tls12.hex")
        .display()
        .to_string();
    let o = explain(d, &[&h, "-c", "nowhere.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("nowhere.toml"), "{}", err(&o));
}

/// A TLS 1.3 hello whose only key share is for x448, which snigate does not use,
/// while its supported_groups also offer x25519: rustls answers with a
/// HelloRetryRequest, which explain reports as ok with a note.
#[test]
fn hello_retry_request_is_reported() {
    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        e.extend_from_slice(data);
        e
    }
    let mut exts = Vec::new();
    exts.extend(ext(0x002b, &[2, 0x03, 0x04]));
    exts.extend(ext(0x000a, &[0, 4, 0x00, 0x1e, 0x00, 0x1d]));
    exts.extend(ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]));
    let mut share = vec![0, 60, 0x00, 0x1e, 0, 56];
    share.extend_from_slice(&[9u8; 56]);
    exts.extend(ext(0x0033, &share));
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(32);
    body.extend_from_slice(&[8u8; 32]);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1u8, 0];
    msg.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    msg.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(msg.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&msg);

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Ecdsa);
    std::fs::write(dir.path().join("x448.bin"), &record).unwrap();
    let c = cfg.display().to_string();
    let doc = json(&explain(dir.path(), &["x448.bin", "-c", &c, "--json"]));
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "ok", "{main:#}");
    assert_eq!(main["version"], "1.3");
    assert_eq!(main["suite"], "TLS13_AES_128_GCM_SHA256");
    assert!(
        main["note"]
            .as_str()
            .unwrap_or("")
            .contains("HelloRetryRequest"),
        "{main:#}"
    );
    assert_eq!(doc["groups"][0]["name"], "X448");
}

#[test]
fn a_listener_with_legacy_upstream_forwards_what_rustls_cannot_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), KeyAlgorithm::Rsa);
    for (hello, expect) in [
        ("win7_ie11_schannel_tls12.hex", "legacy_passthrough"),
        ("xp_ie8_schannel_tls10_nosni.hex", "legacy_passthrough"),
        ("java6u45_sslv2hello_nosni.hex", "legacy_passthrough"),
        ("win10_ie11_schannel_tls12.hex", "ok"),
    ] {
        let doc = explain_json(dir.path(), &cfg, hello);
        let iis = listener(&doc, "iis");
        assert_eq!(iis["outcome"], expect, "{hello}: {iis:#}");
        if expect == "legacy_passthrough" {
            assert_eq!(iis["upstream"], "legacy", "{hello}");
            assert!(
                iis["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{iis:#}"
            );
            // The listener without legacy_upstream still fails it.
            assert_eq!(listener(&doc, "main")["outcome"], "failed", "{hello}");
        }
    }
}

/// Exchange on one host name, by virtual directory: `/owa` and `/ecp` to
/// one upstream, ActiveSync to another, the rest of the host to a third
/// (on listener `main` only), and a wildcard route for `/rpc` that the exact
/// host's routes hide. `main` has a default upstream, `other` none.
fn path_routes_config(dir: &Path) -> PathBuf {
    let set = generate(
        &dir.join("certs"),
        &["mail.contoso.test".to_string()],
        KeyAlgorithm::Ecdsa,
    )
    .expect("certificates");
    let (_, chain, key) = &set.leaves[0];
    let text = format!(
        r#"
[[certificate]]
name = "mail"
chain = {chain}
key = {key}

[[listener]]
name = "main"
bind = ["127.0.0.1:18443"]
fallback_certificate = "mail"
default_upstream = "web"

[[listener]]
name = "other"
bind = ["127.0.0.1:18444"]
fallback_certificate = "mail"

[[route]]
hosts = ["mail.contoso.test"]
paths = ["/owa", "/ecp"]
upstream = "exchange-owa"

[[route]]
name = "eas"
hosts = ["mail.contoso.test"]
paths = ["/Microsoft-Server-ActiveSync"]
upstream = "exchange-eas"

[[route]]
hosts = ["mail.contoso.test"]
listeners = ["main"]
upstream = "exchange"

[[route]]
hosts = ["*.contoso.test"]
paths = ["/rpc"]
upstream = "rpc"

[[upstream]]
name = "web"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "exchange"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "exchange-owa"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "exchange-eas"
servers = ["127.0.0.1:9"]

[[upstream]]
name = "rpc"
servers = ["127.0.0.1:9"]
"#,
        chain = toml_path(chain),
        key = toml_path(key),
    );
    let path = dir.join("snigate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A TLS 1.2 hello offering `suites` (ECDHE with P-256), with `sni`, written
/// to `dir/name`.
fn hello_file(dir: &Path, name: &str, suites: &[u16], sni: Option<&str>) -> String {
    let hello = crate::common::client_hello(0x0303, suites, sni, Some(&[0x0403, 0x0804]));
    std::fs::write(dir.join(name), hello).expect("write hello");
    name.to_string()
}

const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
const ECDHE_RSA_AES128_GCM: u16 = 0xc02f;

#[test]
fn path_routes_of_the_sni_host_are_listed_per_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = path_routes_config(dir.path());
    let c = cfg.display().to_string();
    let mail = hello_file(
        dir.path(),
        "mail.bin",
        &[ECDHE_ECDSA_AES128_GCM],
        Some("mail.contoso.test"),
    );
    let doc = json(&explain(dir.path(), &[&mail, "-c", &c, "--json"]));
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "ok", "{main:#}");
    assert_eq!(
        main["routes"],
        serde_json::json!([
            {"name": "mail.contoso.test/owa", "paths": ["/owa", "/ecp"], "upstream": "exchange-owa"},
            {"name": "eas", "paths": ["/Microsoft-Server-ActiveSync"], "upstream": "exchange-eas"},
            {"name": "mail.contoso.test", "paths": [], "upstream": "exchange"},
        ]),
        "the wildcard's /rpc is hidden by the exact host: {main:#}"
    );
    // As in the handshake log: an https listener's `upstream` stays null.
    assert!(main["upstream"].is_null(), "{main:#}");
    assert!(main.get("path").is_none(), "only with --path: {main:#}");
    // On `other` the catch-all route does not apply and there is no
    // default upstream: other paths get 404.
    let other = listener(&doc, "other");
    let routes = other["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 3, "{other:#}");
    assert_eq!(
        routes[2],
        serde_json::json!({"name": null, "paths": [], "upstream": null})
    );

    let out = ok(&explain(dir.path(), &[&mail, "-c", &c]));
    for line in [
        "  routes       requests for mail.contoso.test:",
        "                 /owa, /ecp -> upstream exchange-owa (route mail.contoso.test/owa)",
        "                 /Microsoft-Server-ActiveSync -> upstream exchange-eas (route eas)",
        "                 other paths -> upstream exchange (route mail.contoso.test)",
        "                 other paths -> 404 Not Found (no route, no default_upstream)",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in:\n{out}");
    }
    assert!(!out.contains("upstream rpc"), "{out}");

    // A host below the wildcard: its /rpc, and the default upstream for
    // the rest (main) or 404 (other).
    let portal = hello_file(
        dir.path(),
        "portal.bin",
        &[ECDHE_ECDSA_AES128_GCM],
        Some("portal.contoso.test"),
    );
    let doc = json(&explain(dir.path(), &[&portal, "-c", &c, "--json"]));
    assert_eq!(
        listener(&doc, "main")["routes"],
        serde_json::json!([
            {"name": "*.contoso.test/rpc", "paths": ["/rpc"], "upstream": "rpc"},
            {"name": null, "paths": [], "upstream": "web"},
        ])
    );
    let out = ok(&explain(dir.path(), &[&portal, "-c", &c]));
    assert!(
        out.contains("other paths -> upstream web (the listener's default_upstream)"),
        "{out}"
    );
    // A host no route names: every path to the default upstream.
    let intranet = hello_file(
        dir.path(),
        "intranet.bin",
        &[ECDHE_ECDSA_AES128_GCM],
        Some("intranet.test"),
    );
    let doc = json(&explain(dir.path(), &[&intranet, "-c", &c, "--json"]));
    assert_eq!(
        listener(&doc, "main")["routes"],
        serde_json::json!([{"name": null, "paths": [], "upstream": "web"}])
    );
    let out = ok(&explain(dir.path(), &[&intranet, "-c", &c]));
    assert!(
        out.contains("every path -> upstream web (the listener's default_upstream)"),
        "{out}"
    );

    // No SNI: requests are routed by their Host, which the hello cannot tell.
    let nosni = hello_file(dir.path(), "nosni.bin", &[ECDHE_ECDSA_AES128_GCM], None);
    let doc = json(&explain(dir.path(), &[&nosni, "-c", &c, "--json"]));
    assert_eq!(listener(&doc, "main")["outcome"], "ok");
    assert_eq!(listener(&doc, "main")["routes"], serde_json::json!([]));
    let out = ok(&explain(dir.path(), &[&nosni, "-c", &c]));
    assert!(
        out.contains("routes       no SNI: each request is routed by its Host header"),
        "{out}"
    );

    // A handshake that fails carries no request: no routes.
    let rsa_only = hello_file(
        dir.path(),
        "rsa_only.bin",
        &[ECDHE_RSA_AES128_GCM],
        Some("mail.contoso.test"),
    );
    let doc = json(&explain(dir.path(), &[&rsa_only, "-c", &c, "--json"]));
    let main = listener(&doc, "main");
    assert_eq!(main["outcome"], "failed", "{main:#}");
    assert_eq!(main["routes"], serde_json::json!([]));
}

#[test]
fn path_option_names_the_route_one_request_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = path_routes_config(dir.path());
    let c = cfg.display().to_string();
    let mail = hello_file(
        dir.path(),
        "mail.bin",
        &[ECDHE_ECDSA_AES128_GCM],
        Some("mail.contoso.test"),
    );
    // (path, main's route and upstream, other's route and upstream)
    let cases = [
        // Segment boundaries, ASCII case ignored.
        (
            "/OWA/x?a=1",
            ("mail.contoso.test/owa", "exchange-owa"),
            (
                Value::from("mail.contoso.test/owa"),
                Value::from("exchange-owa"),
            ),
        ),
        (
            "/microsoft-server-activesync",
            ("eas", "exchange-eas"),
            (Value::from("eas"), Value::from("exchange-eas")),
        ),
        (
            "/owax",
            ("mail.contoso.test", "exchange"),
            (Value::Null, Value::Null),
        ),
        // The wildcard's /rpc is not tried for a host with routes of its own.
        (
            "/rpc",
            ("mail.contoso.test", "exchange"),
            (Value::Null, Value::Null),
        ),
    ];
    for (path, (route, upstream), (other_route, other_upstream)) in cases {
        let doc = json(&explain(
            dir.path(),
            &[&mail, "-c", &c, "--json", "--path", path],
        ));
        assert_eq!(
            listener(&doc, "main")["path"],
            serde_json::json!({"path": path, "route": route, "upstream": upstream}),
            "{path}"
        );
        assert_eq!(
            listener(&doc, "other")["path"],
            serde_json::json!({"path": path, "route": other_route, "upstream": other_upstream}),
            "{path}"
        );
    }
    let out = ok(&explain(dir.path(), &[&mail, "-c", &c, "--path", "/ecp/"]));
    assert!(
        out.contains("  path         /ecp/ -> upstream exchange-owa (route mail.contoso.test/owa)"),
        "{out}"
    );
    let out = ok(&explain(dir.path(), &[&mail, "-c", &c, "--path", "/x"]));
    assert!(
        out.contains("  path         /x -> 404 Not Found (no route, no default_upstream)"),
        "{out}"
    );
    // Not a path.
    let o = explain(dir.path(), &[&mail, "-c", &c, "--path", "owa"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("--path"), "{}", err(&o));
}
