//! `snigate import-iis` on the sample IIS inputs in `tests/data/iis/`
//! (written from Microsoft's documented formats, see SOURCES.md): the real
//! binary is run, the configuration it writes is read back with the
//! library, .pfx files (and their password files) are minted at the paths it names, and `snigate check`
//! must accept it.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{pfx_with_others_first, pkcs8_of, Key, Pki};
use snigate::config::{CertificateSource, ListenerSettings, Settings, UpstreamSettings};
use tempfile::TempDir;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/iis")
        .join(name)
}

fn snigate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run snigate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs import-iis with `args` plus `-o DIR/snigate.toml`; it must succeed.
/// Returns the folder, the file, the settings read back, and stderr.
fn import(args: &[&str]) -> (TempDir, PathBuf, Settings, String) {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("snigate.toml");
    let mut all = vec!["import-iis"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let o = snigate(&all);
    let stderr = text(&o.stderr);
    assert!(
        o.status.success(),
        "import-iis {args:?} failed: {stderr}\n{}",
        text(&o.stdout)
    );
    assert!(o.stdout.is_empty(), "with -o nothing goes to stdout");
    let toml = fs::read_to_string(&out).unwrap();
    let settings = Settings::parse(&out, &toml)
        .unwrap_or_else(|e| panic!("the generated configuration is refused:\n{e}\n---\n{toml}"));
    (dir, out, settings, stderr)
}

fn listener<'s>(s: &'s Settings, name: &str) -> &'s ListenerSettings {
    s.listener(name).unwrap_or_else(|| {
        panic!(
            "no listener {name}; have {:?}",
            s.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
        )
    })
}

fn upstream<'s>(s: &'s Settings, name: &str) -> &'s UpstreamSettings {
    s.upstreams
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no upstream {name}; have {:?}",
                s.upstreams.iter().map(|u| &u.name).collect::<Vec<_>>()
            )
        })
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The route (upstream, listeners) of `host`.
fn route_of(s: &Settings, host: &str) -> (String, Vec<String>) {
    let r = s
        .routes
        .iter()
        .find(|r| r.hosts.iter().any(|h| h == host))
        .unwrap_or_else(|| panic!("no route for {host}: {:#?}", s.routes));
    (r.upstream.clone(), r.listeners.clone())
}

