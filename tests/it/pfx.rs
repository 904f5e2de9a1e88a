//! `[[certificate]] pfx = ...`: PKCS#12 files as Windows and OpenSSL export
//! them. The files are made by the real `openssl pkcs12 -export` (AES-256 with
//! PBKDF2, the OpenSSL 3 and Windows Server 2019+ default; `-legacy`, RC2-40
//! certificates and a 3DES key as Windows Server 2016 wrote; 3DES for both;
//! no password) from a root, an intermediate and a leaf minted with rcgen, the
//! CA certificates given root first, so that the bag order is not the chain's.
//! A running proxy must present leaf, intermediate, root; `snigate check` must
//! say what is wrong with a wrong password, a missing file, both forms at once,
//! and warn about a password file everyone can read; a reload reads the pfx
//! and its password again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use rustls::pki_types::CertificateDer;

use crate::common::child::openssl_installed;
use crate::common::{
    bounded, pfx_with_others_first, start_proxy, tls_connect, toml_str, ClientOpts,
};

/// A root, an intermediate it signed, and the PEM file of both, root first
/// (the wrong order on purpose).
struct Cas {
    root: CertificateDer<'static>,
    intermediate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    bundle: PathBuf,
}

/// A leaf the intermediate signed, its files in the test folder.
struct Leaf {
    der: CertificateDer<'static>,
    crt: PathBuf,
    key: PathBuf,
    key_pkcs8: Vec<u8>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn cas(dir: &Path) -> Cas {
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("pfx test root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca_params("pfx test intermediate");
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let bundle = dir.join("cas.pem");
    std::fs::write(&bundle, format!("{}{}", root.pem(), intermediate.pem())).unwrap();
    Cas {
        root: root.der().clone(),
        intermediate: intermediate.der().clone(),
        issuer: Issuer::new(int_params, int_key),
        bundle,
    }
}

impl Cas {
    /// A leaf for `host`, written as `dir/LABEL.crt` and `dir/LABEL.key` (PKCS#8 PEM).
    fn leaf(&self, dir: &Path, label: &str, host: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![host.to_string()]).unwrap();
        p.distinguished_name = dn(host);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let crt = dir.join(format!("{label}.crt"));
        let keyf = dir.join(format!("{label}.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        Leaf {
            der: cert.der().clone(),
            crt,
            key: keyf,
            key_pkcs8: key.serialize_der(),
        }
    }

    /// The chain a client must be sent for `leaf`.
    fn chain_of(&self, leaf: &Leaf) -> Vec<CertificateDer<'static>> {
        vec![
            leaf.der.clone(),
            self.intermediate.clone(),
            self.root.clone(),
        ]
    }
}

/// Runs `openssl pkcs12 -export` for `leaf` with the CA bundle (root first)
/// and `extra` arguments (the password and encryption options) into `out`.
fn export(leaf: &Leaf, cas: &Cas, out: &Path, extra: &[&str]) {
    let o = Command::new("openssl")
        .args(["pkcs12", "-export", "-inkey"])
        .arg(&leaf.key)
        .arg("-in")
        .arg(&leaf.crt)
        .arg("-certfile")
        .arg(&cas.bundle)
        .arg("-out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run openssl");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !(extra.contains(&"-legacy") && stderr.contains("unsupported")),
        "openssl -legacy needs OpenSSL's legacy provider (Debian: in libssl3; \
         OPENSSL_MODULES must not point elsewhere): {stderr}"
    );
    assert!(
        o.status.success(),
        "openssl pkcs12 -export {extra:?}: {stderr}"
    );
}

