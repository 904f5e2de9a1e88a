//! `snigate demo`: the embedded default. Lab certificates, two sample web
//! applications on loopback, the proxy on 127.0.0.1:8443 (SNI + fallback)
//! and 127.0.0.2:8443 (IP/port-mapped), the admin endpoint, and commands to
//! try with and without SNI.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::server::Proxy;
use crate::tools::gen_certs::{generate, KeyAlgorithm};

/// The host names the demo's certificates and routes use.
pub const DEMO_NAMES: [&str; 3] = [
    "portal.contoso.test",
    "*.apps.contoso.test",
    "mysites.contoso.test",
];

/// What [`prepare`] set up: the demo's files, its sample applications and
/// its parsed configuration, ready for [`Proxy::start`].
pub struct Prepared {
    /// The lab CA's certificate (`DIR/ca.crt`).
    pub ca_cert: PathBuf,
    /// The configuration file written (`DIR/snigate-demo.toml`).
    pub config_path: PathBuf,
    /// That configuration, parsed.
    pub settings: Settings,
}

/// Runs the demo until Ctrl-C.
pub async fn run(dir: &Path) -> Result<(), String> {
    let prepared = prepare(dir).await?;
    let proxy = Proxy::start(prepared.settings).await.map_err(|e| {
        format!("{e}\n(is another snigate demo running? 127.0.0.2 must be usable on loopback, as it is on Linux)")
    })?;
    let text = instructions(
        &this_binary(),
        &prepared.ca_cert,
        &prepared.config_path,
        dir,
    );
    println!("{text}");
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping");
    proxy.shutdown().await;
    Ok(())
}

/// Everything but the proxy: lab certificates in `dir`, the two sample
/// applications (on ports the system chooses), the configuration written
/// to `dir/snigate-demo.toml` and parsed.
pub async fn prepare(dir: &Path) -> Result<Prepared, String> {
    let names: Vec<String> = DEMO_NAMES.iter().map(|s| s.to_string()).collect();
    let certs = generate(dir, &names, KeyAlgorithm::Ecdsa)
        .map_err(|e| format!("cannot create lab certificates in {}: {e}", dir.display()))?;
    let portal = start_sample_app("portal").await?;
    let mysites = start_sample_app("mysites").await?;
    let config_path = dir.join("snigate-demo.toml");
    let text = demo_config(portal, mysites);
    std::fs::write(&config_path, &text)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let settings = Settings::parse(&config_path, &text).map_err(|e| e.to_string())?;
    Ok(Prepared {
        ca_cert: certs.ca_cert,
        config_path,
        settings,
    })
}

/// The demo's configuration, as a file an operator can read and reuse.
pub fn demo_config(portal: SocketAddr, mysites: SocketAddr) -> String {
    format!(
        r#"# Written by `snigate demo`. Paths are relative to this file.
[admin]
bind = "127.0.0.1:9900"

[log]
level = "info"
handshake_log = "logs/handshakes.jsonl"
access_log = "logs/access.jsonl"

[[certificate]]
name = "portal"
chain = "portal.contoso.test.crt"
key = "portal.contoso.test.key"

[[certificate]]
name = "apps"
chain = "_wildcard.apps.contoso.test.crt"
key = "_wildcard.apps.contoso.test.key"

[[certificate]]
name = "mysites"
chain = "mysites.contoso.test.crt"
key = "mysites.contoso.test.key"

[[certificate]]
name = "farm"            # SAN certificate covering every name, declared last so that an
                         # SNI client gets its own certificate; the fallback for clients without SNI
chain = "fallback.crt"
key = "fallback.key"

[[listener]]
name = "main"            # SNI routing, fallback certificate for clients without SNI
bind = ["127.0.0.1:8443"]
fallback_certificate = "farm"
default_upstream = "portal"

[[listener]]
name = "mysites-ip"      # the IIS workaround: one IP:port per web application
bind = ["127.0.0.2:8443"]
fallback_certificate = "mysites"
default_upstream = "mysites"

[[route]]
hosts = ["portal.contoso.test", "*.apps.contoso.test"]
listeners = ["main"]     # only where the fallback certificate "farm" covers these names:
                         # on mysites-ip a client without SNI gets the mysites certificate
upstream = "portal"

[[route]]
hosts = ["mysites.contoso.test"]    # every listener: both fallbacks cover it
upstream = "mysites"

[[upstream]]
name = "portal"
servers = ["{portal}"]

[[upstream]]
name = "mysites"
servers = ["{mysites}"]
"#
    )
}

/// The capture the demo's `explain` command uses, relative to the
/// repository root.
pub const DEMO_HELLO: &str = "tests/data/hellos/win7_ie11_schannel_tls12.hex";

