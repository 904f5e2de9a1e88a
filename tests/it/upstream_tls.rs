//! Upstream TLS (`[[upstream]] tls = { ... }`): snigate re-encrypts to HTTPS
//! backends, with the request's Host (or `server_name`) as SNI, trusting a
//! private CA, a pinned certificate, or (loudly) anything; a backend it
//! cannot trust gets no request and the client a 502 that says why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};
use snigate::config::Settings;
use snigate::server::Proxy;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const LOG_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// An HTTPS backend that records what each connection negotiated
// ---------------------------------------------------------------------------

/// What the backend saw on one TLS connection.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    sni: Option<String>,
    alpn: Option<String>,
    /// The Host of every request on the connection.
    hosts: Vec<String>,
}

struct TlsBackend {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted at TCP level (handshakes attempted).
    accepted: Arc<AtomicUsize>,
}

impl TlsBackend {
    fn seen(&self) -> Vec<Seen> {
        self.conns.lock().unwrap().clone()
    }
}

/// A certificate chain and its key, as the backend presents them.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// A leaf minted by the test CA.
    fn from_leaf(leaf: &Leaf) -> Identity {
        Identity {
            chain: vec![leaf.der.clone()],
            key: PrivateKeyDer::from_pem_file(&leaf.key).unwrap(),
        }
    }

    /// A self-signed certificate for `names` (as IIS makes them).
    fn self_signed(names: &[&str]) -> Identity {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        Identity {
            chain: vec![ck.cert.der().clone()],
            key: PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap(),
        }
    }

    /// The `pin_sha256` value of the leaf.
    fn pin(&self) -> String {
        b64(&Sha256::digest(self.chain[0].as_ref()))
    }
}