/// The file's text with comment lines joined, so that a message wrapped
/// over several comment lines reads as one.
fn unwrapped(toml: &str) -> String {
    toml.lines()
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

fn certificate_names(s: &Settings) -> Vec<&str> {
    s.certificates.iter().map(|c| c.name.as_str()).collect()
}

/// Mints a certificate and key at every path the configuration names,
/// then runs `snigate check` on it, which must pass.
fn export_and_check(dir: &Path, config: &Path, settings: &Settings) {
    let pki_dir = dir.join("pki");
    fs::create_dir_all(&pki_dir).unwrap();
    let pki = Pki::new(&pki_dir);
    for (i, c) in settings.certificates.iter().enumerate() {
        let name = if c.name.contains('.') && !c.name.starts_with(|ch: char| ch.is_ascii_digit()) {
            c.name.replace("_wildcard", "*")
        } else {
            format!("{}.test", c.name)
        };
        let leaf = pki.leaf(&format!("leaf{i}"), &[name.as_str()], Key::Ecdsa);
        let CertificateSource::Pfx {
            file,
            password_file: Some(password_file),
            ..
        } = &c.source
        else {
            panic!(
                "import-iis writes pfx and pfx_password_file: {:?}",
                c.source
            );
        };
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let pfx = pfx_with_others_first(
            &leaf.der,
            &pkcs8_of(&leaf),
            std::slice::from_ref(&pki.ca_der),
            "pw",
        );
        fs::write(file, pfx).unwrap();
        fs::write(password_file, "pw\r\n").unwrap();
    }
    let o = snigate(&["check", "-c", config.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "snigate check refused the imported configuration:\n{}{}\n---\n{}",
        text(&o.stdout),
        text(&o.stderr),
        fs::read_to_string(config).unwrap()
    );
    assert!(text(&o.stdout).contains(": ok: "), "{}", text(&o.stdout));
}

#[test]
fn netsh_alone() {
    let (dir, out, s, stderr) = import(&[
        "--netsh",
        data("netsh-sslcert.txt").to_str().unwrap(),
        "--backend",
        "wfe1.contoso.com,wfe2.contoso.com",
    ]);
    // One certificate per distinct hash: the farm certificate serves both
    // 0.0.0.0:443 and portal's SNI binding, and is named after the host.
    assert_eq!(
        certificate_names(&s),
        vec![
            "portal.contoso.com",
            "mysites.contoso.com",
            "10.0.0.21-443",
            "secure.contoso.com",
            "all-ipv4-8172"
        ]
    );
    let CertificateSource::Pfx {
        file,
        password_file: Some(password_file),
        ..
    } = &s.certificates[0].source
    else {
        panic!("{:?}", s.certificates[0].source);
    };
    assert!(file.ends_with("certs/portal.contoso.com.pfx"));
    assert!(password_file.ends_with("certs/portal.contoso.com.pass"));

    // ipport=0.0.0.0:443: the listener's fallback.
    let main = listener(&s, "https-443");
    assert_eq!(main.bind, vec![addr("0.0.0.0:443")]);
    assert_eq!(
        main.fallback_certificate.as_deref(),
        Some("portal.contoso.com")
    );
    assert!(!main.strict_sni);
    assert_eq!(main.default_upstream.as_deref(), Some("iis-443"));
    // ipport=10.0.0.21:443: an IP/port listener of its own, HTTP/2 off as
    // in HTTP.sys, its backend the binding's own address.
    let ip = listener(&s, "https-10.0.0.21-443");
    assert_eq!(ip.bind, vec![addr("10.0.0.21:443")]);
    assert_eq!(ip.fallback_certificate.as_deref(), Some("10.0.0.21-443"));
    assert_eq!(ip.alpn, vec!["http/1.1".to_string()]);
    assert_eq!(ip.default_upstream.as_deref(), Some("iis-10.0.0.21-443"));
    assert_eq!(
        upstream(&s, "iis-10.0.0.21-443").servers,
        vec!["10.0.0.21:443"]
    );
    let other = listener(&s, "https-8172");
    assert_eq!(other.fallback_certificate.as_deref(), Some("all-ipv4-8172"));

    // hostnameport= bindings: routes on the port-443 listeners.
    for host in [
        "portal.contoso.com",
        "mysites.contoso.com",
        "secure.contoso.com",
    ] {
        let (up, ls) = route_of(&s, host);
        assert_eq!(up, "iis-443", "{host}");
        assert_eq!(ls, vec!["https-443", "https-10.0.0.21-443"], "{host}");
    }
    // Without applicationHost.config the sites' http ports are unknown:
    // the backends' https port, with TLS.
    let iis = upstream(&s, "iis-443");
    assert_eq!(
        iis.servers,
        vec!["wfe1.contoso.com:443", "wfe2.contoso.com:443"]
    );
    let tls = iis.tls.as_ref().expect("tls to the https port");
    assert!(tls.insecure_skip_verify);

    let toml = fs::read_to_string(&out).unwrap();
    assert!(toml.contains(
        "# TODO: export certificate 1f6e3a3bd3e24e5f8a0c4b9d2e7f6a5b4c3d2e1f from the Windows store My"
    ), "{toml}");
    assert!(toml.contains("Export-PfxCertificate -Cert Cert:\\LocalMachine\\WebHosting\\A7C2D4E6"));
    assert!(toml.contains("-FilePath portal.contoso.com.pfx -ChainOption BuildChain"));
    assert!(
        unwrapped(&toml).contains("Copy it here as certs/portal.contoso.com.pfx, and write its password alone in certs/portal.contoso.com.pass"),
        "{toml}"
    );
    assert!(
        !toml.contains("openssl pkcs12 -in portal.contoso.com.pfx"),
        "no conversion to PEM any more"
    );
    assert!(toml.contains("pin_sha256"));
    // Not representable: a comment and a line on stderr each.
    for needle in [
        "Negotiate Client Certificate",
        "Centralized Certificate Store",
        "Application ID {00000000-0000-0000-0000-000000000000}",
    ] {
        assert!(
            unwrapped(&toml).contains(needle),
            "{needle} not in the file:\n{toml}"
        );
        assert!(stderr.contains(needle), "{needle} not on stderr:\n{stderr}");
    }
    assert!(stderr.contains("netsh-sslcert.txt:101: not imported: hostnameport=secure.contoso.com:443: client certificates"), "{stderr}");
    assert!(stderr.contains("snigate import-iis: wrote "), "{stderr}");
    export_and_check(dir.path(), &out, &s);
}

#[test]
fn application_host_config_alone() {
    let (dir, out, s, stderr) =
        import(&["--config", data("applicationHost.config").to_str().unwrap()]);
    // No hashes in applicationHost.config: one certificate per binding,
    // named after its host or site.
    assert_eq!(
        certificate_names(&s),
        vec![
            "default-web-site",
            "portal.contoso.com",
            "mysites.contoso.com",
            "extranet",
            "secure.contoso.com",
            "intranet.contoso.com"
        ]
    );
    let main = listener(&s, "https-443");
    assert_eq!(main.bind, vec![addr("0.0.0.0:443")]);
    assert_eq!(
        main.fallback_certificate.as_deref(),
        Some("default-web-site")
    );
    assert_eq!(main.default_upstream.as_deref(), Some("default-web-site"));
    let extranet = listener(&s, "extranet");
    assert_eq!(extranet.bind, vec![addr("10.0.0.21:443")]);
    assert_eq!(extranet.default_upstream.as_deref(), Some("extranet"));
    assert_eq!(s.listeners.len(), 2);

    // Routes apply to both listeners of port 443, so they name none.
    assert_eq!(
        route_of(&s, "portal.contoso.com"),
        ("sharepoint-portal".into(), vec![])
    );
    assert_eq!(
        route_of(&s, "mysites.contoso.com"),
        ("sharepoint-mysites".into(), vec![])
    );
    assert_eq!(route_of(&s, "apps.contoso.com"), ("apps".into(), vec![]));
    assert_eq!(
        route_of(&s, "secure.contoso.com"),
        ("secure".into(), vec![])
    );

    // Backends: the placeholder, on each site's http port.
    assert_eq!(
        upstream(&s, "sharepoint-portal").servers,
        vec!["todo-iis-server.invalid:80"]
    );
    assert!(upstream(&s, "sharepoint-portal").tls.is_none());
    assert_eq!(upstream(&s, "extranet").servers, vec!["10.0.0.21:80"]);
    // No http binding (and Require SSL): https with TLS.
    let secure = upstream(&s, "secure");
    assert_eq!(secure.servers, vec!["todo-iis-server.invalid:443"]);
    assert!(secure.tls.is_some());

    assert!(stderr.contains("no --backend given"), "{stderr}");
    assert!(
        stderr.contains("find its hash with `netsh http show sslcert ipport=0.0.0.0:443`"),
        "{stderr}"
    );
    let toml = fs::read_to_string(&out).unwrap();
    assert!(
        toml.contains("# [[certificate]]\n# name = \"apps.contoso.com\""),
        "{toml}"
    );
    export_and_check(dir.path(), &out, &s);
}

#[test]
fn both_inputs_cross_referenced() {
    let (dir, out, s, stderr) = import(&[
        "--netsh",
        data("netsh-sslcert.txt").to_str().unwrap(),
        "--config",
        data("applicationHost.config").to_str().unwrap(),
        "--backend",
        "wfe1.contoso.com",
        "--backend",
        "10.0.0.12",
    ]);
    assert_eq!(
        certificate_names(&s),
        vec![
            "portal.contoso.com",
            "mysites.contoso.com",
            "extranet",
            "secure.contoso.com",
            "all-ipv4-8172",
            "intranet.contoso.com"
        ]
    );
    let main = listener(&s, "https-443");
    assert_eq!(
        main.fallback_certificate.as_deref(),
        Some("portal.contoso.com")
    );
    assert_eq!(main.default_upstream.as_deref(), Some("default-web-site"));
    let extranet = listener(&s, "extranet");
    assert_eq!(extranet.bind, vec![addr("10.0.0.21:443")]);
    assert_eq!(extranet.fallback_certificate.as_deref(), Some("extranet"));
    assert_eq!(extranet.default_upstream.as_deref(), Some("extranet"));
    assert_eq!(extranet.alpn, vec!["http/1.1".to_string()]);
    // The management service's binding: no site has it.
    let other = listener(&s, "https-8172");
    assert_eq!(other.default_upstream.as_deref(), Some("iis-8172"));

    let on_443 = vec!["https-443".to_string(), "extranet".to_string()];
    assert_eq!(
        route_of(&s, "portal.contoso.com"),
        ("sharepoint-portal".into(), on_443.clone())
    );
    assert_eq!(
        route_of(&s, "mysites.contoso.com"),
        ("sharepoint-mysites".into(), on_443.clone())
    );
    assert_eq!(
        route_of(&s, "intranet.contoso.com"),
        ("intranet".into(), on_443.clone())
    );
    // "Portal copy" binds portal.contoso.com too: not a second route.
    assert_eq!(
        s.routes
            .iter()
            .filter(|r| r.hosts.iter().any(|h| h == "portal.contoso.com"))
            .count(),
        1
    );
    assert!(s.upstreams.iter().all(|u| u.name != "portal-copy"));

    // Site name from applicationHost.config, backends from --backend, the
    // port from the site's http binding.
    assert_eq!(
        upstream(&s, "sharepoint-portal").servers,
        vec!["wfe1.contoso.com:80", "10.0.0.12:80"]
    );
    assert_eq!(
        upstream(&s, "default-web-site").servers,
        vec!["wfe1.contoso.com:80", "10.0.0.12:80"]
    );
    assert_eq!(
        upstream(&s, "secure").servers,
        vec!["wfe1.contoso.com:443", "10.0.0.12:443"]
    );

    let toml = fs::read_to_string(&out).unwrap();
    for needle in [
        "site \"Portal copy\" (id 8): https binding *:443:portal.contoso.com is also site \"SharePoint - portal\" (id 2)'s",
        "net.tcp binding \"808:*\" is not HTTP or HTTPS",
        "site \"Services\" (id 9): http binding *:8080:",
        "site \"Secure\" (id 5) asks clients for certificates",
        "certificate for apps.contoso.com:443 comes from the IIS Centralized Certificate Store",
        "hostnameport=intranet.contoso.com:443: the netsh listing has no certificate for this binding",
    ] {
        assert!(
            unwrapped(&toml).contains(needle),
            "{needle} not in the file:\n{toml}"
        );
        assert!(stderr.contains(needle), "{needle} not on stderr:\n{stderr}");
    }
    assert!(
        toml.contains("openssl pkcs12 -in certs/secure.contoso.com.pfx -passin file:certs/secure.contoso.com.pass -nokeys -clcerts | openssl x509 -outform der"),
        "{toml}"
    );
    export_and_check(dir.path(), &out, &s);
}

#[test]
fn utf16_and_stdin_give_the_same_configuration() {
    // Paths of the same length as "<stdin>", so that comments wrap alike.
    let dir = TempDir::new().unwrap();
    for (sub, file) in [("a", "netsh-sslcert.txt"), ("b", "netsh-sslcert-utf16.txt")] {
        fs::create_dir(dir.path().join(sub)).unwrap();
        fs::copy(data(file), dir.path().join(sub).join("n.txt")).unwrap();
    }
    let run = |args: &[&str], stdin: Option<Vec<u8>>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snigate"))
            .current_dir(dir.path())
            .args(["import-iis", "--backend", "wfe1"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(&bytes).unwrap();
        }
        drop(input);
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let utf8 = run(&["--netsh", "a/n.txt"], None);
    assert!(utf8.contains("[[listener]]"), "{utf8}");
    let utf16 = run(&["--netsh", "b/n.txt"], None);
    assert_eq!(utf16.replace("b/n.txt", "a/n.txt"), utf8);
    let piped = run(
        &["--netsh", "-"],
        Some(fs::read(data("netsh-sslcert-utf16.txt")).unwrap()),
    );
    assert_eq!(piped.replace("<stdin>", "a/n.txt"), utf8);
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let garbage = data("garbage.txt");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--netsh".into(), garbage.display().to_string()],
            "not the output of `netsh http show sslcert`",
        ),
        (
            vec!["--config".into(), garbage.display().to_string()],
            "not an applicationHost.config: the XML does not parse",
        ),
        (
            vec![
                "--config".into(),
                data("netsh-sslcert.txt").display().to_string(),
            ],
            "give it with --netsh",
        ),
        (
            vec![
                "--netsh".into(),
                data("applicationHost.config").display().to_string(),
            ],
            "give it with --config",
        ),
        (
            vec!["--netsh".into(), "/nonexistent/netsh.txt".into()],
            "cannot open",
        ),
        (
            vec![
                "--netsh".into(),
                data("netsh-sslcert.txt").display().to_string(),
                "--backend".into(),
                "wfe1:80".into(),
            ],
            "without a port",
        ),
        (
            vec!["--netsh".into(), "-".into(), "--config".into(), "-".into()],
            "only one input can be read from stdin",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["import-iis"];
        all.extend(args.iter().map(String::as_str));
        let o = snigate(&all);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: {message} not in: {stderr}"
        );
        assert!(stderr.starts_with("snigate import-iis: "), "{stderr}");
        assert!(o.stdout.is_empty(), "{args:?}: no configuration on failure");
    }
    // No input at all: a usage error.
    let o = snigate(&["import-iis"]);
    assert!(!o.status.success());
}

#[test]
fn hostile_names_stay_in_comments() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("applicationHost.config");
    fs::write(
        &config,
        "<configuration><system.applicationHost><sites>\
         <site name=\"Evil&#10;[[listener]]&#10;name = &quot;x&quot;\" id=\"1\"><bindings>\
         <binding protocol=\"https\" bindingInformation=\"*:443:\" />\
         <binding protocol=\"https\" bindingInformation=\"*:443:a&#10;b.test\" sslFlags=\"1\" />\
         <binding protocol=\"http\" bindingInformation=\"*:80:\" />\
         </bindings></site></sites></system.applicationHost></configuration>",
    )
    .unwrap();
    let (_dir, out, s, stderr) =
        import(&["--config", config.to_str().unwrap(), "--backend", "wfe1"]);
    assert_eq!(
        s.listeners.len(),
        1,
        "{}",
        fs::read_to_string(&out).unwrap()
    );
    assert_eq!(s.upstreams[0].name, "evil-listener-name-x");
    assert!(
        stderr.contains("is not a host name snigate can match"),
        "{stderr}"
    );
}
