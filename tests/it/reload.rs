//! Reload and stop: a new certificate is served after a reload while an
//! open response keeps streaming; listeners come, go and move; a reload
//! that fails changes nothing; SIGHUP, `snigate reload` and `POST /reload`
//! reach the same code; SIGTERM lets an in-flight download finish.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::process::Snigate;
use crate::common::{
    backend, bounded, bounded_for, dead_addr, get, https_once, start_proxy, start_proxy_on,
    streaming_backend, tls_connect, toml_str, ChannelBody, ClientOpts, Key, Leaf, Pki,
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

const LONG: Duration = Duration::from_secs(40);

/// A folder with a test PKI and the certificate files site.crt/site.key
/// holding leaf "v1" for site.test.
struct Site {
    dir: tempfile::TempDir,
    pki: Pki,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        install(&pki, "site", &pki.leaf("v1", &["site.test"], Key::Ecdsa));
        Site { dir, pki }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A configuration with one https listener "web" on 127.0.0.1:0 in
    /// front of `backend` (and `[admin]` on port 0 if `admin`).
    fn web(&self, backend: SocketAddr, admin: bool) -> String {
        site_toml(
            self.path(),
            &https_listener("web", "127.0.0.1:0"),
            backend,
            admin,
        )
    }
}

/// Writes `leaf`'s files over `name.crt`/`name.key` in the PKI folder.
fn install(pki: &Pki, name: &str, leaf: &Leaf) {
    std::fs::copy(&leaf.chain, pki.dir.join(format!("{name}.crt"))).unwrap();
    std::fs::copy(&leaf.key, pki.dir.join(format!("{name}.key"))).unwrap();
}

fn site_toml(dir: &Path, listeners: &str, backend: SocketAddr, admin: bool) -> String {
    let crt = toml_str(&dir.join("site.crt").display().to_string());
    let key = toml_str(&dir.join("site.key").display().to_string());
    let admin = if admin {
        "[admin]\nbind = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    format!(
        r#"{admin}
[[certificate]]
name = "site"
chain = {crt}
key = {key}

{listeners}

[[upstream]]
name = "farm"
servers = ["{backend}"]
"#
    )
}

fn https_listener(name: &str, bind: &str) -> String {
    format!(
        "[[listener]]\nname = \"{name}\"\nbind = [\"{bind}\"]\nfallback_certificate = \"site\"\ndefault_upstream = \"farm\"\n"
    )
}

async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    admin_request(admin, "GET", path).await
}

