//! Certificates: `gen_certs::generate` output loads with `certs::load_certificate`,
//! verifies against the lab CA, and bad files give clear errors without panics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use snigate::tls::certs::{covers, load_certificate, CertError, KeyKind, LoadedCertificate};
use snigate::tools::gen_certs::{generate, validate_name, GenCertsError, KeyAlgorithm};

const NAMES: [&str; 3] = [
    "portal.contoso.test",
    "*.apps.contoso.test",
    "owa.contoso.test",
];

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

fn load(chain: &Path, key: &Path) -> Result<LoadedCertificate, CertError> {
    load_certificate("farm", chain, key, None, &provider())
}

fn verifier(ca: &Path) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
        .build()
        .unwrap()
}

fn verify(v: &WebPkiServerVerifier, loaded: &LoadedCertificate, host: &str) -> Result<(), String> {
    let chain = &loaded.certified_key.cert;
    let name = ServerName::try_from(host.to_string()).unwrap();
    v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A concrete host a name serves: the name itself, or a label under a wildcard.
fn example_host(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(rest) => format!("x.{rest}"),
        None => name.to_string(),
    }
}

fn check_set(dir: &Path, alg: KeyAlgorithm, kind: KeyKind) {
    let set = generate(dir, &names(), alg).unwrap();
    assert_eq!(set.leaves.len(), 3);
    let v = verifier(&set.ca_cert);
    for (host, crt, key) in &set.leaves {
        let loaded = load(crt, key).unwrap();
        assert_eq!(&loaded.names, &vec![host.clone()], "names from SAN");
        assert_eq!(loaded.key_kind, kind);
        assert_eq!(loaded.certified_key.cert.len(), 1, "leaf only");
        assert!(loaded.subject.contains(host.as_str()), "{}", loaded.subject);
        let days = loaded.expiry_days();
        assert!((820..=825).contains(&days), "expiry in {days} days");
        assert!(loaded.is_valid_at(std::time::SystemTime::now()));
        let total = loaded
            .not_after
            .duration_since(loaded.not_before)
            .unwrap()
            .as_secs();
        assert!(total <= 825 * 86_400, "validity {total}s exceeds 825 days");
        let h = example_host(host);
        verify(&v, &loaded, &h).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert!(verify(&v, &loaded, "other.contoso.test").is_err());
    }
    let wildcard = &set.leaves[1];
    assert!(wildcard.1.ends_with("_wildcard.apps.contoso.test.crt"));
    assert!(wildcard.2.ends_with("_wildcard.apps.contoso.test.key"));

    let fallback = load(&set.fallback.0, &set.fallback.1).unwrap();
    assert_eq!(fallback.names, names());
    assert_eq!(fallback.key_kind, kind);
    for n in NAMES {
        verify(&v, &fallback, &example_host(n)).unwrap();
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&set.ca_key), 0o600);
        assert_eq!(mode(&set.fallback.1), 0o600);
        for (_, _, key) in &set.leaves {
            assert_eq!(mode(key), 0o600);
        }
    }
}

#[test]
fn ecdsa_set_loads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    check_set(
        &dir.path().join("new/sub"),
        KeyAlgorithm::Ecdsa,
        KeyKind::Ecdsa,
    );
}

#[test]
fn rsa_set_loads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    check_set(dir.path(), KeyAlgorithm::Rsa, KeyKind::Rsa);
    // A fresh CA takes the requested algorithm.
    let ca = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    assert!(ca.contains("BEGIN PRIVATE KEY"));
}

#[test]
fn key_algorithm_parses() {
    assert_eq!(
        "ecdsa".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::Ecdsa
    );
    assert_eq!("RSA".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::Rsa);
    assert!("dsa".parse::<KeyAlgorithm>().is_err());
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Ecdsa);
    assert_eq!(KeyAlgorithm::Rsa.to_string(), "rsa");
}

