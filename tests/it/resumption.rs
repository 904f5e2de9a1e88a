//! Session resumption: TLS 1.3 tickets and TLS 1.2 session ids and tickets
//! on by default; `session_ticket_keys = "FILE"` lets separate snigate
//! processes resume each other's sessions; resumed handshakes carry
//! `"resumed": true` in the handshake log; bad key files are refused with
//! the file named.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::common::*;
use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use serde_json::Value;
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const SNI: &str = "a.test";

// ---------------------------------------------------------------------------
// Clients that keep their sessions
// ---------------------------------------------------------------------------

/// A client configuration whose session store survives between
/// connections (one `Arc` reused), trusting the test CA.
fn resuming_client(pki: &Pki, tls12_only: bool, tls12: Tls12Resumption) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(client_provider(None))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(64).tls12_resumption(tls12);
    Arc::new(config)
}

/// A TCP stream that keeps a copy of every byte the client writes.
struct Recording {
    inner: TcpStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.written.lock().unwrap().extend_from_slice(&buf[..*n]);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One connection's facts, from the client's side.
struct Visit {
    resumed: bool,
    /// The leaf certificate of the session (for a resumed one: of the
    /// session it resumed).
    leaf: rustls::pki_types::CertificateDer<'static>,
    version: Option<ProtocolVersion>,
    /// The session id of the ClientHello the client sent.
    hello_session_id: Vec<u8>,
    /// The data of its SessionTicket extension, when it had one.
    hello_ticket: Option<Vec<u8>>,
}

/// Connects with `config` (SNI a.test), sends one request and reads the
/// whole answer (which also takes in TLS 1.3 tickets, sent before it).
async fn visit(addr: SocketAddr, config: &Arc<ClientConfig>) -> Visit {
    visit_as(addr, config, ServerName::try_from(SNI).unwrap(), SNI).await
}

/// As [`visit`], connecting to `name` (an IP address sends no SNI) and
/// asking for `host`.
async fn visit_as(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    host: &str,
) -> Visit {
    let written = Arc::new(Mutex::new(Vec::new()));
    let io = Recording {
        inner: TcpStream::connect(addr).await.expect("connect"),
        written: written.clone(),
    };
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, io)
        .await
        .expect("TLS handshake");
    let conn = tls.get_ref().1;
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let version = conn.protocol_version();
    let leaf = conn.peer_certificates().expect("a certificate")[0].clone();
    let mut h1 = H1::new(tls).await;
    let reply = h1.send(get(host, "/")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (hello_session_id, hello_ticket) = hello_resumption_fields(&written.lock().unwrap());
    Visit {
        resumed,
        leaf,
        version,
        hello_session_id,
        hello_ticket,
    }
}

/// The session id and SessionTicket extension data of the ClientHello at
/// the start of `bytes` (one record).
fn hello_resumption_fields(bytes: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let u16_at = |p: usize| usize::from(u16::from_be_bytes([bytes[p], bytes[p + 1]]));
    assert_eq!(bytes[0], 0x16, "a handshake record");
    assert_eq!(bytes[5], 1, "a ClientHello");
    // Record header, handshake header, legacy_version, random.
    let mut p = 5 + 4 + 2 + 32;
    let sid_len = usize::from(bytes[p]);
    let session_id = bytes[p + 1..p + 1 + sid_len].to_vec();
    p += 1 + sid_len;
    p += 2 + u16_at(p); // cipher suites
    p += 1 + usize::from(bytes[p]); // compression methods
    let end = p + 2 + u16_at(p);
    p += 2;
    let mut ticket = None;
    while p + 4 <= end {
        let (kind, len) = (u16_at(p), u16_at(p + 2));
        if kind == 0x0023 {
            ticket = Some(bytes[p + 4..p + 4 + len].to_vec());
        }
        p += 4 + len;
    }
    (session_id, ticket)
}

// ---------------------------------------------------------------------------
// One proxy in this process
// ---------------------------------------------------------------------------

/// A proxy with one https listener (certificate a.test, fallback too) in
/// front of an echo backend, logging handshakes to `handshakes.jsonl`.
async fn proxy(dir: &Path, pki: &Pki, listener_extra: &str) -> Proxy {
    let a = pki.leaf("a", &[SNI], Key::Ecdsa);
    let b = backend("B").await;
    let toml = format!(
        r#"[log]
handshake_log = "handshakes.jsonl"

{}
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "a"
default_upstream = "b"
{listener_extra}

[[upstream]]
name = "b"
servers = ["{}"]
"#,
        cert_toml("a", &a),
        b.addr
    );
    start_proxy(dir, &toml).await
}

/// Two connections with one client configuration (`client` made for the
/// proxy's CA): the first is a full handshake, the second resumes; the
/// handshake log says so on the second line and says nothing about
/// resumption on the first. Returns both visits.
async fn resumes_once(client: impl Fn(&Pki) -> Arc<ClientConfig>, version: &str) -> [Visit; 2] {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let proxy = proxy(dir.path(), &pki, "").await;
    let addr = proxy.addr("main").unwrap();
    let config = client(&pki);
    let first = visit(addr, &config).await;
    let second = visit(addr, &config).await;
    let expected = match version {
        "1.3" => ProtocolVersion::TLSv1_3,
        _ => ProtocolVersion::TLSv1_2,
    };
    assert_eq!(first.version, Some(expected));
    assert_eq!(second.version, Some(expected));
    assert!(!first.resumed, "the first handshake is a full one");
    assert!(
        second.resumed,
        "the second handshake did not resume the first"
    );

    let log = dir.path().join("handshakes.jsonl");
    let lines = wait_for_json_lines(&log, 2, TEST_TIMEOUT).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for l in &lines {
        assert_eq!(l["outcome"], "ok", "{l}");
        assert_eq!(l["version"], version, "{l}");
    }
    assert!(lines[0].get("resumed").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["resumed"], true, "{}", lines[1]);
    proxy.shutdown().await;
    [first, second]
}

#[tokio::test]
async fn tls13_resumes_with_a_ticket() {
    bounded(resumes_once(
        |pki| resuming_client(pki, false, Tls12Resumption::SessionIdOrTickets),
        "1.3",
    ))
    .await;
}

#[tokio::test]
async fn tls12_resumes_with_a_ticket() {
    let [first, second] = bounded(resumes_once(
        |pki| resuming_client(pki, true, Tls12Resumption::SessionIdOrTickets),
        "1.2",
    ))
    .await;
    // The first hello asks for a ticket (empty extension); the second
    // presents the one the server sent.
    assert_eq!(first.hello_ticket.as_deref(), Some(&[][..]));
    let ticket = second.hello_ticket.expect("the second hello has a ticket");
    assert!(!ticket.is_empty(), "the server issued no TLS 1.2 ticket");
}

#[tokio::test]
async fn tls12_resumes_with_a_session_id() {
    let [first, second] = bounded(resumes_once(
        |pki| resuming_client(pki, true, Tls12Resumption::SessionIdOnly),
        "1.2",
    ))
    .await;
    // No ticket extension at all: the server's session cache resumed it.
    assert_eq!(first.hello_ticket, None);
    assert_eq!(second.hello_ticket, None);
    assert!(
        !second.hello_session_id.is_empty(),
        "the second hello offers no session id"
    );
}

/// A key file's listener line with keys of this file, and the file
/// itself (owner-only, like a real one should be).
fn write_keys(path: &Path, seeds: &[u8]) -> String {
    let bytes: Vec<u8> = seeds
        .iter()
        .flat_map(|s| (0..80u8).map(move |i| i.wrapping_mul(37) ^ s.wrapping_mul(101)))
        .collect();
    std::fs::write(path, bytes).unwrap();
    set_mode(path, 0o600);
    format!(
        "session_ticket_keys = {}",
        toml_str(&path.display().to_string())
    )
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A listener with a key file resumes its own sessions too (TLS 1.3 and
/// TLS 1.2 tickets are then sealed by the file's key).
#[tokio::test]
async fn a_key_file_listener_resumes_tls13_and_tls12() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let keys = write_keys(&dir.path().join("ticket.key"), &[1]);
        let proxy = proxy(dir.path(), &pki, &keys).await;
        let addr = proxy.addr("main").unwrap();
        for tls12_only in [false, true] {
            let config = resuming_client(&pki, tls12_only, Tls12Resumption::SessionIdOrTickets);
            assert!(!visit(addr, &config).await.resumed);
            let second = visit(addr, &config).await;
            assert!(second.resumed, "tls12_only = {tls12_only}");
        }
        let lines =
            wait_for_json_lines(&dir.path().join("handshakes.jsonl"), 4, TEST_TIMEOUT).await;
        let resumed: Vec<bool> = lines.iter().map(|l| l["resumed"] == true).collect();
        assert_eq!(resumed, [false, true, false, true], "{lines:#?}");
        proxy.shutdown().await;
    })
    .await
}