/// Standard padded base64, written here so the test does not trust the
/// proxy's own encoder.
fn b64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Starts an HTTPS (HTTP/1.1) backend presenting `id`, offering ALPN h2 and
/// http/1.1. Every request gets JSON: the connection's number, SNI, ALPN,
/// and the request's Host.
async fn tls_backend(id: Identity) -> TlsBackend {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.chain, id.key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (c, a) = (conns.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let (acceptor, conns) = (acceptor.clone(), c.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let sni = session.server_name().map(str::to_string);
                let alpn = session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let group = session
                    .negotiated_key_exchange_group()
                    .map(|g| snigate::tls::group_name(g.name()));
                let index = {
                    let mut all = conns.lock().unwrap();
                    let conn = all.len() + 1;
                    all.push(Seen {
                        conn,
                        sni: sni.clone(),
                        alpn: alpn.clone(),
                        hosts: Vec::new(),
                    });
                    all.len() - 1
                };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                        .unwrap_or_default();
                    conns.lock().unwrap()[index].hosts.push(host.clone());
                    let doc = serde_json::json!({
                        "conn": index + 1,
                        "sni": sni,
                        "alpn": alpn,
                        "group": group,
                        "host": host,
                    });
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(full(doc.to_string()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsBackend {
        addr,
        conns,
        accepted,
    }
}

// ---------------------------------------------------------------------------
// The proxy in front of it
// ---------------------------------------------------------------------------

struct Front {
    _dir: tempfile::TempDir,
    proxy: Proxy,
    access: PathBuf,
}

impl Front {
    /// `GET /` with `Host: host` on a fresh client connection.
    async fn get(&self, host: &str) -> Reply {
        let tcp = TcpStream::connect(self.proxy.addr("main").unwrap())
            .await
            .unwrap();
        H1::new(tcp).await.send(get(host, "/")).await
    }

    /// The access line of the request for `host`.
    async fn access(&self, host: &str) -> Value {
        wait_for_json_line(&self.access, LOG_WAIT, |v| v["host"] == host).await
    }
}

/// A plain-HTTP listener "main" whose default upstream "farm" is `backend`
/// with `tls` (a TOML inline table); more `[[upstream]]`/`[[route]]` text in
/// `extra`. `ca.pem` in the temp dir is `pki`'s CA when one is given.
async fn front(dir: tempfile::TempDir, backend: SocketAddr, tls: &str, extra: &str) -> Front {
    let toml = format!(
        "[log]\naccess_log = \"logs/access.jsonl\"\n\n\
         [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"{backend}\"]\ntls = {tls}\n\n{extra}"
    );
    let proxy = start_proxy(dir.path(), &toml).await;
    Front {
        access: dir.path().join("logs/access.jsonl"),
        _dir: dir,
        proxy,
    }
}

fn ca_table(ca: &Path, more: &str) -> String {
    format!("{{ ca = {}{more} }}", toml_str(&ca.display().to_string()))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// (a), (f): a leaf of a private CA is trusted through `ca`; the backend sees
/// the Host as SNI (or `server_name` when set) and ALPN http/1.1.
#[tokio::test]
async fn private_ca_backend_gets_the_host_as_sni_and_http11_alpn() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("iis", &["a.test", "b.test"], Key::Ecdsa);
        let be = tls_backend(Identity::from_leaf(&leaf)).await;
        let extra = format!(
            "[[route]]\nhosts = [\"portal.test\"]\nupstream = \"fixed\"\n\n\
             [[upstream]]\nname = \"fixed\"\nservers = [\"{}\"]\ntls = {}\n",
            be.addr,
            ca_table(&pki.ca_pem, ", server_name = \"b.test\"")
        );
        let ca = pki.ca_pem.clone();
        let f = front(dir, be.addr, &ca_table(&ca, ""), &extra).await;

        let r = f.get("a.test:8443").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let doc = r.json();
        assert_eq!(doc["sni"], "a.test", "SNI is the Host without port");
        assert_eq!(doc["host"], "a.test:8443", "Host is passed on as is");
        assert_eq!(doc["alpn"], "http/1.1", "only http/1.1 is offered upstream");
        // snigate's own TLS client puts the hybrid post-quantum group first
        // (rustls' prefer-post-quantum), and a backend that has it takes it.
        assert_eq!(doc["group"], "X25519MLKEM768");

        // server_name overrides the Host, for SNI and for the name check.
        let r = f.get("portal.test").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let doc = r.json();
        assert_eq!(doc["sni"], "b.test");
        assert_eq!(doc["host"], "portal.test");

        let line = f.access("portal.test").await;
        assert_eq!(line["status"], 200);
        assert!(line.get("error").is_none(), "{line}");
        f.proxy.shutdown().await;
    })
    .await;
}

/// (b): a self-signed certificate pinned by SHA-256 works; a wrong pin gets
/// 502 and a log line that names the mismatch and the pin to configure.
#[tokio::test]
async fn pinned_self_signed_backend_and_a_wrong_pin() {
    bounded(async {
        let id = Identity::self_signed(&["iis01"]);
        let pin = id.pin();
        let be = tls_backend(id).await;
        let wrong = b64(&Sha256::digest(b"some other certificate"));
        let extra = format!(
            "[[route]]\nhosts = [\"wrong.test\"]\nupstream = \"wrong\"\n\n\
             [[upstream]]\nname = \"wrong\"\nservers = [\"{}\"]\ntls = {{ pin_sha256 = [\"{wrong}\"] }}\n",
            be.addr
        );
        let f = front(
            tempfile::tempdir().unwrap(),
            be.addr,
            &format!("{{ pin_sha256 = [\"{wrong}\", \"{pin}\"] }}"),
            &extra,
        )
        .await;

        // Neither the name (a.test is not iis01) nor the issuer is checked
        // with a pin alone.
        let r = f.get("a.test").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["sni"], "a.test");

        let served = be.seen().len();
        let handshakes = be.accepted.load(Ordering::SeqCst);
        let r = f.get("wrong.test").await;
        assert_eq!(r.status, 502, "{}", r.text());
        let line = f.access("wrong.test").await;
        assert_eq!(line["status"], 502);
        assert_eq!(line["upstream"], "wrong");
        assert_eq!(line["server"], be.addr.to_string());
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("does not match pin_sha256"),
            "the log names the mismatch: {error}"
        );
        assert!(
            error.contains(&pin),
            "the log shows the presented certificate's pin: {error}"
        );
        assert_eq!(be.seen().len(), served, "no request reached the backend");
        assert_eq!(
            be.accepted.load(Ordering::SeqCst),
            handshakes + 1,
            "one handshake, not retried"
        );
        f.proxy.shutdown().await;
    })
    .await;
}