#[test]
fn ca_is_kept_on_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    assert!(!first.ca_reused);
    let ca_before = std::fs::read(&first.ca_cert).unwrap();
    let key_before = std::fs::read(&first.ca_key).unwrap();
    let leaf_before = std::fs::read(&first.leaves[0].1).unwrap();

    // More names, and the other key type: the CA stays, the leaves are reissued.
    let more = vec!["portal.contoso.test,new.contoso.test".to_string()];
    let second = generate(dir.path(), &more, KeyAlgorithm::Rsa).unwrap();
    assert!(second.ca_reused);
    assert_eq!(std::fs::read(&second.ca_cert).unwrap(), ca_before);
    assert_eq!(std::fs::read(&second.ca_key).unwrap(), key_before);
    assert_ne!(std::fs::read(&second.leaves[0].1).unwrap(), leaf_before);
    assert_eq!(second.leaves.len(), 2, "comma-separated names are split");

    let v = verifier(&second.ca_cert);
    for (host, crt, key) in &second.leaves {
        let loaded = load(crt, key).unwrap();
        assert_eq!(loaded.key_kind, KeyKind::Rsa);
        verify(&v, &loaded, host).unwrap();
    }
    let fallback = load(&second.fallback.0, &second.fallback.1).unwrap();
    assert_eq!(
        fallback.names,
        vec!["portal.contoso.test", "new.contoso.test"]
    );
}

#[test]
fn half_a_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let set = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    std::fs::remove_file(&set.ca_key).unwrap();
    let err = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap_err();
    assert!(matches!(err, GenCertsError::CaIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("ca.key does not"), "{err}");

    // A CA key that is not the CA's.
    std::fs::copy(&set.fallback.1, &set.ca_key).unwrap();
    let err = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap_err();
    assert!(err.to_string().contains("not the key of ca.crt"), "{err}");
}

/// A folder for gen-certs output and a file outside it that a planted link
/// points to; the file holds `BAIT` so that any write to it shows.
struct Planted {
    _root: tempfile::TempDir,
    lab: PathBuf,
    outside: PathBuf,
}

const BAIT: &str = "not a key\n";

impl Planted {
    fn new() -> Planted {
        let root = tempfile::tempdir().unwrap();
        let lab = root.path().join("lab");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&lab).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Planted {
            _root: root,
            lab,
            outside,
        }
    }

    /// `lab/NAME` -> `outside/TARGET`; with `bait`, the target exists.
    fn link(&self, name: &str, target: &str, bait: bool) -> (PathBuf, PathBuf) {
        let link = self.lab.join(name);
        let target = self.outside.join(target);
        if bait {
            std::fs::write(&target, BAIT).unwrap();
        }
        std::os::unix::fs::symlink(&target, &link).unwrap();
        (link, target)
    }
}

/// The error is a symlink refusal naming `link`.
fn assert_refused(err: GenCertsError, link: &Path) {
    let msg = err.to_string();
    assert!(matches!(err, GenCertsError::Symlink { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("{} is a symbolic link", link.display())),
        "{msg}"
    );
}

/// A link where the CA key would be written, dangling or not, is refused: the
/// file it points to is never created or written, and nothing else is written.
#[test]
fn gen_certs_refuses_a_symlink_at_the_ca_key() {
    for bait in [false, true] {
        let p = Planted::new();
        let (link, target) = p.link("ca.key", "stolen.key", bait);
        let err = generate(&p.lab, &names(), KeyAlgorithm::Ecdsa).unwrap_err();
        assert_refused(err, &link);
        if bait {
            assert_eq!(std::fs::read_to_string(&target).unwrap(), BAIT);
        } else {
            assert!(!target.exists(), "the link's target was created");
        }
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let written: Vec<_> = std::fs::read_dir(&p.lab)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(written, vec![std::ffi::OsString::from("ca.key")]);
    }
}

/// A link where a leaf key would be replaced is refused too, even next to a
/// CA that is kept.
#[test]
fn gen_certs_refuses_a_symlink_at_a_leaf_key() {
    let p = Planted::new();
    generate(&p.lab, &names(), KeyAlgorithm::Ecdsa).unwrap();
    let leaf_key = p.lab.join("portal.contoso.test.key");
    std::fs::remove_file(&leaf_key).unwrap();
    let (link, target) = p.link("portal.contoso.test.key", "leaf.key", true);
    let err = generate(&p.lab, &names(), KeyAlgorithm::Ecdsa).unwrap_err();
    assert_refused(err, &link);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), BAIT);

    // And a link in place of the kept CA certificate: not read, not signed with.
    std::fs::remove_file(&link).unwrap();
    let ca_crt = p.lab.join("ca.crt");
    std::fs::rename(&ca_crt, p.outside.join("ca.crt")).unwrap();
    std::os::unix::fs::symlink(p.outside.join("ca.crt"), &ca_crt).unwrap();
    let err = generate(&p.lab, &names(), KeyAlgorithm::Ecdsa).unwrap_err();
    assert_refused(err, &ca_crt);
}