/// A session is resumed only where the certificate it authenticated is
/// served: two listeners with different fallback certificates share the
/// process's session cache and ticket keys, and a client without SNI that
/// reaches both on one IP address (rustls, like many clients, keys its
/// sessions by that address, not by port) offers the first one's session
/// to the second, which must make a full handshake with its own
/// certificate.
#[tokio::test]
async fn a_session_is_not_resumed_with_another_certificate() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let one = pki.leaf("one", &["shared.test", "one.test"], Key::Ecdsa);
        let two = pki.leaf("two", &["shared.test", "two.test"], Key::Ecdsa);
        let b = backend("B").await;
        let mut toml = format!("{}{}", cert_toml("one", &one), cert_toml("two", &two));
        for (listener, cert) in [("l1", "one"), ("l2", "two")] {
            toml.push_str(&format!(
                "[[listener]]\nname = \"{listener}\"\nbind = [\"127.0.0.1:0\"]\n\
                 fallback_certificate = \"{cert}\"\ndefault_upstream = \"b\"\n\n"
            ));
        }
        toml.push_str(&format!(
            "[[upstream]]\nname = \"b\"\nservers = [\"{}\"]\n",
            b.addr
        ));
        let proxy = start_proxy(dir.path(), &toml).await;
        let (l1, l2) = (proxy.addr("l1").unwrap(), proxy.addr("l2").unwrap());
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        for tls12_only in [false, true] {
            for tls12 in [
                Tls12Resumption::SessionIdOrTickets,
                Tls12Resumption::SessionIdOnly,
            ] {
                if !tls12_only && tls12 == Tls12Resumption::SessionIdOnly {
                    continue;
                }
                let case = format!("tls12_only = {tls12_only}, {tls12:?}");
                let mut opts = ClientOpts::no_sni("shared.test");
                opts.tls12_only = tls12_only;
                let config = {
                    let base = reusable_client_config(&pki.ca_der, &opts);
                    let mut c = (*base).clone();
                    c.resumption = Resumption::in_memory_sessions(64).tls12_resumption(tls12);
                    Arc::new(c)
                };
                let first = visit_as(l1, &config, ip.clone(), "x").await;
                assert_eq!(pki.which(&first.leaf), "one", "{case}");
                let other = visit_as(l2, &config, ip.clone(), "x").await;
                assert!(!other.resumed, "{case}: l2 resumed l1's session");
                assert_eq!(pki.which(&other.leaf), "two", "{case}");
                // Each listener still resumes its own.
                let again = visit_as(l2, &config, ip.clone(), "x").await;
                assert!(again.resumed, "{case}: l2 did not resume its own session");
                assert_eq!(pki.which(&again.leaf), "two", "{case}");
            }
        }
        proxy.shutdown().await;
    })
    .await
}