/// What `openssl pkcs12 -info` says of the encryption of `pfx`.
fn schemes(pfx: &Path, passin: &str) -> String {
    let o = Command::new("openssl")
        .args([
            "pkcs12", "-info", "-noout", "-legacy", "-passin", passin, "-in",
        ])
        .arg(pfx)
        .output()
        .expect("run openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `snigate check -c CONFIG`: exit code, stdout and stderr (bounded in time).
fn check(config: &Path) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_snigate"));
    cmd.args(["check", "-c"]).arg(config);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("snigate check finished within 20 s")
        .expect("snigate check ran");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A listener "web" with `fallback` and an upstream nothing needs to reach.
fn listener(fallback: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nfallback_certificate = \
         \"{fallback}\"\ndefault_upstream = \"farm\"\n\n[[upstream]]\nname = \"farm\"\n\
         servers = [\"127.0.0.1:1\"]\n"
    )
}

fn pfx_toml(name: &str, pfx: &str, password_file: Option<&str>) -> String {
    let password = password_file
        .map(|p| format!("pfx_password_file = {}\n", toml_str(p)))
        .unwrap_or_default();
    format!(
        "[[certificate]]\nname = {}\npfx = {}\n{password}\n",
        toml_str(name),
        toml_str(pfx)
    )
}

/// 1-based line and column of the first `needle` in `text`.
fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

macro_rules! need_openssl {
    () => {
        if !openssl_installed() {
            eprintln!("SKIPPED: openssl is needed for this test (CI installs it)");
            return;
        }
    };
}

#[tokio::test]
async fn pfx_files_as_windows_and_openssl_export_them_are_served_with_their_chain_in_order() {
    need_openssl!();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cas = cas(d);
        // (label, openssl options, password file content, what -info must show)
        type Variant = (
            &'static str,
            Vec<String>,
            Option<&'static str>,
            &'static [&'static str],
        );
        let variants: [Variant; 4] = [
            (
                "aes",
                vec![
                    "-passout".into(),
                    format!("file:{}", d.join("aes.in").display()),
                ],
                Some("Pässwort mit Leerzeichen\n"),
                &["PBES2", "AES-256-CBC"],
            ),
            (
                "legacy",
                // Windows Server 2016 and older: RC2-40 certificates, 3DES key.
                vec![
                    "-legacy".into(),
                    "-passout".into(),
                    "pass:old windows".into(),
                ],
                Some("old windows\r\n"),
                &[
                    "pbeWithSHA1And40BitRC2-CBC",
                    "pbeWithSHA1And3-KeyTripleDES-CBC",
                ],
            ),
            (
                "tdes",
                vec![
                    "-keypbe".into(),
                    "PBE-SHA1-3DES".into(),
                    "-certpbe".into(),
                    "PBE-SHA1-3DES".into(),
                    "-passout".into(),
                    "pass:tdes".into(),
                ],
                Some("tdes"),
                &["Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC"],
            ),
            ("nopass", vec!["-passout".into(), "pass:".into()], None, &[]),
        ];
        let mut toml = String::new();
        let mut expected = Vec::new();
        for (label, options, password, shows) in &variants {
            let leaf = cas.leaf(d, label, &format!("{label}.pfx.test"));
            let pfx = d.join(format!("{label}.pfx"));
            if *label == "aes" {
                std::fs::write(d.join("aes.in"), password.unwrap()).unwrap();
            }
            let options: Vec<&str> = options.iter().map(String::as_str).collect();
            export(&leaf, &cas, &pfx, &options);
            let pass_file = password.map(|p| {
                let f = d.join(format!("{label}.pass"));
                std::fs::write(&f, p).unwrap();
                f
            });
            let passin = match &pass_file {
                Some(f) if *label == "aes" => format!("file:{}", f.display()),
                Some(_) => format!("pass:{}", password.unwrap().trim_end()),
                None => "pass:".to_string(),
            };
            let info = schemes(&pfx, &passin);
            for s in *shows {
                assert!(info.contains(s), "{label}: {s} not in\n{info}");
            }
            toml += &pfx_toml(
                label,
                &format!("{label}.pfx"),
                pass_file
                    .as_ref()
                    .map(|_| format!("{label}.pass"))
                    .as_deref(),
            );
            expected.push((format!("{label}.pfx.test"), cas.chain_of(&leaf)));
        }
        // Bags written by another writer: root and intermediate before the leaf.
        let leaf = cas.leaf(d, "first", "first.pfx.test");
        let bytes = pfx_with_others_first(
            &leaf.der,
            &leaf.key_pkcs8,
            &[cas.root.clone(), cas.intermediate.clone()],
            "x",
        );
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, "x").unwrap();
        assert_ne!(
            archive.certs[0].cert.as_der(),
            leaf.der.as_ref(),
            "leaf not first"
        );
        std::fs::write(d.join("first.pfx"), bytes).unwrap();
        std::fs::write(d.join("first.pass"), "x\n").unwrap();
        toml += &pfx_toml("first", "first.pfx", Some("first.pass"));
        expected.push(("first.pfx.test".to_string(), cas.chain_of(&leaf)));

        toml += &listener("aes");
        let proxy = start_proxy(d, &toml).await;
        let addr = proxy.addr("web").unwrap();
        for (host, chain) in &expected {
            let tls = tls_connect(addr, &cas.root, &ClientOpts::sni(host))
                .await
                .unwrap_or_else(|e| panic!("{host}: {e}"));
            let presented = tls.stream.get_ref().1.peer_certificates().unwrap().to_vec();
            assert!(
                presented == *chain,
                "{host}: leaf, intermediate, root expected; got {} certificates, \
                 leaf first: {}, intermediate second: {}",
                presented.len(),
                presented.first() == chain.first(),
                presented.get(1) == chain.get(1)
            );
        }
        proxy.shutdown().await;
    })
    .await;
}

