//! Certificate hygiene through the real `snigate check`: expiring, expired and
//! not-yet-valid certificates, key files readable by every user, chain files out
//! of order, and fallback certificates that do not cover a routed host each print
//! a `warning: ...` line (exit 0); a clean configuration prints none. The same
//! findings come back, with their kinds, from `state::check_report`, and
//! `hygiene::log` writes them as structured warnings.
//!
//! Certificates are minted with rcgen into a temporary folder; nothing uses the
//! network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use snigate::config::Settings;

const DAY: i64 = 86_400;

/// A CA (root or intermediate) that can sign.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets notBefore/notAfter from Unix timestamps (through x509-parser, so the
/// `time` crate need not be a dependency of the tests).
fn set_validity(p: &mut CertificateParams, not_before: i64, not_after: i64) {
    let date = |ts| {
        x509_parser::time::ASN1Time::from_timestamp(ts)
            .unwrap()
            .to_datetime()
    };
    p.not_before = date(not_before);
    p.not_after = date(not_after);
}

/// A root CA (`by` None) or an intermediate signed by `by`.
fn ca(cn: &str, by: Option<&Ca>) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = match by {
        None => p.self_signed(&key).unwrap(),
        Some(by) => p.signed_by(&key, &by.issuer).unwrap(),
    };
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A leaf for `hosts` signed by `by`, valid for the given Unix times (default:
/// from a day ago for a year).
fn leaf(hosts: &[&str], by: &Ca, validity: Option<(i64, i64)>) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = name(hosts[0]);
    let now = unix_now();
    let (nb, na) = validity.unwrap_or((now - DAY, now + 365 * DAY));
    set_validity(&mut p, nb, na);
    let cert = p.signed_by(&key, &by.issuer).unwrap();
    (cert.pem(), key)
}

/// Writes `DIR/LABEL.crt` (the PEMs in this order) and `DIR/LABEL.key` (mode
/// 0600); returns a `[[certificate]]` block named `label`.
fn write_cert(dir: &Path, label: &str, chain: &[&str], key: &KeyPair) -> String {
    let crt = dir.join(format!("{label}.crt"));
    let keyf = dir.join(format!("{label}.key"));
    std::fs::write(&crt, chain.concat()).unwrap();
    std::fs::write(&keyf, key.serialize_pem()).unwrap();
    chmod(&keyf, 0o600);
    format!(
        "[[certificate]]\nname = \"{label}\"\nchain = \"{label}.crt\"\nkey = \"{label}.key\"\n\n"
    )
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn chmod(_path: &Path, _mode: u32) {}

/// One https listener with fallback `fallback`, routes for `hosts` and an upstream.
fn listener(fallback: &str, hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\n\
         fallback_certificate = \"{fallback}\"\ndefault_upstream = \"farm\"\n\n\
         [[route]]\nhosts = [{}]\nupstream = \"farm\"\n\n\
         [[upstream]]\nname = \"farm\"\nservers = [\"127.0.0.1:1\"]\n",
        hosts.join(", ")
    )
}

/// The output of `snigate check -c DIR/snigate.toml` after writing `toml` there.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    path: PathBuf,
}

