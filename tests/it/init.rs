//! `snigate init` (issue 13, items 6 and 7): each profile writes a file
//! that, once the certificates its header names are made with the
//! `snigate gen-certs` command the header prints, `snigate check` accepts
//! without a note or warning; the exchange file routes each virtual
//! directory to its upstream with its timeouts, and, run as a proxy, takes
//! a server whose `/ecp/healthcheck.htm` fails out of the ecp upstream
//! only; bad inputs are refused with a clear message; `config/exchange.toml`
//! is exactly what the command in its header writes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use snigate::config::Settings;
use snigate::state::State;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::common::{self, full, get, https_once, scrape_until, toml_str, ClientOpts};

/// `snigate ARGS` in `dir`.
fn snigate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run snigate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The arguments of the command a comment line of the header shows,
/// e.g. `snigate gen-certs ...`: the words after `snigate`.
fn header_command(file: &str, command: &str) -> Vec<String> {
    let prefix = format!("snigate {command} ");
    let line = file
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}...` in the header:\n{file}"));
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// `snigate init ARGS -o OUTPUT` in a fresh folder, then the header's
/// `snigate gen-certs` there: the folder and the file's text.
fn init_with_certs(args: &[&str], output: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(parent) = Path::new(output).parent() {
        std::fs::create_dir_all(dir.path().join(parent)).unwrap();
    }
    let mut all = vec!["init"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", output]);
    let out = snigate(dir.path(), &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("snigate init: wrote {output} (")),
        "{stderr}"
    );
    let file = std::fs::read_to_string(dir.path().join(output)).unwrap();
    let gen_certs = header_command(&file, "gen-certs");
    let gen_certs: Vec<&str> = gen_certs.iter().map(String::as_str).collect();
    let out = snigate(dir.path(), &gen_certs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (dir, file)
}

/// `snigate check -c OUTPUT` in `dir` says ok in one line, with no note,
/// no warning and nothing on stderr.
fn assert_checks_clean(dir: &Path, output: &str) {
    let out = snigate(dir, &["check", "-c", output]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "notes or warnings:\n{stdout}");
    assert!(lines[0].starts_with(&format!("{output}: ok: ")), "{stdout}");
}

const EXCHANGE_HOSTS: &str = "mail.contoso.test,autodiscover.contoso.test";
const WFES: &str = "10.0.0.11:80,10.0.0.12:80";

/// The arguments that wrote config/exchange.toml.
const EXCHANGE_ARGS: [&str; 7] = [
    "--profile",
    "exchange",
    "--host",
    EXCHANGE_HOSTS,
    "--backend",
    "10.0.0.21:443,10.0.0.22:443",
    "--tls-backend",
];

#[test]
fn every_profile_writes_a_file_that_snigate_check_accepts() {
    let cases: [(&[&str], &str); 7] = [
        (&EXCHANGE_ARGS, "config/exchange.toml"),
        (
            &[
                "--profile",
                "exchange",
                "--host",
                "mail.contoso.test",
                "--backend",
                "ex1.contoso.test:80",
            ],
            "snigate.toml",
        ),
        (
            &[
                "--profile",
                "sharepoint",
                "--host",
                "portal.contoso.test,mysites.contoso.test",
                "--backend",
                WFES,
            ],
            "snigate.toml",
        ),
        (
            &[
                "--profile",
                "sharepoint",
                "--host",
                "portal.contoso.test",
                "--backend",
                "10.0.0.11:443",
                "--tls-backend",
            ],
            "a/b/sharepoint.toml",
        ),
        (
            &[
                "--profile",
                "iis",
                "--host",
                "portal.contoso.test,*.apps.contoso.test,extranet.fabrikam.test",
                "--backend",
                WFES,
            ],
            "iis.toml",
        ),
        (
            &[
                "--profile",
                "iis",
                "--host",
                "www.contoso.test",
                "--backend",
                "[::1]:8443",
                "--tls-backend",
            ],
            "conf/iis.toml",
        ),
        (
            &[
                "--profile",
                "IIS",
                "--host",
                "www.contoso.test",
                "--host",
                "shop.contoso.test",
                "--backend",
                "web1.contoso.test:80",
                "--backend",
                "web2.contoso.test:80",
            ],
            "iis.toml",
        ),
    ];
    for (args, output) in cases {
        let (dir, _) = init_with_certs(args, output);
        assert_checks_clean(dir.path(), output);
    }
}

#[test]
fn without_output_the_file_goes_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = snigate(
        dir.path(),
        &[
            "init",
            "--profile",
            "sharepoint",
            "--host",
            "portal.contoso.test",
            "--backend",
            WFES,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = text(&out.stdout);
    assert!(
        file.contains("health_score_header = \"X-SharePointHealthScore\""),
        "{file}"
    );
    assert!(text(&out.stderr).contains("wrote stdout"));
    // Paths are for a file in the current folder.
    assert!(
        file.contains("chain = \"certs/sharepoint/fallback.crt\""),
        "{file}"
    );
    Settings::parse(&dir.path().join("snigate.toml"), &file).expect("parses");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "wrote a file"
    );
}

#[test]
fn an_existing_file_is_kept_unless_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snigate.toml"), "# mine\n").unwrap();
    let args = [
        "init",
        "--profile",
        "iis",
        "--host",
        "www.contoso.test",
        "--backend",
        WFES,
        "-o",
        "snigate.toml",
    ];
    let out = snigate(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "snigate init: snigate.toml already exists; pass --force to replace it\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("snigate.toml")).unwrap(),
        "# mine\n"
    );

    let mut forced = args.to_vec();
    forced.push("--force");
    let out = snigate(dir.path(), &forced);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(dir.path().join("snigate.toml")).unwrap();
    assert!(
        file.starts_with("# snigate in front of IIS sites"),
        "{file}"
    );
    // --force names no file to replace without -o.
    let out = snigate(
        dir.path(),
        &[
            "init",
            "--profile",
            "iis",
            "--host",
            "a.test",
            "--backend",
            WFES,
            "--force",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn bad_inputs_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], wanted: &[&str]| {
        let mut all = vec!["init"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "out.toml"]);
        let out = snigate(dir.path(), &all);
        let stderr = text(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(c) if c != 0),
            "{args:?} accepted: {stderr}"
        );
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: {stderr:?} lacks {w:?}");
        }
        assert!(
            !dir.path().join("out.toml").exists(),
            "{args:?} wrote a file"
        );
    };
    refused(
        &[
            "--profile",
            "exchange",
            "--host",
            "mail.contoso.test,bad_host!",
            "--backend",
            WFES,
        ],
        &["snigate init: --host \"bad_host!\" is not a host name"],
    );
    refused(
        &[
            "--profile",
            "exchange",
            "--host",
            "10.0.0.5",
            "--backend",
            WFES,
        ],
        &["--host \"10.0.0.5\" is an IP address"],
    );
    refused(
        &[
            "--profile",
            "sharepoint",
            "--host",
            "portal.contoso.test",
            "--backend",
            "10.0.0.11",
        ],
        &["snigate init: --backend \"10.0.0.11\" is not host:port (no port;"],
    );
    refused(
        &[
            "--profile",
            "sharepoint",
            "--host",
            "portal.contoso.test",
            "--backend",
            "10.0.0.11:http",
        ],
        &["\"http\" is not a port number"],
    );
    // Every mistake at once, one line each.
    refused(
        &[
            "--profile",
            "iis",
            "--host",
            "a..test",
            "--backend",
            "x:0,10.0.0.11:80,10.0.0.11:80",
        ],
        &[
            "snigate init: --host \"a..test\" is not a host name",
            "snigate init: --backend \"x:0\" is not host:port",
            "snigate init: --backend 10.0.0.11:80 is given twice",
        ],
    );
    refused(
        &["--profile", "lync", "--host", "a.test", "--backend", WFES],
        &["unknown profile \"lync\" (expected exchange, sharepoint or iis)"],
    );
    refused(&["--profile", "exchange", "--backend", WFES], &["--host"]);
}

/// `config/exchange.toml` is exactly what the `snigate init` command in its
/// header writes, run from the repository root.
#[test]
fn the_exchange_example_is_what_init_writes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/exchange.toml");
    let committed = std::fs::read_to_string(&example).unwrap();
    let args = header_command(&committed, "init");
    let output = args
        .iter()
        .skip_while(|a| *a != "-o")
        .nth(1)
        .expect("-o in the header's command");
    assert_eq!(output, "config/exchange.toml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = snigate(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join(output)).unwrap();
    assert!(
        written == committed,
        "config/exchange.toml differs from what `{}` writes now; regenerate it:\n{written}",
        args.join(" ")
    );
    for wanted in [
        "--profile exchange",
        "--tls-backend",
        "--host mail.contoso.test,autodiscover.contoso.test",
    ] {
        assert!(args.join(" ").contains(wanted), "{args:?}");
    }
}

/// Each virtual directory: (a request path, its upstream, its route
/// timeouts upstream_response, upstream_read, client_idle).
type Vdir = (&'static str, &'static str, [Option<u64>; 3]);
const VDIRS: [Vdir; 9] = [
    ("/owa/auth/logon.aspx", "exchange-owa", [None, None, None]),
    ("/ecp/", "exchange-ecp", [None, None, None]),
    ("/EWS/Exchange.asmx", "exchange-ews", [None, None, None]),
    ("/mapi/emsmdb/", "exchange-mapi", [None, None, Some(900)]),
    (
        "/rpc/rpcproxy.dll",
        "exchange-rpc",
        [None, Some(1200), Some(1200)],
    ),
    ("/OAB/x/oab.xml", "exchange-oab", [None, None, None]),
    (
        "/Microsoft-Server-ActiveSync?Cmd=Ping",
        "exchange-activesync",
        [Some(3660), None, Some(900)],
    ),
    (
        "/Autodiscover/Autodiscover.xml",
        "exchange-autodiscover",
        [None, None, None],
    ),
    ("/", "exchange-owa", [None, None, None]),
];

#[test]
fn the_exchange_route_table() {
    let args = EXCHANGE_ARGS;
    let (dir, _) = init_with_certs(&args, "config/exchange.toml");
    let settings = Settings::load(&dir.path().join("config/exchange.toml")).unwrap();
    assert_eq!(settings.upstreams.len(), 8);
    for u in &settings.upstreams {
        assert_eq!(u.servers, ["10.0.0.21:443", "10.0.0.22:443"], "{}", u.name);
        let health = u.health.as_ref().expect("health");
        assert!(health.path.ends_with("/healthcheck.htm"), "{}", health.path);
        let tls = u.tls.as_ref().expect("tls");
        assert_eq!(tls.server_name.as_deref(), Some("mail.contoso.test"));
        assert!(tls.ca.as_ref().unwrap().ends_with("certs/exchange/ca.crt"));
    }
    let listener = settings.listener("exchange").expect("listener");
    assert_eq!(listener.fallback_certificate.as_deref(), Some("exchange"));
    assert_eq!(listener.bind, ["0.0.0.0:443".parse().unwrap()]);
    let routes = settings.routes.clone();
    let state = State::build(settings).expect("state");
    let table = &state.listeners[0].routes;
    for host in ["mail.contoso.test", "autodiscover.contoso.test"] {
        for (path, upstream, timeouts) in VDIRS {
            let bare = path.split('?').next().unwrap();
            let routed = table.route(Some(host), Some(bare)).expect("routed");
            assert_eq!(
                state.upstream(routed.upstream()).name,
                upstream,
                "{host}{path}"
            );
            assert!(routed.route().is_some(), "{host}{path}: default upstream");
            let prefix = path.split(['/', '?']).nth(1).unwrap();
            let route = routes
                .iter()
                .find(|r| match r.paths.first() {
                    Some(p) => !prefix.is_empty() && p[1..].eq_ignore_ascii_case(prefix),
                    None => prefix.is_empty(),
                })
                .unwrap_or_else(|| panic!("no route for {path}"));
            let t = &route.timeouts;
            let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
            assert_eq!(
                [
                    secs(t.upstream_response),
                    secs(t.upstream_read),
                    secs(t.client_idle)
                ],
                timeouts,
                "{path}"
            );
        }
    }
    // Another host is nobody's.
    assert!(table
        .route(Some("other.contoso.test"), Some("/owa"))
        .is_none());
}

// ---------------------------------------------------------------------------
// The exchange file as a running proxy
// ---------------------------------------------------------------------------

/// An Exchange server stand-in: answers every request `200` with
/// `x-backend: NAME`, except `GET /ecp/healthcheck.htm` when `ecp_down`.
async fn exchange_server(name: &'static str, ecp_down: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let failing = ecp_down
                        && req
                            .uri()
                            .path()
                            .eq_ignore_ascii_case("/ecp/healthcheck.htm");
                    let status = if failing { 503 } else { 200 };
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("x-backend", name)
                                .body(full(name))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The generated file, run on loopback: port 0, the admin endpoint on
/// port 0, the servers replaced by `servers`, health checks every 50 ms.
fn on_loopback(file: &str, servers: &[SocketAddr]) -> String {
    let listed: Vec<String> = servers.iter().map(|s| toml_str(&s.to_string())).collect();
    let mut out = String::new();
    for line in file.lines() {
        let line = if line.starts_with("bind = [\"0.0.0.0:443\"]") {
            "bind = [\"127.0.0.1:0\"]".to_string()
        } else if line.starts_with("bind = \"127.0.0.1:9900\"") {
            "bind = \"127.0.0.1:0\"".to_string()
        } else if line.starts_with("servers = ") {
            format!("servers = [{}]", listed.join(", "))
        } else if let Some(path) = line.strip_prefix("health = { path = ") {
            format!("health = {{ interval = \"50ms\", timeout = \"1s\", path = {path}")
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_file_routes_and_checks_each_virtual_directory() {
    common::bounded(async {
        let args = [
            "--profile",
            "exchange",
            "--host",
            EXCHANGE_HOSTS,
            "--backend",
            "ex1.contoso.test:80,ex2.contoso.test:80",
        ];
        let (dir, file) =
            tokio::task::spawn_blocking(move || init_with_certs(&args, "config/exchange.toml"))
                .await
                .unwrap();
        let (healthy, sick) = (
            exchange_server("ex1", false).await,
            exchange_server("ex2", true).await,
        );
        let text = on_loopback(&file, &[healthy, sick]);
        let config_dir: PathBuf = dir.path().join("config");
        let proxy = common::start_proxy(&config_dir, &text).await;
        let addr = proxy.addr("exchange").unwrap();
        let ca = CertificateDer::from_pem_file(dir.path().join("certs/exchange/ca.crt")).unwrap();

        // ex2 fails /ecp/healthcheck.htm: out of exchange-ecp, and of it only.
        let up = |s: &common::Scrape, upstream: &str, server: SocketAddr| {
            s.value(
                "snigate_upstream_server_up",
                &[("upstream", upstream), ("server", &server.to_string())],
            )
        };
        let scrape = scrape_until(&proxy, |s| up(s, "exchange-ecp", sick) == 0.0).await;
        assert_eq!(up(&scrape, "exchange-ecp", healthy), 1.0);
        for upstream in [
            "exchange-owa",
            "exchange-mapi",
            "exchange-activesync",
            "exchange-rpc",
        ] {
            assert_eq!(up(&scrape, upstream, sick), 1.0, "{upstream}");
            assert_eq!(up(&scrape, upstream, healthy), 1.0, "{upstream}");
        }

        // Each request on a connection of its own, with SNI: round-robin
        // over both servers, except /ecp, which only ex1 serves now.
        let mut seen = std::collections::BTreeMap::<&str, Vec<String>>::new();
        for path in [
            "/Microsoft-Server-ActiveSync?Cmd=Ping",
            "/owa/",
            "/mapi/emsmdb/",
            "/ecp/",
        ] {
            for _ in 0..4 {
                let (reply, _) = https_once(
                    addr,
                    &ca,
                    &ClientOpts::sni("mail.contoso.test"),
                    get("mail.contoso.test", path),
                )
                .await;
                assert_eq!(reply.status, 200, "{path}: {}", reply.text());
                seen.entry(path).or_default().push(reply.backend().unwrap());
            }
        }
        for path in [
            "/Microsoft-Server-ActiveSync?Cmd=Ping",
            "/owa/",
            "/mapi/emsmdb/",
        ] {
            let servers = &seen[path];
            assert!(
                servers.iter().any(|s| s == "ex1") && servers.iter().any(|s| s == "ex2"),
                "{path}: {servers:?}"
            );
        }
        assert_eq!(seen["/ecp/"], ["ex1"; 4]);

        // The routes counted what they took.
        let scrape = scrape_until(&proxy, |s| {
            s.value(
                "snigate_route_requests_total",
                &[
                    ("route", "mail.contoso.test/Microsoft-Server-ActiveSync"),
                    ("class", "2xx"),
                ],
            ) == 4.0
        })
        .await;
        for route in [
            "mail.contoso.test/owa",
            "mail.contoso.test/mapi",
            "mail.contoso.test/ecp",
        ] {
            assert_eq!(
                scrape.value(
                    "snigate_route_requests_total",
                    &[("route", route), ("class", "2xx")]
                ),
                4.0,
                "{route}"
            );
        }
        proxy.shutdown().await;
    })
    .await;
}
