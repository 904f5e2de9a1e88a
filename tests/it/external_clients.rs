//! The built binary against real-world clients: `openssl s_client` with and
//! without SNI, `curl` with SNI (h2) and by IP address (no SNI), then
//! SIGTERM and a clean exit. Skipped when openssl or curl is missing.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

/// The snigate child process; killed on every path out of the test.
struct Snigate {
    child: Child,
    output: PathBuf,
}

impl Snigate {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Snigate {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- snigate output ---\n{}", self.output());
        }
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `snigate run -c CONFIG` with the configuration `config(port)` on a
/// free port, and waits until it accepts connections. Retries on another port
/// if the one picked was taken in between.
fn start_snigate(dir: &Path, config: impl Fn(u16) -> String) -> (Snigate, SocketAddr) {
    for attempt in 0..5 {
        let port = free_port();
        let path = dir.join("snigate.toml");
        std::fs::write(&path, config(port)).unwrap();
        let output = dir.join(format!("snigate-{attempt}.log"));
        let log = std::fs::File::create(&output).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_snigate"))
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run the snigate binary");
        let mut proc = Snigate { child, output };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = proc.child.try_wait().unwrap() {
                let out = proc.output();
                if out.contains("cannot listen") {
                    eprintln!("port {port} was taken; trying another");
                    break;
                }
                panic!("snigate exited with {status} before accepting connections:\n{out}");
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (proc, addr);
            }
            assert!(
                Instant::now() < deadline,
                "snigate did not accept connections within 10 s:\n{}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free port found for snigate");
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first PEM certificate in `s`, as base64 without line breaks.
fn first_pem_body(s: &str) -> Option<String> {
    let start = s.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + s[start..].find("-----END CERTIFICATE-----")?;
    Some(
        s[start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

/// `openssl s_client` against `addr`; returns the certificate it was shown
/// (PEM) and its whole output.
fn s_client(addr: SocketAddr, ca: &Path, sni: Option<&str>) -> (String, String) {
    let connect = addr.to_string();
    let ca = ca.display().to_string();
    let mut args = vec!["s_client", "-connect", &connect, "-CAfile", &ca];
    match sni {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let out = run("openssl", &args, None);
    let all = text(&out);
    let body = first_pem_body(&all)
        .unwrap_or_else(|| panic!("openssl s_client showed no certificate:\n{all}"));
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    (pem, all)
}

/// subject and subjectAltName of a PEM certificate, as openssl prints them.
fn x509_names(pem: &str) -> String {
    text(&run(
        "openssl",
        &["x509", "-noout", "-subject", "-ext", "subjectAltName"],
        Some(pem),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_and_curl_against_the_binary() {
    if !installed("openssl") || !installed("curl") {
        eprintln!("SKIPPED: openssl and curl are needed for this test (CI installs them)");
        return;
    }
    bounded_for(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let fb = pki.leaf("fb", &["fallback.test"], Key::Ecdsa);
        let a = pki.leaf("a", &["a.test"], Key::Ecdsa);
        let (ba, bd) = (backend("A").await, backend("D").await);
        let certs = format!("{}{}", cert_toml("fb", &fb), cert_toml("a", &a));
        let dir_path = dir.path().to_path_buf();
        let (ba_addr, bd_addr) = (ba.addr, bd.addr);
        let (mut proc, addr) = tokio::task::spawn_blocking(move || {
            start_snigate(&dir_path, |port| {
                format!(
                    "[runtime]\nworkers = 2\n\n[log]\nlevel = \"info\"\n\n[timeouts]\nshutdown_grace = \"20s\"\n\n{certs}\
                     [[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:{port}\"]\nfallback_certificate = \"fb\"\n\
                     default_upstream = \"d\"\n\n[[route]]\nhosts = [\"a.test\"]\nupstream = \"a\"\n\n\
                     [[upstream]]\nname = \"a\"\nservers = [\"{ba_addr}\"]\n\n[[upstream]]\nname = \"d\"\nservers = [\"{bd_addr}\"]\n"
                )
            })
        })
        .await
        .unwrap();
        let ca = pki.ca_pem.clone();
        let (fb_pem, a_pem) = (fb.pem.clone(), a.pem.clone());

        let proc_result = tokio::task::spawn_blocking(move || {
            // openssl without SNI: the fallback certificate, valid under the CA.
            let (pem, all) = s_client(addr, &ca, None);
            assert_eq!(first_pem_body(&pem), first_pem_body(&fb_pem), "no SNI: not the fallback certificate:\n{all}");
            assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
            let names = x509_names(&pem).replace(' ', "");
            assert!(names.contains("CN=fallback.test") && names.contains("DNS:fallback.test"), "{names}");

            // openssl with SNI a.test: a.test's certificate.
            let (pem, all) = s_client(addr, &ca, Some("a.test"));
            assert_eq!(first_pem_body(&pem), first_pem_body(&a_pem), "SNI a.test: not a.test's certificate:\n{all}");
            assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
            let names = x509_names(&pem).replace(' ', "");
            assert!(names.contains("CN=a.test") && names.contains("DNS:a.test"), "{names}");

            // curl with SNI and name verification (h2 by ALPN where curl has it).
            let port = addr.port();
            let resolve = format!("a.test:{port}:127.0.0.1");
            let url = format!("https://a.test:{port}/x?from=curl");
            let ca_s = ca.display().to_string();
            let out = run("curl", &["-sS", "--fail", "--max-time", "10", "--cacert", &ca_s, "--resolve", &resolve, &url], None);
            assert!(out.status.success(), "curl with SNI failed:\n{}", text(&out));
            let echo: serde_json::Value = serde_json::from_slice(&out.stdout).expect("curl body is not the backend's JSON");
            assert_eq!(echo["backend"], "A");
            assert_eq!(echo["path"], "/x?from=curl");
            assert_eq!(echo["host"], format!("a.test:{port}"));
            assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

            // curl by IP address: no SNI, certificate not checked, default upstream.
            let url = format!("https://127.0.0.1:{port}/");
            let out = run("curl", &["-sS", "--fail", "--max-time", "10", "-k", "--http1.1", &url], None);
            assert!(out.status.success(), "curl without SNI failed:\n{}", text(&out));
            let echo: serde_json::Value = serde_json::from_slice(&out.stdout).expect("curl body is not the backend's JSON");
            assert_eq!(echo["backend"], "D");
        })
        .await;

        if let Err(panic) = proc_result {
            drop(proc);
            std::panic::resume_unwind(panic.into_panic());
        }

        // Clients that keep idle keep-alive connections open (HTTP/1.1 and
        // h2) when the operator stops the service.
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("a.test")).await.unwrap();
        let (_, mut h1) = tls.into_h1().await;
        assert_eq!(h1.send(get("a.test", "/idle-h1")).await.status, 200);
        let tls = tls_connect(addr, &pki.ca_der, &ClientOpts::sni("a.test").alpn(&["h2"])).await.unwrap();
        assert_eq!(tls.alpn().as_deref(), Some("h2"));
        let mut h2 = H2::new(tls.stream).await;
        let req = http::Request::builder().uri("https://a.test/idle-h2").body(full("")).unwrap();
        assert_eq!(h2.send(req).await.status, 200);

        // SIGTERM: closes idle connections, exits 0 well before the 20 s grace.
        let pid = proc.pid().to_string();
        let (status, took, proc) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let kill = Command::new("kill").args(["-TERM", &pid]).status().expect("cannot run kill");
            assert!(kill.success());
            let status = proc.wait_exit(Duration::from_secs(8));
            (status, started.elapsed(), proc)
        })
        .await
        .unwrap();
        let status = status.unwrap_or_else(|| {
            panic!("snigate still running {took:?} after SIGTERM with idle keep-alive clients:\n{}", proc.output())
        });
        assert!(status.success(), "snigate exited with {status} after SIGTERM:\n{}", proc.output());
        assert!(took < Duration::from_secs(5), "stopping took {took:?}");
        drop((h1, h2));
        drop(proc);
        drop((ba, bd));
    })
    .await
}