impl Checked {
    fn warnings(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("warning: "))
            .collect()
    }

    fn ok_with_warnings(&self) -> Vec<&str> {
        assert_eq!(self.code, Some(0), "{self}");
        assert!(
            self.stdout.lines().next().unwrap_or("").contains(": ok: "),
            "{self}"
        );
        self.warnings()
    }

    /// The one warning that contains `needle`.
    fn warning(&self, needle: &str) -> &str {
        let found: Vec<&str> = self
            .ok_with_warnings()
            .into_iter()
            .filter(|w| w.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "one warning with {needle:?}:\n{self}");
        found[0]
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn check(dir: &Path, toml: &str) -> Checked {
    let path = dir.join("snigate.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(["check", "-c"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run snigate check");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("snigate check did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    }
}

/// The kinds `state::check_report` finds for the configuration `check` wrote.
fn kinds(checked: &Checked) -> Vec<&'static str> {
    let settings = Settings::load(&checked.path).unwrap();
    snigate::state::check_report(&settings)
        .unwrap()
        .warnings
        .iter()
        .map(|f| f.kind.as_str())
        .collect()
}

#[test]
fn a_clean_configuration_has_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let root = ca("Hygiene Root", None);
    let int = ca("Hygiene Intermediate", Some(&root));
    let (leaf_pem, key) = leaf(&["a.test", "b.test"], &int, None);
    // Leaf, intermediate, and the self-signed root at the end: all in order.
    let mut toml = write_cert(dir.path(), "farm", &[&leaf_pem, &int.pem, &root.pem], &key);
    // A group-readable key (0640 root:ssl-cert, the Debian way) is fine.
    chmod(&dir.path().join("farm.key"), 0o640);
    toml += &listener("farm", &["a.test", "B.test", "*.wild.test"]);
    let out = check(dir.path(), &toml);
    assert_eq!(out.ok_with_warnings(), Vec::<&str>::new(), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(kinds(&out).is_empty());
}

#[test]
fn expiring_expired_and_not_yet_valid_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let now = unix_now();
    let mut toml = String::new();
    let (pem, key) = leaf(
        &["soon.test"],
        &root,
        Some((now - DAY, now + 10 * DAY + 3600)),
    );
    toml += &write_cert(dir.path(), "soon", &[&pem], &key);
    let (pem, key) = leaf(
        &["gone.test"],
        &root,
        Some((now - 90 * DAY, now - 3 * DAY - 3600)),
    );
    toml += &write_cert(dir.path(), "gone", &[&pem], &key);
    let (pem, key) = leaf(
        &["early.test"],
        &root,
        Some((now + 2 * DAY - 3600, now + 90 * DAY)),
    );
    toml += &write_cert(dir.path(), "early", &[&pem], &key);
    // 31 days left: no warning.
    let (pem, key) = leaf(
        &["fine.test"],
        &root,
        Some((now - DAY, now + 31 * DAY + 3600)),
    );
    toml += &write_cert(dir.path(), "fine", &[&pem], &key);
    toml += &listener("soon", &["soon.test"]);
    let out = check(dir.path(), &toml);

    let soon = out.warning("certificate \"soon\"");
    assert!(soon.contains("expires in 10 days, on "), "{soon}");
    assert!(soon.contains(" UTC") && soon.contains("renew it"), "{soon}");
    let gone = out.warning("certificate \"gone\"");
    assert!(gone.contains("expired 3 days ago, on "), "{gone}");
    assert!(gone.contains("clients refuse it"), "{gone}");
    let early = out.warning("certificate \"early\"");
    assert!(early.contains("is not valid until "), "{early}");
    assert!(early.contains("(in 2 days)"), "{early}");
    assert!(
        !out.stdout.contains("\"fine\""),
        "31 days left is no warning:\n{out}"
    );
    assert_eq!(out.warnings().len(), 3, "{out}");
    assert_eq!(kinds(&out), ["expiring", "expired", "not_yet_valid"]);
}

#[test]
fn an_expiring_intermediate_is_reported_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let now = unix_now();
    let mut int_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    int_params.distinguished_name = name("Old Intermediate");
    int_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    set_validity(&mut int_params, now - 300 * DAY, now + 5 * DAY + 3600);
    let int_key = KeyPair::generate().unwrap();
    let int_cert = int_params.signed_by(&int_key, &root.issuer).unwrap();
    let int = Ca {
        pem: int_cert.pem(),
        issuer: Issuer::new(int_params, int_key),
    };
    let (pem, key) = leaf(&["a.test"], &int, None);
    let mut toml = write_cert(dir.path(), "farm", &[&pem, &int.pem], &key);
    toml += &listener("farm", &["a.test"]);
    let out = check(dir.path(), &toml);
    let w = out.warning("expires");
    assert!(
        w.contains("certificate 2 of chain file") && w.contains("CN=Old Intermediate"),
        "{w}"
    );
    assert!(w.contains("expires in 5 days"), "{w}");
    assert_eq!(kinds(&out), ["expiring"]);
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_everyone() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let root = ca("Hygiene Root", None);
    let (pem, key) = leaf(&["a.test"], &root, None);
    let mut toml = write_cert(dir.path(), "farm", &[&pem], &key);
    toml += &listener("farm", &["a.test"]);
    let key_path = dir.path().join("farm.key");
    chmod(&key_path, 0o644);

    // The warning needs every folder above the key open to others; a test
    // folder under a private home cannot show it.
    let reachable = dir.path().canonicalize().unwrap().ancestors().all(|d| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(d).unwrap().permissions().mode() & 0o001 != 0
    });
    let out = check(dir.path(), &toml);
    if !reachable {
        eprintln!(
            "note: {} is not reachable by others; skipped",
            dir.path().display()
        );
        assert!(out.ok_with_warnings().is_empty(), "{out}");
        return;
    }
    let w = out.warning("key file");
    let shown = key_path.canonicalize().unwrap_or(key_path.clone());
    assert!(w.contains("certificate \"farm\""), "{w}");
    assert!(w.contains("readable by every user"), "{w}");
    assert!(w.contains("(mode 0644)"), "{w}");
    assert!(
        w.contains(&format!("chmod 600 {}", key_path.display()))
            || w.contains(&format!("chmod 600 {}", shown.display())),
        "{w}"
    );
    assert_eq!(kinds(&out), ["key_readable"]);

    // In a folder only the owner can enter, the same mode is no warning.
    chmod(dir.path(), 0o700);
    let out = check(dir.path(), &toml);
    assert!(out.ok_with_warnings().is_empty(), "{out}");
    chmod(dir.path(), 0o755);

    // Fixed: no warning.
    chmod(&key_path, 0o600);
    let out = check(dir.path(), &toml);
    assert!(out.ok_with_warnings().is_empty(), "{out}");
}