/// Links planted under the temporary names gen-certs writes through (this
/// process's pid makes them predictable) are skipped, never opened: the CA
/// key lands in DIR/ca.key with mode 0600 and the link targets stay as they were.
#[test]
fn gen_certs_never_writes_through_a_link_at_a_temporary_name() {
    use std::os::unix::fs::PermissionsExt;
    let p = Planted::new();
    let pid = std::process::id();
    // The names of earlier versions, and the first attempts of this one.
    let names_tried = [
        format!(".ca.key.tmp{pid}"),
        format!(".ca.key.{pid}.0.tmp"),
        format!(".ca.key.{pid}.1.tmp"),
    ];
    let planted: Vec<(PathBuf, PathBuf)> = names_tried
        .iter()
        .enumerate()
        .map(|(i, name)| p.link(name, &format!("stolen{i}.key"), true))
        .collect();
    let set = generate(&p.lab, &names(), KeyAlgorithm::Ecdsa).unwrap();
    for (link, target) in &planted {
        assert_eq!(
            std::fs::read_to_string(target).unwrap(),
            BAIT,
            "written through {}",
            link.display()
        );
        assert!(std::fs::symlink_metadata(link).unwrap().is_symlink());
    }
    let meta = std::fs::symlink_metadata(&set.ca_key).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&set.ca_key)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
}

#[test]
fn names_are_validated() {
    for bad in [
        "",
        " ",
        "../etc/passwd",
        "a/b.test",
        "a\\b.test",
        "a..b",
        ".a.test",
        "a b.test",
        "*.test",
        "a.*.test",
        "-a.test",
        "ca",
        "fallback.",
        "exa$mple.test",
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        validate_name("Portal.Contoso.TEST.").unwrap(),
        "portal.contoso.test"
    );
    assert_eq!(validate_name("*.apps.test").unwrap(), "*.apps.test");
    assert_eq!(validate_name("localhost").unwrap(), "localhost");
    let dir = tempfile::tempdir().unwrap();
    let err = generate(
        dir.path(),
        &["ok.test".into(), "../x".into()],
        KeyAlgorithm::Ecdsa,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"../x\""), "{err}");
    assert!(
        !dir.path().join("ca.crt").exists(),
        "nothing written for bad input"
    );
    assert!(matches!(
        generate(dir.path(), &[], KeyAlgorithm::Ecdsa),
        Err(GenCertsError::NoNames)
    ));
}

#[test]
fn explicit_names_override_san() {
    let dir = tempfile::tempdir().unwrap();
    let set = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    let (_, crt, key) = &set.leaves[0];
    let explicit = vec!["Other.Test.".to_string(), "*.Extra.test".to_string()];
    let loaded = load_certificate("farm", crt, key, Some(&explicit), &provider()).unwrap();
    assert_eq!(loaded.names, vec!["other.test", "*.extra.test"]);
    assert_eq!(loaded.name, "farm");
    assert!(loaded.covers("a.extra.test"));

    let err = load_certificate("farm", crt, key, Some(&[]), &provider()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate farm: {} names no host (no DNS subjectAltName; set names = [...])",
            crt.display()
        )
    );
    let err = load_certificate("farm", crt, key, Some(&["".into()]), &provider()).unwrap_err();
    assert!(matches!(err, CertError::InvalidName { .. }), "{err}");
}