async fn admin_request(admin: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(admin).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        // The endpoint answers only Hosts that name it by address (DNS
        // rebinding); admin_security covers the refusals.
        .header("host", admin.to_string())
        .body(common::full(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Which leaf a client with SNI site.test is served.
async fn served(addr: SocketAddr, pki: &Pki) -> String {
    let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("site.test"))
        .await
        .expect("handshake");
    pki.which(&tls.leaf)
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_while_an_open_response_keeps_streaming() {
    bounded(async {
        let site = Site::new();
        let (backend_addr, mut streams) = streaming_backend().await;
        let text = site.web(backend_addr, false);
        let proxy = start_proxy(site.path(), &text).await;
        let addr = proxy.addr("web").unwrap();
        assert_eq!(served(addr, &site.pki).await, "v1");

        // A response that is still streaming when the reload happens.
        let tls = tls_connect(addr, &site.pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let (resp_tx, mut resp_rx) = mpsc::unbounded_channel();
        let request = tokio::spawn(async move {
            let resp = h1
                .send_streaming(get("site.test", "/stream"))
                .await
                .unwrap();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    let _ = resp_tx.send(data);
                }
            }
        });
        let feed = streams.recv().await.unwrap();
        feed.send(Bytes::from_static(b"before ")).await.unwrap();
        assert_eq!(resp_rx.recv().await.unwrap(), "before ");

        install(
            &site.pki,
            "site",
            &site.pki.leaf("v2", &["site.test"], Key::Rsa),
        );
        assert_eq!(proxy.reload().await, Ok(2));
        assert_eq!(
            served(addr, &site.pki).await,
            "v2",
            "new handshakes see the new certificate"
        );
        assert_eq!(proxy.state().generation, 2);

        feed.send(Bytes::from_static(b"after")).await.unwrap();
        assert_eq!(
            resp_rx.recv().await.unwrap(),
            "after",
            "the open response still streams"
        );
        drop(feed);
        request.await.unwrap();
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_adds_removes_and_moves_listeners() {
    adds_removes_and_moves_listeners(None).await;
}

/// The same with connections served on two worker threads: a socket a
/// reload adds accepts on every worker, and one it removes closes on all.
#[tokio::test]
async fn a_reload_adds_removes_and_moves_listeners_on_worker_threads() {
    adds_removes_and_moves_listeners(Some(2)).await;
}

async fn adds_removes_and_moves_listeners(workers: Option<usize>) {
    bounded(async {
        let site = Site::new();
        let farm = backend("farm").await;
        let write = |listeners: &str| {
            let text = site_toml(site.path(), listeners, farm.addr, false);
            std::fs::write(site.path().join("snigate.toml"), text).unwrap();
        };
        let proxy = start_proxy_on(
            site.path(),
            &site_toml(
                site.path(),
                &https_listener("one", "127.0.0.1:0"),
                farm.addr,
                false,
            ),
            workers,
        )
        .await;
        let one = proxy.addr("one").unwrap();
        // A keep-alive connection on "one" from before the reloads.
        let tls = tls_connect(one, &site.pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut early) = tls.into_h1().await;
        assert_eq!(early.send(get("site.test", "/a")).await.status, 200);

        // Add "two": "one" keeps its socket.
        write(&format!(
            "{}\n{}",
            https_listener("one", "127.0.0.1:0"),
            https_listener("two", "127.0.0.1:0")
        ));
        assert_eq!(proxy.reload().await, Ok(2));
        // "one" stays: its idle keep-alive connection carries on.
        assert_eq!(early.send(get("site.test", "/a2")).await.status, 200);
        assert_eq!(
            proxy.addr("one"),
            Some(one),
            "a kept listener keeps its socket"
        );
        let two = proxy.addr("two").expect("two is listening");
        let (reply, _) = https_once(
            two,
            &site.pki.ca_der,
            &ClientOpts::sni("site.test"),
            get("site.test", "/b"),
        )
        .await;
        assert_eq!(reply.backend().as_deref(), Some("farm"));
        let (reply, _) = https_once(
            one,
            &site.pki.ca_der,
            &ClientOpts::sni("site.test"),
            get("site.test", "/c"),
        )
        .await;
        assert_eq!(reply.status, 200);

        // Remove "one" and move "two" to a fixed port.
        let moved = dead_addr().await;
        write(&https_listener("two", &moved.to_string()));
        assert_eq!(proxy.reload().await, Ok(3));
        assert_eq!(proxy.addr("one"), None);
        assert_eq!(proxy.addr("two"), Some(moved));
        assert!(
            TcpStream::connect(one).await.is_err(),
            "the removed listener's address is closed"
        );
        assert!(
            TcpStream::connect(two).await.is_err(),
            "the moved listener's old address is closed"
        );
        let (reply, _) = https_once(
            moved,
            &site.pki.ca_der,
            &ClientOpts::sni("site.test"),
            get("site.test", "/d"),
        )
        .await;
        assert_eq!(reply.status, 200);
        // The connection from before the reloads was idle between requests
        // and its listener is gone: it was closed rather than left on the
        // old configuration.
        assert!(
            early.send_streaming(get("site.test", "/e")).await.is_err(),
            "an idle keep-alive connection of a removed listener is closed"
        );
        proxy.shutdown().await;
    })
    .await;
}

/// Issue 11: a reload no longer closes idle keep-alive connections (every
/// NTLM user would authenticate again): their next request is served with
/// the new configuration, over HTTP/1.1 and h2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_served_with_the_new_configuration_after_a_reload() {
    idle_connections_take_the_new_configuration(None).await;
}

/// The same on two worker threads, which serve the connections while the
/// reload runs on the test's runtime.
#[tokio::test]
async fn idle_keep_alive_connections_on_worker_threads_take_the_new_configuration() {
    idle_connections_take_the_new_configuration(Some(2)).await;
}

async fn idle_connections_take_the_new_configuration(workers: Option<usize>) {
    bounded(async {
        let site = Site::new();
        let (old, new) = (backend("old").await, backend("new").await);
        let proxy = start_proxy_on(site.path(), &site.web(old.addr, false), workers).await;
        let web = proxy.addr("web").unwrap();
        let h1 = tls_connect(web, &site.pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = h1.into_h1().await;
        let opts = ClientOpts::sni("site.test").alpn(&["h2"]);
        let h2 = tls_connect(web, &site.pki.ca_der, &opts).await.unwrap();
        let mut h2 = common::H2::new(h2.stream).await;
        let h2_get = |path: &str| {
            Request::get(format!("https://site.test{path}"))
                .body(common::full(Bytes::new()))
                .unwrap()
        };
        assert_eq!(
            h1.send(get("site.test", "/1")).await.backend().as_deref(),
            Some("old")
        );
        assert_eq!(
            h2.send(h2_get("/1")).await.backend().as_deref(),
            Some("old")
        );

        std::fs::write(site.path().join("snigate.toml"), site.web(new.addr, false)).unwrap();
        assert_eq!(proxy.reload().await, Ok(2));
        assert_eq!(
            h1.send(get("site.test", "/2")).await.backend().as_deref(),
            Some("new")
        );
        assert_eq!(
            h2.send(h2_get("/2")).await.backend().as_deref(),
            Some("new")
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_reload_keeps_the_running_state_and_says_why() {
    bounded(async {
        let site = Site::new();
        let farm = backend("farm").await;
        let good = site.web(farm.addr, true);
        let proxy = start_proxy(site.path(), &good).await;
        let addr = proxy.addr("web").unwrap();
        let admin = proxy.admin_addr().unwrap();
        let config = site.path().join("snigate.toml");

        // A syntax error.
        std::fs::write(&config, format!("{good}\n[[listener]\nname = ")).unwrap();
        let errors = proxy.reload().await.expect_err("broken TOML");
        assert!(errors.join("\n").contains("snigate.toml"), "{errors:?}");
        // A certificate that does not parse.
        std::fs::write(&config, &good).unwrap();
        std::fs::write(site.path().join("site.crt"), "not a certificate").unwrap();
        let errors = proxy.reload().await.expect_err("broken certificate");
        assert!(
            errors.iter().any(|e| e.contains("certificate \"site\"")),
            "{errors:?}"
        );
        // An address already taken by someone else.
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        install(
            &site.pki,
            "site",
            &site.pki.leaf("v1b", &["site.test"], Key::Ecdsa),
        );
        std::fs::write(
            &config,
            site_toml(
                site.path(),
                &format!(
                    "{}\n{}",
                    https_listener("web", "127.0.0.1:0"),
                    https_listener("more", &taken.local_addr().unwrap().to_string())
                ),
                farm.addr,
                true,
            ),
        )
        .unwrap();
        let errors = proxy.reload().await.expect_err("address in use");
        assert!(
            errors.iter().any(|e| e.contains("cannot listen on")),
            "{errors:?}"
        );
        assert_eq!(proxy.addr("more"), None);

        // Still the first configuration, with the first certificate.
        assert_eq!(served(addr, &site.pki).await, "v1");
        let (status, health) = admin_get(admin, "/healthz").await;
        assert_eq!(status, 200);
        let health: Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["generation"], 1);
        assert_eq!(health["last_reload"]["ok"], false, "{health}");
        assert!(
            health["last_reload"]["errors"][0]
                .as_str()
                .unwrap()
                .contains("cannot listen on"),
            "{health}"
        );
        let (_, metrics) = admin_get(admin, "/metrics").await;
        assert!(
            metrics.contains("snigate_reloads_total{outcome=\"failed\"} 3"),
            "{metrics}"
        );
        assert!(metrics.contains("snigate_config_generation 1"), "{metrics}");

        // Fixed: the next reload goes through.
        std::fs::write(&config, &good).unwrap();
        assert_eq!(proxy.reload().await, Ok(2));
        assert_eq!(served(addr, &site.pki).await, "v1b");
        let (_, metrics) = admin_get(admin, "/metrics").await;
        assert!(
            metrics.contains("snigate_reloads_total{outcome=\"ok\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("snigate_config_generation 2"), "{metrics}");
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn post_reload_on_the_admin_endpoint() {
    bounded(async {
        let site = Site::new();
        let farm = backend("farm").await;
        let text = site.web(farm.addr, true);
        let proxy = start_proxy(site.path(), &text).await;
        let admin = proxy.admin_addr().unwrap();
        install(
            &site.pki,
            "site",
            &site.pki.leaf("v2", &["site.test"], Key::Ecdsa),
        );

        let (status, _) = admin_get(admin, "/reload").await;
        assert_eq!(status, 405, "GET does not reload");
        let (status, body) = admin_request(admin, "POST", "/reload").await;
        assert_eq!(status, 200, "{body}");
        let outcome: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(outcome["ok"], true);
        assert_eq!(outcome["generation"], 2);
        assert_eq!(served(proxy.addr("web").unwrap(), &site.pki).await, "v2");
        // The admin endpoint itself stayed where it was.
        assert_eq!(proxy.admin_addr(), Some(admin));
        let (_, health) = admin_get(admin, "/healthz").await;
        let health: Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["generation"], 2);
        assert_eq!(health["last_reload"]["ok"], true);

        std::fs::write(site.path().join("site.key"), "garbage").unwrap();
        let (status, body) = admin_request(admin, "POST", "/reload").await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("certificate \\\"site\\\""), "{body}");
        proxy.shutdown().await;
    })
    .await;
}

/// `POST /reload` that moves the admin endpoint: answered (the reload does
/// not wait for the request that asked for it), and once answered the old
/// address is closed and the new one serves.
#[tokio::test]
async fn post_reload_that_moves_the_admin_endpoint() {
    bounded(async {
        let site = Site::new();
        let farm = backend("farm").await;
        let text = site.web(farm.addr, true);
        let proxy = start_proxy(site.path(), &text).await;
        let old = proxy.admin_addr().unwrap();
        let moved = dead_addr().await;
        let text = text.replace(
            "[admin]\nbind = \"127.0.0.1:0\"",
            &format!("[admin]\nbind = \"{moved}\""),
        );
        std::fs::write(site.path().join("snigate.toml"), text).unwrap();

        let (status, body) = admin_request(old, "POST", "/reload").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            TcpStream::connect(old).await.is_err(),
            "the old admin address is closed"
        );
        assert_eq!(proxy.admin_addr(), Some(moved));
        let (status, health) = admin_get(moved, "/healthz").await;
        assert_eq!(status, 200);
        let health: Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["generation"], 2);
        proxy.shutdown().await;
    })
    .await;
}

/// The binary: SIGHUP and `snigate reload` (through the pid file) reload.
#[tokio::test]
async fn sighup_and_snigate_reload_reload_a_running_process() {
    bounded_for(LONG, async {
        let site = Site::new();
        let farm = backend("farm").await;
        let pid_file = site.path().join("run/snigate.pid");
        let text = format!(
            "[runtime]\npid_file = {}\n[log]\nformat = \"json\"\n{}",
            toml_str(&pid_file.display().to_string()),
            site.web(farm.addr, false)
        );
        let config = site.path().join("snigate.toml");
        std::fs::write(&config, &text).unwrap();
        let mut snigate = Snigate::spawn(&config);
        let addr = snigate.listening("web", LONG).await;
        assert_eq!(served(addr, &site.pki).await, "v1");
        snigate
            .wait_log(LONG, |v| v["message"] == "pid file written")
            .await;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file written")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, snigate.pid());

        install(
            &site.pki,
            "site",
            &site.pki.leaf("v2", &["site.test"], Key::Ecdsa),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"))
            .args(["reload", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done = snigate.wait_new_message("reloaded", LONG).await;
        assert_eq!(done["generation"], 2);
        assert_eq!(served(addr, &site.pki).await, "v2");

        // SIGHUP with a broken certificate: logged, still v2.
        std::fs::write(site.path().join("site.crt"), "broken").unwrap();
        snigate.signal(Signal::SIGHUP);
        let failed = snigate
            .wait_new_message(
                "reload failed; still serving the previous configuration",
                LONG,
            )
            .await;
        assert_eq!(failed["generation"], 2);
        assert!(snigate.seen.iter().any(|v| v["message"]
            .as_str()
            .unwrap_or("")
            .contains("certificate \"site\"")));
        assert_eq!(served(addr, &site.pki).await, "v2");

        snigate.signal(Signal::SIGTERM);
        let status = snigate.wait_exit(LONG).await.expect("exits after SIGTERM");
        assert!(status.success(), "{status:?}");
        assert!(!pid_file.exists(), "the pid file is removed at exit");
    })
    .await;
}

/// A backend whose `GET /slow` streams `total` bytes evenly over `over`.
async fn slow_download_backend(total: usize, over: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                        let (feed, body) = ChannelBody::new();
                        tokio::spawn(async move {
                            let steps = 20;
                            let mut tick = tokio::time::interval(over / steps);
                            for i in 0..steps {
                                tick.tick().await;
                                let chunk = common::pattern_chunk(i as u64, total / steps as usize);
                                if feed.send(chunk).await.is_err() {
                                    return;
                                }
                            }
                        });
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-length", total.to_string())
                                .body(body.boxed())
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// SIGTERM: the listener closes at once, a download in flight for 10 s
/// finishes intact, then the process exits 0.
#[tokio::test]
async fn sigterm_lets_an_in_flight_download_finish() {
    bounded_for(LONG, async {
        let site = Site::new();
        let total = 20 * 64 * 1024;
        let slow = slow_download_backend(total, Duration::from_secs(10)).await;
        let text = format!("[log]\nformat = \"json\"\n{}", site.web(slow, false));
        let config = site.path().join("snigate.toml");
        std::fs::write(&config, &text).unwrap();
        let mut snigate = Snigate::spawn(&config);
        let addr = snigate.listening("web", LONG).await;

        let tls = tls_connect(addr, &site.pki.ca_der, &ClientOpts::sni("site.test"))
            .await
            .unwrap();
        let (_, mut h1) = tls.into_h1().await;
        let resp = h1.send_streaming(get("site.test", "/slow")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        // The first chunk is here: the download is in flight.
        while got.is_empty() {
            let frame = body.frame().await.expect("a first chunk").unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        snigate.signal(Signal::SIGTERM);
        snigate
            .wait_new_message("stopping: no new connections; draining open ones", LONG)
            .await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no new connections once stopping"
        );
        let rest = Arc::new(Mutex::new(Vec::new()));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the download is not cut").into_data() {
                rest.lock().await.extend_from_slice(&data);
            }
        }
        got.extend_from_slice(&rest.lock().await);
        assert_eq!(got.len(), total, "the whole download arrived");
        let mut want = Vec::new();
        for i in 0..20u64 {
            want.extend_from_slice(&common::pattern_chunk(i, total / 20));
        }
        assert!(got == want, "and intact");
        let status = snigate.wait_exit(LONG).await.expect("exits once drained");
        assert!(status.success(), "{status:?}");
    })
    .await;
}

/// Certificate hygiene is inspected at start and at each reload, logged,
/// and listed on `/healthz`.
#[cfg(unix)]
#[tokio::test]
async fn hygiene_warnings_follow_reloads_on_healthz() {
    use std::os::unix::fs::PermissionsExt;
    bounded(async {
        let site = Site::new();
        let key = site.path().join("site.key");
        // Readable by anyone: the key, and the folder (and those above it,
        // as /tmp is) that leads to it.
        std::fs::set_permissions(site.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let farm = backend("farm").await;
        let text = site.web(farm.addr, true);
        let proxy = start_proxy(site.path(), &text).await;
        let admin = proxy.admin_addr().unwrap();
        let (_, health) = admin_get(admin, "/healthz").await;
        let health: Value = serde_json::from_str(&health).unwrap();
        let warnings = health["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{health}");
        assert_eq!(warnings[0]["kind"], "key_readable");
        assert_eq!(warnings[0]["certificate"], "site");

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(proxy.reload().await, Ok(2));
        let (_, health) = admin_get(admin, "/healthz").await;
        let health: Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["warnings"], serde_json::json!([]), "{health}");
        proxy.shutdown().await;
    })
    .await;
}

/// Stop with an h2 stream in flight: the listener closes, the connection
/// gets GOAWAY, the stream finishes, and the drain ends with nothing left
/// open (well before `shutdown_grace`).
#[tokio::test]
async fn stop_drains_an_h2_connection_with_goaway() {
    bounded(async {
        let site = Site::new();
        let (backend_addr, mut streams) = streaming_backend().await;
        let text = format!(
            "[timeouts]\nshutdown_grace = \"15s\"\n{}",
            site.web(backend_addr, false)
        );
        let proxy = start_proxy(site.path(), &text).await;
        let addr = proxy.addr("web").unwrap();
        let tls = tls_connect(
            addr,
            &site.pki.ca_der,
            &ClientOpts::sni("site.test").alpn(&["h2"]),
        )
        .await
        .unwrap();
        assert_eq!(tls.alpn().as_deref(), Some("h2"));
        let mut h2 = common::H2::new(tls.stream).await;
        let req = Request::builder()
            .uri("https://site.test/stream")
            .body(common::full(""))
            .unwrap();
        let resp = h2.send_streaming(req).await.unwrap();
        let mut body = resp.into_body();
        let feed = streams.recv().await.unwrap();
        feed.send(Bytes::from_static(b"one ")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "one ");

        let stopping = tokio::spawn(proxy.shutdown());
        // Stopping has begun once the listener is gone.
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
        feed.send(Bytes::from_static(b"two")).await.unwrap();
        drop(feed);
        let mut rest = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the stream is not reset").into_data() {
                rest.extend_from_slice(&data);
            }
        }
        assert_eq!(rest, b"two");
        assert_eq!(
            stopping.await.unwrap(),
            0,
            "the h2 connection closed after its last stream (GOAWAY)"
        );
    })
    .await;
}