#[test]
fn reversed_intermediates_are_reported_with_the_order_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let i1 = ca("Intermediate One", Some(&root));
    let i2 = ca("Intermediate Two", Some(&i1));
    let (pem, key) = leaf(&["a.test"], &i2, None);
    // Right: leaf, Two, One, root. Written: leaf, One, Two, root.
    let mut toml = write_cert(
        dir.path(),
        "farm",
        &[&pem, &i1.pem, &i2.pem, &root.pem],
        &key,
    );
    toml += &listener("farm", &["a.test"]);
    let out = check(dir.path(), &toml);
    let w = out.warning("out of order");
    assert!(w.contains("certificate \"farm\""), "{w}");
    assert!(
        w.contains("certificate 2 (CN=Intermediate One) did not issue certificate 1 (CN=a.test)"),
        "{w}"
    );
    assert!(w.contains("the order that verifies is 1, 3, 2, 4"), "{w}");
    assert_eq!(kinds(&out), ["chain_order"]);
}

#[test]
fn an_unrelated_certificate_in_the_chain_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let other = ca("Some Other CA", None);
    let int = ca("Intermediate", Some(&root));
    let (pem, key) = leaf(&["a.test"], &int, None);
    let mut toml = write_cert(dir.path(), "farm", &[&pem, &int.pem, &other.pem], &key);
    toml += &listener("farm", &["a.test"]);
    let out = check(dir.path(), &toml);
    let w = out.warning("out of order");
    assert!(
        w.contains("certificate 3 (CN=Some Other CA) did not issue certificate 2"),
        "{w}"
    );
    assert!(w.contains("remove certificate 3 (CN=Some Other CA)"), "{w}");
    assert_eq!(kinds(&out), ["chain_order"]);
}

/// A chain that starts with the intermediate is refused at load (the key is
/// not the first certificate's), with a hint; not a warning.
#[test]
fn a_leaf_that_is_not_first_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let int = ca("Intermediate", Some(&root));
    let (pem, key) = leaf(&["a.test"], &int, None);
    let mut toml = write_cert(dir.path(), "farm", &[&int.pem, &pem], &key);
    toml += &listener("farm", &["a.test"]);
    let out = check(dir.path(), &toml);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(
            "it is the key of certificate 2 in the chain; put the server certificate first"
        ),
        "{out}"
    );
}

#[test]
fn a_fallback_that_does_not_cover_a_routed_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let (pem, key) = leaf(&["fb.test"], &root, None);
    let mut toml = write_cert(dir.path(), "fb", &[&pem], &key);
    toml += &listener("fb", &["fb.test", "portal.test", "*.apps.test"]);
    let out = check(dir.path(), &toml);
    let w = out.warning("portal.test");
    assert!(
        w.starts_with("listener \"main\": fallback certificate \"fb\" does not cover portal.test;"),
        "{w}"
    );
    assert!(w.contains("sees a name warning"), "{w}");
    assert_eq!(out.warnings().len(), 1, "{out}");
    assert_eq!(kinds(&out), ["fallback_uncovered"]);
}

/// `hygiene::log` writes each finding as a warning with its fields.
#[test]
fn log_writes_structured_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Hygiene Root", None);
    let (pem, key) = leaf(&["fb.test"], &root, None);
    let mut toml = write_cert(dir.path(), "fb", &[&pem], &key);
    toml += &listener("fb", &["portal.test"]);
    let path = dir.path().join("snigate.toml");
    std::fs::write(&path, &toml).unwrap();
    let settings = Settings::load(&path).unwrap();
    let findings = snigate::state::check_report(&settings).unwrap().warnings;
    assert_eq!(findings.len(), 1, "{findings:?}");

    let buf = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(buf.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || snigate::tls::hygiene::log(&findings));
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["kind"], "fallback_uncovered", "{line}");
    assert_eq!(line["fields"]["certificate"], "fb", "{line}");
    assert_eq!(line["fields"]["listener"], "main", "{line}");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("does not cover portal.test"),
        "{line}"
    );
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}