/// DER: the (tag, whole TLV, content) at the start of `input`, and the rest.
fn tlv(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = input[0];
    let (len, hdr) = if input[1] < 0x80 {
        (input[1] as usize, 2)
    } else {
        let n = (input[1] & 0x7f) as usize;
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, 2 + n)
    };
    (
        tag,
        &input[..hdr + len],
        &input[hdr..hdr + len],
        &input[hdr + len..],
    )
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    // Minimal base64, to keep the test free of extra dependencies.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// Re-encodes a PKCS#8 key as PKCS#1 (RSA) or SEC1 with curve parameters (EC), what
/// `openssl pkey -traditional` writes.
fn traditional(pkcs8_pem_path: &Path) -> String {
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(pkcs8_pem_path).unwrap();
    let (_, _, info, _) = tlv(key.secret_pkcs8_der());
    let (_, _, _, rest) = tlv(info); // version
    let (_, _, alg, rest) = tlv(rest); // AlgorithmIdentifier
    let (_, _, inner, _) = tlv(rest); // privateKey OCTET STRING
    let (_, _, _, params) = tlv(alg); // algorithm OID, then parameters
    if params.first() == Some(&0x06) {
        // EC: ECPrivateKey { version, privateKey, [0] curve OID (absent in PKCS#8), [1] pub }
        let (_, _, ec, _) = tlv(inner);
        let (_, version, _, rest) = tlv(ec);
        let (_, privkey, _, rest) = tlv(rest);
        let (_, curve, _, _) = tlv(params);
        let mut content = Vec::new();
        content.extend_from_slice(version);
        content.extend_from_slice(privkey);
        content.extend(der_wrap(0xa0, curve));
        content.extend_from_slice(rest);
        pem("EC PRIVATE KEY", &der_wrap(0x30, &content))
    } else {
        pem("RSA PRIVATE KEY", inner)
    }
}

#[test]
fn pkcs1_and_sec1_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, kind, label) in [
        (KeyAlgorithm::Ecdsa, KeyKind::Ecdsa, "EC PRIVATE KEY"),
        (KeyAlgorithm::Rsa, KeyKind::Rsa, "RSA PRIVATE KEY"),
    ] {
        let out = dir.path().join(alg.to_string());
        let set = generate(&out, &names(), alg).unwrap();
        let (_, crt, key) = &set.leaves[0];
        let converted = out.join("traditional.key");
        std::fs::write(&converted, traditional(key)).unwrap();
        let loaded = load(crt, &converted).unwrap();
        assert_eq!(loaded.key_kind, kind);

        // The same through openssl, when it is installed.
        let ossl = out.join("openssl.key");
        match std::process::Command::new("openssl")
            .args(["pkey", "-traditional", "-in"])
            .arg(key)
            .arg("-out")
            .arg(&ossl)
            .status()
        {
            Ok(status) if status.success() => {
                let text = std::fs::read_to_string(&ossl).unwrap();
                assert!(text.contains(label), "{text}");
                assert_eq!(load(crt, &ossl).unwrap().key_kind, kind);
            }
            _ => eprintln!("note: openssl not available; skipped its traditional-key check"),
        }
    }
}

#[test]
fn ed25519_and_p384_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, kind) in [
        (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
        (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::Ecdsa),
    ] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["k.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let crt = dir.path().join("k.crt");
        let keyf = dir.path().join("k.key");
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        let loaded = load(&crt, &keyf).unwrap();
        assert_eq!(loaded.key_kind, kind);
        assert_eq!(loaded.names, vec!["k.test"]);
    }
}

#[test]
fn subject_cn_is_used_only_without_dns_san() {
    let dir = tempfile::tempdir().unwrap();
    let write = |cn: &str, sans: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let crt = dir.path().join("cn.crt");
        let keyf = dir.path().join("cn.key");
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        (crt, keyf)
    };
    let (crt, key) = write("Legacy.Contoso.Test", vec![]);
    assert_eq!(load(&crt, &key).unwrap().names, vec!["legacy.contoso.test"]);

    let (crt, key) = write("legacy.contoso.test", vec!["san.contoso.test".into()]);
    assert_eq!(load(&crt, &key).unwrap().names, vec!["san.contoso.test"]);

    // No SAN and a CN that is a label, not a host.
    let (crt, key) = write("Contoso Web Server", vec![]);
    let err = load(&crt, &key).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "certificate farm: {} names no host (no DNS subjectAltName; set names = [...])",
            crt.display()
        )
    );
}