/// Rotation: prepend a new key and reload (tickets of the old key still
/// resume), drop the old key and reload (they no longer do; the new key's
/// do). A reload with a broken key file fails, naming the file, and the
/// running keys stay.
#[tokio::test]
async fn rotated_keys_take_effect_on_reload() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let file = dir.path().join("ticket.key");
        write_keys(&file, &[1]);
        let proxy = proxy(dir.path(), &pki, "session_ticket_keys = \"ticket.key\"").await;
        let addr = proxy.addr("main").unwrap();
        let client = || resuming_client(&pki, false, Tls12Resumption::SessionIdOrTickets);
        // Both hold tickets of key 1.
        let (x, z) = (client(), client());
        assert!(!visit(addr, &x).await.resumed);
        assert!(!visit(addr, &z).await.resumed);

        write_keys(&file, &[2, 1]);
        proxy.reload().await.expect("reload with a new first key");
        // Key 1 still opens; x now holds tickets of key 2.
        assert!(visit(addr, &x).await.resumed, "old key dropped too early");

        write_keys(&file, &[2]);
        proxy.reload().await.expect("reload without the old key");
        assert!(visit(addr, &x).await.resumed, "a new key's ticket");
        assert!(!visit(addr, &z).await.resumed, "a ticket of a removed key");

        std::fs::write(&file, [0u8; 79]).unwrap();
        let errors = proxy.reload().await.expect_err("a broken key file");
        let shown = file.display().to_string();
        assert!(errors.iter().any(|e| e.contains(&shown)), "{errors:?}");
        assert!(visit(addr, &x).await.resumed, "the running keys changed");
        proxy.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// snigate processes sharing a key file
// ---------------------------------------------------------------------------