/// How to run this very binary from the current folder: its path relative
/// to the current folder when it is below it (`target/release/snigate`
/// after `cargo run --release -- demo` in the repository), else absolute.
fn this_binary() -> String {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    match (exe, cwd) {
        (Some(exe), Some(cwd)) => command_path(&exe, &cwd),
        _ => "cargo run --release --".into(),
    }
}

/// `exe` as a command typed in `cwd`: relative (`target/release/snigate`,
/// `./snigate`) when below `cwd`, else as given; quoted for a POSIX shell
/// when needed. Never a bare name, which the shell would look up in PATH.
pub fn command_path(exe: &Path, cwd: &Path) -> String {
    match exe.strip_prefix(cwd) {
        Ok(rel) if rel.components().count() > 1 => shell_word(&rel.display().to_string()),
        Ok(rel) if !rel.as_os_str().is_empty() => shell_word(&format!("./{}", rel.display())),
        _ => shell_word(&exe.display().to_string()),
    }
}

/// `s` as one word of a POSIX shell: as it is when it holds nothing the
/// shell would read, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What the demo prints once it runs: commands to try, each of which runs
/// as printed from the folder the demo was started in. `snigate` is how to
/// run this binary there (see [`command_path`]); `ca`, `config` and `dir`
/// are the demo's files as the demo was given them (relative to that
/// folder, or absolute).
pub fn instructions(snigate: &str, ca: &Path, config: &Path, dir: &Path) -> String {
    let ca = shell_word(&ca.display().to_string());
    let config_arg = shell_word(&config.display().to_string());
    let logs: PathBuf = dir.join("logs");
    let handshakes = shell_word(&logs.join("handshakes.jsonl").display().to_string());
    let access = shell_word(&logs.join("access.jsonl").display().to_string());
    let explain = if Path::new(DEMO_HELLO).is_file() {
        format!("  {snigate} explain {DEMO_HELLO} -c {config_arg}")
    } else {
        format!(
            "  {snigate} explain HELLO -c {config_arg}\n  (where HELLO is a captured ClientHello in hex, such as the repository's {DEMO_HELLO})"
        )
    };
    format!(
        r#"
snigate demo is running (Ctrl-C stops it). Configuration: {config}

With SNI (certificate chosen by name, request routed by Host):
  curl --cacert {ca} --resolve portal.contoso.test:8443:127.0.0.1 https://portal.contoso.test:8443/
  curl --cacert {ca} --resolve team.apps.contoso.test:8443:127.0.0.1 https://team.apps.contoso.test:8443/
  curl --cacert {ca} --resolve mysites.contoso.test:8443:127.0.0.1 https://mysites.contoso.test:8443/

Without SNI, like the WebDAV mini-redirector (fallback certificate "farm", routed by Host or to the default):
  curl -k https://127.0.0.1:8443/
  curl -k -H 'Host: mysites.contoso.test' https://127.0.0.1:8443/
  openssl s_client -connect 127.0.0.1:8443 -noservername -CAfile {ca} </dev/null 2>/dev/null | grep -E 'subject|Verify return'

Without SNI on the IP/port-mapped listener (its own fallback certificate, straight to mysites):
  curl -k https://127.0.0.2:8443/
  openssl s_client -connect 127.0.0.2:8443 -noservername -CAfile {ca} </dev/null 2>/dev/null | grep -E 'subject|Verify return'

Misdirected (SNI portal, Host of another certificate): 421
  curl -k --resolve portal.contoso.test:8443:127.0.0.1 -H 'Host: mysites.contoso.test' https://portal.contoso.test:8443/

Compatibility report (which clients send no SNI, which fail and why), in a browser: http://127.0.0.1:9900/report.html
  curl http://127.0.0.1:9900/report
  {snigate} report {handshakes} {access}

What this configuration does with a captured ClientHello:
{explain}

Health, metrics and logs:
  curl http://127.0.0.1:9900/healthz
  curl http://127.0.0.1:9900/metrics
  tail -f {handshakes} {access}
"#,
        config = config.display(),
    )
}

/// A sample web application: answers every method with who it is and what
/// it received.
pub async fn start_sample_app(name: &'static str) -> Result<SocketAddr, String> {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start sample application {name}: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(sample_answer(name, &req))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn sample_answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let body = format!(
        "sample web application: {name}\nmethod: {}\npath: {}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\n",
        req.method(),
        req.uri(),
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-sample-app",
        http::HeaderValue::from_static(if name == "portal" {
            "portal"
        } else {
            "mysites"
        }),
    );
    resp
}