#[test]
fn mismatched_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let set = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    let (_, crt_a, _) = &set.leaves[0];
    let (_, _, key_b) = &set.leaves[2];
    let err = load(crt_a, key_b).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{msg}");
    assert_eq!(
        msg,
        format!(
            "{} does not match the certificate in {}",
            key_b.display(),
            crt_a.display()
        )
    );

    // Chain out of order: CA first, then the leaf.
    let (_, crt, key) = &set.leaves[0];
    let reversed = dir.path().join("reversed.crt");
    let text =
        std::fs::read_to_string(&set.ca_cert).unwrap() + &std::fs::read_to_string(crt).unwrap();
    std::fs::write(&reversed, text).unwrap();
    let msg = load(&reversed, key).unwrap_err().to_string();
    assert!(
        msg.contains("does not match") && msg.contains("certificate 2"),
        "{msg}"
    );

    // An RSA key with an ECDSA certificate.
    let rsa = generate(&dir.path().join("rsa"), &names(), KeyAlgorithm::Rsa).unwrap();
    let msg = load(crt, &rsa.leaves[0].2).unwrap_err().to_string();
    assert!(msg.contains("does not match"), "{msg}");
}

#[test]
fn missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let set = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    let missing = dir.path().join("certs/farm.crt");
    let err = load(&missing, &set.fallback.1).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}: No such file or directory",
            missing.display()
        )
    );
    let missing_key = dir.path().join("farm.key");
    let err = load(&set.fallback.0, &missing_key).unwrap_err();
    assert!(err
        .to_string()
        .starts_with(&format!("cannot read {}", missing_key.display())));
    // A directory instead of a file.
    let err = load(dir.path(), &set.fallback.1).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

fn expect_err(chain: &Path, key: &Path, contains: &str) {
    match load(chain, key) {
        Ok(_) => panic!("{} / {} loaded", chain.display(), key.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(contains), "{msg:?} lacks {contains:?}");
        }
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let set = generate(dir.path(), &names(), KeyAlgorithm::Ecdsa).unwrap();
    let (good_crt, good_key) = (&set.fallback.0, &set.fallback.1);
    let file = |name: &str, content: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };

    let empty = file("empty.pem", b"");
    expect_err(&empty, good_key, "contains no PEM certificate");
    expect_err(
        good_crt,
        &empty,
        "contains no private key (expected PKCS#8, PKCS#1 RSA or SEC1 EC PEM)",
    );

    let text = file("text.pem", b"hello, this is not PEM\n");
    expect_err(&text, good_key, "contains no PEM certificate");

    let bad_b64 = file(
        "b64.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    expect_err(&bad_b64, good_key, "is not valid PEM");

    let truncated = std::fs::read_to_string(good_crt).unwrap();
    let truncated = file("trunc.pem", &truncated.as_bytes()[..truncated.len() / 2]);
    expect_err(&truncated, good_key, &truncated.display().to_string());

    let not_x509 = file(
        "notx509.pem",
        pem("CERTIFICATE", b"\x30\x03\x02\x01\x01").as_bytes(),
    );
    expect_err(&not_x509, good_key, "is not valid X.509");

    let junk_key = file(
        "junk.key",
        pem("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]).as_bytes(),
    );
    expect_err(good_crt, &junk_key, "unsupported key type in");

    let der = CertificateDer::from_pem_file(good_crt).unwrap();
    let der_file = file("der.crt", der.as_ref());
    expect_err(&der_file, good_key, "PKCS#12");

    // Chain and key swapped.
    expect_err(good_key, good_crt, "swapped");

    let encrypted = file(
        "enc.key",
        pem("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]).as_bytes(),
    );
    expect_err(good_crt, &encrypted, "encrypted");

    let two_keys = std::fs::read_to_string(good_key).unwrap()
        + &std::fs::read_to_string(&set.leaves[0].2).unwrap();
    let two_keys = file("two.key", two_keys.as_bytes());
    expect_err(good_crt, &two_keys, "2 private keys");

    // Certificate and key in one file works for both.
    let combined =
        std::fs::read_to_string(good_crt).unwrap() + &std::fs::read_to_string(good_key).unwrap();
    let combined = file("combined.pem", combined.as_bytes());
    load(&combined, &combined).unwrap();
}

/// Runs `snigate check -c config` (bounded): exit code and stderr.
fn snigate_check(config: &Path) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_snigate"));
    cmd.args(["check", "-c"]).arg(config);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    let out = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("snigate check finished within 20 s")
        .expect("snigate check ran");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 1-based line and column of `needle` in `text`.
fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// `snigate check` prints a certificate that does not load as
/// `FILE:LINE:COL: certificate "NAME": ...` at the `chain` or `key` value
/// of its `[[certificate]]`, whichever file is at fault, and the message
/// names that file.
#[test]
fn check_points_certificate_errors_at_their_chain_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let set = generate(&lab, &names(), KeyAlgorithm::Ecdsa).unwrap();
    std::fs::write(
        lab.join("corrupt.crt"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cert = |name: &str, chain: &str, key: &str| {
        format!("[[certificate]]\nname = \"{name}\"\nchain = \"{chain}\"\nkey = \"{key}\"\n\n")
    };
    let toml = [
        cert("good", "lab/fallback.crt", "lab/fallback.key"),
        cert("no-chain", "lab/missing.crt", "lab/fallback.key"),
        cert("no-key", "lab/fallback.crt", "lab/missing.key"),
        cert("corrupt", "lab/corrupt.crt", "lab/fallback.key"),
        cert("other-key", "lab/fallback.crt", "lab/owa.contoso.test.key"),
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         default_upstream = \"farm\"\n\n[[upstream]]\nname = \"farm\"\nservers = [\"127.0.0.1:1\"]\n"
            .to_string(),
    ]
    .concat();
    let config = dir.path().join("snigate.toml");
    std::fs::write(&config, &toml).unwrap();

    let file = |p: &str| dir.path().join(p).display().to_string();
    let at = |value: &str| {
        let (line, col) = line_col(&toml, value);
        format!("{}:{line}:{col}", config.display())
    };
    let expected = [
        format!(
            "{}: certificate \"no-chain\": cannot read {}: No such file or directory",
            at("\"lab/missing.crt\""),
            file("lab/missing.crt")
        ),
        format!(
            "{}: certificate \"no-key\": cannot read {}: No such file or directory",
            at("\"lab/missing.key\""),
            file("lab/missing.key")
        ),
        format!(
            "{}: certificate \"corrupt\": {} is not valid PEM",
            at("\"lab/corrupt.crt\""),
            file("lab/corrupt.crt")
        ),
        format!(
            "{}: certificate \"other-key\": {} does not match the certificate in {}",
            at("\"lab/owa.contoso.test.key\""),
            file("lab/owa.contoso.test.key"),
            set.fallback.0.display()
        ),
    ];
    let (code, stderr) = snigate_check(&config);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?}\ndoes not start with\n{want:?}"
        );
    }

    // The library gives the same, with the positions apart.
    let settings = snigate::config::Settings::load(&config).unwrap();
    let errors = snigate::state::check_report(&settings).unwrap_err();
    let positions: Vec<_> = errors.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        [
            "\"lab/missing.crt\"",
            "\"lab/missing.key\"",
            "\"lab/corrupt.crt\"",
            "\"lab/owa.contoso.test.key\"",
        ]
        .map(|v| Some(line_col(&toml, v)))
    );
}