/// A `snigate run` child process, killed when dropped (also when a test
/// fails half-way).
struct Running {
    child: Child,
    addr: SocketAddr,
    handshake_log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `snigate run -c DIR/NAME.toml` with one https listener on
/// 127.0.0.1:0 and the listener line `extra`, and reads the bound address
/// from its "listening" log line (JSON on stderr).
async fn spawn_snigate(
    dir: &Path,
    name: &str,
    leaf: &Leaf,
    upstream: SocketAddr,
    extra: &str,
) -> Running {
    let handshake_log = dir.join(format!("{name}-handshakes.jsonl"));
    let toml = format!(
        r#"[runtime]
workers = 1

[log]
level = "info"
format = "json"
handshake_log = {}

{}
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "a"
default_upstream = "b"
{extra}

[[upstream]]
name = "b"
servers = ["{upstream}"]
"#,
        toml_str(&handshake_log.display().to_string()),
        cert_toml("a", leaf),
    );
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, &toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_snigate"))
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snigate");
    let stderr = child.stderr.take().unwrap();
    // The guard exists before anything can fail.
    let mut running = Running {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        handshake_log,
    };
    let (tx, rx) = mpsc::channel::<String>();
    // Reads stderr to its end (the pipe must never fill up).
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let name = name.to_string();
    running.addr = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if v["message"] == "listening" && v["listener"] == "main" {
                        if let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok()) {
                            return addr;
                        }
                    }
                    seen.push(line);
                }
                Err(e) => panic!(
                    "snigate {name} did not report its listener ({e:?}); stderr:\n{}",
                    seen.join("\n")
                ),
            }
        }
    })
    .await
    .expect("reading stderr");
    running
}

/// Two processes with one key file resume each other's TLS 1.3 and TLS 1.2
/// (ticket) sessions; a third with another key file resumes neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_key_file_resume_each_others_sessions() {
    bounded_for(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("a", &[SNI], Key::Ecdsa);
        let b = backend("B").await;
        let shared = write_keys(&dir.path().join("shared.key"), &[7, 3]);
        let other = write_keys(&dir.path().join("other.key"), &[9]);
        let a = spawn_snigate(dir.path(), "a", &leaf, b.addr, &shared).await;
        let bb = spawn_snigate(dir.path(), "b", &leaf, b.addr, &shared).await;
        let c = spawn_snigate(dir.path(), "c", &leaf, b.addr, &other).await;

        for (tls12_only, version) in [(false, "1.3"), (true, "1.2")] {
            let config = resuming_client(&pki, tls12_only, Tls12Resumption::SessionIdOrTickets);
            assert!(!visit(a.addr, &config).await.resumed, "{version}: A, first");
            let on_b = visit(bb.addr, &config).await;
            assert!(on_b.resumed, "{version}: B did not resume A's session");
            // The client now holds B's tickets: C, with other keys, cannot
            // open them and makes a full handshake.
            assert!(
                !visit(c.addr, &config).await.resumed,
                "{version}: C resumed without the shared keys"
            );
        }

        let a_lines = wait_for_json_lines(&a.handshake_log, 2, TEST_TIMEOUT).await;
        let b_lines = wait_for_json_lines(&bb.handshake_log, 2, TEST_TIMEOUT).await;
        let c_lines = wait_for_json_lines(&c.handshake_log, 2, TEST_TIMEOUT).await;
        let versions = |lines: &[Value]| -> Vec<String> {
            lines
                .iter()
                .map(|l| l["version"].as_str().unwrap_or("?").to_string())
                .collect()
        };
        assert_eq!(versions(&b_lines), ["1.3", "1.2"], "{b_lines:#?}");
        assert!(
            a_lines.iter().all(|l| l.get("resumed").is_none()),
            "{a_lines:#?}"
        );
        assert!(b_lines.iter().all(|l| l["resumed"] == true), "{b_lines:#?}");
        assert!(
            c_lines.iter().all(|l| l.get("resumed").is_none()),
            "{c_lines:#?}"
        );
        drop((a, bb, c));
    })
    .await
}

/// Without a key file two processes have their own random keys: no
/// resumption across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_without_a_key_file_do_not_resume_each_others_sessions() {
    bounded_for(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("a", &[SNI], Key::Ecdsa);
        let b = backend("B").await;
        let a = spawn_snigate(dir.path(), "a", &leaf, b.addr, "").await;
        let bb = spawn_snigate(dir.path(), "b", &leaf, b.addr, "").await;
        let config = resuming_client(&pki, false, Tls12Resumption::SessionIdOrTickets);
        assert!(!visit(a.addr, &config).await.resumed);
        assert!(!visit(bb.addr, &config).await.resumed);
        // Each still resumes its own sessions.
        assert!(visit(bb.addr, &config).await.resumed);
        drop((a, bb));
    })
    .await
}