/// `ca` and `pin_sha256` together: both must hold.
#[tokio::test]
async fn ca_and_pin_are_both_required() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let id = Identity::from_leaf(&pki.leaf("iis", &["a.test", "b.test"], Key::Ecdsa));
        let pin = id.pin();
        let be = tls_backend(id).await;
        let wrong = b64(&Sha256::digest(b"not it"));
        let extra = format!(
            "[[route]]\nhosts = [\"b.test\"]\nupstream = \"wrong\"\n\n\
             [[upstream]]\nname = \"wrong\"\nservers = [\"{}\"]\ntls = {}\n",
            be.addr,
            ca_table(&pki.ca_pem, &format!(", pin_sha256 = [\"{wrong}\"]"))
        );
        let ca = pki.ca_pem.clone();
        let f = front(
            dir,
            be.addr,
            &ca_table(&ca, &format!(", pin_sha256 = [\"{pin}\"]")),
            &extra,
        )
        .await;
        assert_eq!(f.get("a.test").await.status, 200);
        assert_eq!(f.get("b.test").await.status, 502);
        let line = f.access("b.test").await;
        assert!(
            line["error"]
                .as_str()
                .unwrap_or_default()
                .contains("pin_sha256"),
            "{line}"
        );
        f.proxy.shutdown().await;
    })
    .await;
}

/// (c): a certificate the CA did not issue, or one for another name, gets
/// 502 with the reason.
#[tokio::test]
async fn unknown_issuer_and_wrong_name_fail_with_502() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let stranger = tls_backend(Identity::self_signed(&["a.test"])).await;
        let leaf = pki.leaf("iis", &["a.test"], Key::Ecdsa);
        let named = tls_backend(Identity::from_leaf(&leaf)).await;
        let extra = format!(
            "[[route]]\nhosts = [\"c.test\"]\nupstream = \"named\"\n\n\
             [[upstream]]\nname = \"named\"\nservers = [\"{}\"]\ntls = {}\n",
            named.addr,
            ca_table(&pki.ca_pem, "")
        );
        let ca = pki.ca_pem.clone();
        let f = front(dir, stranger.addr, &ca_table(&ca, ""), &extra).await;

        let r = f.get("a.test").await;
        assert_eq!(r.status, 502, "{}", r.text());
        let line = f.access("a.test").await;
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("not issued by the ca file") && error.contains("ca.pem"),
            "{error}"
        );
        assert!(stranger.seen().is_empty(), "no request reached the backend");

        let r = f.get("c.test").await;
        assert_eq!(r.status, 502, "{}", r.text());
        let line = f.access("c.test").await;
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("TLS handshake for c.test") && error.contains("not valid for name"),
            "{error}"
        );
        assert!(named.seen().is_empty());
        f.proxy.shutdown().await;
    })
    .await;
}

/// (d): `insecure_skip_verify = true` takes any certificate; an IP literal
/// Host sends no SNI.
#[tokio::test]
async fn insecure_skip_verify_takes_any_certificate() {
    bounded(async {
        let be = tls_backend(Identity::self_signed(&["whatever.invalid"])).await;
        let f = front(
            tempfile::tempdir().unwrap(),
            be.addr,
            "{ insecure_skip_verify = true }",
            "",
        )
        .await;
        let r = f.get("a.test").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["sni"], "a.test");
        let r = f.get("127.0.0.1").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["sni"], Value::Null, "an IP address sends no SNI");
        f.proxy.shutdown().await;
    })
    .await;
}