#[test]
fn check_says_what_is_wrong_with_a_pfx_and_where() {
    need_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cas = cas(d);
    let leaf = cas.leaf(d, "portal", "portal.pfx.test");
    std::fs::write(d.join("portal.in"), "right\n").unwrap();
    let passout = format!("file:{}", d.join("portal.in").display());
    export(&leaf, &cas, &d.join("portal.pfx"), &["-passout", &passout]);
    std::fs::write(d.join("wrong.pass"), "wrong\n").unwrap();
    std::fs::write(d.join("right.pass"), "right\r\n").unwrap();
    let config = d.join("snigate.toml");
    let run = |toml: &str| {
        std::fs::write(&config, toml).unwrap();
        check(&config)
    };

    // Wrong password: the message names both files, at the pfx value.
    let toml = pfx_toml("portal", "portal.pfx", Some("wrong.pass")) + &listener("portal");
    let (code, out, err) = run(&toml);
    assert_eq!(code, Some(1), "{out}{err}");
    let (l, c) = line_col(&toml, "\"portal.pfx\"");
    let wrong = format!(
        "{}:{l}:{c}: certificate \"portal\": wrong password in {} for {}",
        config.display(),
        d.join("wrong.pass").display(),
        d.join("portal.pfx").display()
    );
    assert!(err.contains(&wrong), "{wrong}\nnot in:\n{err}");
    assert!(!err.contains("right") && !out.contains("right"), "{err}");

    // No password file for a pfx that has one.
    let toml = pfx_toml("portal", "portal.pfx", None) + &listener("portal");
    let (code, _, err) = run(&toml);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is protected by a password") && err.contains("pfx_password_file"),
        "{err}"
    );

    // Missing pfx, missing password file: each at its own value.
    let toml = pfx_toml("portal", "missing.pfx", Some("right.pass")) + &listener("portal");
    let (code, _, err) = run(&toml);
    assert_eq!(code, Some(1), "{err}");
    let (l, c) = line_col(&toml, "\"missing.pfx\"");
    let missing = format!(
        "{}:{l}:{c}: certificate \"portal\": cannot read {}: No such file or directory",
        config.display(),
        d.join("missing.pfx").display()
    );
    assert!(err.contains(&missing), "{missing}\nnot in:\n{err}");
    let toml = pfx_toml("portal", "portal.pfx", Some("nowhere.pass")) + &listener("portal");
    let (code, _, err) = run(&toml);
    assert_eq!(code, Some(1), "{err}");
    let (l, c) = line_col(&toml, "\"nowhere.pass\"");
    assert!(
        err.contains(&format!("{}:{l}:{c}: ", config.display()))
            && err.contains(&format!("cannot read {}", d.join("nowhere.pass").display())),
        "{err}"
    );

    // Both forms, neither, and a password file without pfx: configuration errors.
    let both = format!(
        "[[certificate]]\nname = \"portal\"\npfx = \"portal.pfx\"\nchain = \"portal.crt\"\n\
         key = \"portal.key\"\n\n{}",
        listener("portal")
    );
    let (code, _, err) = run(&both);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("give either pfx (with pfx_password_file) or chain and key, not both"),
        "{err}"
    );
    let neither = format!(
        "[[certificate]]\nname = \"portal\"\n\n{}",
        listener("portal")
    );
    let (code, _, err) = run(&neither);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no certificate file: write pfx = "), "{err}");
    let stray = format!(
        "[[certificate]]\nname = \"portal\"\nchain = \"portal.crt\"\nkey = \"portal.key\"\n\
         pfx_password_file = \"right.pass\"\n\n{}",
        listener("portal")
    );
    let (code, _, err) = run(&stray);
    assert_eq!(code, Some(1), "{err}");
    let (l, c) = line_col(&stray, "\"right.pass\"");
    assert!(
        err.contains(&format!("{}:{l}:{c}: ", config.display()))
            && err.contains("pfx_password_file is the password of a pfx file"),
        "{err}"
    );
    let lone = format!(
        "[[certificate]]\nname = \"portal\"\npfx_password_file = \"right.pass\"\n\n{}",
        listener("portal")
    );
    let (code, _, err) = run(&lone);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("pfx_password_file without pfx"), "{err}");

    // A .pfx given as a PEM chain: the hint says to write pfx =.
    let toml = format!(
        "[[certificate]]\nname = \"portal\"\nchain = \"portal.pfx\"\nkey = \"portal.key\"\n\n{}",
        listener("portal")
    );
    let (code, _, err) = run(&toml);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("for a .pfx write pfx = \"FILE.pfx\""), "{err}");

    // The right password (CRLF in the file): ok.
    let toml = pfx_toml("portal", "portal.pfx", Some("right.pass")) + &listener("portal");
    let (code, out, err) = run(&toml);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": ok: "), "{out}");
}