/// The certificate and key [`corrupted_files_never_panic`] corrupts: a gen-certs
/// fallback for [`NAMES`], checked in (tests/data/certs/SOURCES.md) so that every
/// run corrupts the same bytes. A freshly generated pair differs at every run, so
/// the same seed hit different fields each time (once the subjectAltName, whose
/// error then named no file).
fn corruption_base() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/certs");
    (dir.join("corrupt-base.crt"), dir.join("corrupt-base.key"))
}

/// Loads `bytes` written to `target` as the chain (or, with `is_key`, the key)
/// next to the good other half: it must not panic, and a failure must name the
/// file that was corrupted.
fn load_corrupted(target: &Path, bytes: &[u8], is_key: bool, what: &str) {
    let (good_crt, good_key) = corruption_base();
    std::fs::write(target, bytes).unwrap();
    let result = if is_key {
        load(&good_crt, target)
    } else {
        load(target, &good_key)
    };
    if let Err(e) = result {
        let shown = target.display().to_string();
        assert!(e.to_string().contains(&shown), "{what}: {e}");
    }
}

/// Corrupting valid PEM files in many ways never panics, and every error names
/// the corrupted file. Deterministic: fixed input files, every single-byte
/// change of their DER by a fixed list of masks, then seeded changes to the
/// base64 text.
#[test]
fn corrupted_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fuzz.pem");
    let (good_crt, good_key) = corruption_base();
    let crt_text = std::fs::read(&good_crt).unwrap();
    let key_text = std::fs::read(&good_key).unwrap();
    let crt_der = CertificateDer::from_pem_slice(&crt_text).unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_text).unwrap();
    // The pair loads as it is: the corruptions below are what fails.
    load(&good_crt, &good_key).unwrap();

    // Every byte of the certificate and the key, each changed in several ways:
    // subjectAltName, CN, lengths, tags and key bits included.
    const MASKS: [u8; 4] = [0x01, 0x20, 0x80, 0xff];
    for (label, der, is_key) in [
        ("CERTIFICATE", crt_der.as_ref(), false),
        ("PRIVATE KEY", key_der.secret_der(), true),
    ] {
        for offset in 0..der.len() {
            for mask in MASKS {
                let mut bytes = der.to_vec();
                bytes[offset] ^= mask;
                let what = format!("{label} byte {offset} ^ {mask:#04x}");
                load_corrupted(&target, pem(label, &bytes).as_bytes(), is_key, &what);
            }
        }
    }

    // What once failed: corruption in the subjectAltName (the extension's OID,
    // or its names' tags) while the subject CN is no host name either, so the
    // certificate names no host at all.
    let find = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("{needle:02x?} not in the fixture"))
    };
    let der = crt_der.as_ref();
    let cn = find(der, b"portal.contoso.test");
    let san_oid = find(der, &[0x06, 0x03, 0x55, 0x1d, 0x11]) + 4;
    let dns_tags: Vec<usize> = NAMES
        .iter()
        .map(|n| find(der, &[&[0x82, n.len() as u8][..], n.as_bytes()].concat()))
        .collect();
    let mut no_san = der.to_vec();
    no_san[san_oid] = 0x12; // issuerAltName
    let mut uri_names = der.to_vec();
    for tag in dns_tags {
        uri_names[tag] = 0x86; // uniformResourceIdentifier
    }
    for (what, mut bytes) in [("SAN OID", no_san), ("SAN tags", uri_names)] {
        bytes[cn..cn + 19].copy_from_slice(b"portal contoso test");
        std::fs::write(&target, pem("CERTIFICATE", &bytes)).unwrap();
        let err = load(&target, &good_key).expect_err(what);
        assert!(matches!(err, CertError::NoNames { .. }), "{what}: {err}");
        load_corrupted(&target, pem("CERTIFICATE", &bytes).as_bytes(), false, what);
    }

    // The base64 text: a few characters replaced, sometimes cut short.
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..600 {
        let (orig, is_key) = if round % 2 == 0 {
            (&crt_text, false)
        } else {
            (&key_text, true)
        };
        let mut bytes = orig.clone();
        // Skip the BEGIN line so the section still parses as PEM.
        let start = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let end = bytes.len() - 30;
        for _ in 0..(1 + rand() % 4) {
            let i = start + (rand() as usize) % (end - start);
            if bytes[i] != b'\n' {
                bytes[i] = B64[(rand() % 64) as usize];
            }
        }
        if round % 7 == 0 {
            bytes.truncate(start + (rand() as usize) % (bytes.len() - start));
        }
        load_corrupted(&target, &bytes, is_key, &format!("base64 round {round}"));
    }
}

#[test]
fn covers_table() {
    let names: Vec<String> = ["portal.contoso.test", "*.apps.contoso.test"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let table: &[(&str, bool)] = &[
        ("portal.contoso.test", true),
        ("PORTAL.Contoso.Test", true),
        ("portal.contoso.test.", true),
        ("other.contoso.test", false),
        ("x.portal.contoso.test", false),
        ("a.apps.contoso.test", true),
        ("A.APPS.CONTOSO.TEST.", true),
        ("a.b.apps.contoso.test", false),
        ("apps.contoso.test", false),
        (".apps.contoso.test", false),
        ("xapps.contoso.test", false),
        ("", false),
        (".", false),
    ];
    for (host, want) in table {
        assert_eq!(covers(&names, host), *want, "{host:?}");
    }
    assert!(covers(&["Mixed.Case.Test".to_string()], "mixed.case.test"));
    assert!(!covers(&[], "a.test"));
    assert!(!covers(&["*.".to_string()], "a."));
}