/// (e): without `server_name`, connections opened for one Host are never
/// reused for another; each is reused for its own.
#[tokio::test]
async fn pooled_connections_are_kept_per_server_name() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let leaf = pki.leaf("iis", &["a.test", "b.test"], Key::Ecdsa);
        let be = tls_backend(Identity::from_leaf(&leaf)).await;
        let ca = pki.ca_pem.clone();
        let f = front(dir, be.addr, &ca_table(&ca, ""), "").await;
        // One client connection: the proxy's pool is all that decides.
        let tcp = TcpStream::connect(f.proxy.addr("main").unwrap())
            .await
            .unwrap();
        let mut h1 = H1::new(tcp).await;
        for host in ["a.test", "b.test", "a.test", "b.test", "b.test", "a.test"] {
            let r = h1.send(get(host, "/")).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["sni"], host);
        }
        let seen = be.seen();
        for c in &seen {
            let sni = c.sni.as_deref().unwrap();
            assert_eq!(c.alpn.as_deref(), Some("http/1.1"));
            assert!(
                c.hosts.iter().all(|h| h == sni),
                "connection {} (SNI {sni}) carried {:?}",
                c.conn,
                c.hosts
            );
        }
        assert_eq!(
            seen.len(),
            2,
            "one connection per name, each reused: {seen:?}"
        );
        f.proxy.shutdown().await;
    })
    .await;
}

/// `snigate check`: a CA file that cannot be read is an error naming the
/// upstream and the file; `insecure_skip_verify` is a note.
#[test]
fn check_reports_a_bad_ca_and_insecure_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snigate.toml");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let toml = "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"127.0.0.1:1\"]\ntls = { ca = \"missing-ca.pem\" }\n\n\
         [[upstream]]\nname = \"junk\"\nservers = [\"127.0.0.1:1\"]\ntls = { ca = \"not-a-ca.pem\" }\n";
    let settings = Settings::parse(&path, toml).unwrap();
    let errors = snigate::state::check(&settings).expect_err("bad CA files");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("upstream \"farm\"") && errors[0].contains("missing-ca.pem"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("upstream \"junk\"") && errors[1].contains("not-a-ca.pem"),
        "{errors:?}"
    );

    let toml = "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"lab\"\n\n\
         [[upstream]]\nname = \"lab\"\nservers = [\"127.0.0.1:1\"]\ntls = { insecure_skip_verify = true }\n";
    let settings = Settings::parse(&path, toml).unwrap();
    assert!(
        settings.inactive.is_empty(),
        "tls is active: {:?}",
        settings.inactive
    );
    let notes = snigate::state::check(&settings).expect("loads");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("upstream \"lab\"") && n.contains("insecure_skip_verify")),
        "{notes:?}"
    );
}

/// A backend that accepts TCP but never speaks TLS: the handshake is bounded
/// by `upstream_connect` and the client gets 502.
#[tokio::test]
async fn a_silent_backend_times_out_in_the_handshake() {
    bounded(async {
        let silent = silent_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[timeouts]\nupstream_connect = \"300ms\"\n\n\
             [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_upstream = \"farm\"\n\n\
             [[upstream]]\nname = \"farm\"\nservers = [\"{silent}\"]\ntls = {{ insecure_skip_verify = true }}\n"
        );
        let proxy = start_proxy(dir.path(), &toml).await;
        let tcp = TcpStream::connect(proxy.addr("main").unwrap())
            .await
            .unwrap();
        let r = H1::new(tcp).await.send(get("a.test", "/")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        proxy.shutdown().await;
    })
    .await;
}