#[cfg(unix)]
#[test]
fn a_password_file_everyone_can_read_is_warned_about() {
    need_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    chmod(d, 0o755);
    let cas = cas(d);
    let leaf = cas.leaf(d, "portal", "portal.pfx.test");
    export(&leaf, &cas, &d.join("portal.pfx"), &["-passout", "pass:pw"]);
    std::fs::write(d.join("portal.pass"), "pw\n").unwrap();
    let config = d.join("snigate.toml");
    std::fs::write(
        &config,
        pfx_toml("portal", "portal.pfx", Some("portal.pass")) + &listener("portal"),
    )
    .unwrap();
    let warnings = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix("warning: "))
            .map(str::to_string)
            .collect()
    };

    chmod(&d.join("portal.pfx"), 0o600);
    chmod(&d.join("portal.pass"), 0o644);
    let (code, out, err) = check(&config);
    assert_eq!(code, Some(0), "{out}{err}");
    let pass = d.join("portal.pass").display().to_string();
    assert_eq!(
        warnings(&out),
        vec![format!(
            "certificate \"portal\": pfx password file {pass} is readable by every user of this \
             machine (mode 0644): chmod 600 {pass} (or chmod 640 with a group that only \
             snigate's user is in)"
        )],
        "{out}"
    );

    // The pfx holds the key too.
    chmod(&d.join("portal.pass"), 0o600);
    chmod(&d.join("portal.pfx"), 0o604);
    let (code, out, _) = check(&config);
    assert_eq!(code, Some(0), "{out}");
    let w = warnings(&out);
    assert!(
        w.len() == 1
            && w[0].contains(&format!(
                "pfx file {} is readable by every user",
                d.join("portal.pfx").display()
            )),
        "{out}"
    );

    chmod(&d.join("portal.pfx"), 0o640);
    let (code, out, _) = check(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(warnings(&out).is_empty(), "{out}");
}