// ---------------------------------------------------------------------------
// Bad key files
// ---------------------------------------------------------------------------

/// A configuration with one https listener whose key file is `keys`.
fn config_with_keys(dir: &Path, pki: &Pki, keys: &str) -> (PathBuf, String) {
    let a = pki.leaf("a", &[SNI], Key::Ecdsa);
    let toml = format!(
        r#"{}
[[listener]]
name = "main"
bind = ["127.0.0.1:0"]
fallback_certificate = "a"
default_upstream = "b"
session_ticket_keys = {}

[[upstream]]
name = "b"
servers = ["127.0.0.1:9"]
"#,
        cert_toml("a", &a),
        toml_str(keys)
    );
    let path = dir.join("snigate.toml");
    std::fs::write(&path, &toml).unwrap();
    (path, toml)
}

/// `snigate check -c FILE`: (success, stdout, stderr).
fn snigate_check(config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snigate"))
        .arg("check")
        .arg("-c")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run snigate check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_key_files_are_refused_naming_the_file() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let short = dir.path().join("short.key");
        std::fs::write(&short, [0u8; 79]).unwrap();
        set_mode(&short, 0o600);
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, []).unwrap();
        set_mode(&empty, 0o600);
        let cases = [
            ("short.key", "79 bytes"),
            ("empty.key", "empty"),
            ("missing.key", "cannot read"),
        ];
        for (file, what) in cases {
            // Relative to the configuration file's folder.
            let (path, toml) = config_with_keys(dir.path(), &pki, file);
            let shown = dir.path().join(file).display().to_string();
            let settings = Settings::parse(&path, &toml).expect("the syntax is fine");
            assert_eq!(
                settings.listeners[0].session_ticket_keys.as_deref(),
                Some(dir.path().join(file).as_path())
            );

            let errors = snigate::state::check(&settings).expect_err(file);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(&shown), "{errors:?}");
            assert!(errors[0].contains(what), "{errors:?}");
            assert!(errors[0].contains("listener \"main\""), "{errors:?}");

            let err = match Proxy::start(settings).await {
                Ok(p) => {
                    p.shutdown().await;
                    panic!("{file}: the proxy started");
                }
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&shown) && err.contains(what), "{err}");

            let (ok, _, stderr) = snigate_check(&path);
            assert!(!ok, "{file}: snigate check passed");
            assert!(stderr.contains(&shown) && stderr.contains(what), "{stderr}");
        }
    })
    .await
}

#[tokio::test]
async fn key_file_settings_are_checked_when_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // An empty name is an error at the key.
    let (path, toml) = config_with_keys(dir.path(), &pki, " ");
    let err = Settings::parse(&path, &toml)
        .expect_err("empty file name")
        .to_string();
    assert!(
        err.contains("session_ticket_keys must name a file"),
        "{err}"
    );
    // Unused on a passthrough listener: a note, not an error.
    let toml = r#"[[listener]]
name = "pt"
bind = ["127.0.0.1:0"]
mode = "passthrough"
default_upstream = "b"
session_ticket_keys = "nowhere.key"

[[upstream]]
name = "b"
servers = ["127.0.0.1:9"]
"#;
    let settings = Settings::parse(&path, toml).expect("passthrough with keys parses");
    assert_eq!(settings.listeners[0].session_ticket_keys, None);
    assert!(
        settings
            .inactive
            .iter()
            .any(|n| n.contains("session_ticket_keys")),
        "{:?}",
        settings.inactive
    );
    assert!(snigate::state::check(&settings).is_ok());
}

/// A key file every user can read loads, with a note on `check` that
/// names it.
#[test]
fn a_readable_key_file_is_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let keys = dir.path().join("ticket.key");
    write_keys(&keys, &[1, 2]);
    set_mode(&keys, 0o644);
    let (path, toml) = config_with_keys(dir.path(), &pki, "ticket.key");
    let settings = Settings::parse(&path, &toml).unwrap();
    let notes = snigate::state::check(&settings).expect("a readable key file is no error");
    let shown = keys.display().to_string();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&shown) && n.contains("0644")),
        "{notes:?}"
    );
    let (ok, stdout, stderr) = snigate_check(&path);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&shown), "{stdout}");
    // Group-readable (a group only snigate's user is in) is fine.
    set_mode(&keys, 0o640);
    let notes = snigate::state::check(&settings).unwrap();
    assert!(!notes.iter().any(|n| n.contains(&shown)), "{notes:?}");
}