#[tokio::test]
async fn a_reload_reads_the_pfx_and_its_password_again() {
    need_openssl!();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cas = cas(d);
        let v1 = cas.leaf(d, "v1", "site.test");
        export(&v1, &cas, &d.join("site.pfx"), &["-passout", "pass:one"]);
        std::fs::write(d.join("site.pass"), "one\n").unwrap();
        let toml = pfx_toml("site", "site.pfx", Some("site.pass")) + &listener("site");
        let proxy = start_proxy(d, &toml).await;
        let addr = proxy.addr("web").unwrap();
        let served = || async {
            tls_connect(addr, &cas.root, &ClientOpts::sni("site.test"))
                .await
                .expect("handshake")
                .leaf
        };
        assert_eq!(served().await, v1.der);

        // A new certificate, exported the old way, with a new password.
        let v2 = cas.leaf(d, "v2", "site.test");
        export(
            &v2,
            &cas,
            &d.join("site.pfx"),
            &["-legacy", "-passout", "pass:two"],
        );
        std::fs::write(d.join("site.pass"), "two\r\n").unwrap();
        assert_eq!(proxy.reload().await, Ok(2));
        assert_eq!(served().await, v2.der, "the new pfx is served");

        // A wrong password: the reload fails, says why, and v2 stays.
        std::fs::write(d.join("site.pass"), "three\n").unwrap();
        let errors = proxy.reload().await.unwrap_err();
        let wrong = format!(
            "wrong password in {} for {}",
            d.join("site.pass").display(),
            d.join("site.pfx").display()
        );
        assert!(errors.iter().any(|e| e.contains(&wrong)), "{errors:?}");
        assert_eq!(
            served().await,
            v2.der,
            "a failed reload keeps the old state"
        );
        proxy.shutdown().await;
    })
    .await;
}

/// `legacy_tls` (OpenSSL) serves a pfx certificate too, with the same chain:
/// snigate reads the pfx and hands OpenSSL the certificates and key.
#[cfg(feature = "legacy-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tls_serves_a_pfx_certificate_with_its_chain() {
    need_openssl!();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cas = cas(d);
        let leaf = cas.leaf(d, "old", "old.pfx.test");
        export(&leaf, &cas, &d.join("old.pfx"), &["-legacy", "-passout", "pass:pw"]);
        std::fs::write(d.join("old.pass"), "pw\n").unwrap();
        let toml = pfx_toml("old", "old.pfx", Some("old.pass"))
            + &listener("old").replace(
                "default_upstream",
                "legacy_tls = { min_version = \"1.0\", ciphers = \"DEFAULT:@SECLEVEL=0\" }\ndefault_upstream",
            );
        let proxy = start_proxy(d, &toml).await;
        let addr = proxy.addr("web").unwrap();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("openssl")
                .args(["s_client", "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", "-showcerts"])
                .args(["-connect", &addr.to_string()])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run openssl s_client")
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("New, TLSv1, Cipher is") || text.contains("New, TLSv1.0, Cipher is"), "{text}");
        let chain: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" s:"))
            .collect();
        assert_eq!(chain.len(), 3, "{text}");
        assert!(chain[0].contains("old.pfx.test"), "{text}");
        assert!(chain[1].contains("pfx test intermediate"), "{text}");
        assert!(chain[2].contains("pfx test root"), "{text}");
        proxy.shutdown().await;
    })
    .await;
}
